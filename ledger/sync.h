/*
 * ledger/sync.h — internal parts of the sync core that other ledger files and tests use.
 */
#ifndef TALLY_LEDGER_SYNC_H
#define TALLY_LEDGER_SYNC_H

#include "crdt/vclock.h"
#include "ledger/op.h"
#include "tally.h"

/* Rebuilds the op at a journal position from the records it was applied into. */
void replica_op_at(const tally_replica *r, uint32_t position, op *o);
/* Applies one journal frame while opening (a journal_replay_fn; ctx is the replica). */
int replica_replay_frame(void *ctx, const uint8_t *frame, size_t len);
/* Decodes a summary into a version vector (which the caller frees with vclock_free, also on
 * error). TALLY_ECORRUPT for anything that does not check; TALLY_ENOMEM. */
int sync_summary_decode(const uint8_t *buf, size_t len, vclock *out);

#endif
