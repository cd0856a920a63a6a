/*
 * net/node.c — the libuv transport: runs sessions (session.c) over TCP.
 *
 * This file only moves bytes between sockets and sessions, and keeps time: every protocol
 * decision is the session's. A node owns a listening socket, the peers it was told to keep
 * connected (reconnecting with exponential backoff and jitter), every connection, and three
 * timers: `tick` (timeouts, pings, anti-entropy, reconnects), `push` (a zero-delay timer that
 * a change to the replica starts, so that every write call's ops reach peers in one go) and
 * `expiry` (set for the replica's next pending deadline, so that pendings time out on time on
 * an idle node and their reservations come back without waiting for the next write).
 *
 *   connection: connecting --(on_connect)--> open --(read/write error, EOF, session closed,
 *               remove_peer, stop)--> closing --(on_close)--> freed (and, for a configured
 *               peer, a reconnect scheduled)
 *
 * Invariants:
 *   1. One write is in flight per connection at a time; what the session queues meanwhile waits
 *      in its `out` buffer.
 *   2. A connection whose unsent output passes the session's high-water mark is not read from
 *      until it drains: a peer that does not read cannot make this node buffer without bound.
 *   3. Every handle is closed through uv_close, and `stopped` runs after the last close
 *      callback; nothing is freed while libuv may still call back about it.
 */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "ledger/sync.h"
#include "net/addr.h"
#include "net/session.h"
#include "tally.h"

#define TICK_MS 20
#define CLUSTER_NAME_MAX 255
#define READ_CHUNK (64 * 1024)
#define BACKOFF_MIN_MS 50
#define BACKOFF_MAX_MS 5000
/* Addresses of a named peer tried per resolution, in the resolver's order. */
#define PEER_ADDRS_MAX 8
/* What a zero in tally_node_options stands for (tally.h says the same). */
#define CLUSTER_DEFAULT "tally"
#define ANTI_ENTROPY_MS_DEFAULT 1000
#define IDLE_TIMEOUT_MS_DEFAULT 10000
#define HANDSHAKE_TIMEOUT_MS_DEFAULT 5000
#define RIGHTS_TIMEOUT_MS_DEFAULT 2000
/* Fixed: a session's ping period, its largest delta, the bytes queued to a peer past which no
 * more deltas are queued, how soon the same peer's rights request is answered again, and the
 * listen backlog. */
#define PING_MS 1000
#define DELTA_BYTES_MAX (1u << 20)
#define OUT_HIGH_WATER (4u << 20)
#define RIGHTS_THROTTLE_MS 100
#define LISTEN_BACKLOG 128

typedef struct peer peer;
typedef struct conn conn;

/* A configured peer. One given by name is resolved again before every round of connection
 * attempts (so a changed DNS record is picked up on the next reconnect), and each address the
 * resolver returns is tried in turn before backing off. */
struct peer {
    peer *next;
    tally_node *node;
    char addr[NET_ADDR_MAX];
    struct sockaddr_storage sa; /* a literal address; for a named peer, the one being tried */
    conn *conn;                 /* the connection to it, or NULL */
    uint32_t attempts;
    uint64_t retry_at_ms;
    bool named;     /* addr's host is a name, not a literal */
    bool resolving; /* a lookup is in flight (it counts as one of the node's handles) */
    bool removed;   /* removed while resolving: the lookup's callback frees it */
    uint8_t n_addrs, next_addr;
    struct sockaddr_storage addrs[PEER_ADDRS_MAX];
    uv_getaddrinfo_t resolver;
};

struct conn {
    conn *next;
    tally_node *node;
    uv_tcp_t tcp;
    uv_connect_t connect;
    uv_write_t write;
    peer *peer; /* outgoing: the configured peer (NULL once removed); incoming: NULL */
    session s;
    bool live;  /* session initialised */
    bool reading, writing, closing;
    bytes inflight;
    char name[NET_ADDR_MAX + 16];
    uint8_t buf[READ_CHUNK];
};

typedef struct rights_request rights_request;
struct rights_request {
    rights_request *next;
    uint64_t id;
    tally_id account;
    uint64_t amount;   /* asked for */
    uint64_t promised; /* granted in answers so far */
    /* The grants the answers announced, by their dots: the request is complete when every one
     * has been applied here, whatever this replica spent or received meanwhile. */
    struct {
        uint64_t holder, seq, amount;
    } grants[16];
    int n_grants;
    uint64_t waiting;  /* the holder asked now, 0: none */
    uint64_t asked[16];
    int n_asked;
    uint64_t deadline_ms;
    tally_rights_cb cb;
    void *ctx;
};

typedef struct home {
    struct home *next;
    tally_id account;
    uint64_t replica;
} home;

struct tally_node {
    uv_loop_t *loop;
    tally_replica *r;
    session_config cfg;
    char cluster[CLUSTER_NAME_MAX + 1];
    uv_tcp_t listener;
    bool listening;
    uv_timer_t tick, push, expiry;
    peer *peers;
    conn *conns;
    int handles; /* open handles, for stop */
    bool stopping;
    void (*stopped)(void *ctx);
    void *stopped_ctx;
    uint64_t seed; /* jitter */
    rights_request *requests;
    uint64_t next_request;
    uint64_t bytes_in, bytes_out, ops_in, ops_out; /* of connections already closed, too */
    uint32_t rights_timeout_ms;
    home *homes;
    size_t forks_logged; /* the proofs of forks told to the log so far */
    uint64_t damage_logged; /* the damage of forks told to the log last, folded (log_damage) */
    tally_hold held;     /* the replica's hold as last told to the log */
};

