/*
 * test_node.c — nodes on loopback, for real: libuv, TCP, several replicas in one process.
 * Each test runs its loop until the replicas converge (equal digests) or a deadline passes.
 */
#include "support.h"

#include <stdio.h>
#include <stdlib.h>

#include <uv.h>

#include "ledger/codec.h"
#include "ledger/replica.h"
#include "net/frame.h"

#define DEBITS_BOUND TALLY_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS
#define NODES_MAX 5

typedef struct cluster {
    uv_loop_t loop;
    int n;
    tally_replica *r[NODES_MAX];
    tally_node *node[NODES_MAX];
    char addr[NODES_MAX][32];
    char dir[NODES_MAX][64];
    uint64_t writes_left, next_id, seed;
    uv_timer_t work, check, deadline;
    bool converged, timed_out;
    int stopped;
    uint64_t reserve;    /* rights_reserve of nodes started from now on */
    uint32_t rights_ms;  /* rights_timeout_ms of nodes started from now on */
    char log[8192];
} cluster;

static void on_log(void *ctx, int level, const char *message) {
    cluster *c = ctx;
    (void)level;
    size_t used = strlen(c->log);
    if (used + strlen(message) + 2 < sizeof c->log) {
        strcat(c->log, message);
        strcat(c->log, "\n");
    }
}

static void node_start(cluster *c, int i, const char *cluster_name) {
    tally_node_options o;
    memset(&o, 0, sizeof o);
    o.listen = "127.0.0.1:0";
    o.cluster = cluster_name;
    o.anti_entropy_ms = 200;
    o.log = on_log;
    o.log_ctx = c;
    o.rights_reserve = c->reserve;
    o.rights_timeout_ms = c->rights_ms;
    o.handshake_timeout_ms = 300;
    assert_result(tally_node_start(&c->loop, c->r[i], &o, &c->node[i]), TALLY_OK);
    snprintf(c->addr[i], sizeof c->addr[i], "127.0.0.1:%d", tally_node_port(c->node[i]));
}

static void connect_all(cluster *c) {
    for (int i = 0; i < c->n; i++) {
        for (int k = 0; k < c->n; k++) {
            if (i != k) {
                assert_result(tally_node_add_peer(c->node[i], c->addr[k]), TALLY_OK);
            }
        }
    }
}

static void cluster_init(cluster *c, int n, bool durable) {
    memset(c, 0, sizeof *c);
    assert_int_equal(uv_loop_init(&c->loop), 0);
    c->n = n;
    c->next_id = 1000;
    for (int i = 0; i < n; i++) {
        if (durable) {
            snprintf(c->dir[i], sizeof c->dir[i], "/tmp/tally-node-XXXXXX");
            assert_non_null(mkdtemp(c->dir[i]));
            tally_options o;
            memset(&o, 0, sizeof o);
            o.dir = c->dir[i];
            o.replica_id = (uint64_t)i + 1;
            assert_result(tally_open(&o, &c->r[i]), TALLY_OK);
        } else {
            c->r[i] = replica_new((uint64_t)i + 1, NULL);
        }
        node_start(c, i, "test");
    }
    tally_account bank = account(1, 1, 0);
    assert_result(tally_create_account(c->r[0], &bank), TALLY_OK);
    for (uint64_t a = 2; a < 6; a++) {
        tally_account acc = account(a, 1, DEBITS_BOUND);
        assert_result(tally_create_account(c->r[0], &acc), TALLY_OK);
    }
    uv_timer_init(&c->loop, &c->work);
    uv_timer_init(&c->loop, &c->check);
    uv_timer_init(&c->loop, &c->deadline);
    c->work.data = c->check.data = c->deadline.data = c;
}

static bool all_equal(cluster *c) {
    uint8_t first[16], d[16];
    digest_of(c->r[0], first);
    for (int i = 1; i < c->n; i++) {
        if (c->node[i] == NULL) {
            continue;
        }
        digest_of(c->r[i], d);
        if (memcmp(first, d, 16) != 0) {
            return false;
        }
    }
    return true;
}

/* A write on a random live replica: deposits, and spends of what it holds rights for. */
static void on_work(uv_timer_t *t) {
    cluster *c = t->data;
    for (int k = 0; k < 20 && c->writes_left > 0; k++, c->writes_left--) {
        int i = (int)(test_rand(&c->seed) % (uint64_t)c->n);
        if (c->node[i] == NULL) {
            continue;
        }
        uint64_t a = 2 + test_rand(&c->seed) % 4, b = 2 + test_rand(&c->seed) % 4;
        tally_transfer tr = a == b ? transfer(++c->next_id, 1, a, 10)
                                   : transfer(++c->next_id, a, b, 1 + test_rand(&c->seed) % 5);
        int rc = tally_create_transfer(c->r[i], &tr);
        assert_true(rc == TALLY_OK || rc == TALLY_INSUFFICIENT_RIGHTS ||
                    rc == TALLY_EXCEEDS_CREDITS || rc == TALLY_DEBIT_ACCOUNT_NOT_FOUND ||
                    rc == TALLY_CREDIT_ACCOUNT_NOT_FOUND);
    }
    if (c->writes_left == 0) {
        uv_timer_stop(t);
    }
}

