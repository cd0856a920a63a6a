/*
 * bench_net.c — `make bench`: sync over loopback TCP.
 *
 * 1. Throughput: one node holds N transfers (default 1,000,000), a second node with only the
 *    accounts connects and pulls them. Ops/s, and bytes on the wire per transfer beside the
 *    encoded size of the same ops (a tally_delta of them, with no framing).
 * 2. Convergence: 5 nodes, cut off from each other, each create T transfers (default 100,000);
 *    then they are connected in a full mesh. Time until all digests are equal, beside the time
 *    loopback bandwidth alone would need for the bytes that crossed, measured in the same run
 *    by pushing the same number of bytes through a loopback TCP connection.
 *
 * All nodes share one loop and so one core, as a single tallyd would.
 * Options: --transfers N, --each T, --smoke.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "tally.h"

#define ACCOUNTS 10000
#define NODES 5

#define BENCH_SEED 0x51ed270b27a1c3d5u
#include "bench_util.h"

static _Noreturn void die(const char *what, int rc) {
    fprintf(stderr, "bench_net: %s: %s\n", what, tally_result_name(rc));
    exit(1);
}

static tally_id accounts[ACCOUNTS], bank;

static tally_replica *replica(uint64_t id) {
    tally_options o;
    memset(&o, 0, sizeof o);
    o.replica_id = id;
    tally_replica *r;
    int rc = tally_open(&o, &r);
    if (rc != TALLY_OK) {
        die("open", rc);
    }
    return r;
}

/* Accounts and their funding, made on `from`, copied to the others before the clock starts. */
static void setup_accounts(tally_replica *from) {
    tally_account b = {bank, 0, 1, 1, 0};
    tally_create_account(from, &b);
    for (int i = 0; i < ACCOUNTS; i++) {
        tally_account a = {accounts[i], 0, 1, 1, TALLY_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS};
        tally_create_account(from, &a);
        tally_transfer t;
        memset(&t, 0, sizeof t);
        t.id = (tally_id){rnd(), rnd() | 1};
        t.debit_account_id = bank;
        t.credit_account_id = accounts[i];
        t.amount = 1u << 30;
        t.ledger = 1;
        t.code = 1;
        tally_create_transfer(from, &t);
    }
}

static void copy_state(tally_replica *from, tally_replica *to) {
    uint8_t *summary, *delta;
    size_t summary_len, delta_len;
    tally_summary(to, &summary, &summary_len);
    tally_delta(from, summary, summary_len, 0, &delta, &delta_len);
    int rc = tally_apply(to, delta, delta_len);
    if (rc != TALLY_OK) {
        die("copy", rc);
    }
    tally_free(summary);
    tally_free(delta);
}

/* n transfers between the accounts, created on r in batches; (grants aside) each replica
 * spends only what it was given rights for, so here: credits to the accounts from the bank. */
static void workload(tally_replica *r, size_t n) {
    enum { BATCH = 8189 };
    static tally_transfer t[BATCH];
    static int results[BATCH];
    for (size_t done = 0; done < n; done += BATCH) {
        size_t k = n - done < BATCH ? n - done : BATCH;
        for (size_t i = 0; i < k; i++) {
            memset(&t[i], 0, sizeof t[i]);
            t[i].id = (tally_id){rnd(), rnd() | 1};
            t[i].debit_account_id = bank;
            t[i].credit_account_id = accounts[rnd() % ACCOUNTS];
            t[i].amount = 1 + rnd() % 100;
            t[i].ledger = 1;
            t[i].code = 1;
        }
        tally_create_transfers(r, t, k, results);
    }
}

/* --- running a set of nodes until they agree ------------------------------------------------ */

typedef struct net {
    uv_loop_t loop;
    int n;
    tally_replica *r[NODES];
    tally_node *node[NODES];
    char addr[NODES][32];
    uv_timer_t check;
    double done_at;
    int stopped;
} net;

static void on_check(uv_timer_t *t) {
    net *s = t->data;
    /* digests hash every record: compare op counts first, which costs nothing */
    tally_stats st0, st;
    tally_get_stats(s->r[0], &st0);
    for (int i = 1; i < s->n; i++) {
        tally_get_stats(s->r[i], &st);
        if (st.ops != st0.ops) {
            return;
        }
    }
    uint8_t first[16], d[16];
    tally_digest(s->r[0], first);
    for (int i = 1; i < s->n; i++) {
        tally_digest(s->r[i], d);
        if (memcmp(first, d, 16) != 0) {
            return;
        }
    }
    s->done_at = now_s();
    uv_stop(&s->loop);
}

static void debug_log(void *ctx, int level, const char *message) {
    (void)ctx;
    fprintf(stderr, "log %d: %s\n", level, message);
}

static void start_nodes(net *s) {
    uv_loop_init(&s->loop);
    for (int i = 0; i < s->n; i++) {
        tally_node_options o;
        memset(&o, 0, sizeof o);
        o.listen = "127.0.0.1:0";
        if (getenv("BENCH_NET_DEBUG")) {
            o.log = debug_log;
        }
        int rc = tally_node_start(&s->loop, s->r[i], &o, &s->node[i]);
        if (rc != TALLY_OK) {
            die("node start", rc);
        }
        snprintf(s->addr[i], sizeof s->addr[i], "127.0.0.1:%d", tally_node_port(s->node[i]));
    }
    uv_timer_init(&s->loop, &s->check);
    s->check.data = s;
}

static double connect_and_run(net *s) {
    double t0 = now_s();
    for (int i = 0; i < s->n; i++) {
        for (int k = i + 1; k < s->n; k++) {
            tally_node_add_peer(s->node[i], s->addr[k]);
        }
    }
    uv_timer_start(&s->check, on_check, 5, 5);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    return s->done_at - t0;
}

