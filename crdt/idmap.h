/*
 * crdt/idmap.h — an open-addressing hash map from 128-bit ids to 32-bit indices.
 *
 * The ids themselves live in the caller's records (an account's, a transfer's); a slot holds
 * only the record's index and 32 bits of the id's hash, 8 bytes in all. A lookup that misses
 * (the common case when a new transfer id is checked) never leaves the table, and the table is
 * three times denser than one storing keys, so more of it stays in cache. A slot whose hash
 * matches is confirmed by comparing the id in the record, found through the caller's key
 * function. tally never deletes an account or a transfer, so the map only grows (idmap_remove
 * serves one rare case, shifting keys back): linear probing
 * with no tombstones.
 *
 * 1. A slot is empty when its ref is 0; otherwise it holds value + 1.
 * 2. The load stays at or below 1/2 (idmap_room): idmap_put grows the table before it would
 *    pass that. Most lookups are of ids that are not there (every new transfer's), and a miss
 *    scans to the end of its run: about 2.5 slots at load 1/2, 8.5 at 3/4. Measured on the
 *    benchmark, 1/2 instead of 3/4 made both create and apply faster (docs/benchmarks.md).
 * 3. Capacity is a power of two, at most IDMAP_CAPACITY_MAX slots; a resize grows the table
 *    where it is and rehashes within it (the old and the new table are never both in memory),
 *    reusing the stored hashes: it never calls the key function.
 * 4. key(ctx, v) must return the id stored under value v for as long as v is in the map.
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
    uint32_t ref;  /* value + 1; 0: empty */
    uint32_t hash; /* the low 32 bits of the key's hash */
} idmap_slot;

/* Where the id stored under a value lives. */
typedef const tally_id *(*idmap_key_fn)(const void *ctx, uint32_t value);

typedef struct idmap {
    idmap_slot *slots;
    uint32_t mask;  /* capacity - 1; 0 with no table */
    uint32_t count; /* keys held */
    idmap_key_fn key;
    const void *ctx;
} idmap;

/* The most keys a table of capacity slots holds (invariant 2). */
static inline size_t idmap_room(size_t capacity) {
    return capacity / 2;
}

void idmap_init(idmap *m, idmap_key_fn key, const void *ctx);
void idmap_free(idmap *m);
/* Empties the map, keeping its table. */
void idmap_clear(idmap *m);
/* Makes room for `n` keys in all without another resize. False when out of memory or past
 * IDMAP_CAPACITY_MAX; the map is unchanged then. The check is inline (the hot paths almost
 * always have room); idmap_grow does the rest. */
bool idmap_grow(idmap *m, size_t n);
static inline bool idmap_reserve(idmap *m, size_t n) {
    return (m->slots != NULL && n <= idmap_room((size_t)m->mask + 1)) || idmap_grow(m, n);
}

/* The capacity idmap_grow picks for n keys: the smallest power of two from 16 with room for
 * them; 0 when past IDMAP_CAPACITY_MAX. */
size_t idmap_fit(size_t n);
/* Places m's keys into `out`, a zeroed table of `capacity` slots with room for them, as inserts
 * into a map of that capacity would: a copy of m sized to its keys (for a snapshot of a map
 * reserved far ahead of its keys, tally_reserve). */
void idmap_pack(const idmap *m, idmap_slot *out, uint32_t capacity);

/* Faults in the table's memory now (crdt/mem.h, mem_touch), so that inserts take no page fault. */
void idmap_touch(idmap *m);

static inline uint32_t idmap_hash(tally_id key) {
    return (uint32_t)id_hash(key);
}

/* The slot holding key, or the empty slot where its probe ends (where it would go); h is
 * idmap_hash(key). The one probe loop of the map: lookups and inserts all go through it. */
static inline idmap_slot *idmap_probe(const idmap *m, tally_id key, uint32_t h) {
    for (uint32_t i = h & m->mask;; i = (i + 1) & m->mask) {
        idmap_slot *s = &m->slots[i];
        if (s->ref == 0 || (s->hash == h && id_eq(*m->key(m->ctx, s->ref - 1), key))) {
            return s;
        }
    }
}

/* Where a lookup's probe ended, so that inserting the key it did not find takes no second
 * probe (idmap_insert_spot). It stays good while the map has the same table and the same count:
 * no key inserted since, none cleared, no resize; mask 0 means no spot. */
typedef struct idmap_spot {
    uint32_t mask, count, index;
} idmap_spot;

/* The value stored for key, or IDMAP_NONE, noting in *spot where the probe ended; h is
 * idmap_hash(key). */
static inline uint32_t idmap_get_spot(const idmap *m, tally_id key, uint32_t h, idmap_spot *spot) {
    spot->mask = 0;
    if (m->slots == NULL) {
        return IDMAP_NONE;
    }
    const idmap_slot *s = idmap_probe(m, key, h);
    spot->mask = m->mask;
    spot->count = m->count;
    spot->index = (uint32_t)(s - m->slots);
    return s->ref != 0 ? s->ref - 1 : IDMAP_NONE;
}

/* The value stored for key, or IDMAP_NONE; h is idmap_hash(key), for callers that look one
 * key up more than once. */
static inline uint32_t idmap_get_hashed(const idmap *m, tally_id key, uint32_t h) {
    if (m->slots == NULL) {
        return IDMAP_NONE;
    }
    const idmap_slot *s = idmap_probe(m, key, h);
    return s->ref != 0 ? s->ref - 1 : IDMAP_NONE;
}

/* The value stored for key, or IDMAP_NONE. */
static inline uint32_t idmap_get(const idmap *m, tally_id key) {
    return idmap_get_hashed(m, key, idmap_hash(key));
}

/* Starts loading the cache line where the lookup of a key with hash h will begin: callers that
 * know their next keys ahead of time (a batch, a decoded block) overlap the memory latency of
 * many lookups. */
static inline void idmap_prefetch_hashed(const idmap *m, uint32_t h) {
#if defined(__GNUC__)
    if (m->slots != NULL) {
        __builtin_prefetch(&m->slots[h & m->mask]);
    }
#else
    (void)m;
    (void)h;
#endif
}

static inline void idmap_prefetch(const idmap *m, tally_id key) {
    idmap_prefetch_hashed(m, idmap_hash(key));
}

/* Inserts key -> value, or replaces the value of a key already there (which never allocates).
 * False when out of memory (the map is unchanged then). value must be below IDMAP_NONE and
 * key(ctx, value) must already return key. */
bool idmap_put(idmap *m, tally_id key, uint32_t value);
/* Removes key, if it is there (false when it is not). Never allocates. tally keeps every
 * account and transfer, and removes only an origin it added for a history of a forked
 * replica that then held nothing (ledger/branch.c). */
bool idmap_remove(idmap *m, tally_id key);

/* Inserts key -> value if key is not there and returns IDMAP_NONE; if it is, returns its value
 * and changes nothing. One probe where idmap_get then idmap_put take two. Room must have been
 * reserved (idmap_reserve) for one more key; h is idmap_hash(key); value as for idmap_put. */
uint32_t idmap_insert_hashed(idmap *m, tally_id key, uint32_t h, uint32_t value);

/* idmap_insert_hashed, skipping the probe when spot is still good (see idmap_spot): the empty
 * slot where the lookup that noted it ended is then where key goes. */
uint32_t idmap_insert_spot(idmap *m, tally_id key, uint32_t h, uint32_t value,
                           const idmap_spot *spot);

#endif
