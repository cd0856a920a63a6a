/*
 * ledger/expiry.c — the deadlines of the pending transfers this replica created with a
 * timeout: a min-heap by deadline on the replica's steady clock (crdt/hlc.h).
 *
 * 1. Every open pending created here with a timeout has an entry; an entry whose pending was
 *    posted or voided meanwhile stays until it reaches the top, where it is dropped.
 * 2. A deadline is on the steady clock, which only moves forward: a pending of timeout T is
 *    due once the clock has moved forward T since the pending was made here, or since the
 *    replica was opened if its timestamp lies ahead of the wall clock then (expiry_deadline).
 *    So a wall clock that jumps back cannot keep a reservation alive, and one that jumped
 *    ahead once (and left the HLC there) cannot push later deadlines into the future.
 * 3. The deadlines are derived, never trusted from disk: a snapshot's are recomputed from
 *    the pendings' timestamps when it loads (expiry_rebuild), exactly as a journal replay
 *    computes them, so a restart gives the same deadlines with or without a snapshot.
 */
#include <assert.h>

#include "ledger/replica.h"

uint64_t expiry_deadline(const tally_replica *r, uint64_t stamp, uint32_t timeout_ms) {
    /* A timestamp is never below the wall clock of the moment it was made (an HLC tick is at
     * least the physical time), so made + T is no earlier than the true deadline: the time
     * left by it is capped at T. */
    uint64_t made = HLC_MS(stamp);
    uint64_t due = made > UINT64_MAX - timeout_ms ? UINT64_MAX : made + timeout_ms;
    uint64_t left = due > r->steady.wall_last ? due - r->steady.wall_last : 0;
    left = left < timeout_ms ? left : timeout_ms;
    return r->steady.now > UINT64_MAX - left ? UINT64_MAX : r->steady.now + left;
}

void expiry_push(tally_replica *r, uint64_t deadline_ms, uint32_t transfer) {
    assert(r->expiries.count < r->expiries.capacity && "reserved by op_reserve");
    uint32_t i = r->expiries.count++;
    while (i > 0) {
        uint32_t parent = (i - 1) / 2;
        if (r->expiries.at[parent].deadline_ms <= deadline_ms) {
            break;
        }
        r->expiries.at[i] = r->expiries.at[parent];
        i = parent;
    }
    r->expiries.at[i].deadline_ms = deadline_ms;
    r->expiries.at[i].transfer = transfer;
}

void expiry_pop(tally_replica *r) {
    assert(r->expiries.count > 0);
    expiry last = r->expiries.at[--r->expiries.count];
    uint32_t i = 0, n = r->expiries.count;
    for (;;) {
        uint32_t child = 2 * i + 1;
        if (child >= n) {
            break;
        }
        if (child + 1 < n &&
            r->expiries.at[child + 1].deadline_ms < r->expiries.at[child].deadline_ms) {
            child++;
        }
        if (last.deadline_ms <= r->expiries.at[child].deadline_ms) {
            break;
        }
        r->expiries.at[i] = r->expiries.at[child];
        i = child;
    }
    if (n > 0) {
        r->expiries.at[i] = last;
    }
}

uint32_t expiry_next(tally_replica *r) {
    while (r->expiries.count > 0 &&
           r->transfers.at[r->expiries.at[0].transfer].state != TALLY_PENDING_OPEN) {
        expiry_pop(r); /* invariant 1: posted or voided meanwhile */
    }
    return r->expiries.count > 0 ? r->expiries.at[0].transfer : NONE;
}

bool expiry_rebuild(tally_replica *r) {
    uint32_t n = r->expiries.count;
    r->expiries.count = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t ti = r->expiries.at[i].transfer;
        const transfer_rec *t = &r->transfers.at[ti];
        if (t->kind != OP_TRANSFER || !(t->flags & TALLY_TRANSFER_PENDING) ||
            t->origin != r->self || t->timeout_ms == 0) {
            return false; /* not a pending of this replica's with a timeout */
        }
        if (t->state == TALLY_PENDING_OPEN) {
            /* pushing in place: entries [0, count) are the heap, [i, n) not read yet, and
             * count <= i */
            expiry_push(r, expiry_deadline(r, t->hlc, t->timeout_ms), ti);
        }
    }
    return true;
}
