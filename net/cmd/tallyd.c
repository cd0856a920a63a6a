/*
 * tallyd — the tally sync server: a durable replica, a sync node, and a control port.
 *
 *   tallyd --data DIR --listen HOST:PORT [--control HOST:PORT] [--peer HOST:PORT ...]
 *          [--cluster NAME] [--sync commit|none] [--anti-entropy-ms N] [--rights-reserve N]
 *          [--capacity-accounts N] [--capacity-transfers N] [--restored yes|no|new]
 *          [--authority FILE] [--certificate FILE]
 *   tallyd --config FILE        (the same settings as a JSON object; see docs/operations.md)
 *
 * One log line per event on stderr: an ISO 8601 UTC timestamp, a level, a message. SIGTERM and
 * SIGINT stop it cleanly: control connections and peer sessions are closed, the journal synced,
 * the directory unlocked, exit status 0. A second tallyd on the same directory refuses to start.
 * Exit status: 0 stopped cleanly; 1 could not start (the reason is logged); 2 bad usage.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include <jansson.h>
#include <uv.h>

#include "crdt/bytes.h"
#include "net/addr.h"
#include "net/cmd/config.h"
#include "net/cmd/control.h"
#include "tally.h"

/* Control connections waiting to be accepted. */
#define CONTROL_BACKLOG 64

typedef struct daemon_ daemon_;

typedef struct ctl_conn {
    struct ctl_conn *next;
    daemon_ *d;
    uv_tcp_t tcp;
    bytes in;
    size_t unsent;
    bool closing;
} ctl_conn;

struct daemon_ {
    settings s;
    uv_loop_t *loop;
    tally_replica *r;
    tally_node *node;
    control *ctl;
    uv_tcp_t ctl_listener;
    bool ctl_listening;
    ctl_conn *conns;
    uv_signal_t sigterm, sigint;
    bool stopping;
};

/* --- logging --------------------------------------------------------------------------------- */

static const char *const level_names[] = {
    [TALLY_LOG_ERROR] = "error",
    [TALLY_LOG_WARN] = "warn",
    [TALLY_LOG_INFO] = "info",
    [TALLY_LOG_DEBUG] = "debug",
};

static void log_line(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void log_line(int level, const char *fmt, ...) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char stamp[32];
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s.%03dZ %s %s\n", stamp, (int)(tv.tv_usec / 1000),
            level_names[level < TALLY_LOG_ERROR   ? TALLY_LOG_ERROR
                        : level > TALLY_LOG_DEBUG ? TALLY_LOG_DEBUG
                                                  : level],
            msg);
}

static void node_log(void *ctx, int level, const char *message) {
    (void)ctx;
    log_line(level, "%s", message);
}

/* --- settings -------------------------------------------------------------------------------- */

static void usage(FILE *out) {
    fprintf(out, "usage: tallyd --data DIR --listen HOST:PORT [--control HOST:PORT]\n"
                 "              [--peer HOST:PORT ...] [--cluster NAME] [--sync commit|none]\n"
                 "              [--restored yes|no|new] [--authority FILE] [--certificate FILE]\n"
                 "              [--anti-entropy-ms N] [--rights-reserve N]\n"
                 "              [--capacity-accounts N] [--capacity-transfers N]\n"
                 "       tallyd --config FILE\n"
                 "The control port (default: the listen port plus one, on 127.0.0.1) speaks\n"
                 "newline-delimited JSON; see docs/operations.md.\n");
}