static void node_log(tally_node *n, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void node_log(tally_node *n, int level, const char *fmt, ...) {
    if (n->cfg.log == NULL) {
        return;
    }
    char msg[320];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    n->cfg.log(n->cfg.log_ctx, level, msg);
}

/* --- connections ----------------------------------------------------------------------------- */

static void conn_close(conn *c, const char *why);
static void conn_flush(conn *c);
static void rights_work(tally_node *n);

static void maybe_stopped(tally_node *n) {
    if (n->stopping && n->handles == 0) {
        void (*stopped)(void *) = n->stopped;
        void *ctx = n->stopped_ctx;
        while (n->peers != NULL) {
            peer *p = n->peers;
            n->peers = p->next;
            free(p);
        }
        free(n);
        if (stopped != NULL) {
            stopped(ctx);
        }
    }
}

static void on_handle_closed(uv_handle_t *h) {
    tally_node *n = h->data;
    n->handles--;
    maybe_stopped(n);
}

static uint64_t jitter(tally_node *n, uint64_t ms) {
    n->seed = n->seed * 6364136223846793005u + 1442695040888963407u;
    return ms / 2 + (n->seed >> 33) % (ms + 1); /* 0.5x .. 1.5x */
}

/* The next connection attempt after a failed round: exponential backoff with jitter. */
static void peer_backoff(tally_node *n, peer *p) {
    uint64_t backoff = BACKOFF_MIN_MS << (p->attempts < 7 ? p->attempts : 7);
    backoff = backoff > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff;
    p->attempts++;
    p->n_addrs = p->next_addr = 0; /* a named peer is looked up again */
    p->retry_at_ms = uv_now(n->loop) + jitter(n, backoff);
}

static void on_conn_closed(uv_handle_t *h) {
    conn *c = h->data;
    tally_node *n = c->node;
    for (conn **pp = &n->conns; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    }
    if (c->peer != NULL) {
        peer *p = c->peer;
        p->conn = NULL;
        if (p->named && p->next_addr < p->n_addrs) {
            p->retry_at_ms = uv_now(n->loop); /* the next address the name gave, at once */
        } else {
            peer_backoff(n, p);
        }
    }
    if (c->live) {
        n->ops_in += c->s.ops_in;
        n->ops_out += c->s.ops_out;
        session_free(&c->s);
    }
    bytes_free(&c->inflight);
    free(c);
    n->handles--;
    maybe_stopped(n);
}

static void conn_close(conn *c, const char *why) {
    if (c->closing) {
        return;
    }
    c->closing = true;
    if (why != NULL) {
        node_log(c->node, TALLY_LOG_INFO, "%s: closing: %s", c->name, why);
    }
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    (void)suggested;
    conn *c = h->data;
    buf->base = (char *)c->buf;
    buf->len = sizeof c->buf;
}

static void conn_after_session(conn *c) {
    if (c->s.state == SESSION_CLOSED) {
        /* send what the session queued last (a REFUSE says why), then close */
        conn_flush(c);
        if (!c->writing) {
            conn_close(c, c->s.reason);
        }
        return;
    }
    if (c->s.state == SESSION_READY && c->peer != NULL) {
        c->peer->attempts = 0;
    }
    conn_flush(c);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
    conn *c = stream->data;
    if (nread < 0) {
        conn_close(c, nread == UV_EOF ? "the peer closed the connection" : uv_strerror((int)nread));
        return;
    }
    if (nread == 0 || c->closing) {
        return;
    }
    c->node->bytes_in += (uint64_t)nread;
    session_receive(&c->s, (const uint8_t *)buf->base, (size_t)nread, uv_now(c->node->loop));
    conn_after_session(c);
}

static void reading(conn *c, bool on) {
    if (c->closing || on == c->reading) {
        return;
    }
    c->reading = on;
    if (on) {
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    } else {
        uv_read_stop((uv_stream_t *)&c->tcp);
    }
}

static void on_write(uv_write_t *req, int status) {
    conn *c = req->data;
    c->writing = false;
    c->inflight.len = 0;
    if (status < 0) {
        conn_close(c, uv_strerror(status));
        return;
    }
    if (c->closing) {
        return;
    }
    if (c->s.state == SESSION_CLOSED) {
        conn_after_session(c);
        return;
    }
    session_push(&c->s); /* a drained connection may take more of what the peer lacks */
    conn_flush(c);
}

static void conn_flush(conn *c) {
    if (c->closing || !c->live) {
        return;
    }
    if (!c->writing && c->s.out.len > 0) {
        bytes t = c->inflight;
        c->inflight = c->s.out;
        c->s.out = t;
        c->s.out.len = 0;
        uv_buf_t b = uv_buf_init((char *)c->inflight.at, (unsigned)c->inflight.len);
        c->write.data = c;
        int rc = uv_write(&c->write, (uv_stream_t *)&c->tcp, &b, 1, on_write);
        if (rc != 0) {
            conn_close(c, uv_strerror(rc));
            return;
        }
        c->writing = true;
        c->node->bytes_out += b.len;
    }
    /* invariant 2: a peer that does not read is not read from */
    reading(c, c->s.out.len + c->inflight.len <= c->node->cfg.out_high_water);
}

static conn *conn_new(tally_node *n, peer *p, const char *name) {
    conn *c = calloc(1, sizeof *c);
    if (c == NULL) {
        return NULL;
    }
    c->node = n;
    c->peer = p;
    snprintf(c->name, sizeof c->name, "%s", name);
    if (uv_tcp_init(n->loop, &c->tcp) != 0) {
        free(c);
        return NULL;
    }
    c->tcp.data = c;
    n->handles++;
    c->next = n->conns;
    n->conns = c;
    return c;
}

static bool conn_start(conn *c) {
    uv_tcp_nodelay(&c->tcp, 1);
    if (!session_init(&c->s, c->node->r, &c->node->cfg, uv_now(c->node->loop))) {
        session_free(&c->s);
        conn_close(c, "out of memory");
        return false;
    }
    c->live = true;
    conn_flush(c);
    return true;
}

static void on_connect(uv_connect_t *req, int status) {
    conn *c = req->data;
    if (c->closing) {
        return;
    }
    if (status < 0) {
        conn_close(c, uv_strerror(status));
        return;
    }
    node_log(c->node, TALLY_LOG_INFO, "%s: connected", c->name);
    if (c->peer != NULL) {
        c->peer->n_addrs = c->peer->next_addr = 0; /* a reconnect looks the name up again */
    }
    conn_start(c);
}

static void peer_resolve(tally_node *n, peer *p);

static void peer_connect(tally_node *n, peer *p) {
    if (p->named) {
        if (p->next_addr >= p->n_addrs) {
            peer_resolve(n, p); /* connects when the answer comes */
            return;
        }
        p->sa = p->addrs[p->next_addr++];
    }
    conn *c = conn_new(n, p, p->addr);
    if (c == NULL) {
        p->retry_at_ms = uv_now(n->loop) + BACKOFF_MAX_MS;
        return;
    }
    p->conn = c;
    c->connect.data = c;
    int rc = uv_tcp_connect(&c->connect, &c->tcp, (const struct sockaddr *)&p->sa, on_connect);
    if (rc != 0) {
        conn_close(c, uv_strerror(rc));
    }
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
    peer *p = req->data;
    tally_node *n = p->node;
    p->resolving = false;
    n->handles--;
    if (p->removed || n->stopping) {
        uv_freeaddrinfo(res);
        if (p->removed) {
            free(p); /* no longer in the node's list */
        }
        maybe_stopped(n);
        return;
    }
    p->n_addrs = p->next_addr = 0;
    for (const struct addrinfo *ai = status == 0 ? res : NULL;
         ai != NULL && p->n_addrs < PEER_ADDRS_MAX; ai = ai->ai_next) {
        if ((ai->ai_family == AF_INET || ai->ai_family == AF_INET6) &&
            ai->ai_addrlen <= sizeof p->addrs[0]) {
            struct sockaddr_storage *sa = &p->addrs[p->n_addrs++];
            memset(sa, 0, sizeof *sa);
            memcpy(sa, ai->ai_addr, ai->ai_addrlen);
        }
    }
    uv_freeaddrinfo(res);
    if (p->n_addrs == 0) {
        node_log(n, TALLY_LOG_WARN, "%s: cannot resolve: %s", p->addr,
                 status < 0 ? uv_strerror(status) : "no IPv4 or IPv6 address");
        peer_backoff(n, p);
        return;
    }
    peer_connect(n, p);
}

/* Looks a named peer up on libuv's thread pool; on_resolved goes on from there. */
static void peer_resolve(tally_node *n, peer *p) {
    net_addr a;
    char port[8];
    (void)net_addr_parse(p->addr, &a); /* checked by tally_node_add_peer */
    snprintf(port, sizeof port, "%u", (unsigned)a.port);
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    p->resolver.data = p;
    int rc = uv_getaddrinfo(n->loop, &p->resolver, on_resolved, a.host, port, &hints);
    if (rc != 0) {
        node_log(n, TALLY_LOG_WARN, "%s: cannot resolve: %s", p->addr, uv_strerror(rc));
        peer_backoff(n, p);
        return;
    }
    p->resolving = true;
    n->handles++; /* the node stops only after the answer (or its cancellation) is in */
}

static void on_connection(uv_stream_t *server, int status) {
    tally_node *n = server->data;
    if (status < 0 || n->stopping) {
        return;
    }
    conn *c = conn_new(n, NULL, "incoming");
    if (c == NULL) {
        return;
    }
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c, "accept failed");
        return;
    }
    struct sockaddr_storage sa;
    int len = sizeof sa;
    char ip[64] = "?";
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&sa, &len) == 0) {
        if (sa.ss_family == AF_INET) {
            uv_ip4_name((struct sockaddr_in *)&sa, ip, sizeof ip);
            snprintf(c->name, sizeof c->name, "%s:%d (incoming)", ip,
                     ntohs(((struct sockaddr_in *)&sa)->sin_port));
        } else {
            uv_ip6_name((struct sockaddr_in6 *)&sa, ip, sizeof ip);
            snprintf(c->name, sizeof c->name, "[%s]:%d (incoming)", ip,
                     ntohs(((struct sockaddr_in6 *)&sa)->sin6_port));
        }
    }
    node_log(n, TALLY_LOG_INFO, "%s: accepted", c->name);
    conn_start(c);
}

