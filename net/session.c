/*
 * net/session.c — see session.h for the states and invariants; docs/protocol.md for the wire.
 */
#include "net/session.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crdt/id.h"
#include "ledger/sync.h"

#define CLUSTER_NAME_MAX 255

static void say(const session *s, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void say(const session *s, int level, const char *fmt, ...) {
    if (s->cfg->log == NULL) {
        return;
    }
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    s->cfg->log(s->cfg->log_ctx, level, msg);
}

void session_close(session *s, const char *fmt, ...) {
    if (s->state == SESSION_CLOSED) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->reason, sizeof s->reason, fmt, ap);
    va_end(ap);
    s->state = SESSION_CLOSED;
    say(s, TALLY_LOG_WARN, "session with replica %llu closed: %s", (unsigned long long)s->peer_id,
        s->reason);
}

static void put(session *s, uint8_t type, const uint8_t *payload, size_t len) {
    if (s->state != SESSION_CLOSED && !frame_put(&s->out, type, payload, len)) {
        session_close(s, "out of memory");
    }
    s->frames_out++;
}

static void send_hello(session *s) {
    size_t n = strlen(s->cfg->cluster);
    uint8_t p[2 + 8 + 1 + CLUSTER_NAME_MAX];
    put_u16le(p, SESSION_PROTOCOL_VERSION);
    put_u64le(p + 2, tally_replica_id(s->r));
    p[10] = (uint8_t)n;
    memcpy(p + 11, s->cfg->cluster, n);
    put(s, FRAME_HELLO, p, 11 + n);
}

static void send_summary(session *s) {
    uint8_t *buf;
    size_t len;
    if (tally_summary(s->r, &buf, &len) != TALLY_OK) {
        session_close(s, "out of memory");
        return;
    }
    put(s, FRAME_SUMMARY, buf, len);
    tally_free(buf);
}

static void refuse(session *s, refuse_reason why, const char *message) {
    size_t n = strlen(message);
    uint8_t p[2 + 255];
    p[0] = (uint8_t)why;
    p[1] = (uint8_t)(n > 255 ? 255 : n);
    memcpy(p + 2, message, p[1]);
    put(s, FRAME_REFUSE, p, 2 + (size_t)p[1]);
    session_close(s, "refused the peer: %s", message);
}

bool session_init(session *s, tally_replica *r, const session_config *cfg, uint64_t now_ms) {
    memset(s, 0, sizeof *s);
    s->r = r;
    s->cfg = cfg;
    s->state = SESSION_HANDSHAKE;
    frame_reader_init(&s->in);
    vclock_init(&s->sent);
    s->started_ms = s->heard_ms = s->pinged_ms = s->summarised_ms = now_ms;
    send_hello(s);
    send_summary(s);
    return s->state != SESSION_CLOSED;
}

void session_free(session *s) {
    frame_reader_free(&s->in);
    bytes_free(&s->out);
    vclock_free(&s->sent);
}

/* Streams what the peer lacks, a frame at a time, while the output is below the high-water
 * mark. */
static void fill(session *s) {
    while (s->state == SESSION_READY && s->have_summary && s->out.len < s->cfg->out_high_water) {
        uint8_t *delta;
        size_t len;
        vclock covered;
        int rc = sync_delta(s->r, &s->sent, &s->challenge, s->cfg->delta_bytes_max, &delta, &len,
                            &covered);
        if (rc != TALLY_OK) {
            session_close(s, "cannot make a delta: %s", tally_result_name(rc));
            return;
        }
        bool empty = len <= 8;
        if (!empty) {
            uint64_t before = 0, after = 0;
            for (uint32_t i = 0; i < s->sent.count; i++) {
                before += s->sent.entries[i].seq;
            }
            for (uint32_t i = 0; i < covered.count; i++) {
                after += covered.entries[i].seq;
            }
            s->ops_out += after - before;
            put(s, FRAME_DELTA, delta, len);
            vclock_free(&s->sent);
            s->sent = covered;
        } else {
            vclock_free(&covered);
        }
        tally_free(delta);
        if (empty) {
            s->streaming = false; /* the peer has everything */
            return;
        }
    }
}

/* A change here reaches the peer at once when it includes ops of this replica's own: those go
 * out with everything the peer lacks before them (a delta is causally closed). Ops that only
 * passed through here wait for the next summary exchange, which says whether the peer already
 * has them from elsewhere: in a mesh, every op then crosses each link about once. */
void session_push(session *s) {
    if (s->state != SESSION_READY || !s->have_summary) {
        return;
    }
    uint64_t self = tally_replica_id(s->r);
    if (s->streaming || vclock_get(&s->sent, self) < tally_seen(s->r, self)) {
        s->streaming = true;
        fill(s);
    }
}

