/*
 * crdt/vclock.h — version vectors: for each origin replica, the highest seq applied.
 *
 * Because the ops of one origin are applied in seq order with no gaps, a version vector
 * summarises a causally closed set of ops exactly.
 *
 * An entry may also carry flags: what its holder knows of the origin besides its ops (for the
 * ledger, VCLOCK_FORKED: it holds proof that the origin forked its history).
 *
 * 1. Entries are sorted by origin, strictly increasing; no entry has origin 0, and none has
 *    both seq 0 and no flags.
 * 2. vclock_get of an absent origin is 0, and so is vclock_flags.
 */
#ifndef TALLY_CRDT_VCLOCK_H
#define TALLY_CRDT_VCLOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct vclock_entry {
    uint64_t origin, seq;
    uint32_t flags;
} vclock_entry;

#define VCLOCK_FORKED 1u

typedef struct vclock {
    vclock_entry *entries;
    uint32_t count, capacity;
} vclock;

/* The most entries a version vector may hold (one per replica). */
#define VCLOCK_ENTRIES_MAX (UINT32_C(1) << 16)

void vclock_init(vclock *v);
void vclock_free(vclock *v);
uint64_t vclock_get(const vclock *v, uint64_t origin);
/* Sets origin's seq (0 removes the entry unless it has flags). False when out of memory or past
 * VCLOCK_ENTRIES_MAX (nothing changes then). */
bool vclock_set(vclock *v, uint64_t origin, uint64_t seq);
uint32_t vclock_flags(const vclock *v, uint64_t origin);
/* Adds flags to origin's entry (making one with seq 0 if there is none). False as vclock_set. */
bool vclock_add_flags(vclock *v, uint64_t origin, uint32_t flags);
/* Raises each of a's entries to b's where b's is higher, and adds b's flags. False when out of
 * memory. */
bool vclock_merge(vclock *a, const vclock *b);
/* Every entry of a is at or below b's. */
bool vclock_leq(const vclock *a, const vclock *b);

#endif
