/*
 * net/session.h — one sync session with one peer, as a pure state machine.
 *
 * Bytes from the peer go in (session_receive); bytes for the peer come out (the `out` buffer,
 * which the transport drains); time goes in (session_tick). No sockets, no clocks, no threads:
 * the libuv transport (node.c) only moves bytes, and tests and fuzzers drive a session alone.
 *
 *     HANDSHAKE --(valid HELLO from the peer)--> READY --(error, refusal, timeout)--> CLOSED
 *         \__________(bad HELLO, timeout, any other frame)____________________________/
 *
 * session_init      queues our HELLO and SUMMARY.
 * session_receive   HELLO: checks version, cluster and that the peer is not us (else REFUSE
 *                   and close); SUMMARY: takes it as what the peer has and streams what it
 *                   lacks; DELTA: applies it (a delta that does not apply closes the session);
 *                   PING: answers PONG; REFUSE: closes; RIGHTS_ASK: grants what it holds
 *                   above the reserve (sending the GRANT's delta first) and answers;
 *                   RIGHTS_ANSWER: hands it to the node.
 * session_tick      closes a session whose handshake or peer went quiet too long, pings, sends
 *                   a SUMMARY every anti_entropy_ms, and goes on streaming.
 * session_push      after a change: if it includes this replica's own ops, streams what the
 *                   peer lacks (ops relayed from others wait for the next summary exchange).
 *
 * Invariants:
 *   1. `sent` is what the peer's summaries said it has, plus everything sent to it or received
 *      from it on this session: the ops it has, or will have once in-flight bytes arrive (TCP
 *      loses nothing within a session; a new session starts again from the peer's summary).
 *      Deltas are cut from it, so nothing is sent twice on a session.
 *   2. No delta is produced while `out` holds more than out_high_water bytes: memory per
 *      session is bounded by that plus one frame, whatever the peer does.
 *   3. Once CLOSED, a session reads nothing and writes nothing more; `reason` says why.
 */
#ifndef TALLY_NET_SESSION_H
#define TALLY_NET_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crdt/bytes.h"
#include "crdt/vclock.h"
#include "ledger/sync.h"
#include "net/frame.h"
#include "tally.h"

/* 2: RIGHTS_ANSWER carries the seq of the GRANT it announces. */
#define SESSION_PROTOCOL_VERSION 4
/* request id u64, result u8, granted u64, the GRANT's seq at the holder u64 (0: none) */
#define RIGHTS_ANSWER_BYTES 25

typedef enum session_state {
    SESSION_HANDSHAKE = 0,
    SESSION_READY = 1,
    SESSION_CLOSED = 2,
} session_state;

typedef enum refuse_reason {
    REFUSE_VERSION = 1,
    REFUSE_CLUSTER = 2,
    REFUSE_SELF = 3,
    REFUSE_PROTOCOL = 4,
} refuse_reason;

typedef struct session session;

typedef struct session_config {
    const char *cluster;
    uint32_t handshake_timeout_ms;
    uint32_t idle_timeout_ms;
    uint32_t ping_ms;
    uint32_t anti_entropy_ms;
    size_t delta_bytes_max; /* the most a DELTA frame carries (an op is never split) */
    size_t out_high_water;  /* produce no delta while more than this waits to be sent */
    void (*log)(void *ctx, int level, const char *message);
    void *log_ctx;
    uint64_t rights_reserve;  /* a holder keeps this much of each account's rights */
    uint32_t rights_throttle_ms; /* a second ask for one account from one peer within this: no */
    /* A RIGHTS_ANSWER arrived (the node matches it to its request). grant_seq: the seq, at
     * the peer, of the GRANT op that carries `granted` (0 when nothing was granted). */
    void (*on_rights_answer)(void *ctx, uint64_t peer, uint64_t request, int result,
                             uint64_t granted, uint64_t grant_seq);
    void *rights_ctx;
    /* A delta was applied, whole or in part, or a summary read: the node looks at what they
     * taught the replica (a new proof of a fork; a hold a peer's summary confirmed). */
    void (*on_learned)(void *ctx);
    void *learned_ctx;
    /* The peer's summary holds a challenge (it is held: a restored or copied directory) about
     * origin: whether to answer it (NULL: always). ctx is learned_ctx. */
    bool (*may_answer)(void *ctx, const session *s, uint64_t origin);
} session_config;

#define SESSION_THROTTLE_SLOTS 16

struct session {
    tally_replica *r;
    const session_config *cfg;
    session_state state;
    uint64_t peer_id;
    frame_reader in;
    bytes out;
    vclock sent;
    sync_challenge challenge; /* a held peer's, still to answer (ledger/sync.h) */
    bool have_summary; /* the peer's summary arrived: `sent` means something */
    bool streaming;    /* sending all the peer lacks, until a delta comes out empty */
    uint64_t started_ms, heard_ms, pinged_ms, summarised_ms;
    uint64_t ops_in, ops_out, frames_in, frames_out;
    struct {
        tally_id account;
        uint64_t at_ms;
    } asked[SESSION_THROTTLE_SLOTS]; /* the peer's recent rights asks, for throttling */
    uint64_t now_ms;
    char reason[160];
};

/* Asks the peer for rights (a RIGHTS_ASK frame). */
void session_ask_rights(session *s, uint64_t request, tally_id account, uint64_t amount);

/* Starts a session: queues HELLO and SUMMARY. False when out of memory. */
bool session_init(session *s, tally_replica *r, const session_config *cfg, uint64_t now_ms);
void session_free(session *s);
/* Bytes from the peer. */
void session_receive(session *s, const uint8_t *data, size_t len, uint64_t now_ms);
void session_tick(session *s, uint64_t now_ms);
void session_push(session *s);
/* Closes the session with a reason (for the log); queues nothing. */
void session_close(session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
