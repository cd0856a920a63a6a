/*
 * net/node.c — the libuv transport: runs sessions (session.c) over TCP.
 *
 * This file only moves bytes between sockets and sessions, and keeps time: every protocol
 * decision is the session's. A node owns a listening socket, the peers it was told to keep
 * connected (reconnecting with exponential backoff and jitter), every connection, and two
 * timers: `tick` (timeouts, pings, anti-entropy, reconnects) and `push` (a zero-delay timer that
 * a change to the replica starts, so that every write call's ops reach peers in one go).
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
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "ledger/replica.h"
#include "net/session.h"
#include "tally.h"

enum { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };
#define TICK_MS 20
#define READ_CHUNK (64 * 1024)
#define BACKOFF_MIN_MS 50
#define BACKOFF_MAX_MS 5000
#define ADDR_MAX 96

typedef struct peer peer;
typedef struct conn conn;

struct peer {
    peer *next;
    char addr[ADDR_MAX];
    struct sockaddr_storage sa;
    conn *conn; /* the connection to it, or NULL */
    uint32_t attempts;
    uint64_t retry_at_ms;
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
    char name[ADDR_MAX + 16];
    uint8_t buf[READ_CHUNK];
};

struct tally_node {
    uv_loop_t *loop;
    tally_replica *r;
    session_config cfg;
    char cluster[256];
    uv_tcp_t listener;
    bool listening;
    uv_timer_t tick, push;
    peer *peers;
    conn *conns;
    int handles; /* open handles, for stop */
    bool stopping;
    void (*stopped)(void *ctx);
    void *stopped_ctx;
    uint64_t seed; /* jitter */
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

/* "host:port": an IPv4 literal, "localhost", or an IPv6 literal in brackets. */
static int parse_addr(const char *addr, struct sockaddr_storage *out) {
    if (addr == NULL || strlen(addr) >= ADDR_MAX) {
        return TALLY_EINVAL;
    }
    const char *colon = strrchr(addr, ':');
    if (colon == NULL || colon == addr || colon[1] == '\0') {
        return TALLY_EINVAL;
    }
    char host[ADDR_MAX];
    size_t n = (size_t)(colon - addr);
    memcpy(host, addr, n);
    host[n] = '\0';
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end != '\0' || port < 0 || port > 65535) {
        return TALLY_EINVAL;
    }
    memset(out, 0, sizeof *out);
    if (host[0] == '[' && n >= 2 && host[n - 1] == ']') {
        host[n - 1] = '\0';
        return uv_ip6_addr(host + 1, (int)port, (struct sockaddr_in6 *)out) == 0 ? TALLY_OK
                                                                                 : TALLY_EINVAL;
    }
    if (strcmp(host, "localhost") == 0) {
        strcpy(host, "127.0.0.1");
    }
    return uv_ip4_addr(host, (int)port, (struct sockaddr_in *)out) == 0 ? TALLY_OK : TALLY_EINVAL;
}

/* --- connections ----------------------------------------------------------------------------- */

static void conn_close(conn *c, const char *why);
static void conn_flush(conn *c);

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
        uint64_t backoff = BACKOFF_MIN_MS << (p->attempts < 7 ? p->attempts : 7);
        backoff = backoff > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff;
        p->attempts++;
        p->retry_at_ms = uv_now(n->loop) + jitter(n, backoff);
    }
    if (c->live) {
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
        node_log(c->node, LOG_INFO, "%s: closing: %s", c->name, why);
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
    node_log(c->node, LOG_INFO, "%s: connected", c->name);
    conn_start(c);
}

static void peer_connect(tally_node *n, peer *p) {
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
    node_log(n, LOG_INFO, "%s: accepted", c->name);
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
        if (p->conn == NULL && now >= p->retry_at_ms) {
            peer_connect(n, p);
        }
    }
}

static void on_push(uv_timer_t *t) {
    tally_node *n = t->data;
    for (conn *c = n->conns; c != NULL; c = c->next) {
        if (c->live && !c->closing) {
            session_push(&c->s);
            conn_flush(c);
        }
    }
}