/* Returns 0 to run, or the exit status. */
static int parse_args(settings *s, int argc, char **argv) {
    config_init(s);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return -1;
        }
        if (i + 1 == argc) {
            log_line(TALLY_LOG_ERROR, "%s needs a value", a);
            return 2;
        }
        char why[300];
        if (!config_flag(s, a, argv[++i], why, sizeof why)) {
            log_line(TALLY_LOG_ERROR, "%s", why);
            usage(stderr);
            return 2;
        }
    }
    if (s->data == NULL || s->listen == NULL) {
        log_line(TALLY_LOG_ERROR,
                 "--data and --listen are required (or \"data\" and \"listen\" in --config)");
        usage(stderr);
        return 2;
    }
    net_addr listen;
    if (net_addr_parse(s->listen, &listen) != TALLY_OK) {
        log_line(TALLY_LOG_ERROR, "bad listen address \"%s\" (HOST:PORT)", s->listen);
        return 2;
    }
    if (s->control == NULL) {
        if (listen.port == 0 || listen.port == 65535) {
            log_line(TALLY_LOG_ERROR,
                     "--control is required when --listen has no fixed port below 65535");
            return 2;
        }
        char buf[32];
        snprintf(buf, sizeof buf, "127.0.0.1:%u", (unsigned)listen.port + 1);
        s->control = strdup(buf);
    }
    return 0;
}

/* --- the control port ------------------------------------------------------------------------ */

static void ctl_closed(uv_handle_t *h) {
    ctl_conn *c = h->data;
    bytes_free(&c->in);
    free(c);
}

static void ctl_close(ctl_conn *c) {
    if (c->closing) {
        return;
    }
    c->closing = true;
    control_forget(c->d->ctl, c);
    for (ctl_conn **pp = &c->d->conns; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    }
    uv_close((uv_handle_t *)&c->tcp, ctl_closed);
}

typedef struct ctl_write {
    uv_write_t req;
    ctl_conn *c;
    size_t len;
    char text[];
} ctl_write;

static void ctl_written(uv_write_t *req, int status) {
    ctl_write *w = (ctl_write *)req;
    if (!w->c->closing) {
        w->c->unsent -= w->len;
        if (status < 0) {
            ctl_close(w->c);
        }
    }
    free(w);
}

static void ctl_reply(void *ctx, const char *json) {
    ctl_conn *c = ctx;
    if (c->closing) {
        return;
    }
    size_t n = strlen(json);
    if (c->unsent + n > CONTROL_REPLY_BYTES_MAX) {
        log_line(TALLY_LOG_WARN, "control client does not read its replies: closing it");
        ctl_close(c);
        return;
    }
    ctl_write *w = malloc(sizeof *w + n + 1);
    if (w == NULL) {
        ctl_close(c);
        return;
    }
    memcpy(w->text, json, n);
    w->text[n] = '\n';
    w->c = c;
    w->len = n + 1;
    uv_buf_t b = uv_buf_init(w->text, (unsigned)(n + 1));
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, ctl_written) != 0) {
        free(w);
        ctl_close(c);
        return;
    }
    c->unsent += n + 1;
}

static void ctl_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    ctl_conn *c = h->data;
    (void)suggested;
    if (!bytes_reserve(&c->in, 64 * 1024)) {
        *buf = uv_buf_init(NULL, 0);
        return;
    }
    *buf = uv_buf_init((char *)c->in.at + c->in.len, 64 * 1024);
}

static void ctl_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
    ctl_conn *c = stream->data;
    (void)buf;
    if (nread < 0) {
        ctl_close(c);
        return;
    }
    c->in.len += (size_t)nread;
    size_t start = 0;
    for (size_t i = c->in.len - (size_t)nread; i < c->in.len && !c->closing; i++) {
        if (c->in.at[i] == '\n') {
            if (i > start) {
                control_request(c->d->ctl, (const char *)c->in.at + start, i - start, ctl_reply,
                                c);
            }
            start = i + 1;
        }
    }
    if (c->closing) {
        return;
    }
    memmove(c->in.at, c->in.at + start, c->in.len - start);
    c->in.len -= start;
    if (c->in.len > CONTROL_LINE_BYTES_MAX) {
        log_line(TALLY_LOG_WARN, "control request longer than %u bytes: closing",
                 CONTROL_LINE_BYTES_MAX);
        ctl_close(c);
    }
}

