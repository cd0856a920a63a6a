/*
 * crdt/array.c — see array.h.
 */
#include "crdt/array.h"

#include "crdt/mem.h"

bool array_grow(void **at, uint32_t *capacity, uint32_t count, uint32_t more, size_t elem,
                uint32_t max) {
    uint64_t need = (uint64_t)count + more;
    if (need <= *capacity) {
        return true;
    }
    if (need > max) {
        return false;
    }
    uint64_t want = *capacity ? (uint64_t)*capacity * 2 : 16;
    while (want < need) {
        want *= 2;
    }
    if (want > max) {
        want = max;
    }
    void *grown = mem_zgrow(*at, (size_t)*capacity * elem, (size_t)want * elem, false);
    if (grown == NULL) {
        return false;
    }
    *at = grown;
    *capacity = (uint32_t)want;
    return true;
}

void array_free(void *at, uint32_t capacity, size_t elem) {
    mem_free(at, (size_t)capacity * elem);
}

void array_touch(void *at, uint32_t capacity, uint32_t from, uint32_t to, size_t elem) {
    mem_touch(at, (size_t)capacity * elem, (size_t)from * elem, (size_t)to * elem);
}