static void on_check(uv_timer_t *t) {
    cluster *c = t->data;
    if (c->writes_left == 0 && all_equal(c)) {
        c->converged = true;
        uv_stop(&c->loop);
    }
}

static void on_deadline(uv_timer_t *t) {
    cluster *c = t->data;
    c->timed_out = true;
    uv_stop(&c->loop);
}

/* Runs the loop with `writes` transfers spread over it, until convergence or ms pass. */
/* Runs the cluster until every replica has the same ops, or ms pass: a guard against a hang,
 * not a measure of speed (tally_bench_net measures that), so it is generous. Since ops are
 * signed, each write is a run that every other node verifies; an instrumented build sharing
 * two cores with other tests needs many seconds for the five-node case. */
static bool run_until_converged(cluster *c, uint64_t writes, uint64_t ms) {
    c->writes_left = writes;
    c->converged = c->timed_out = false;
    if (writes > 0) {
        uv_timer_start(&c->work, on_work, 1, 1);
    }
    uv_timer_start(&c->check, on_check, 20, 20);
    uv_timer_start(&c->deadline, on_deadline, ms, 0);
    uv_run(&c->loop, UV_RUN_DEFAULT);
    uv_timer_stop(&c->check);
    uv_timer_stop(&c->deadline);
    uv_timer_stop(&c->work);
    return c->converged;
}

static void on_stopped(void *ctx) { ((cluster *)ctx)->stopped++; }

static void cluster_free(cluster *c) {
    int running = 0;
    for (int i = 0; i < c->n; i++) {
        if (c->node[i] != NULL) {
            running++;
            tally_node_stop(c->node[i], on_stopped, c);
        }
    }
    uv_close((uv_handle_t *)&c->work, NULL);
    uv_close((uv_handle_t *)&c->check, NULL);
    uv_close((uv_handle_t *)&c->deadline, NULL);
    uv_run(&c->loop, UV_RUN_DEFAULT);
    assert_int_equal(c->stopped, running); /* every node said it stopped */
    assert_int_equal(uv_loop_close(&c->loop), 0); /* and left no handle behind */
    for (int i = 0; i < c->n; i++) {
        assert_true(replica_check(c->r[i]));
        tally_close(c->r[i]);
        if (c->dir[i][0] != '\0') {
            char cmd[96];
            snprintf(cmd, sizeof cmd, "rm -rf %s", c->dir[i]);
            assert_int_equal(system(cmd), 0);
        }
    }
}

static void three_nodes_converge_under_concurrent_writes(void **state) {
    (void)state;
    cluster c;
    cluster_init(&c, 3, false);
    connect_all(&c);
    assert_true(run_until_converged(&c, 3000, 30000));
    tally_stats st;
    tally_get_stats(c.r[2], &st);
    assert_true(st.ops > 1000);
    /* node 1 lists its two configured peers, ready, and the two connections they made to it */
    tally_node_peer peers[8];
    size_t n = 0;
    assert_result(tally_node_peers(c.node[0], peers, 8, &n), TALLY_OK);
    assert_int_equal(n, 4);
    int ready_out = 0;
    for (size_t i = 0; i < n; i++) {
        ready_out += peers[i].outgoing && peers[i].state == TALLY_PEER_READY &&
                     (peers[i].replica_id == 2 || peers[i].replica_id == 3);
    }
    assert_int_equal(ready_out, 2);
    assert_result(tally_node_peers(c.node[0], NULL, 0, &n), TALLY_OK);
    assert_result(tally_node_peers(c.node[0], NULL, 1, &n), TALLY_EINVAL);
    cluster_free(&c);
}

static void five_nodes_converge_under_concurrent_writes(void **state) {
    (void)state;
    cluster c;
    cluster_init(&c, 5, false);
    connect_all(&c);
    assert_true(run_until_converged(&c, 5000, 45000));
    cluster_free(&c);
}