static void ctl_accept(uv_stream_t *server, int status) {
    daemon_ *d = server->data;
    if (status < 0 || d->stopping) {
        return;
    }
    ctl_conn *c = calloc(1, sizeof *c);
    if (c == NULL) {
        return;
    }
    c->d = d;
    uv_tcp_init(d->loop, &c->tcp);
    c->tcp.data = c;
    c->next = d->conns;
    d->conns = c;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0 ||
        uv_read_start((uv_stream_t *)&c->tcp, ctl_alloc, ctl_read) != 0) {
        ctl_close(c);
    }
}

/* --- lifecycle ------------------------------------------------------------------------------- */

static void node_stopped(void *ctx) {
    daemon_ *d = ctx;
    control_free(d->ctl);
    d->ctl = NULL;
    tally_close(d->r); /* syncs the journal and unlocks the directory */
    d->r = NULL;
    log_line(TALLY_LOG_INFO, "stopped: journal synced, directory unlocked");
    uv_close((uv_handle_t *)&d->sigterm, NULL);
    uv_close((uv_handle_t *)&d->sigint, NULL);
}

static void on_signal(uv_signal_t *h, int signum) {
    daemon_ *d = h->data;
    if (d->stopping) {
        return;
    }
    d->stopping = true;
    log_line(TALLY_LOG_INFO, "%s: stopping", signum == SIGTERM ? "SIGTERM" : "SIGINT");
    while (d->conns != NULL) {
        ctl_close(d->conns);
    }
    if (d->ctl_listening) {
        uv_close((uv_handle_t *)&d->ctl_listener, NULL);
    }
    tally_node_stop(d->node, node_stopped, d);
}

/* Whether r's own id is proven to have signed two histories. */
static bool forked_itself(const tally_replica *r) {
    tally_fork f;
    size_t count = 0;
    for (size_t i = 0; tally_forks(r, i, &f, 1, &count) == TALLY_OK && i < count; i++) {
        if (f.replica_id == tally_replica_id(r)) {
            return true;
        }
    }
    return false;
}

/* --restored new: a replica whose writes are held, or which is proven forked, is started as a
 * new replica rather than wait for a peer or an operator. TALLY_OK with d->r the replica to
 * run, as it was or new. */
static int start_as_new_if_held(daemon_ *d, tally_options *o) {
    tally_hold held = tally_held(d->r);
    bool forked = forked_itself(d->r);
    if (held == TALLY_HOLD_NONE && !forked) {
        return TALLY_OK;
    }
    uint64_t old = tally_replica_id(d->r);
    tally_close(d->r);
    d->r = NULL;
    o->flags = TALLY_OPEN_AS_NEW;
    int rc = tally_open(o, &d->r);
    if (rc == TALLY_OK) {
        log_line(TALLY_LOG_WARN,
                 "replica %" PRIu64 " %s%s (--restored new): its data now runs as the new "
                 "replica %" PRIu64 ", and its old files are kept, held, in %s.replica-%" PRIu64
                 " (a further -N when that was taken)",
                 old, forked ? "is proven forked" : "was held: ",
                 forked ? "" : tally_hold_reason((int)held), tally_replica_id(d->r), d->s.data,
                 old);
    }
    return rc;
}

/* A certificate file (PEM or DER) read whole into *text (NULL when path is NULL), which the
 * caller frees. False after logging why. */
static bool read_certificate(const char *path, const char *what, char **text, size_t *len) {
    *text = NULL;
    *len = 0;
    if (path == NULL) {
        return true;
    }
    if ((*text = control_read_key_file(path, len)) == NULL) {
        log_line(TALLY_LOG_ERROR, "cannot read %s %s: %s", what, path,
                 errno == EFBIG     ? "longer than 16 KiB"
                 : errno == ENODATA ? "empty"
                                    : strerror(errno));
        return false;
    }
    return true;
}