/* --- timers -------------------------------------------------------------------------------- */

static void on_tick(uv_timer_t *t) {
    tally_node *n = t->data;
    uint64_t now = uv_now(n->loop);
    for (conn *c = n->conns, *next; c != NULL; c = next) {
        next = c->next;
        if (c->live && !c->closing) {
            session_tick(&c->s, now);
            conn_after_session(c);
        }
    }
    for (peer *p = n->peers; p != NULL; p = p->next) {
        if (p->conn == NULL && !p->resolving && now >= p->retry_at_ms) {
            peer_connect(n, p);
        }
    }
    rights_work(n);
}

static void on_push(uv_timer_t *t) {
    tally_node *n = t->data;
    rights_work(n);
    for (conn *c = n->conns; c != NULL; c = c->next) {
        if (c->live && !c->closing) {
            session_push(&c->s);
            conn_flush(c);
        }
    }
}

static void expiry_schedule(tally_node *n);

/* A replica that cannot expire now (behind its own origin, a failed journal) is asked again
 * after this long, not in a busy loop. */
#define EXPIRY_RETRY_MS 1000

static void on_expiry(uv_timer_t *t) {
    tally_node *n = t->data;
    uint64_t voided = 0;
    int rc = tally_expire(n->r, &voided); /* its ops reach peers through on_change */
    if (rc != TALLY_OK) {
        node_log(n, TALLY_LOG_WARN, "voiding pendings whose timeout passed: %s",
                 tally_result_name(rc));
        uv_timer_start(&n->expiry, on_expiry, EXPIRY_RETRY_MS, 0);
        return;
    }
    expiry_schedule(n);
}

