/*
 * crdt/rights.h — the sparse escrow-rights map of one bounded account.
 *
 * Maps a holder (a replica, by the small index its owner gives it) to the amount of the
 * account's spendable money that holder may spend. Most accounts are spent from by one or two
 * replicas, so the map is a short array, its first entry held inline; past a dozen holders an
 * index kept in the same allocation finds a holder in expected O(1) (rights.c).
 *
 * 1. No entry holds zero: an amount that reaches zero is removed, so two maps with equal
 *    contents have equal entries (the digest relies on this).
 * 2. rights_take never lets an amount go below zero; it refuses instead.
 * 3. Amounts are exact 128-bit sums (see u128.h) so concurrent credits commute.
 */
#ifndef TALLY_CRDT_RIGHTS_H
#define TALLY_CRDT_RIGHTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crdt/u128.h"

typedef struct rights_entry {
    uint32_t holder;
    u128 amount;
} rights_entry;

/* The first holder lives in the map itself: most accounts have one, and then reading its
 * rights costs no pointer chase. Entries 1.. live in `more`. */
typedef struct rights {
    rights_entry first;
    rights_entry *more;
    uint32_t count, capacity; /* capacity counts `first` too */
} rights;

/* Entry i, for i < count. */
static inline rights_entry *rights_at(const rights *m, uint32_t i) {
    return i == 0 ? (rights_entry *)&m->first : &m->more[i - 1];
}

void rights_init(rights *m);
void rights_free(rights *m);

/* The out-of-line halves of the functions below, for every case but the first holder's: their
 * callers have found that holder is not the first entry. */
rights_entry *rights_find_more(const rights *m, uint32_t holder);
bool rights_add_more(rights *m, uint32_t holder, uint64_t amount);
bool rights_take_more(rights *m, uint32_t holder, uint64_t amount);
bool rights_reserve_more(rights *m, uint32_t holder);
void rights_remove_first(rights *m);

/* Most accounts have one holder, and transfers look it up several times each: that case is
 * inline. */
static inline bool rights_is_first(const rights *m, uint32_t holder) {
    return m->count > 0 && m->first.holder == holder;
}

static inline u128 rights_get(const rights *m, uint32_t holder) {
    if (rights_is_first(m, holder)) {
        return m->first.amount;
    }
    const rights_entry *e = m->count > 1 ? rights_find_more(m, holder) : NULL;
    u128 zero = {0, 0};
    return e != NULL ? e->amount : zero;
}

/* Adds amount to holder's rights. False only when out of memory (nothing changes then). */
static inline bool rights_add(rights *m, uint32_t holder, uint64_t amount) {
    if (amount == 0) {
        return true;
    }
    if (rights_is_first(m, holder)) {
        u128_add(&m->first.amount, amount);
        return true;
    }
    return rights_add_more(m, holder, amount);
}

/* Takes amount from holder's rights; false (nothing changes) if it holds less. */
static inline bool rights_take(rights *m, uint32_t holder, uint64_t amount) {
    if (amount == 0) {
        return true;
    }
    if (rights_is_first(m, holder)) {
        if (!u128_sub(&m->first.amount, amount)) {
            return false;
        }
        if (u128_is_zero(m->first.amount)) {
            rights_remove_first(m);
        }
        return true;
    }
    return rights_take_more(m, holder, amount);
}

/* Adds delta to holder's rights modulo 2^128 (a branch's rights may be below zero: u128.h);
 * an amount that reaches zero is removed. False only when out of memory (nothing changes). */
bool rights_shift(rights *m, uint32_t holder, u128 delta);

/* How many entries or index slots a lookup of holder looks at: for tests of the index. */
uint32_t rights_probes(const rights *m, uint32_t holder);

/* Sum of every holder's rights. */
u128 rights_sum(const rights *m);

/* Makes sure rights_add(holder) cannot fail for want of memory. False when out of memory. */
static inline bool rights_reserve(rights *m, uint32_t holder) {
    return m->count < 1 || m->count < m->capacity || m->first.holder == holder ||
           rights_reserve_more(m, holder);
}

#endif
