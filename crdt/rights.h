/*
 * crdt/rights.h — the sparse escrow-rights map of one bounded account.
 *
 * Maps a holder (a replica, by the small index its owner gives it) to the amount of the
 * account's spendable money that holder may spend. Most accounts are spent from by one or two
 * replicas, so the map is a short array searched linearly, its first entry held inline.
 *
 * 1. No entry holds zero: an amount that reaches zero is removed, so two maps with equal
 *    contents have equal entries (the digest relies on this).
 * 2. rights_take never lets an amount go below zero; it refuses instead.
 * 3. Amounts are exact 128-bit sums (see u128.h) so concurrent credits commute.
 */
#ifndef TALLY_CRDT_RIGHTS_H
#define TALLY_CRDT_RIGHTS_H

#include <stdbool.h>
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
u128 rights_get(const rights *m, uint32_t holder);
/* Adds amount to holder's rights. False only when out of memory (nothing changes then). */
bool rights_add(rights *m, uint32_t holder, uint64_t amount);
/* Takes amount from holder's rights; false (nothing changes) if it holds less. */
bool rights_take(rights *m, uint32_t holder, uint64_t amount);
/* Sum of every holder's rights. */
u128 rights_sum(const rights *m);
/* Makes sure rights_add(holder) cannot fail for want of memory. False when out of memory. */
bool rights_reserve(rights *m, uint32_t holder);

#endif
