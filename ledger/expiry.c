/*
 * ledger/expiry.c — the deadlines of the pending transfers this replica created with a
 * timeout: a min-heap by deadline on the replica's steady clock (crdt/hlc.h), and that clock
 * kept across restarts.
 *
 * 1. Every open pending created here with a timeout has exactly one entry; an entry whose
 *    pending was posted or voided meanwhile stays until it reaches the top, where it is
 *    dropped. Entries from a file are held to this (expiry_rebuild).
 * 2. A pending's deadline is set once, when it is applied here, from the steady clock at that
 *    moment and the pending's stamp (expiry_deadline): its whole timeout T for a pending made
 *    here just now, less what its stamp shows has passed for one made before (brought back
 *    by a peer after a restore, or read from a journal written before 0.2). The steady clock
 *    adds up the wall clock's forward steps, so a wall clock that jumps back cannot keep a
 *    reservation alive, and one that jumped ahead once (and left the HLC there) cannot push
 *    later deadlines into the future.
 * 3. The steady clock counts modulo 2^64 (crdt/hlc.h). Every move of it is forward, by the
 *    difference mod 2^64, and every deadline the move passes is set to the clock's new
 *    reading (expiry_clock_moved): due, and so every entry lies in [now, now + 2^32) however
 *    far and however often the clock runs, and steady_diff orders them.
 * 4. The journal holds the steady clock: before every pending of this replica's with a
 *    timeout, whoever made it, a CLOCK record of the steady clock at that moment (unless the
 *    journal's last record already says the same); one of its own when the replica is closed
 *    or snapshotted with a pending still due; and one when a replica that has none yet opens
 *    with such pendings. Replaying a record is a move of the clock to it (invariant 3), so
 *    every deadline comes back as the number it was, or passed where it was passed: the same
 *    clock and the same stamp give the same deadline. A record can only move the clock
 *    forward, so no record, however made, holds a pending open. Once the journal is read, the
 *    clock moves on by the wall clock's step since the last record (nothing when the wall
 *    clock reads behind it). A snapshot stores the last record and the deadlines, each within
 *    its timeout of that record (else it is refused), so a restart gives the same deadlines
 *    with or without one, and no restart grants a timeout afresh.
 * 5. So the time that counts towards a timeout is the wall clock's forward steps while the
 *    replica is open, plus the time it was closed when the wall clock moved forward across
 *    it. Time is lost only where the wall clock steps back: within a run, the step; across a
 *    restart, the time since the last record, up to the step.
 * 6. Pendings read from a journal or snapshot with no record before them (written before 0.2)
 *    are given their deadlines against the clock the replica opened with, and that clock is
 *    journalled as the first record once the replica is open: at the next open, reaching
 *    that record gives them the same deadlines again.
 */
#include <assert.h>
#include <stdlib.h>

#include "ledger/replica.h"

/* Invariant 2. A timestamp is never below the wall clock of the moment it was made (an HLC
 * tick is at least the physical time), so made + T is no earlier than the true deadline: the
 * time left by it is capped at T. For a pending stamped here just now the stamp is at least
 * the clock's wall reading, and all of T is left. A stamp in the last millisecond the HLC
 * holds says nothing of when it was made (crdt/hlc.h, invariant 3): all of T is left then. */
static uint64_t expiry_deadline(const tally_replica *r, uint64_t stamp, uint32_t timeout_ms) {
    uint64_t made = HLC_MS(stamp);
    uint64_t left = timeout_ms;
    if (made < HLC_MS_LAST) {
        uint64_t due = made + timeout_ms;
        left = due > r->steady.wall_last ? due - r->steady.wall_last : 0;
        left = left < timeout_ms ? left : timeout_ms;
    }
    return r->steady.now + left; /* modulo 2^64, as the steady clock (crdt/hlc.h) */
}