static void a_partition_made_by_removing_peers_heals_when_they_are_back(void **state) {
    (void)state;
    cluster c;
    cluster_init(&c, 3, false);
    connect_all(&c);
    assert_true(run_until_converged(&c, 0, 10000));
    /* cut node 2 (index 2) off, both ways */
    for (int i = 0; i < 2; i++) {
        assert_result(tally_node_remove_peer(c.node[i], c.addr[2]), TALLY_OK);
        assert_result(tally_node_remove_peer(c.node[2], c.addr[i]), TALLY_OK);
    }
    assert_result(tally_node_remove_peer(c.node[0], c.addr[2]), TALLY_NOT_FOUND);
    tally_transfer lone = transfer(77777, 1, 2, 9);
    assert_result(tally_create_transfer(c.r[2], &lone), TALLY_OK);
    run_until_converged(&c, 500, 500); /* writes on all sides; cannot converge */
    uint8_t d0[16], d2[16];
    digest_of(c.r[0], d0);
    digest_of(c.r[2], d2);
    assert_memory_not_equal(d0, d2, 16);
    for (int i = 0; i < 2; i++) {
        assert_result(tally_node_add_peer(c.node[i], c.addr[2]), TALLY_OK);
        assert_result(tally_node_add_peer(c.node[2], c.addr[i]), TALLY_OK);
    }
    assert_true(run_until_converged(&c, 0, 20000));
    tally_transfer seen;
    assert_result(tally_lookup_transfer(c.r[0], tid(77777), &seen), TALLY_OK);
    cluster_free(&c);
}

static void a_stopped_node_restarts_from_its_journal_and_catches_up(void **state) {
    (void)state;
    cluster c;
    cluster_init(&c, 3, true);
    connect_all(&c);
    assert_true(run_until_converged(&c, 300, 20000));
    /* node 3 goes down; the others go on */
    tally_node_stop(c.node[2], on_stopped, &c);
    c.node[2] = NULL;
    uv_run(&c.loop, UV_RUN_NOWAIT);
    tally_close(c.r[2]);
    run_until_converged(&c, 300, 300);
    tally_options o;
    memset(&o, 0, sizeof o);
    o.dir = c.dir[2];
    assert_result(tally_open(&o, &c.r[2]), TALLY_OK);
    node_start(&c, 2, "test");
    for (int i = 0; i < 2; i++) {
        /* its port changed: the others learn the new address */
        tally_node_add_peer(c.node[i], c.addr[2]);
        assert_result(tally_node_add_peer(c.node[2], c.addr[i]), TALLY_OK);
    }
    assert_true(run_until_converged(&c, 0, 20000));
    c.stopped--; /* node 3's first stop was counted */
    cluster_free(&c);
}

static void a_node_of_another_cluster_is_refused_and_logged(void **state) {
    (void)state;
    cluster c;
    cluster_init(&c, 2, false);
    tally_node_stop(c.node[1], on_stopped, &c);
    uv_run(&c.loop, UV_RUN_NOWAIT);
    c.stopped--;
    node_start(&c, 1, "other");
    assert_result(tally_node_add_peer(c.node[0], c.addr[1]), TALLY_OK);
    assert_false(run_until_converged(&c, 0, 500));
    assert_non_null(strstr(c.log, "cluster"));
    assert_result(tally_node_add_peer(c.node[0], "not-an-address"), TALLY_EINVAL);
    assert_result(tally_node_add_peer(c.node[0], c.addr[1]), TALLY_EXISTS);
    cluster_free(&c);
}

static void run_for(cluster *c, uint64_t ms) {
    uv_timer_start(&c->deadline, on_deadline, ms, 0);
    uv_run(&c->loop, UV_RUN_DEFAULT);
    uv_timer_stop(&c->deadline);
}

static size_t forks_held(const tally_replica *r) {
    size_t n;
    assert_result(tally_forks(r, 0, NULL, 0, &n), TALLY_OK);
    return n;
}

/* A replica's copy joins the cluster under its id (a restored backup, a cloned machine), and
 * both write, each spending the wallet's rights. The fork is found where the two histories
 * meet, its proof spreads to the honest node too, every node keeps both histories and
 * converges, logs the fork and what it took beyond what the replica held as errors, and
 * neither copy takes another write. */
