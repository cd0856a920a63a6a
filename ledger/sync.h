/*
 * ledger/sync.h — the sync core's internal calls: what other ledger files and tests use, and
 * the seam of the sync layer. net/ includes nothing else from ledger/, and reaches the replica
 * only through these and the public API (tests/layers.sh checks it).
 */
#ifndef TALLY_LEDGER_SYNC_H
#define TALLY_LEDGER_SYNC_H

#include "crdt/vclock.h"
#include "ledger/op.h"
#include "tally.h"

/* A held peer's challenge, from its summary (chain.h): answered in the next complete delta. */
typedef struct sync_challenge {
    uint64_t origin; /* the held replica; 0: none */
    uint8_t nonce[32];
} sync_challenge;

/* Applies one journal frame while opening (a journal_replay_fn; ctx is the replica). */
int replica_replay_frame(void *ctx, const uint8_t *frame, size_t len);
/* This replica's version vector (the caller frees it with vclock_free). TALLY_ENOMEM. */
int replica_version_vector(const tally_replica *r, vclock *out);
/* The ops a peer whose version vector is `peer` lacks, as a delta of at most max_bytes (see
 * tally_delta). covered (may be NULL) is set to peer plus what the delta holds: the peer's
 * version vector once it has applied it. When the delta is complete (it brings the peer all
 * it lacks) and challenge (may be NULL) holds one, the answer ends it and challenge is
 * cleared, unless the answer would take a delta that holds anything else past max_bytes. */
int sync_delta(const tally_replica *r, const vclock *peer, sync_challenge *challenge,
               size_t max_bytes, uint8_t **buf, size_t *len, vclock *covered);
/* Raises covered to include every op in a delta (one that tally_apply accepted into r); a
 * forked origin's runs count for the histories r keeps them in. */
int sync_delta_covers(const tally_replica *r, const uint8_t *delta, size_t len, vclock *covered);
/* Decodes a peer's summary into what it has of the ops here, as a version vector (which the
 * caller frees with vclock_free, also on error): its seqs, except that where its head of an
 * origin is not one of this replica's runs, only up to before the run here that holds it, so
 * that a delta sends that run and the peer meets the fork (ledger/chain.c). challenge (may be
 * NULL) is set to the summary's challenge, if it is a held replica's. TALLY_ECORRUPT for
 * anything that does not check; TALLY_ENOMEM. */
int sync_summary_decode(const tally_replica *r, const uint8_t *buf, size_t len, vclock *out,
                        sync_challenge *challenge);

/* Calls fn(ctx) at the end of every write call that applied ops, the replica's own or a peer's,
 * once they are durable (so a peer may be sent them). One watcher at a time: TALLY_EINVAL when
 * one is set already. fn NULL removes the watcher. */
int sync_watch(tally_replica *r, void (*fn)(void *ctx), void *ctx);
/* How many ops the replica holds. */
uint64_t sync_op_count(const tally_replica *r);

#endif