/* Sets the expiry timer for the replica's next deadline. */
static void expiry_schedule(tally_node *n) {
    uint64_t in_ms = UINT64_MAX;
    if (n->stopping || tally_next_expiry(n->r, &in_ms) != TALLY_OK || in_ms == UINT64_MAX) {
        uv_timer_stop(&n->expiry);
        return;
    }
    uint64_t due = uv_timer_get_due_in(&n->expiry);
    if (uv_is_active((uv_handle_t *)&n->expiry) && due <= in_ms) {
        return; /* already set for that or sooner */
    }
    uv_timer_start(&n->expiry, on_expiry, in_ms > 0 ? in_ms : 0, 0);
}

static void on_change(void *ctx) {
    tally_node *n = ctx;
    if (!n->stopping && !uv_is_active((uv_handle_t *)&n->push)) {
        uv_timer_start(&n->push, on_push, 0, 0);
    }
    if (!n->stopping) {
        expiry_schedule(n); /* a new pending may be due before the timer's deadline */
    }
}

/* Tells the log when the replica's writes are held, and when a peer confirmed its history
 * (answered the challenge in its summary): then the hold is lifted, durably, now rather than at its
 * next write, so that a restart does not hold it again. */
static void log_hold(tally_node *n) {
    tally_hold held = tally_held(n->r);
    if (held != TALLY_HOLD_NONE && n->held == TALLY_HOLD_NONE) {
        node_log(n, TALLY_LOG_WARN,
                 "this replica's writes are held (%s): %s. A peer that holds its history up to "
                 "here lifts the hold when it syncs; if no other copy of it can have written "
                 "since, an operator can lift it (tally hold lift)",
                 tally_hold_name((int)held), tally_hold_reason((int)held));
    } else if (held == TALLY_HOLD_NONE && n->held != TALLY_HOLD_NONE) {
        int rc = tally_lift_hold(n->r);
        node_log(n, rc == TALLY_OK ? TALLY_LOG_INFO : TALLY_LOG_ERROR,
                 "a peer confirmed this replica's history: its writes are no longer held%s%s",
                 rc == TALLY_OK ? "" : ", but the lift could not be written: ",
                 rc == TALLY_OK ? "" : tally_strerror(rc));
    }
    n->held = held;
}

int tally_node_lift_hold(tally_node *n) {
    if (n == NULL) {
        return TALLY_EINVAL;
    }
    tally_hold was = tally_held(n->r);
    int rc = tally_lift_hold(n->r);
    if (was != TALLY_HOLD_NONE) {
        node_log(n, rc == TALLY_OK ? TALLY_LOG_WARN : TALLY_LOG_ERROR,
                 "the hold on this replica's writes (%s) %s by an operator, who vouches that no "
                 "other copy of it wrote",
                 tally_hold_name((int)was), rc == TALLY_OK ? "was lifted" : "could not be lifted");
    }
    n->held = tally_held(n->r);
    return rc;
}

/* Tells the log of each proof of a fork the replica holds that it has not told of yet: each is
 * an error an operator must act on (docs/operations.md, "A fork"). */
static void log_forks(tally_node *n) {
    size_t count;
    tally_fork f;
    if (tally_forks(n->r, 0, NULL, 0, &count) != TALLY_OK) {
        return;
    }
    for (; n->forks_logged < count; n->forks_logged++) {
        size_t one;
        if (tally_forks(n->r, n->forks_logged, &f, 1, &one) != TALLY_OK) {
            return;
        }
        bool self = f.replica_id == tally_replica_id(n->r);
        node_log(n, TALLY_LOG_ERROR,
                 "replica %llu signed two histories (its ops %llu..%llu and %llu..%llu): the "
                 "proof is kept, %s",
                 (unsigned long long)f.replica_id, (unsigned long long)f.first[0],
                 (unsigned long long)f.last[0], (unsigned long long)f.first[1],
                 (unsigned long long)f.last[1],
                 self ? "and this replica takes no writes: start it as a new replica"
                      : "and it is given no rights");
    }
}