static void a_cloned_replica_is_found_out_and_logged_by_every_node(void **state) {
    (void)state;
    cluster c;
    cluster_init(&c, 3, false);
    tally_node_stop(c.node[2], on_stopped, &c);
    uv_run(&c.loop, UV_RUN_NOWAIT);
    c.stopped--;
    tally_close(c.r[2]);
    tally_account bank = account(20, 1, 0),
                  wallet = account(21, 1, TALLY_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS);
    tally_transfer fund = transfer(22, 20, 21, 100);
    assert_result(tally_create_account(c.r[0], &bank), TALLY_OK);
    assert_result(tally_create_account(c.r[0], &wallet), TALLY_OK);
    assert_result(tally_create_transfer(c.r[0], &fund), TALLY_OK);
    c.r[2] = replica_clone(c.r[0]); /* replica 1, twice */
    node_start(&c, 2, "test");
    tally_account mine = account(10, 1, 0), theirs = account(11, 1, 0);
    tally_transfer spend = transfer(23, 21, 20, 60), steal = transfer(24, 21, 20, 70);
    assert_result(tally_create_account(c.r[0], &mine), TALLY_OK);
    assert_result(tally_create_account(c.r[2], &theirs), TALLY_OK);
    assert_result(tally_create_transfer(c.r[0], &spend), TALLY_OK);
    assert_result(tally_create_transfer(c.r[2], &steal), TALLY_OK);
    connect_all(&c);
    for (int waited = 0; waited < 100; waited++) {
        if (forks_held(c.r[0]) + forks_held(c.r[1]) + forks_held(c.r[2]) == 3) {
            break;
        }
        run_for(&c, 100);
    }
    for (int i = 0; i < 3; i++) {
        assert_int_equal(forks_held(c.r[i]), 1);
    }
    assert_non_null(strstr(c.log, "replica 1 signed two histories (its ops 9..9 and 9..9): "
                                  "the proof is kept, and this replica takes no writes"));
    assert_non_null(strstr(c.log, "replica 1 signed two histories (its ops 9..9 and 9..9): "
                                  "the proof is kept, and it is given no rights"));
    assert_true(run_until_converged(&c, 0, 5000));
    for (int i = 0; i < 3; i++) {
        tally_balance b;
        assert_result(tally_lookup_balance(c.r[i], wallet.id, &b), TALLY_OK);
        assert_int_equal(b.debits_posted, 130); /* both histories' payments */
    }
    assert_non_null(strstr(c.log, "replica 1's 2 histories took 30 beyond what it held from "
                                  "account 00000000000000000000000000000015 (ledger 1; at most "
                                  "100)"));
    tally_account more = account(12, 1, 0);
    assert_result(tally_create_account(c.r[0], &more), TALLY_ORIGIN_FORKED);
    assert_result(tally_create_account(c.r[2], &more), TALLY_ORIGIN_FORKED);
    assert_result(tally_create_account(c.r[1], &more), TALLY_OK); /* the honest one goes on */
    cluster_free(&c);
}

/* A phone restored from a backup starts with its writes held: refused at once, with no peer
 * in reach; its node says so in the log. When a peer that holds its history syncs with it,
 * its own later ops come back, the peer's summary confirms its head, the node logs it and
 * lifts the hold, and it writes again, with no fork. */
static void a_restored_replica_waits_for_a_peer_to_confirm_it(void **state) {
    (void)state;
    cluster c;
    cluster_init(&c, 2, false);
    tally_replica *backup = replica_clone(c.r[0]); /* replica 1, as the backup has it */
    tally_account later = account(10, 1, 0);
    assert_result(tally_create_account(c.r[0], &later), TALLY_OK);
    connect_all(&c);
    assert_true(run_until_converged(&c, 0, 20000)); /* replica 2 has it */
    tally_node_stop(c.node[0], on_stopped, &c);     /* the phone is lost */
    uv_run(&c.loop, UV_RUN_NOWAIT);
    c.stopped--;
    tally_close(c.r[0]);
    c.r[0] = backup;
    c.r[0]->hold = TALLY_HOLD_RESTORED; /* as tally_open sets it with TALLY_OPEN_RESTORED */
    node_start(&c, 0, "test");
    assert_non_null(strstr(c.log, "this replica's writes are held (RESTORED)"));
    tally_account mine = account(11, 1, 0);
    assert_result(tally_create_account(c.r[0], &mine), TALLY_ORIGIN_HELD);
    connect_all(&c);
    for (int waited = 0; waited < 100 && tally_held(c.r[0]) != TALLY_HOLD_NONE; waited++) {
        run_for(&c, 100);
    }
    assert_int_equal(tally_held(c.r[0]), TALLY_HOLD_NONE);
    assert_non_null(strstr(c.log, "a peer confirmed this replica's history"));
    tally_account got;
    assert_result(tally_lookup_account(c.r[0], tid(10), &got), TALLY_OK); /* its own, back */
    assert_result(tally_create_account(c.r[0], &mine), TALLY_OK);
    assert_true(run_until_converged(&c, 0, 20000));
    size_t forks;
    assert_result(tally_forks(c.r[1], 0, NULL, 0, &forks), TALLY_OK);
    assert_int_equal(forks, 0);
    cluster_free(&c);
}

/* The state tally_node_peers shows for an outgoing peer, or -1 if it is not listed. */
static int peer_state(tally_node *n, const char *addr) {
    tally_node_peer list[8];
    size_t count;
    assert_result(tally_node_peers(n, list, 8, &count), TALLY_OK);
    for (size_t i = 0; i < count && i < 8; i++) {
        if (list[i].outgoing && strcmp(list[i].address, addr) == 0) {
            return (int)list[i].state;
        }
    }
    return -1;
}

