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

static void advise_huge(void *p, size_t len) {
#if defined(MADV_HUGEPAGE)
    (void)madvise(p, len, MADV_HUGEPAGE);
#else
    (void)p;
    (void)len;
#endif
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

/* A mapping of len bytes (a multiple of the page size) on a MEM_HUGE_BYTES boundary, advised onto
 * huge pages: a huge page more is mapped and both ends trimmed to the boundary. */
static void *map_huge(size_t len) {
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
    advise_huge(start, len);
    return start;
}

void *mem_zalloc(size_t bytes, bool huge) {
    assert(bytes > 0);
    if (!mapped(bytes)) {
        return calloc(1, bytes);
    }
    size_t len = map_len(bytes);
    return huge && len >= MEM_HUGE_BYTES ? map_huge(len) : map(len);
}

void *mem_zgrow(void *p, size_t old_bytes, size_t new_bytes, bool huge) {
    assert(new_bytes >= old_bytes && (p != NULL || old_bytes == 0));
    if (p == NULL) {
        return mem_zalloc(new_bytes, huge);
    }
    if (!mapped(new_bytes)) {
        char *q = realloc(p, new_bytes);
        if (q != NULL) {
            memset(q + old_bytes, 0, new_bytes - old_bytes);
        }
        return q;
    }
#if defined(MREMAP_MAYMOVE)
    if (mapped(old_bytes)) {
        /* Where the kernel places a moved mapping of 2 MiB or more on a huge-page boundary (Linux
         * 6.7 on), its huge pages move whole; elsewhere they are split, and the advice lets the
         * kernel gather them again. */
        size_t new_len = map_len(new_bytes);
        void *q = mremap(p, map_len(old_bytes), new_len, MREMAP_MAYMOVE);
        if (q == MAP_FAILED) {
            return NULL;
        }
        if (huge && new_len >= MEM_HUGE_BYTES) {
            advise_huge(q, new_len);
        }
        return q;
    }
#endif
    void *q = mem_zalloc(new_bytes, huge);
    if (q != NULL) {
        memcpy(q, p, old_bytes);
        mem_free(p, old_bytes);
    }
    return q;
}

void mem_touch(void *p, size_t bytes, size_t from, size_t to) {
#if defined(MADV_POPULATE_WRITE)
    if (p == NULL || !mapped(bytes)) {
        return;
    }
    size_t page = (size_t)sysconf(_SC_PAGESIZE), start = from / page * page;
    size_t end = map_len(to < bytes ? to : bytes);
    if (start < end) {
        (void)madvise((char *)p + start, end - start, MADV_POPULATE_WRITE);
    }
#else
    (void)p;
    (void)bytes;
    (void)from;
    (void)to;
#endif
}