/* Tells the log, whenever it changes, what forked replicas' histories took beyond what they
 * held (tally_fork_damage): each is money an operator must see to (docs/operations.md). */
static void log_damage(tally_node *n) {
    size_t count = 0;
    if (tally_fork_damage(n->r, 0, NULL, 0, &count) != TALLY_OK || count == 0) {
        return; /* no forked replica's histories here: no cost past a look at each origin */
    }
    tally_damage *d = calloc(count, sizeof *d);
    if (d == NULL || tally_fork_damage(n->r, 0, d, count, &count) != TALLY_OK) {
        free(d);
        return;
    }
    uint64_t sum = count; /* what was logged last: entries and amounts, folded */
    for (size_t i = 0; i < count; i++) {
        sum = sum * 1000003u ^ d[i].replica_id ^ d[i].account_id.lo ^ d[i].taken;
    }
    for (size_t i = 0; i < count && sum != n->damage_logged; i++) {
        node_log(n, TALLY_LOG_ERROR,
                 "replica %llu's %u histories took %llu beyond what it held from account "
                 "%016llx%016llx (ledger %u; at most %llu)",
                 (unsigned long long)d[i].replica_id, d[i].histories,
                 (unsigned long long)d[i].taken, (unsigned long long)d[i].account_id.hi,
                 (unsigned long long)d[i].account_id.lo, d[i].ledger,
                 (unsigned long long)d[i].bound);
    }
    n->damage_logged = sum;
    free(d);
}

/* After every delta applied and summary read: what the log must hear of (forks, the hold). */
static void after_learning(void *ctx) {
    tally_node *n = ctx;
    log_hold(n);
    log_forks(n);
    log_damage(n);
}

/* A held peer asks to be confirmed as origin. Not while another session is with a replica of
 * that id: two replicas with one id are a copy, and confirming the held one would let both
 * write (a fork). It stays held; the log says why. */
static bool may_answer(void *ctx, const session *s, uint64_t origin) {
    tally_node *n = ctx;
    for (const conn *c = n->conns; c != NULL; c = c->next) {
        if (c->live && !c->closing && &c->s != s && c->s.state == SESSION_READY &&
            c->s.peer_id == origin) {
            node_log(n, TALLY_LOG_WARN,
                     "replica %llu is connected twice, once held (a restored or copied "
                     "directory): the held one is not confirmed from here while the other is "
                     "connected",
                     (unsigned long long)origin);
            return false;
        }
    }
    return true;
}

/* --- rights on request ---------------------------------------------------------------------- */

static conn *ready_session_with(tally_node *n, uint64_t replica) {
    for (conn *c = n->conns; c != NULL; c = c->next) {
        if (c->live && !c->closing && c->s.state == SESSION_READY && c->s.peer_id == replica) {
            return c;
        }
    }
    return NULL;
}

static uint64_t rights_here(tally_node *n, tally_id account) {
    uint64_t v = 0;
    (void)tally_rights(n->r, account, tally_replica_id(n->r), &v);
    return v;
}

/* What the grants announced to q have brought so far: those applied here. */
static uint64_t request_arrived(const tally_node *n, const rights_request *q) {
    uint64_t arrived = 0;
    for (int k = 0; k < q->n_grants; k++) {
        if (tally_seen(n->r, q->grants[k].holder) >= q->grants[k].seq) {
            arrived += q->grants[k].amount;
        }
    }
    return arrived;
}

static void request_finish(tally_node *n, rights_request *q, int result) {
    for (rights_request **pp = &n->requests; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == q) {
            *pp = q->next;
            break;
        }
    }
    uint64_t arrived = request_arrived(n, q);
    node_log(n, TALLY_LOG_INFO, "rights request %llu: %s, %llu of %llu", (unsigned long long)q->id,
             tally_result_name(result), (unsigned long long)arrived, (unsigned long long)q->amount);
    tally_rights_cb cb = q->cb;
    void *ctx = q->ctx;
    free(q);
    cb(ctx, result, arrived);
}

/* Asks the richest holder not asked yet, or finishes once no one is left to ask and what was
 * promised has arrived. */
static void request_advance(tally_node *n, rights_request *q) {
    if (q->waiting != 0) {
        return;
    }
    if (q->promised < q->amount && q->n_asked < 16) {
        tally_rights_entry holders[16];
        size_t count = 0;
        (void)tally_rights_holders(n->r, q->account, holders, 16, &count);
        for (size_t i = 0; i < count && i < 16; i++) {
            uint64_t h = holders[i].replica_id;
            bool done = h == tally_replica_id(n->r);
            for (int k = 0; k < q->n_asked && !done; k++) {
                done = q->asked[k] == h;
            }
            conn *c = done ? NULL : ready_session_with(n, h);
            if (c != NULL) {
                q->asked[q->n_asked++] = h;
                q->waiting = h;
                session_ask_rights(&c->s, q->id, q->account, q->amount - q->promised);
                conn_flush(c);
                return;
            }
        }
    }
    if (request_arrived(n, q) >= q->promised) {
        request_finish(n, q, q->promised >= q->amount ? TALLY_OK : TALLY_INSUFFICIENT_RIGHTS);
    }
}

