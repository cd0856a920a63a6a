/*
 * crdt/id.h — 128-bit ids: comparison, zero test and hashing.
 *
 * 1. An id is two 64-bit words; the all-zero id is invalid everywhere (include/tally.h).
 * 2. Ids are ordered by (hi, lo) as unsigned numbers; every canonical order in tally uses this.
 * 3. The hash is XXH3-64 of the two words, so sequential ids (1, 2, 3, ...) spread as well as
 *    random ones.
 */
#ifndef TALLY_CRDT_ID_H
#define TALLY_CRDT_ID_H

#include <stdbool.h>
#include <stdint.h>

#include "tally.h"

#ifndef XXH_INLINE_ALL
#define XXH_INLINE_ALL
#endif
#include <xxhash.h>

static inline bool id_is_zero(tally_id a) {
    return (a.hi | a.lo) == 0;
}

static inline bool id_eq(tally_id a, tally_id b) {
    return a.hi == b.hi && a.lo == b.lo;
}

static inline int id_cmp(tally_id a, tally_id b) {
    if (a.hi != b.hi) {
        return a.hi < b.hi ? -1 : 1;
    }
    if (a.lo != b.lo) {
        return a.lo < b.lo ? -1 : 1;
    }
    return 0;
}

static inline uint64_t id_hash(tally_id a) {
    uint64_t words[2] = {a.hi, a.lo};
    return XXH3_64bits(words, sizeof words);
}

#endif