static void on_change(void *ctx) {
    tally_node *n = ctx;
    if (!n->stopping && !uv_is_active((uv_handle_t *)&n->push)) {
        uv_timer_start(&n->push, on_push, 0, 0);
    }
}

/* --- the public API ------------------------------------------------------------------------ */

int tally_node_start(struct uv_loop_s *loop, tally_replica *r, const tally_node_options *opts,
                     tally_node **out) {
    if (out != NULL) {
        *out = NULL;
    }
    if (loop == NULL || r == NULL || opts == NULL || out == NULL || r->on_change != NULL) {
        return TALLY_EINVAL;
    }
    const char *cluster = opts->cluster != NULL ? opts->cluster : "tally";
    struct sockaddr_storage sa;
    if (strlen(cluster) == 0 || strlen(cluster) > 255 ||
        (opts->listen != NULL && parse_addr(opts->listen, &sa) != TALLY_OK)) {
        return TALLY_EINVAL;
    }
    tally_node *n = calloc(1, sizeof *n);
    if (n == NULL) {
        return TALLY_ENOMEM;
    }
    n->loop = loop;
    n->r = r;
    snprintf(n->cluster, sizeof n->cluster, "%s", cluster);
    n->cfg.cluster = n->cluster;
    n->cfg.anti_entropy_ms = opts->anti_entropy_ms != 0 ? opts->anti_entropy_ms : 1000;
    n->cfg.ping_ms = 1000;
    n->cfg.idle_timeout_ms = 10000;
    n->cfg.handshake_timeout_ms = 5000;
    n->cfg.delta_bytes_max = 1u << 20;
    n->cfg.out_high_water = 4u << 20;
    n->cfg.log = opts->log;
    n->cfg.log_ctx = opts->log_ctx;
    n->seed = tally_replica_id(r) ^ uv_hrtime();
    uv_timer_init(loop, &n->tick);
    uv_timer_init(loop, &n->push);
    n->tick.data = n->push.data = n;
    n->handles = 2;
    if (opts->listen != NULL) {
        int rc = uv_tcp_init(loop, &n->listener);
        n->listener.data = n;
        n->handles++;
        n->listening = true;
        if (rc == 0) {
            rc = uv_tcp_bind(&n->listener, (const struct sockaddr *)&sa, 0);
        }
        if (rc == 0) {
            rc = uv_listen((uv_stream_t *)&n->listener, 128, on_connection);
        }
        if (rc != 0) {
            node_log(n, LOG_ERROR, "cannot listen on %s: %s", opts->listen, uv_strerror(rc));
            n->stopping = true;
            uv_close((uv_handle_t *)&n->listener, on_handle_closed);
            uv_close((uv_handle_t *)&n->tick, on_handle_closed);
            uv_close((uv_handle_t *)&n->push, on_handle_closed);
            return TALLY_EIO; /* freed by the close callbacks, on the loop */
        }
        node_log(n, LOG_INFO, "listening on %s", opts->listen);
    }
    uv_timer_start(&n->tick, on_tick, TICK_MS, TICK_MS);
    r->on_change = on_change;
    r->on_change_ctx = n;
    r->notified_log = r->log.count;
    *out = n;
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
    peer *p = calloc(1, sizeof *p);
    if (p == NULL) {
        return TALLY_ENOMEM;
    }
    if (parse_addr(addr, &p->sa) != TALLY_OK) {
        free(p);
        return TALLY_EINVAL;
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
            free(p);
            return TALLY_OK;
        }
    }
    return TALLY_NOT_FOUND;
}

void tally_node_stop(tally_node *n, void (*stopped)(void *ctx), void *ctx) {
    if (n == NULL || n->stopping) {
        return;
    }
    n->stopping = true;
    n->stopped = stopped;
    n->stopped_ctx = ctx;
    n->r->on_change = NULL;
    n->r->on_change_ctx = NULL;
    for (peer *p = n->peers; p != NULL; p = p->next) {
        if (p->conn != NULL) {
            p->conn->peer = NULL;
            p->conn = NULL;
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
}