static void on_rights_answer(void *ctx, uint64_t from, uint64_t request, int result,
                             uint64_t granted, uint64_t grant_seq) {
    tally_node *n = ctx;
    (void)result;
    for (rights_request *q = n->requests; q != NULL; q = q->next) {
        if (q->id == request && q->waiting == from) {
            q->waiting = 0;
            /* a holder grants at most what was asked; an answer claiming more, or a grant with
             * no dot, is not counted (the request then ends short, never waiting on it) */
            if (granted > 0 && grant_seq > 0 && granted <= q->amount - q->promised &&
                q->n_grants < (int)(sizeof q->grants / sizeof q->grants[0])) {
                q->grants[q->n_grants].holder = from;
                q->grants[q->n_grants].seq = grant_seq;
                q->grants[q->n_grants].amount = granted;
                q->n_grants++;
                q->promised += granted;
            }
            return; /* advanced after the frames in hand are processed (on_push, on_tick) */
        }
    }
}

/* Runs after changes and on every tick: requests move on, homes receive their rights. */
static void rights_work(tally_node *n) {
    uint64_t now = uv_now(n->loop);
    for (rights_request *q = n->requests, *next; q != NULL; q = next) {
        next = q->next;
        if (now >= q->deadline_ms) {
            request_finish(n, q, TALLY_ETIMEDOUT);
        } else {
            request_advance(n, q);
        }
    }
    for (home *h = n->homes; h != NULL; h = h->next) {
        uint64_t held = rights_here(n, h->account);
        if (held > 0 && ready_session_with(n, h->replica) != NULL) {
            /* the home is on the line (a ready session): vouched for */
            tally_grant_request g = {h->account, h->replica, held, 0, 0, TALLY_GRANT_TO_UNKNOWN};
            int rc = tally_grant_with(n->r, &g);
            node_log(n, rc == TALLY_OK ? TALLY_LOG_INFO : TALLY_LOG_WARN,
                     "passing %llu rights to home replica %llu: %s", (unsigned long long)held,
                     (unsigned long long)h->replica, tally_result_name(rc));
        }
    }
}

/* --- the public API ------------------------------------------------------------------------ */

/* A write to a peer that has gone away raises SIGPIPE, whose default action ends the process;
 * libuv reports EPIPE instead once it is ignored. An application's own handler is left alone. */
static void ignore_sigpipe(void) {
    struct sigaction current;
    if (sigaction(SIGPIPE, NULL, &current) == 0 && current.sa_handler == SIG_DFL) {
        signal(SIGPIPE, SIG_IGN);
    }
}

static uint32_t or_default(uint32_t v, uint32_t def) {
    return v != 0 ? v : def;
}

/* The sessions' settings, from opts and the defaults above. */
static void node_configure(tally_node *n, const tally_node_options *opts) {
    n->cfg.cluster = n->cluster;
    n->cfg.anti_entropy_ms = or_default(opts->anti_entropy_ms, ANTI_ENTROPY_MS_DEFAULT);
    n->cfg.ping_ms = PING_MS;
    n->cfg.idle_timeout_ms = or_default(opts->idle_timeout_ms, IDLE_TIMEOUT_MS_DEFAULT);
    n->cfg.handshake_timeout_ms =
        or_default(opts->handshake_timeout_ms, HANDSHAKE_TIMEOUT_MS_DEFAULT);
    n->cfg.delta_bytes_max = DELTA_BYTES_MAX;
    n->cfg.out_high_water = OUT_HIGH_WATER;
    n->cfg.log = opts->log;
    n->cfg.log_ctx = opts->log_ctx;
    n->cfg.rights_reserve = opts->rights_reserve;
    n->cfg.rights_throttle_ms = RIGHTS_THROTTLE_MS;
    n->cfg.on_rights_answer = on_rights_answer;
    n->cfg.rights_ctx = n;
    n->cfg.on_learned = after_learning;
    n->cfg.may_answer = may_answer;
    n->cfg.learned_ctx = n;
    n->rights_timeout_ms = or_default(opts->rights_timeout_ms, RIGHTS_TIMEOUT_MS_DEFAULT);
}

/* Listens on sa (what `listen` names); on failure the node is closed and freed on the loop. */
static int node_listen(tally_node *n, const char *listen, const struct sockaddr_storage *sa) {
    int rc = uv_tcp_init(n->loop, &n->listener);
    n->listener.data = n;
    n->handles++;
    n->listening = true;
    if (rc == 0) {
        rc = uv_tcp_bind(&n->listener, (const struct sockaddr *)sa, 0);
    }
    if (rc == 0) {
        rc = uv_listen((uv_stream_t *)&n->listener, LISTEN_BACKLOG, on_connection);
    }
    if (rc != 0) {
        node_log(n, TALLY_LOG_ERROR, "cannot listen on %s: %s", listen, uv_strerror(rc));
        (void)sync_watch(n->r, NULL, NULL);
        n->stopping = true;
        uv_close((uv_handle_t *)&n->listener, on_handle_closed);
        uv_close((uv_handle_t *)&n->tick, on_handle_closed);
        uv_close((uv_handle_t *)&n->push, on_handle_closed);
        uv_close((uv_handle_t *)&n->expiry, on_handle_closed);
        return TALLY_EIO; /* freed by the close callbacks, on the loop */
    }
    node_log(n, TALLY_LOG_INFO, "listening on %s", listen);
    return TALLY_OK;
}