/* Tells the log what the cluster's authority, if it has one, admits this replica to. */
static void log_admission(const daemon_ *d) {
    tally_admission a;
    (void)tally_admission_of(d->r, &a);
    char key[65];
    for (int i = 0; i < 32; i++) {
        snprintf(key + 2 * i, 3, "%02x", a.public_key[i]);
    }
    if (!a.authority) {
        return;
    }
    if (!a.admitted) {
        log_line(TALLY_LOG_WARN,
                 "replica %" PRIu64 " is not admitted to cluster %s: it syncs and writes nothing. "
                 "Its public key is %s: admit it (tally replica admit %" PRIu64
                 " --public-key %s --authority DIR) and restart with --certificate",
                 tally_replica_id(d->r), a.cluster, key, tally_replica_id(d->r), key);
    } else {
        log_line(TALLY_LOG_INFO, "replica %" PRIu64 " is admitted to cluster %s%s%s",
                 tally_replica_id(d->r), a.cluster, a.may_write ? "" : ", to read only",
                 a.not_after == UINT64_C(253402300799) ? "" : ", until a set time");
    }
}

/* Opens the replica in the data directory, and reserves its room if asked. False after
 * logging why. */
static bool open_replica(daemon_ *d) {
    char error[512] = "";
    char *authority = NULL, *certificate = NULL;
    tally_options o;
    memset(&o, 0, sizeof o);
    o.dir = d->s.data;
    o.sync_mode = d->s.sync;
    o.flags = d->s.restored == RESTORED_YES ? TALLY_OPEN_RESTORED : 0;
    o.error = error;
    o.error_size = sizeof error;
    if (!read_certificate(d->s.authority, "the authority's certificate", &authority,
                          &o.authority_len) ||
        !read_certificate(d->s.certificate, "the certificate", &certificate, &o.certificate_len)) {
        free(authority);
        return false;
    }
    o.authority = (const uint8_t *)authority;
    o.certificate = (const uint8_t *)certificate;
    int rc = tally_open(&o, &d->r);
    if (rc == TALLY_OK && d->s.restored == RESTORED_NEW) {
        rc = start_as_new_if_held(d, &o);
    }
    free(authority);
    free(certificate);
    if (rc == TALLY_ELOCKED) {
        log_line(TALLY_LOG_ERROR,
                 "%s is in use by another tallyd (or another program): not starting", d->s.data);
        return false;
    }
    if (rc != TALLY_OK) {
        log_line(TALLY_LOG_ERROR, "cannot open %s: %s: %s", d->s.data, tally_result_name(rc),
                 error);
        return false;
    }
    tally_stats st;
    tally_get_stats(d->r, &st);
    log_line(TALLY_LOG_INFO,
             "replica %" PRIu64 " open in %s: %" PRIu64 " ops, %" PRIu64 " accounts",
             tally_replica_id(d->r), d->s.data, st.ops, st.accounts);
    log_admission(d);
    if (d->s.capacity_accounts == 0 && d->s.capacity_transfers == 0) {
        return true;
    }
    uint64_t t0 = uv_hrtime();
    rc = tally_reserve(d->r, d->s.capacity_accounts, d->s.capacity_transfers);
    if (rc != TALLY_OK) {
        log_line(TALLY_LOG_ERROR,
                 "cannot reserve room for %" PRIu64 " accounts and %" PRIu64 " transfers: %s",
                 d->s.capacity_accounts, d->s.capacity_transfers, tally_result_name(rc));
        return false;
    }
    log_line(TALLY_LOG_INFO,
             "reserved room for %" PRIu64 " accounts and %" PRIu64 " transfers in %.3f s",
             d->s.capacity_accounts, d->s.capacity_transfers, (double)(uv_hrtime() - t0) / 1e9);
    return true;
}