static void peers_given_by_name_are_looked_up_and_bad_names_refused(void **state) {
    (void)state;
    cluster c;
    cluster_init(&c, 2, false);
    char named[2][40];
    for (int i = 0; i < 2; i++) {
        snprintf(named[i], sizeof named[i], "localhost:%d", tally_node_port(c.node[1 - i]));
        assert_result(tally_node_add_peer(c.node[i], named[i]), TALLY_OK);
        assert_result(tally_node_add_peer(c.node[i], named[i]), TALLY_EXISTS);
    }
    assert_true(run_until_converged(&c, 300, 20000));
    assert_int_equal(peer_state(c.node[0], named[0]), TALLY_PEER_READY);

    /* Refused at once, and nothing added: not host:port, not a name, a broken literal. */
    const char *bad[] = {
        "bad_host:7000", "-lead.example:7000", "trail-.example:7000", "a..b:7000",
        ".example:7000", "999.1.1.1:7000", "1.2.3:7000", "[::1:7000", "[zz]:7000", ":7000",
        "host:", "host:99999", "host:7x", "host:-1", "host", "host:+7", "127.0.0.1:0",
        "a234567890123456789012345678901234567890123456789012345678901234.example:7000",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_result(tally_node_add_peer(c.node[0], bad[i]), TALLY_EINVAL);
        assert_int_equal(peer_state(c.node[0], bad[i]), -1);
    }
    assert_result(tally_node_add_peer(c.node[0], NULL), TALLY_EINVAL);

    /* A name that never resolves (.invalid, RFC 6761) is kept, shown as trying, and can be
     * removed while its lookup may still be in flight; the node still stops cleanly. */
    const char *nowhere = "tally-test.invalid:7000";
    assert_result(tally_node_add_peer(c.node[0], nowhere), TALLY_OK);
    int st = peer_state(c.node[0], nowhere);
    assert_true(st == TALLY_PEER_CONNECTING || st == TALLY_PEER_DOWN);
    assert_result(tally_node_remove_peer(c.node[0], nowhere), TALLY_OK);
    assert_int_equal(peer_state(c.node[0], nowhere), -1);
    assert_result(tally_node_add_peer(c.node[0], nowhere), TALLY_OK); /* and again, kept */
    assert_true(run_until_converged(&c, 50, 20000)); /* the others are not disturbed */
    assert_true(peer_state(c.node[0], nowhere) >= 0);
    cluster_free(&c);
}