int tally_node_start(struct uv_loop_s *loop, tally_replica *r, const tally_node_options *opts,
                     tally_node **out) {
    if (out != NULL) {
        *out = NULL;
    }
    if (loop == NULL || r == NULL || opts == NULL || out == NULL) {
        return TALLY_EINVAL;
    }
    const char *cluster = opts->cluster != NULL ? opts->cluster : CLUSTER_DEFAULT;
    struct sockaddr_storage sa;
    if (strlen(cluster) == 0 || strlen(cluster) > CLUSTER_NAME_MAX ||
        (opts->listen != NULL && net_addr_listen(opts->listen, &sa) != TALLY_OK)) {
        return TALLY_EINVAL;
    }
    tally_node *n = calloc(1, sizeof *n);
    if (n == NULL) {
        return TALLY_ENOMEM;
    }
    if (sync_watch(r, on_change, n) != TALLY_OK) {
        free(n); /* another node serves this replica */
        return TALLY_EINVAL;
    }
    ignore_sigpipe();
    n->loop = loop;
    n->r = r;
    snprintf(n->cluster, sizeof n->cluster, "%s", cluster);
    node_configure(n, opts);
    n->seed = tally_replica_id(r) ^ uv_hrtime();
    uv_timer_init(loop, &n->tick);
    uv_timer_init(loop, &n->push);
    uv_timer_init(loop, &n->expiry);
    n->tick.data = n->push.data = n->expiry.data = n;
    n->handles = 3;
    if (opts->listen != NULL) {
        int rc = node_listen(n, opts->listen, &sa);
        if (rc != TALLY_OK) {
            return rc;
        }
    }
    uv_timer_start(&n->tick, on_tick, TICK_MS, TICK_MS);
    expiry_schedule(n); /* pendings made before the node started */
    log_forks(n);       /* and forks proven before */
    log_hold(n);
    *out = n;
    return TALLY_OK;
}

int tally_node_get_stats(const tally_node *n, tally_node_stats *out) {
    if (out != NULL) {
        memset(out, 0, sizeof *out);
    }
    if (n == NULL || out == NULL) {
        return TALLY_EINVAL;
    }
    for (const peer *p = n->peers; p != NULL; p = p->next) {
        out->peers++;
    }
    out->ops_in = n->ops_in;
    out->ops_out = n->ops_out;
    for (const conn *c = n->conns; c != NULL; c = c->next) {
        out->sessions++;
        if (c->live) {
            out->sessions_ready += c->s.state == SESSION_READY;
            out->ops_in += c->s.ops_in;
            out->ops_out += c->s.ops_out;
        }
    }
    out->bytes_in = n->bytes_in;
    out->bytes_out = n->bytes_out;
    return TALLY_OK;
}

int tally_node_peers(const tally_node *n, tally_node_peer *out, size_t cap, size_t *count) {
    if (count != NULL) {
        *count = 0;
    }
    if (n == NULL || count == NULL || (out == NULL && cap > 0)) {
        return TALLY_EINVAL;
    }
    size_t k = 0;
    for (const peer *p = n->peers; p != NULL; p = p->next, k++) {
        if (k < cap) {
            tally_node_peer *e = &out[k];
            memset(e, 0, sizeof *e);
            snprintf(e->address, sizeof e->address, "%s", p->addr);
            e->outgoing = 1;
            const conn *c = p->conn;
            e->state = p->resolving ? TALLY_PEER_CONNECTING
                       : c == NULL || c->closing ? TALLY_PEER_DOWN
                       : !c->live              ? TALLY_PEER_CONNECTING
                       : c->s.state == SESSION_READY ? TALLY_PEER_READY
                                                     : TALLY_PEER_HANDSHAKE;
            e->replica_id = c != NULL && c->live ? c->s.peer_id : 0;
        }
    }
    for (const conn *c = n->conns; c != NULL; c = c->next) {
        if (c->peer != NULL || c->closing) {
            continue; /* outgoing ones are listed with their peer */
        }
        if (k < cap) {
            tally_node_peer *e = &out[k];
            memset(e, 0, sizeof *e);
            snprintf(e->address, sizeof e->address, "%.95s", c->name);
            e->state = !c->live ? TALLY_PEER_CONNECTING
                       : c->s.state == SESSION_READY ? TALLY_PEER_READY
                                                     : TALLY_PEER_HANDSHAKE;
            e->replica_id = c->live ? c->s.peer_id : 0;
        }
        k++;
    }
    *count = k;
    return TALLY_OK;
}

int tally_node_port(const tally_node *n) {
    if (n == NULL || !n->listening) {
        return -1;
    }
    struct sockaddr_storage sa;
    int len = sizeof sa;
    if (uv_tcp_getsockname(&n->listener, (struct sockaddr *)&sa, &len) != 0) {
        return -1;
    }
    return sa.ss_family == AF_INET ? ntohs(((struct sockaddr_in *)&sa)->sin_port)
                                   : ntohs(((struct sockaddr_in6 *)&sa)->sin6_port);
}

