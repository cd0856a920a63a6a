/*
 * crdt/hlc.h — a hybrid logical clock on an injectable wall clock.
 *
 * A timestamp is one uint64_t: the wall time in milliseconds in the top 48 bits, a logical
 * counter in the low 16. Timestamps order events for display, history and timeouts only;
 * nothing that decides correctness reads them.
 *
 * 1. hlc_tick returns a value greater than every value it returned or observed before.
 * 2. A remote timestamp more than HLC_DRIFT_MS_MAX ahead of the local wall clock is not
 *    observed, so one peer with a wild clock cannot drag every replica's clock into the future.
 * 3. The clock never wraps. A wall clock past the last millisecond 48 bits hold (2^48 - 1,
 *    in the year 10889: a broken clock, in practice) reads as that millisecond, whose counter
 *    still gives 65,536 increasing stamps; after those the clock stays at UINT64_MAX, where
 *    invariant 1 ends. Nothing that decides correctness or time reads a stamp (below).
 * 4. A timestamp this clock issued itself (replayed from a journal after a restart, or brought
 *    back by a peer) is always taken, however far ahead it is (hlc_restore): invariant 1 then
 *    holds across restarts, whether the clock comes back from a snapshot or from the journal.
 *
 * Elapsed time (timeouts) is not read from the HLC, which a wall clock that jumped ahead once
 * holds ahead for good, but from a steady clock: the wall clock's forward steps added up, so a
 * wall clock that steps back makes it stand still instead of going back. A replica records its
 * steady clock in its journal and resumes it from there when it opens (ledger/expiry.c).
 */
#ifndef TALLY_CRDT_HLC_H
#define TALLY_CRDT_HLC_H

#include <stdint.h>

#define HLC_DRIFT_MS_MAX (UINT64_C(60) * 60 * 1000)
#define HLC_MS(t) ((t) >> 16)
/* The last millisecond a stamp can hold (invariant 3). */
#define HLC_MS_LAST ((UINT64_C(1) << 48) - 1)

typedef struct hlc {
    uint64_t last;
} hlc;

/* A count of milliseconds as this file takes it: at most HLC_MS_LAST (invariant 3). */
static inline uint64_t hlc_ms_cap(uint64_t wall_ms) {
    return wall_ms < HLC_MS_LAST ? wall_ms : HLC_MS_LAST;
}

static inline uint64_t hlc_from_ms(uint64_t wall_ms) {
    return hlc_ms_cap(wall_ms) << 16;
}

static inline uint64_t hlc_tick(hlc *h, uint64_t wall_ms) {
    uint64_t physical = hlc_from_ms(wall_ms);
    uint64_t next = h->last == UINT64_MAX ? UINT64_MAX : h->last + 1;
    h->last = physical > next ? physical : next;
    return h->last;
}

static inline void hlc_observe(hlc *h, uint64_t remote, uint64_t wall_ms) {
    if (HLC_MS(remote) > wall_ms + HLC_DRIFT_MS_MAX) {
        return;
    }
    if (remote > h->last) {
        h->last = remote;
    }
}

/* Invariant 4: one of this clock's own timestamps, seen again. */
static inline void hlc_restore(hlc *h, uint64_t own) {
    if (own > h->last) {
        h->last = own;
    }
}

/* A clock that only moves forward, in milliseconds, made of a wall clock's forward steps. To
 * resume one after a restart, restore both fields as they were and read the wall clock: the
 * time in between counts when the wall clock moved forward across it.
 *
 * One step counts at most STEADY_STEP_MAX, longer than any timeout (a uint32_t of ms): a
 * longer step makes every pending due just the same. The clock counts modulo 2^64, so a broken
 * wall clock that reads wild values cannot run it into a ceiling; two readings are compared
 * by their difference (steady_diff), exact while they are less than 2^63 ms apart, which the
 * user keeps true of what it compares (ledger/expiry.c keeps deadlines within 2^32 ms of the
 * clock). */
#define STEADY_STEP_MAX (UINT64_C(1) << 32)

typedef struct steady {
    uint64_t wall_last; /* the wall clock's last reading */
    uint64_t now;       /* the steady clock: starts at the first reading, or HLC_MS_LAST */
} steady;

static inline void steady_start(steady *s, uint64_t wall_ms) {
    s->wall_last = wall_ms;
    s->now = hlc_ms_cap(wall_ms);
}

/* Takes a wall clock reading; returns the steady clock. */
static inline uint64_t steady_read(steady *s, uint64_t wall_ms) {
    if (wall_ms > s->wall_last) {
        uint64_t step = wall_ms - s->wall_last;
        s->now += step < STEADY_STEP_MAX ? step : STEADY_STEP_MAX; /* modulo 2^64 */
    }
    s->wall_last = wall_ms;
    return s->now;
}

/* a - b for two steady readings less than 2^63 ms apart (negative: a is before b). */
static inline int64_t steady_diff(uint64_t a, uint64_t b) {
    uint64_t d = a - b;
    return d <= (uint64_t)INT64_MAX ? (int64_t)d : -(int64_t)~d - 1;
}

#endif