static void expiry_push(tally_replica *r, uint64_t deadline_ms, uint32_t transfer) {
    uint32_t i = ARRAY_PUSH(r->expiries); /* reserved by op_reserve */
    while (i > 0) {
        uint32_t parent = (i - 1) / 2;
        if (steady_diff(r->expiries.at[parent].deadline_ms, deadline_ms) <= 0) {
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
        if (child + 1 < n && steady_diff(r->expiries.at[child + 1].deadline_ms,
                                         r->expiries.at[child].deadline_ms) < 0) {
            child++;
        }
        if (steady_diff(last.deadline_ms, r->expiries.at[child].deadline_ms) <= 0) {
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
    REC_INDEX(r->transfers, ti);
    const transfer_rec *t = &r->transfers.at[ti];
    expiry_push(r, expiry_deadline(r, t->hlc, t->timeout_ms), ti);
}

static int compare_transfer(const void *a, const void *b) {
    uint32_t x = ((const expiry *)a)->transfer, y = ((const expiry *)b)->transfer;
    return x < y ? -1 : x > y;
}

/* Invariants 1 and 3 for entries that came from a file: each one an own pending with a
 * timeout, exactly one for each such pending still open, none behind the clock or further
 * ahead than its timeout. */
bool expiry_rebuild(tally_replica *r, bool estimate) {
    uint32_t n = r->expiries.count, open = 0;
    for (uint32_t i = 0; i < n; i++) {
        expiry e = r->expiries.at[i];
        const transfer_rec *t = &r->transfers.at[e.transfer];
        if (!expiry_kept(r, t)) {
            return false; /* not a pending of this replica's with a timeout */
        }
        if (t->state != TALLY_PENDING_OPEN) {
            continue;
        }
        if (estimate) {
            e.deadline_ms = expiry_deadline(r, t->hlc, t->timeout_ms);
        } else if (e.deadline_ms - r->steady.now > t->timeout_ms) {
            return false; /* behind the clock, or past its timeout ahead (invariant 3) */
        }
        r->expiries.at[open++] = e;
    }
    if (open > 1) {
        qsort(r->expiries.at, open, sizeof *r->expiries.at, compare_transfer);
    }
    uint32_t pendings = 0;
    for (uint32_t i = 0; i < r->transfers.count; i++) {
        const transfer_rec *t = &r->transfers.at[i];
        pendings += expiry_kept(r, t) && t->state == TALLY_PENDING_OPEN;
    }
    for (uint32_t i = 1; i < open; i++) {
        if (r->expiries.at[i].transfer == r->expiries.at[i - 1].transfer) {
            return false; /* two deadlines for one pending */
        }
    }
    if (open != pendings) {
        return false; /* a pending with none: it would never time out */
    }
    r->expiries.count = 0;
    for (uint32_t i = 0; i < open; i++) {
        /* pushing in place: entries [0, count) are the heap, [i, open) not pushed yet, and
         * count <= i */
        expiry_push(r, r->expiries.at[i].deadline_ms, r->expiries.at[i].transfer);
    }
    return true;
}

/* --- the steady clock across restarts (invariants 3 to 6) -------------------------------- */

/* Sets every deadline in the subtree at i that the move by `moved` from `from` passed to the
 * clock's reading. Entries lie in [from, from + 2^32) (invariant 3), where the heap's order is
 * that of their distance from `from`: a subtree whose top was not passed was not passed. */
static void clamp_passed(tally_replica *r, uint32_t i, uint64_t from, uint64_t moved) {
    if (i >= r->expiries.count || r->expiries.at[i].deadline_ms - from > moved) {
        return;
    }
    r->expiries.at[i].deadline_ms = r->steady.now;
    clamp_passed(r, 2 * i + 1, from, moved);
    clamp_passed(r, 2 * i + 2, from, moved);
}

void expiry_clock_moved(tally_replica *r, uint64_t from) {
    uint64_t moved = r->steady.now - from; /* forward, modulo 2^64 */
    if (moved != 0) {
        clamp_passed(r, 0, from, moved);
    }
}

uint64_t expiry_clock_read(tally_replica *r) {
    uint64_t wall = replica_now_ms(r), from = r->steady.now;
    steady_read(&r->steady, wall);
    expiry_clock_moved(r, from);
    return wall;
}

void expiry_clock_start(tally_replica *r) {
    steady_start(&r->steady, replica_now_ms(r));
    r->steady_journaled = false;
}

void expiry_clock_resume(tally_replica *r, uint64_t steady_ms, uint64_t wall_ms) {
    r->steady.now = steady_ms;
    r->steady.wall_last = wall_ms;
    r->journaled_steady = r->steady;
    r->steady_journaled = true;
}

int expiry_clock_replay(tally_replica *r, uint64_t steady_ms, uint64_t wall_ms) {
    bool first = !r->steady_journaled;
    uint64_t from = r->steady.now;
    expiry_clock_resume(r, steady_ms, wall_ms);
    if (first) {
        /* invariant 6: the deadlines the record's writer gave */
        return expiry_rebuild(r, true) ? TALLY_OK : TALLY_ECORRUPT;
    }
    expiry_clock_moved(r, from); /* invariant 4: a record moves the clock forward */
    return TALLY_OK;
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