int tally_node_add_peer(tally_node *n, const char *addr) {
    if (n == NULL || n->stopping) {
        return TALLY_EINVAL;
    }
    net_addr a;
    if (net_addr_parse(addr, &a) != TALLY_OK || a.port == 0) {
        return TALLY_EINVAL; /* port 0 is for listening on; nothing can be reached there */
    }
    peer *p = calloc(1, sizeof *p);
    if (p == NULL) {
        return TALLY_ENOMEM;
    }
    p->node = n;
    if (net_addr_literal(&a, &p->sa) != TALLY_OK) {
        if (!net_addr_is_name(&a)) {
            free(p);
            return TALLY_EINVAL;
        }
        p->named = true;
    }
    for (peer *q = n->peers; q != NULL; q = q->next) {
        if (strcmp(q->addr, addr) == 0) {
            free(p);
            return TALLY_EXISTS;
        }
    }
    snprintf(p->addr, sizeof p->addr, "%s", addr);
    p->next = n->peers;
    n->peers = p;
    peer_connect(n, p);
    return TALLY_OK;
}

int tally_node_remove_peer(tally_node *n, const char *addr) {
    if (n == NULL || addr == NULL) {
        return TALLY_EINVAL;
    }
    for (peer **pp = &n->peers; *pp != NULL; pp = &(*pp)->next) {
        peer *p = *pp;
        if (strcmp(p->addr, addr) == 0) {
            *pp = p->next;
            if (p->conn != NULL) {
                p->conn->peer = NULL; /* no reconnect */
                conn_close(p->conn, "peer removed");
            }
            if (p->resolving) {
                p->removed = true; /* on_resolved frees it */
                uv_cancel((uv_req_t *)&p->resolver);
                return TALLY_OK;
            }
            free(p);
            return TALLY_OK;
        }
    }
    return TALLY_NOT_FOUND;
}

int tally_node_request_rights(tally_node *n, tally_id account_id, uint64_t amount,
                              tally_rights_cb cb, void *ctx) {
    if (n == NULL || cb == NULL || amount == 0 || n->stopping) {
        return TALLY_EINVAL;
    }
    tally_account a;
    int rc = tally_lookup_account(n->r, account_id, &a);
    if (rc != TALLY_OK) {
        return rc;
    }
    if ((a.flags & (TALLY_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS |
                    TALLY_ACCOUNT_CREDITS_MUST_NOT_EXCEED_DEBITS)) == 0) {
        return TALLY_ACCOUNT_UNBOUNDED; /* no rights to ask for */
    }
    rights_request *q = calloc(1, sizeof *q);
    if (q == NULL) {
        return TALLY_ENOMEM;
    }
    q->id = ++n->next_request;
    q->account = account_id;
    q->amount = amount;
    q->deadline_ms = uv_now(n->loop) + n->rights_timeout_ms;
    q->cb = cb;
    q->ctx = ctx;
    q->next = n->requests;
    n->requests = q;
    if (!uv_is_active((uv_handle_t *)&n->push)) {
        uv_timer_start(&n->push, on_push, 0, 0); /* asks on the loop: cb never runs in here */
    }
    return TALLY_OK;
}

int tally_node_set_home(tally_node *n, tally_id account_id, uint64_t home_replica) {
    if (n == NULL || home_replica == tally_replica_id(n->r)) {
        return TALLY_EINVAL;
    }
    if (account_id.hi == 0 && account_id.lo == 0) {
        return TALLY_ID_ZERO;
    }
    for (home **pp = &n->homes; *pp != NULL; pp = &(*pp)->next) {
        home *h = *pp;
        if (h->account.hi == account_id.hi && h->account.lo == account_id.lo) {
            if (home_replica == 0) {
                *pp = h->next;
                free(h);
            } else {
                h->replica = home_replica;
            }
            return TALLY_OK;
        }
    }
    if (home_replica == 0) {
        return TALLY_OK;
    }
    home *h = calloc(1, sizeof *h);
    if (h == NULL) {
        return TALLY_ENOMEM;
    }
    h->account = account_id;
    h->replica = home_replica;
    h->next = n->homes;
    n->homes = h;
    return TALLY_OK;
}

void tally_node_stop(tally_node *n, void (*stopped)(void *ctx), void *ctx) {
    if (n == NULL || n->stopping) {
        return;
    }
    while (n->requests != NULL) {
        request_finish(n, n->requests, TALLY_ETIMEDOUT); /* cb runs once, even now */
    }
    while (n->homes != NULL) {
        home *h = n->homes;
        n->homes = h->next;
        free(h);
    }
    n->stopping = true;
    n->stopped = stopped;
    n->stopped_ctx = ctx;
    (void)sync_watch(n->r, NULL, NULL);
    for (peer *p = n->peers; p != NULL; p = p->next) {
        if (p->conn != NULL) {
            p->conn->peer = NULL;
            p->conn = NULL;
        }
        if (p->resolving) {
            uv_cancel((uv_req_t *)&p->resolver); /* if it has not started; else it finishes */
        }
    }
    for (conn *c = n->conns; c != NULL; c = c->next) {
        conn_close(c, NULL);
    }
    if (n->listening) {
        uv_close((uv_handle_t *)&n->listener, on_handle_closed);
    }
    uv_close((uv_handle_t *)&n->tick, on_handle_closed);
    uv_close((uv_handle_t *)&n->push, on_handle_closed);
    uv_close((uv_handle_t *)&n->expiry, on_handle_closed);
}