static void on_hello(session *s, const uint8_t *p, size_t len) {
    if (s->state != SESSION_HANDSHAKE) {
        refuse(s, REFUSE_PROTOCOL, "a second HELLO");
        return;
    }
    if (len < 11 || len != 11 + (size_t)p[10]) {
        refuse(s, REFUSE_PROTOCOL, "a malformed HELLO");
        return;
    }
    uint16_t version = get_u16le(p);
    s->peer_id = get_u64le(p + 2);
    if (version != SESSION_PROTOCOL_VERSION) {
        char m[96];
        snprintf(m, sizeof m, "protocol version %u is not supported (this side speaks %u)",
                 version, SESSION_PROTOCOL_VERSION);
        refuse(s, REFUSE_VERSION, m);
        return;
    }
    size_t n = strlen(s->cfg->cluster);
    if (p[10] != n || memcmp(p + 11, s->cfg->cluster, n) != 0) {
        char m[320];
        snprintf(m, sizeof m, "cluster \"%.*s\" is not this cluster (\"%s\")", (int)p[10],
                 (const char *)p + 11, s->cfg->cluster);
        refuse(s, REFUSE_CLUSTER, m);
        return;
    }
    if (s->peer_id == 0 || s->peer_id == tally_replica_id(s->r)) {
        refuse(s, REFUSE_SELF, "a replica cannot sync with itself");
        return;
    }
    s->state = SESSION_READY;
    say(s, TALLY_LOG_INFO, "session with replica %llu ready", (unsigned long long)s->peer_id);
}

static void on_refuse(session *s, const uint8_t *p, size_t len) {
    int n = len >= 2 && (size_t)p[1] + 2 <= len ? p[1] : 0;
    session_close(s, "the peer refused: %.*s", n, len >= 2 ? (const char *)p + 2 : "");
}

static void on_summary(session *s, const uint8_t *p, size_t len) {
    vclock v;
    sync_challenge challenge;
    int rc = sync_summary_decode(s->r, p, len, &v, &challenge);
    if (rc != TALLY_OK) {
        vclock_free(&v);
        session_close(s, "a summary that does not decode");
        return;
    }
    /* Within one TCP session nothing sent is lost: what is in flight will arrive. So the sent
     * vector only grows; a summary is merged into it, adding what the peer got from elsewhere
     * without making deltas still in flight be sent again (and a new session, after any loss,
     * starts from the peer's summary alone). docs/protocol.md says the same. */
    bool ok = vclock_merge(&s->sent, &v);
    vclock_free(&v);
    if (!ok) {
        session_close(s, "out of memory");
        return;
    }
    if (challenge.origin != 0 && (s->cfg->may_answer == NULL ||
                                  s->cfg->may_answer(s->cfg->learned_ctx, s, challenge.origin))) {
        s->challenge = challenge; /* the peer is held: the next complete delta answers */
    }
    s->have_summary = true;
    s->streaming = true;
    if (s->cfg->on_learned != NULL) {
        s->cfg->on_learned(s->cfg->learned_ctx);
    }
    fill(s);
}

static void on_delta(session *s, const uint8_t *p, size_t len) {
    uint64_t before = sync_op_count(s->r);
    int rc = tally_apply(s->r, p, len);
    s->ops_in += sync_op_count(s->r) - before;
    if (s->cfg->on_learned != NULL) {
        s->cfg->on_learned(s->cfg->learned_ctx);
    }
    if (rc != TALLY_OK) {
        session_close(s, "a delta that does not apply: %s", tally_result_name(rc));
        return;
    }
    /* the peer has what it sent: do not echo it back */
    if (s->have_summary && sync_delta_covers(s->r, p, len, &s->sent) == TALLY_ENOMEM) {
        session_close(s, "out of memory");
    }
}

void session_ask_rights(session *s, uint64_t request, tally_id account, uint64_t amount) {
    uint8_t p[32];
    put_u64le(p, request);
    put_u64le(p + 8, account.hi);
    put_u64le(p + 16, account.lo);
    put_u64le(p + 24, amount);
    put(s, FRAME_RIGHTS_ASK, p, sizeof p);
}

static bool throttled(session *s, tally_id account) {
    int oldest = 0;
    for (int i = 0; i < SESSION_THROTTLE_SLOTS; i++) {
        if (id_eq(s->asked[i].account, account)) {
            bool recent = s->now_ms - s->asked[i].at_ms < s->cfg->rights_throttle_ms;
            s->asked[i].at_ms = s->now_ms;
            return recent;
        }
        if (s->asked[i].at_ms < s->asked[oldest].at_ms) {
            oldest = i;
        }
    }
    s->asked[oldest].account = account;
    s->asked[oldest].at_ms = s->now_ms;
    return false;
}