static void on_stopped(void *ctx) { ((net *)ctx)->stopped++; }

static uint64_t stop_nodes(net *s) {
    uint64_t wire = 0;
    for (int i = 0; i < s->n; i++) {
        tally_node_stats st;
        tally_node_get_stats(s->node[i], &st);
        wire += st.bytes_out;
        if (getenv("BENCH_NET_DEBUG")) {
            fprintf(stderr, "node %d: out %llu bytes %llu ops, in %llu bytes %llu ops\n", i,
                    (unsigned long long)st.bytes_out, (unsigned long long)st.ops_out,
                    (unsigned long long)st.bytes_in, (unsigned long long)st.ops_in);
        }
        tally_node_stop(s->node[i], on_stopped, s);
    }
    uv_close((uv_handle_t *)&s->check, NULL);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    uv_loop_close(&s->loop);
    return wire;
}

/* --- loopback bandwidth, for the bound ------------------------------------------------------ */

typedef struct pipe_job {
    int fd;
    size_t bytes;
} pipe_job;

static void *drain(void *arg) {
    pipe_job *j = arg;
    static char buf[1 << 16];
    size_t got = 0;
    while (got < j->bytes) {
        ssize_t n = read(j->fd, buf, sizeof buf);
        if (n <= 0) {
            break;
        }
        got += (size_t)n;
    }
    return NULL;
}

/* Bytes per second through a loopback TCP connection, measured moving `bytes`. */
static double loopback_bandwidth(size_t bytes) {
    uv_loop_t loop;
    uv_loop_init(&loop);
    /* plain sockets: a listener on an ephemeral port, one connection, one reader thread */
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(lfd, 1) != 0 ||
        getsockname(lfd, (struct sockaddr *)&sa, &len) != 0) {
        die("loopback", TALLY_EIO);
    }
    int cfd = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(cfd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        die("loopback connect", TALLY_EIO);
    }
    int afd = accept(lfd, NULL, NULL);
    pipe_job job = {afd, bytes};
    pthread_t reader;
    pthread_create(&reader, NULL, drain, &job);
    static char buf[1 << 16];
    memset(buf, 'x', sizeof buf);
    double t0 = now_s();
    size_t sent = 0;
    while (sent < bytes) {
        ssize_t n = write(cfd, buf, bytes - sent < sizeof buf ? bytes - sent : sizeof buf);
        if (n <= 0) {
            break;
        }
        sent += (size_t)n;
    }
    pthread_join(reader, NULL);
    double s = now_s() - t0;
    close(cfd);
    close(afd);
    close(lfd);
    uv_loop_close(&loop);
    return (double)bytes / s;
}

int main(int argc, char **argv) {
    size_t transfers = 1000000, each = 100000;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--transfers") && i + 1 < argc) {
            transfers = strtoull(argv[++i], NULL, 10);
        } else if (!strcmp(argv[i], "--each") && i + 1 < argc) {
            each = strtoull(argv[++i], NULL, 10);
        } else if (!strcmp(argv[i], "--smoke")) {
            transfers = 20000;
            each = 5000;
        } else {
            fprintf(stderr, "usage: tally_bench_net [--transfers N] [--each T] [--smoke]\n");
            return 2;
        }
    }
    for (int i = 0; i < ACCOUNTS; i++) {
        accounts[i] = (tally_id){rnd(), rnd() | 1};
    }
    bank = (tally_id){rnd(), rnd() | 1};

    /* 1. throughput, two nodes */
    net two = {.n = 2};
    two.r[0] = replica(1);
    two.r[1] = replica(2);
    setup_accounts(two.r[0]);
    copy_state(two.r[0], two.r[1]);
    uint8_t *summary, *encoded;
    size_t summary_len, encoded_len;
    tally_summary(two.r[1], &summary, &summary_len);
    workload(two.r[0], transfers);
    tally_delta(two.r[0], summary, summary_len, 0, &encoded, &encoded_len);
    tally_free(summary);
    tally_free(encoded);
    start_nodes(&two);
    double t = connect_and_run(&two);
    uint64_t wire = stop_nodes(&two);
    printf("sync, 2 nodes over loopback: %zu transfers in %.3f s = %.0f ops/s; on the wire "
           "%.1f bytes/transfer, encoded ops %.1f bytes/transfer (x%.2f)\n",
           transfers, t, (double)transfers / t, (double)wire / (double)transfers,
           (double)encoded_len / (double)transfers, (double)wire / (double)encoded_len);
    tally_close(two.r[0]);
    tally_close(two.r[1]);

    /* 2. five nodes, partitioned, then healed */
    net five = {.n = NODES};
    for (int i = 0; i < NODES; i++) {
        five.r[i] = replica((uint64_t)i + 10);
    }
    setup_accounts(five.r[0]);
    for (int i = 1; i < NODES; i++) {
        copy_state(five.r[0], five.r[i]);
    }
    for (int i = 0; i < NODES; i++) {
        workload(five.r[i], each);
    }
    start_nodes(&five);
    t = connect_and_run(&five);
    wire = stop_nodes(&five);
    double bw = loopback_bandwidth((size_t)wire > (64u << 20) ? (size_t)wire : (64u << 20));
    double bound = (double)wire / bw;
    printf("heal, %d nodes x %zu transfers made apart: converged in %.3f s; %.1f MB crossed the "
           "wire; loopback alone moves that in %.3f s (%.2f GB/s): x%.1f the bandwidth bound\n",
           NODES, each, t, (double)wire / 1e6, bound, bw / 1e9, t / bound);
    for (int i = 0; i < NODES; i++) {
        tally_close(five.r[i]);
    }
    return 0;
}
