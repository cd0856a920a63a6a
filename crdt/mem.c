/*
 * crdt/mem.c — see mem.h for the invariants.
 */
#define _GNU_SOURCE /* mremap, MAP_ANONYMOUS, madvise */
#include "crdt/mem.h"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static bool mapped(size_t bytes) {
    return bytes >= MEM_MAP_BYTES;
}

/* A mapping's length: bytes rounded up to whole pages. */
static size_t map_len(size_t bytes) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    return (bytes + page - 1) / page * page;
}

static void *map(size_t len) {
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p != MAP_FAILED ? p : NULL;
}

void mem_free(void *p, size_t bytes) {
    if (p == NULL) {
        return;
    }
    if (mapped(bytes)) {
        munmap(p, map_len(bytes));
    } else {
        free(p);
    }
}

void *mem_resize(void *p, size_t old_bytes, size_t new_bytes) {
    assert(new_bytes > 0 && (p != NULL || old_bytes == 0));
    if (!mapped(old_bytes) && !mapped(new_bytes)) {
        return realloc(p, new_bytes);
    }
#if defined(MREMAP_MAYMOVE)
    if (mapped(old_bytes) && mapped(new_bytes)) {
        void *q = mremap(p, map_len(old_bytes), map_len(new_bytes), MREMAP_MAYMOVE);
        return q != MAP_FAILED ? q : NULL;
    }
#endif
    /* Across the threshold (or without mremap): a new block, and the contents copied once. */
    void *q = mapped(new_bytes) ? map(map_len(new_bytes)) : malloc(new_bytes);
    if (q != NULL && p != NULL) {
        memcpy(q, p, old_bytes < new_bytes ? old_bytes : new_bytes);
        mem_free(p, old_bytes);
    }
    return q;
}

void *mem_zalloc(size_t bytes, bool huge) {
    assert(bytes > 0);
    if (!mapped(bytes)) {
        return calloc(1, bytes);
    }
    size_t len = map_len(bytes);
    if (!huge || len < MEM_HUGE_BYTES) {
        return map(len);
    }
    /* Map a huge page more than needed and trim both ends to a huge-page boundary. */
    char *raw = map(len + MEM_HUGE_BYTES);
    if (raw == NULL) {
        return NULL;
    }
    uintptr_t aligned = ((uintptr_t)raw + MEM_HUGE_BYTES - 1) & ~(uintptr_t)(MEM_HUGE_BYTES - 1);
    char *start = (char *)aligned;
    size_t head = (size_t)(start - raw), tail = MEM_HUGE_BYTES - head;
    if (head > 0) {
        munmap(raw, head);
    }
    if (tail > 0) {
        munmap(start + len, tail);
    }
#if defined(MADV_HUGEPAGE)
    (void)madvise(start, len, MADV_HUGEPAGE);
#endif
    return start;
}