/* A holder's side of a rights request: grant what is spare above the reserve. */
static void on_rights_ask(session *s, const uint8_t *p, size_t len) {
    if (len != 32) {
        session_close(s, "a malformed rights request");
        return;
    }
    uint64_t request = get_u64le(p), amount = get_u64le(p + 24);
    tally_id account = {get_u64le(p + 8), get_u64le(p + 16)};
    uint64_t held = 0, give = 0, grant_seq = 0;
    int rc = TALLY_INSUFFICIENT_RIGHTS;
    if (!throttled(s, account) &&
        tally_rights(s->r, account, tally_replica_id(s->r), &held) == TALLY_OK &&
        held > s->cfg->rights_reserve) {
        give = held - s->cfg->rights_reserve < amount ? held - s->cfg->rights_reserve : amount;
        /* The asker is on the line: vouched for, whether or not it has written yet. */
        tally_grant_request g = {account, s->peer_id, give, 0, 0, TALLY_GRANT_TO_UNKNOWN};
        rc = tally_grant_with(s->r, &g);
        if (rc != TALLY_OK) {
            give = 0;
        } else {
            rc = give == amount ? TALLY_OK : TALLY_INSUFFICIENT_RIGHTS;
            grant_seq = tally_seen(s->r, tally_replica_id(s->r)); /* the GRANT just made */
            session_push(s); /* the GRANT travels ahead of the answer where it can */
        }
    }
    say(s, TALLY_LOG_INFO, "replica %llu asked for %llu rights: granted %llu",
        (unsigned long long)s->peer_id, (unsigned long long)amount, (unsigned long long)give);
    uint8_t a[RIGHTS_ANSWER_BYTES];
    put_u64le(a, request);
    a[8] = (uint8_t)rc;
    put_u64le(a + 9, give);
    put_u64le(a + 17, grant_seq);
    put(s, FRAME_RIGHTS_ANSWER, a, sizeof a);
}

static void on_rights_answer(session *s, const uint8_t *p, size_t len) {
    if (len != RIGHTS_ANSWER_BYTES) {
        session_close(s, "a malformed rights answer");
        return;
    }
    if (s->cfg->on_rights_answer != NULL) {
        s->cfg->on_rights_answer(s->cfg->rights_ctx, s->peer_id, get_u64le(p), p[8],
                                 get_u64le(p + 9), get_u64le(p + 17));
    }
}

static void on_frame(session *s, uint8_t type, const uint8_t *p, size_t len) {
    s->frames_in++;
    if (type == FRAME_HELLO) {
        on_hello(s, p, len);
        return;
    }
    if (type == FRAME_REFUSE) {
        on_refuse(s, p, len);
        return;
    }
    if (s->state != SESSION_READY) {
        refuse(s, REFUSE_PROTOCOL, "a frame before the handshake");
        return;
    }
    switch (type) {
    case FRAME_SUMMARY:
        on_summary(s, p, len);
        break;
    case FRAME_DELTA:
        on_delta(s, p, len);
        break;
    case FRAME_PING:
        put(s, FRAME_PONG, p, len > 8 ? 8 : len);
        break;
    case FRAME_PONG:
        break;
    case FRAME_RIGHTS_ASK:
        on_rights_ask(s, p, len);
        break;
    case FRAME_RIGHTS_ANSWER:
        on_rights_answer(s, p, len);
        break;
    default:
        break;
    }
}

void session_receive(session *s, const uint8_t *data, size_t len, uint64_t now_ms) {
    if (s->state == SESSION_CLOSED) {
        return;
    }
    s->heard_ms = s->now_ms = now_ms;
    if (!frame_reader_feed(&s->in, data, len)) {
        session_close(s, "out of memory");
        return;
    }
    for (;;) {
        uint8_t type;
        const uint8_t *payload;
        size_t n;
        frame_status st = frame_reader_next(&s->in, &type, &payload, &n);
        if (st == FRAME_NEED_MORE) {
            return;
        }
        if (st == FRAME_BAD) {
            session_close(s, "%s", s->in.why);
            return;
        }
        on_frame(s, type, payload, n);
        if (s->state == SESSION_CLOSED) {
            return;
        }
    }
}

void session_tick(session *s, uint64_t now_ms) {
    if (s->state == SESSION_CLOSED) {
        return;
    }
    if (s->state == SESSION_HANDSHAKE && now_ms - s->started_ms >= s->cfg->handshake_timeout_ms) {
        session_close(s, "the handshake did not complete in %u ms", s->cfg->handshake_timeout_ms);
        return;
    }
    if (now_ms - s->heard_ms >= s->cfg->idle_timeout_ms) {
        session_close(s, "nothing heard for %u ms", s->cfg->idle_timeout_ms);
        return;
    }
    if (now_ms - s->pinged_ms >= s->cfg->ping_ms) {
        uint8_t nonce[8];
        put_u64le(nonce, now_ms);
        put(s, FRAME_PING, nonce, sizeof nonce);
        s->pinged_ms = now_ms;
    }
    if (s->state == SESSION_READY && now_ms - s->summarised_ms >= s->cfg->anti_entropy_ms) {
        send_summary(s);
        s->summarised_ms = now_ms;
    }
    if (s->streaming) {
        fill(s);
    }
}
