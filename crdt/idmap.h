/*
 * crdt/idmap.h — an open-addressing hash map from 128-bit ids to 32-bit indices.
 *
 * tally never deletes an account or a transfer, so the map only grows: linear probing with no
 * tombstones, keys stored inline so that a hit costs one cache line.
 *
 * 1. The all-zero id marks an empty slot, so it can never be a key (tally rejects it earlier).
 * 2. The load stays at or below 3/4: idmap_put grows the table before it would pass that.
 * 3. Capacity is a power of two, at most IDMAP_CAPACITY_MAX slots.
 */
#ifndef TALLY_CRDT_IDMAP_H
#define TALLY_CRDT_IDMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crdt/id.h"

#define IDMAP_NONE UINT32_MAX
#define IDMAP_CAPACITY_MAX (UINT32_C(1) << 31)

typedef struct idmap_slot {
    tally_id key;
    uint32_t value;
} idmap_slot;

typedef struct idmap {
    idmap_slot *slots;
    uint32_t mask;  /* capacity - 1; 0 with no table */
    uint32_t count; /* keys held */
} idmap;

void idmap_init(idmap *m);
void idmap_free(idmap *m);
/* Makes room for `n` keys in all without another resize. False when out of memory or past
 * IDMAP_CAPACITY_MAX; the map is unchanged then. */
bool idmap_reserve(idmap *m, size_t n);
/* The value stored for key, or IDMAP_NONE. */
static inline uint32_t idmap_get(const idmap *m, tally_id key) {
    if (m->slots == NULL) {
        return IDMAP_NONE;
    }
    for (uint32_t i = (uint32_t)id_hash(key) & m->mask;; i = (i + 1) & m->mask) {
        const idmap_slot *s = &m->slots[i];
        if (id_eq(s->key, key)) {
            return s->value;
        }
        if (id_is_zero(s->key)) {
            return IDMAP_NONE;
        }
    }
}
/* Starts loading the cache line where key's lookup will begin: callers that know their next
 * keys ahead of time (a batch, a decoded block) overlap the memory latency of many lookups. */
static inline void idmap_prefetch(const idmap *m, tally_id key) {
#if defined(__GNUC__)
    if (m->slots != NULL) {
        __builtin_prefetch(&m->slots[(uint32_t)id_hash(key) & m->mask]);
    }
#else
    (void)m;
    (void)key;
#endif
}

/* Inserts key -> value, or replaces the value of a key already there. False when out of memory
 * (the map is unchanged then). key must not be zero. */
bool idmap_put(idmap *m, tally_id key, uint32_t value);

#endif