static void bad_node_arguments_are_refused(void **state) {
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    tally_replica *r = replica_new(1, NULL);
    tally_node_options o;
    memset(&o, 0, sizeof o);
    tally_node *n = (tally_node *)&n;
    assert_result(tally_node_start(NULL, r, &o, &n), TALLY_EINVAL);
    assert_null(n);
    assert_result(tally_node_start(&loop, NULL, &o, &n), TALLY_EINVAL);
    assert_result(tally_node_start(&loop, r, NULL, &n), TALLY_EINVAL);
    o.listen = "127.0.0.1:99999";
    assert_result(tally_node_start(&loop, r, &o, &n), TALLY_EINVAL);
    o.listen = NULL;
    assert_result(tally_node_start(&loop, r, &o, &n), TALLY_OK);
    tally_node *second;
    assert_result(tally_node_start(&loop, r, &o, &second), TALLY_EINVAL); /* one per replica */
    assert_int_equal(tally_node_port(n), -1);
    assert_int_equal(tally_node_port(NULL), -1);
    assert_result(tally_node_remove_peer(n, "127.0.0.1:1"), TALLY_NOT_FOUND);
    assert_result(tally_node_remove_peer(NULL, "x"), TALLY_EINVAL);
    tally_node_stop(n, NULL, NULL);
    tally_node_stop(NULL, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    tally_close(r);
}

/* --- rights on request ----------------------------------------------------------------------- */

typedef struct answer {
    bool done;
    int result;
    uint64_t granted;
    uv_loop_t *loop;
} answer;

static void on_rights(void *ctx, int result, uint64_t granted) {
    answer *a = ctx;
    assert_false(a->done); /* once */
    a->done = true;
    a->result = result;
    a->granted = granted;
}

static void wait_for(cluster *c, answer *a, uint64_t ms) {
    for (uint64_t waited = 0; !a->done && waited < ms; waited += 10) {
        run_until_converged(c, 0, 10);
    }
    assert_true(a->done);
}

static uint64_t held(cluster *c, int i, uint64_t account) {
    uint64_t v = 0;
    assert_result(tally_rights(c->r[i], tid(account), (uint64_t)i + 1, &v), TALLY_OK);
    return v;
}

static void a_rights_request_ends_in_a_grant_and_the_transfer_then_succeeds(void **state) {
    (void)state;
    cluster c;
    cluster_init(&c, 3, false);
    connect_all(&c);
    tally_transfer deposit = transfer(500, 1, 2, 100); /* replica 1 holds A's 100 rights */
    assert_result(tally_create_transfer(c.r[0], &deposit), TALLY_OK);
    assert_true(run_until_converged(&c, 0, 10000));
    tally_transfer spend = transfer(501, 2, 3, 60);
    assert_result(tally_create_transfer(c.r[1], &spend), TALLY_INSUFFICIENT_RIGHTS);
    answer a = {0};
    assert_result(tally_node_request_rights(c.node[1], tid(2), 60, on_rights, &a), TALLY_OK);
    assert_false(a.done); /* never from inside the call */
    wait_for(&c, &a, 5000);
    assert_result(a.result, TALLY_OK);
    assert_int_equal(a.granted, 60);
    assert_result(tally_create_transfer(c.r[1], &spend), TALLY_OK);
    /* asking for more than anyone can spare: part of it */
    answer b = {0};
    assert_result(tally_node_request_rights(c.node[2], tid(2), 500, on_rights, &b), TALLY_OK);
    wait_for(&c, &b, 5000);
    assert_result(b.result, TALLY_INSUFFICIENT_RIGHTS);
    assert_int_equal(b.granted, 40); /* all replica 1 had left */
    assert_int_equal(held(&c, 2, 2), 40);
    /* bad requests never call back */
    assert_result(tally_node_request_rights(c.node[1], tid(1), 5, on_rights, &b),
                  TALLY_ACCOUNT_UNBOUNDED);
    assert_result(tally_node_request_rights(c.node[1], tid(99), 5, on_rights, &b), TALLY_NOT_FOUND);
    assert_result(tally_node_request_rights(c.node[1], tid(2), 0, on_rights, &b), TALLY_EINVAL);
    assert_result(tally_node_request_rights(c.node[1], tid(2), 5, NULL, &b), TALLY_EINVAL);
    cluster_free(&c);
}

/* A replica holding 50 asks for 100 and spends 10 while the answer is on its way: its rights
 * go from 50 to 140, all that was asked arrived, and the request says so at once (it used to
 * compare with the rights held when it started, and time out). */
static void a_request_completes_by_what_its_grants_brought_whatever_was_spent(void **state) {
    (void)state;
    cluster c;
    cluster_init(&c, 2, false);
    connect_all(&c);
    tally_transfer deposit = transfer(550, 1, 2, 200);
    assert_result(tally_create_transfer(c.r[0], &deposit), TALLY_OK);
    assert_result(grant_to(c.r[0], tid(2), 2, 50), TALLY_OK);
    assert_true(run_until_converged(&c, 0, 10000));
    answer a = {0};
    assert_result(tally_node_request_rights(c.node[1], tid(2), 100, on_rights, &a), TALLY_OK);
    tally_transfer spend = transfer(551, 2, 3, 10);
    assert_result(tally_create_transfer(c.r[1], &spend), TALLY_OK);
    wait_for(&c, &a, 1000); /* well inside the 2 s a request may wait */
    assert_result(a.result, TALLY_OK);
    assert_int_equal(a.granted, 100);
    assert_int_equal(held(&c, 1, 2), 140);
    cluster_free(&c);
}

/* Runs the loop for ms whatever happens. */
/* A pending with a 300 ms timeout on a node that writes nothing more: the node voids it on
 * time by itself, and the void reaches the peer. */
static void an_idle_node_voids_pendings_when_their_timeout_passes(void **state) {
    (void)state;
    cluster c;
    cluster_init(&c, 2, false);
    connect_all(&c);
    tally_transfer deposit = transfer(560, 1, 2, 100);
    assert_result(tally_create_transfer(c.r[0], &deposit), TALLY_OK);
    tally_transfer p = transfer(561, 2, 3, 70);
    p.flags = TALLY_TRANSFER_PENDING;
    p.timeout_ms = 300;
    assert_result(tally_create_transfer(c.r[0], &p), TALLY_OK);
    run_for(&c, 150);
    tally_pending_state st;
    assert_result(tally_transfer_status(c.r[0], tid(561), NULL, &st), TALLY_OK);
    assert_int_equal(st, TALLY_PENDING_OPEN);
    run_for(&c, 1350);
    for (int i = 0; i < 2; i++) {
        assert_result(tally_transfer_status(c.r[i], tid(561), NULL, &st), TALLY_OK);
        assert_int_equal(st, TALLY_PENDING_TIMED_OUT);
    }
    assert_int_equal(held(&c, 0, 2), 100);
    assert_true(all_equal(&c));
    cluster_free(&c);
}

static void a_holder_keeps_its_reserve_and_throttles_repeated_asks(void **state) {
    (void)state;
    cluster c;
    cluster_init(&c, 2, false);
    c.reserve = 70;
    tally_node_stop(c.node[0], on_stopped, &c);
    uv_run(&c.loop, UV_RUN_NOWAIT);
    c.stopped--;
    node_start(&c, 0, "test");
    connect_all(&c);
    tally_transfer deposit = transfer(600, 1, 2, 100);
    assert_result(tally_create_transfer(c.r[0], &deposit), TALLY_OK);
    assert_true(run_until_converged(&c, 0, 10000));
    answer a = {0}, b = {0};
    assert_result(tally_node_request_rights(c.node[1], tid(2), 20, on_rights, &a), TALLY_OK);
    assert_result(tally_node_request_rights(c.node[1], tid(2), 20, on_rights, &b), TALLY_OK);
    wait_for(&c, &a, 5000);
    wait_for(&c, &b, 5000);
    /* 30 above the reserve: the first ask gets 20; the second, right after, is throttled */
    assert_int_equal(a.granted + b.granted, 20);
    assert_true((a.result == TALLY_OK) != (b.result == TALLY_OK));
    assert_int_equal(held(&c, 0, 2), 80);
    cluster_free(&c);
}

static void a_request_that_outlives_its_timeout_says_so(void **state) {
    (void)state;
    cluster c;
    cluster_init(&c, 2, false);
    c.rights_ms = 1;
    tally_node_stop(c.node[1], on_stopped, &c);
    uv_run(&c.loop, UV_RUN_NOWAIT);
    c.stopped--;
    node_start(&c, 1, "test");
    connect_all(&c);
    tally_transfer deposit = transfer(700, 1, 2, 100);
    assert_result(tally_create_transfer(c.r[0], &deposit), TALLY_OK);
    assert_true(run_until_converged(&c, 0, 10000));
    answer a = {0};
    assert_result(tally_node_request_rights(c.node[1], tid(2), 10, on_rights, &a), TALLY_OK);
    uv_sleep(5);
    wait_for(&c, &a, 5000);
    assert_result(a.result, TALLY_ETIMEDOUT);
    cluster_free(&c);
}

static void rights_received_go_on_to_their_home_replica(void **state) {
    (void)state;
    cluster c;
    cluster_init(&c, 3, false);
    connect_all(&c);
    assert_true(run_until_converged(&c, 0, 10000));
    assert_result(tally_node_set_home(c.node[0], tid(3), 3), TALLY_OK);
    tally_transfer deposit = transfer(800, 1, 3, 25); /* credited at replica 1 */
    assert_result(tally_create_transfer(c.r[0], &deposit), TALLY_OK);
    assert_true(run_until_converged(&c, 0, 10000));
    for (int i = 0; i < 50 && held(&c, 2, 3) != 25; i++) {
        run_until_converged(&c, 0, 20);
    }
    assert_int_equal(held(&c, 2, 3), 25); /* all of it at home */
    assert_int_equal(held(&c, 0, 3), 0);
    assert_result(tally_node_set_home(c.node[0], tid(3), 0), TALLY_OK);
    assert_result(tally_node_set_home(c.node[0], tid(0), 3), TALLY_ID_ZERO);
    assert_result(tally_node_set_home(c.node[0], tid(3), 1), TALLY_EINVAL); /* itself */
    cluster_free(&c);
}

/* --- hostile peers ---------------------------------------------------------------------------- */

/* A raw TCP client in the test's loop: writes what it is given, reads (or not), notices EOF. */
typedef struct raw {
    uv_tcp_t tcp;
    uv_connect_t connect;
    uv_write_t write;
    uint8_t *payload;
    size_t len;
    bool read, eof;
    char buf[4096];
} raw;

static void raw_alloc(uv_handle_t *h, size_t n, uv_buf_t *b) {
    (void)n;
    raw *r = h->data;
    *b = uv_buf_init(r->buf, sizeof r->buf);
}

static void raw_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
    (void)b;
    raw *r = s->data;
    if (n < 0) {
        r->eof = true;
        uv_read_stop(s);
    }
}

