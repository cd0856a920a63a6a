/*
 * ledger/expiry.c — the deadlines of the pending transfers this replica created with a
 * timeout: a min-heap by deadline on the replica's steady clock (crdt/hlc.h), and that clock
 * kept across restarts.
 *
 * 1. Every open pending created here with a timeout has an entry; an entry whose pending was
 *    posted or voided meanwhile stays until it reaches the top, where it is dropped.
 * 2. A deadline is the steady time the pending was made plus its timeout. The steady clock
 *    adds up the wall clock's forward steps, so a wall clock that jumps back cannot keep a
 *    reservation alive, and one that jumped ahead once (and left the HLC there) cannot push
 *    later deadlines into the future: nothing here reads a timestamp.
 * 3. The journal holds the steady clock: a CLOCK record (both its fields) goes into the frame
 *    of every pending with a timeout, unless the journal's last record already says the same,
 *    and into one of its own when the replica is closed or snapshotted with a pending still
 *    due. Replaying a record sets the clock to it, so a pending's deadline comes back as the
 *    number it was; once the journal is read, the clock moves on by the wall clock's step
 *    since the last record (steady_read: nothing when the wall clock reads behind it). A
 *    snapshot stores the last record and the deadlines, so a restart gives the same deadlines
 *    with or without one, and no restart grants a timeout afresh.
 * 4. So the time that counts towards a timeout is the wall clock's forward steps while the
 *    replica is open, plus the time it was closed when the wall clock moved forward across
 *    it. Time is lost only where the wall clock steps back: within a run, the step; across a
 *    restart, the time since the last record, up to the step.
 * 5. A pending of this replica's applied with no record before it (brought back by a peer, or
 *    replayed from a journal written before 0.2) gets an estimate from its stamp
 *    (expiry_estimate).
 */
#include <assert.h>

#include "ledger/replica.h"

static uint64_t add_ms(uint64_t at, uint64_t ms) {
    return at > UINT64_MAX - ms ? UINT64_MAX : at + ms;
}

/* Invariant 5. A timestamp is never below the wall clock of the moment it was made (an HLC
 * tick is at least the physical time), so made + T is no earlier than the true deadline: the
 * time left by it is capped at T. A stamp in the last millisecond the HLC holds says nothing
 * of when it was made (crdt/hlc.h, invariant 3): the whole timeout is left then. */
static uint64_t expiry_estimate(const tally_replica *r, uint64_t stamp, uint32_t timeout_ms) {
    uint64_t made = HLC_MS(stamp);
    uint64_t left = timeout_ms;
    if (made < HLC_MS_LAST) {
        uint64_t due = made + timeout_ms;
        left = due > r->steady.wall_last ? due - r->steady.wall_last : 0;
        left = left < timeout_ms ? left : timeout_ms;
    }
    return add_ms(r->steady.now, left);
}

static void expiry_push(tally_replica *r, uint64_t deadline_ms, uint32_t transfer) {
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

void expiry_add(tally_replica *r, uint32_t ti) {
    const transfer_rec *t = &r->transfers.at[ti];
    expiry_push(r,
                r->made_at != EXPIRY_UNKNOWN ? add_ms(r->made_at, t->timeout_ms)
                                             : expiry_estimate(r, t->hlc, t->timeout_ms),
                ti);
}

bool expiry_rebuild(tally_replica *r, bool estimate) {
    uint32_t n = r->expiries.count;
    r->expiries.count = 0;
    for (uint32_t i = 0; i < n; i++) {
        expiry e = r->expiries.at[i];
        const transfer_rec *t = &r->transfers.at[e.transfer];
        if (t->kind != OP_TRANSFER || !(t->flags & TALLY_TRANSFER_PENDING) ||
            t->origin != r->self || t->timeout_ms == 0) {
            return false; /* not a pending of this replica's with a timeout */
        }
        if (t->state == TALLY_PENDING_OPEN) {
            /* pushing in place: entries [0, count) are the heap, [i, n) not read yet, and
             * count <= i */
            expiry_push(r, estimate ? expiry_estimate(r, t->hlc, t->timeout_ms) : e.deadline_ms,
                        e.transfer);
        }
    }
    return true;
}

/* --- the steady clock across restarts (invariants 3 and 4) -------------------------------- */

void expiry_clock_start(tally_replica *r) {
    steady_start(&r->steady, replica_now_ms(r));
    r->steady_journaled = false;
    r->made_at = EXPIRY_UNKNOWN;
}

void expiry_clock_resume(tally_replica *r, uint64_t steady_ms, uint64_t wall_ms) {
    r->steady.now = steady_ms;
    r->steady.wall_last = wall_ms;
    r->journaled_steady = r->steady;
    r->steady_journaled = true;
    r->made_at = r->steady.now; /* the pendings that follow were made at this time */
}

void expiry_clock_opened(tally_replica *r) {
    (void)replica_clock_read(r);
    r->made_at = EXPIRY_UNKNOWN;
}

int expiry_clock_journal(tally_replica *r) {
    if (r->journal == NULL || r->replaying ||
        (r->steady_journaled && r->journaled_steady.now == r->steady.now &&
         r->journaled_steady.wall_last == r->steady.wall_last)) {
        return TALLY_OK;
    }
    op o;
    op_clear(&o);
    o.kind = OP_CLOCK;
    o.u.clock.steady_ms = r->steady.now;
    o.u.clock.wall_ms = r->steady.wall_last;
    int rc = replica_journal_add(r, &o);
    if (rc == TALLY_OK) {
        r->journaled_steady = r->steady;
        r->steady_journaled = true;
    }
    return rc;
}
