/*
 * crdt/array.h — growing an array by doubling: the one place tally does it.
 *
 * 1. array_reserve makes room for `more` elements past `count`, doubling the capacity (from 16)
 *    until they fit, and never past `max` elements.
 * 2. On failure (out of memory, or past max) nothing changes and the caller's array is intact.
 */
#ifndef TALLY_CRDT_ARRAY_H
#define TALLY_CRDT_ARRAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

bool array_grow(void **at, uint32_t *capacity, uint32_t count, uint32_t more, size_t elem,
                uint32_t max);

/* The check is inline: on the hot paths there is almost always room already. */
static inline bool array_reserve(void **at, uint32_t *capacity, uint32_t count, uint32_t more,
                                 size_t elem, uint32_t max) {
    return (uint64_t)count + more <= *capacity || array_grow(at, capacity, count, more, elem, max);
}

/* For a struct with members `at`, `count` and `capacity`. */
#define ARRAY(type)                                                                                \
    struct {                                                                                       \
        type *at;                                                                                  \
        uint32_t count, capacity;                                                                  \
    }
#define ARRAY_RESERVE_MAX(arr, more, max)                                                          \
    array_reserve((void **)&(arr).at, &(arr).capacity, (arr).count, (more), sizeof *(arr).at, (max))

#endif