static void raw_written(uv_write_t *w, int status) {
    (void)w;
    (void)status;
}

static void raw_connected(uv_connect_t *req, int status) {
    raw *r = req->data;
    assert_int_equal(status, 0);
    if (r->len > 0) {
        uv_buf_t b = uv_buf_init((char *)r->payload, (unsigned)r->len);
        uv_write(&r->write, (uv_stream_t *)&r->tcp, &b, 1, raw_written);
    }
    if (r->read) {
        uv_read_start((uv_stream_t *)&r->tcp, raw_alloc, raw_read);
    }
}

static void raw_connect(cluster *c, raw *r, int node, uint8_t *payload, size_t len, bool read) {
    memset(r, 0, sizeof *r);
    r->payload = payload;
    r->len = len;
    r->read = read;
    uv_tcp_init(&c->loop, &r->tcp);
    r->tcp.data = r;
    r->connect.data = r;
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", tally_node_port(c->node[node]), &sa);
    assert_int_equal(uv_tcp_connect(&r->connect, &r->tcp, (struct sockaddr *)&sa, raw_connected), 0);
}

/* Garbage, an oversized frame, a handshake that never comes: each connection is closed with a
 * logged reason, and the nodes go on converging with each other meanwhile. */
static void hostile_connections_are_closed_and_the_others_served(void **state) {
    (void)state;
    cluster c;
    cluster_init(&c, 3, false);
    connect_all(&c);
    uint8_t junk[64];
    memset(junk, 0xAB, sizeof junk);
    put_u32le(junk, 10); /* a small length, then a type that does not exist */
    junk[4] = 0xEE;
    uint8_t huge[16] = {0};
    put_u32le(huge, (8u << 20) + 1);
    huge[4] = 4;
    raw garbage, oversized, silent;
    raw_connect(&c, &garbage, 0, junk, sizeof junk, true);
    raw_connect(&c, &oversized, 1, huge, sizeof huge, true);
    raw_connect(&c, &silent, 2, NULL, 0, true);
    assert_true(run_until_converged(&c, 2000, 20000));
    for (int i = 0; i < 50 && !(garbage.eof && oversized.eof && silent.eof); i++) {
        run_until_converged(&c, 0, 20);
    }
    assert_true(garbage.eof && oversized.eof && silent.eof);
    assert_non_null(strstr(c.log, "unknown type"));
    assert_non_null(strstr(c.log, "larger than the limit"));
    assert_non_null(strstr(c.log, "handshake did not complete"));
    uv_close((uv_handle_t *)&garbage.tcp, NULL);
    uv_close((uv_handle_t *)&oversized.tcp, NULL);
    uv_close((uv_handle_t *)&silent.tcp, NULL);
    cluster_free(&c);
}

