/*
 * crdt/array.h — growing an array by doubling: the one place tally does it.
 *
 * 1. array_reserve makes room for `more` elements past `count`, doubling the capacity (from 16)
 *    until they fit, and never past `max` elements.
 * 2. On failure (out of memory, or past max) nothing changes and the caller's array is intact.
 * 3. The memory is crdt/mem.h's: an array's block is released with array_free (ARRAY_FREE), never
 *    with free(), since a large one is a mapping of its own.
 */
#ifndef TALLY_CRDT_ARRAY_H
#define TALLY_CRDT_ARRAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crdt/guard.h"

bool array_grow(void **at, uint32_t *capacity, uint32_t count, uint32_t more, size_t elem,
                uint32_t max);
/* Releases an array's block (NULL with capacity 0 is fine). */
void array_free(void *at, uint32_t capacity, size_t elem);

/* The check is inline: on the hot paths there is almost always room already. */
static inline bool array_reserve(void **at, uint32_t *capacity, uint32_t count, uint32_t more,
                                 size_t elem, uint32_t max) {
    return (uint64_t)count + more <= *capacity || array_grow(at, capacity, count, more, elem, max);
}

/* Faults in the memory of elements [from, to) (crdt/mem.h, mem_touch). */
void array_touch(void *at, uint32_t capacity, uint32_t from, uint32_t to, size_t elem);

/* For a struct with members `at`, `count` and `capacity`. */
#define ARRAY(type)                                                                                \
    struct {                                                                                       \
        type *at;                                                                                  \
        uint32_t count, capacity;                                                                  \
    }
#define ARRAY_FREE(arr) array_free((arr).at, (arr).capacity, sizeof *(arr).at)
/* The index of a new last element, in room reserved before: GUARD stops the process rather
 * than write past the end if it was not. */
#define ARRAY_PUSH(arr) (GUARD((arr).count < (arr).capacity), (arr).count++)
#define ARRAY_TOUCH(arr, to)                                                                       \
    array_touch((arr).at, (arr).capacity, (arr).count, (to), sizeof *(arr).at)
#define ARRAY_RESERVE_MAX(arr, more, max)                                                          \
    array_reserve((void **)&(arr).at, &(arr).capacity, (arr).count, (more), sizeof *(arr).at, (max))

#endif