/* Starts the sync node and gives it its peers. False after logging why. */
static bool start_node(daemon_ *d) {
    tally_node_options no;
    memset(&no, 0, sizeof no);
    no.listen = d->s.listen;
    /* the cluster's name: the one given, else its authority's, if it has one */
    tally_admission a;
    (void)tally_admission_of(d->r, &a);
    no.cluster = d->s.cluster != NULL ? d->s.cluster : a.authority ? a.cluster : NULL;
    if (d->s.cluster != NULL && a.authority && strcmp(d->s.cluster, a.cluster) != 0) {
        log_line(TALLY_LOG_ERROR, "--cluster %s is not the cluster its authority names (%s)",
                 d->s.cluster, a.cluster);
        return false;
    }
    no.anti_entropy_ms = (uint32_t)d->s.anti_entropy_ms; /* at most 3,600,000 */
    no.log = node_log;
    no.rights_reserve = d->s.rights_reserve;
    int rc = tally_node_start(d->loop, d->r, &no, &d->node);
    if (rc != TALLY_OK) {
        log_line(TALLY_LOG_ERROR, "cannot start the sync node on %s: %s", d->s.listen,
                 tally_result_name(rc));
        return false;
    }
    for (int i = 0; i < d->s.n_peers; i++) {
        rc = tally_node_add_peer(d->node, d->s.peers[i]);
        if (rc != TALLY_OK) {
            log_line(TALLY_LOG_ERROR, "bad peer \"%s\": %s", d->s.peers[i], tally_result_name(rc));
            return false;
        }
    }
    return true;
}

/* Listens on the control address; *port is set to the port bound. False after logging why. */
static bool listen_control(daemon_ *d, int *port) {
    d->ctl = control_new(d->r, d->node);
    if (d->ctl == NULL) {
        log_line(TALLY_LOG_ERROR, "out of memory");
        return false;
    }
    struct sockaddr_storage sa;
    if (net_addr_listen(d->s.control, &sa) != TALLY_OK) {
        log_line(TALLY_LOG_ERROR, "bad control address \"%s\"", d->s.control);
        return false;
    }
    uv_tcp_init(d->loop, &d->ctl_listener);
    d->ctl_listener.data = d;
    d->ctl_listening = true;
    int rc = uv_tcp_bind(&d->ctl_listener, (struct sockaddr *)&sa, 0);
    if (rc == 0) {
        rc = uv_listen((uv_stream_t *)&d->ctl_listener, CONTROL_BACKLOG, ctl_accept);
    }
    if (rc != 0) {
        log_line(TALLY_LOG_ERROR, "cannot listen for control on %s: %s", d->s.control,
                 uv_strerror(rc));
        return false;
    }
    struct sockaddr_storage bound;
    int bound_len = sizeof bound;
    uv_tcp_getsockname(&d->ctl_listener, (struct sockaddr *)&bound, &bound_len);
    *port = bound.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&bound)->sin6_port)
                                        : ntohs(((struct sockaddr_in *)&bound)->sin_port);
    return true;
}

static int start(daemon_ *d) {
    int control_port = 0;
    if (!open_replica(d) || !start_node(d) || !listen_control(d, &control_port)) {
        return 1;
    }
    log_line(TALLY_LOG_INFO, "ready: sync port %d, control port %d", tally_node_port(d->node),
             control_port);
    uv_signal_init(d->loop, &d->sigterm);
    uv_signal_init(d->loop, &d->sigint);
    d->sigterm.data = d->sigint.data = d;
    uv_signal_start(&d->sigterm, on_signal, SIGTERM);
    uv_signal_start(&d->sigint, on_signal, SIGINT);
    return 0;
}

static void close_any(uv_handle_t *h, void *arg) {
    (void)arg;
    if (!uv_is_closing(h)) {
        uv_close(h, NULL);
    }
}

int main(int argc, char **argv) {
    daemon_ d;
    memset(&d, 0, sizeof d);
    int rc = parse_args(&d.s, argc, argv);
    if (rc != 0) {
        config_free(&d.s);
        return rc < 0 ? 0 : rc;
    }
    signal(SIGPIPE, SIG_IGN);
    d.loop = uv_default_loop();
    int status = 0;
    if (start(&d) != 0) {
        /* nothing was acknowledged: close what opened and leave */
        status = 1;
        if (d.node != NULL) {
            tally_node_stop(d.node, NULL, NULL);
        }
        control_free(d.ctl);
        uv_walk(d.loop, close_any, NULL);
        uv_run(d.loop, UV_RUN_DEFAULT);
        tally_close(d.r);
    } else {
        uv_run(d.loop, UV_RUN_DEFAULT);
    }
    uv_loop_close(d.loop);
    config_free(&d.s);
    return status;
}