/* A peer that floods pings and never reads the answers: the node's output to it stops at the
 * high-water mark, it stops reading from it, and it goes on serving the others. */
static void a_flooding_peer_that_never_reads_does_not_stop_the_node(void **state) {
    (void)state;
    cluster c;
    cluster_init(&c, 2, false);
    connect_all(&c);
    bytes flood = {0};
    uint8_t hello[2 + 8 + 1 + 4] = {1, 0, 99, 0, 0, 0, 0, 0, 0, 0, 4, 't', 'e', 's', 't'};
    assert_true(frame_put(&flood, FRAME_HELLO, hello, sizeof hello));
    uint8_t nonce[8] = {0};
    for (int i = 0; i < 400000; i++) { /* 9.6 MB of pings, each asking for a pong */
        assert_true(frame_put(&flood, FRAME_PING, nonce, sizeof nonce));
    }
    raw flooder;
    raw_connect(&c, &flooder, 0, flood.at, flood.len, false);
    assert_true(run_until_converged(&c, 3000, 30000));
    uv_close((uv_handle_t *)&flooder.tcp, NULL);
    cluster_free(&c);
    bytes_free(&flood);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(bad_node_arguments_are_refused),
        cmocka_unit_test(three_nodes_converge_under_concurrent_writes),
        cmocka_unit_test(five_nodes_converge_under_concurrent_writes),
        cmocka_unit_test(a_partition_made_by_removing_peers_heals_when_they_are_back),
        cmocka_unit_test(a_stopped_node_restarts_from_its_journal_and_catches_up),
        cmocka_unit_test(a_node_of_another_cluster_is_refused_and_logged),
        cmocka_unit_test(a_cloned_replica_is_found_out_and_logged_by_every_node),
        cmocka_unit_test(a_restored_replica_waits_for_a_peer_to_confirm_it),
        cmocka_unit_test(peers_given_by_name_are_looked_up_and_bad_names_refused),
        cmocka_unit_test(a_rights_request_ends_in_a_grant_and_the_transfer_then_succeeds),
        cmocka_unit_test(a_request_completes_by_what_its_grants_brought_whatever_was_spent),
        cmocka_unit_test(an_idle_node_voids_pendings_when_their_timeout_passes),
        cmocka_unit_test(a_holder_keeps_its_reserve_and_throttles_repeated_asks),
        cmocka_unit_test(a_request_that_outlives_its_timeout_says_so),
        cmocka_unit_test(rights_received_go_on_to_their_home_replica),
        cmocka_unit_test(hostile_connections_are_closed_and_the_others_served),
        cmocka_unit_test(a_flooding_peer_that_never_reads_does_not_stop_the_node),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
