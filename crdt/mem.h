/*
 * crdt/mem.h — memory for the tables that grow large, straight from the kernel.
 *
 * A replica's record arrays and hash tables grow by doubling to hundreds of megabytes. Through
 * malloc, a large block that lives in the heap is copied into fresh pages at every doubling
 * (glibc raises its mmap threshold each time a large block is freed, so large blocks do end up
 * in the heap), and a new hash table is zeroed twice, by the kernel and again by memset. Here a
 * block of MEM_MAP_BYTES or more is a mapping of its own: growing it moves page tables, not
 * bytes (mremap, on Linux), and its new pages arrive zeroed. Smaller blocks are malloc's.
 *
 * 1. Which allocator a block came from follows from its size alone: the caller passes the size
 *    it last gave a block to mem_zgrow and mem_free, and every block they take came from
 *    mem_zalloc or mem_zgrow.
 * 2. mem_zgrow keeps the old contents; on failure it returns NULL and the old block is unchanged.
 * 3. mem_zalloc's block is zeroed, and so is what mem_zgrow adds. With huge set, mem_zalloc's
 *    block of MEM_HUGE_BYTES or more starts on a MEM_HUGE_BYTES boundary and is advised onto
 *    transparent huge pages where the system has them (advice only: if refused, pages stay
 *    small).
 */
#ifndef TALLY_CRDT_MEM_H
#define TALLY_CRDT_MEM_H

#include <stdbool.h>
#include <stddef.h>

#define MEM_MAP_BYTES ((size_t)256 << 10)
#define MEM_HUGE_BYTES ((size_t)2 << 20)

/* A zeroed block of bytes (> 0), or NULL. */
void *mem_zalloc(size_t bytes, bool huge);
/* p (from mem_zalloc or mem_zgrow with the same huge, or NULL with old_bytes 0) grown to
 * new_bytes >= old_bytes: its first old_bytes kept, the rest zeroed. A mapping grows where it is
 * or moves its pages, without copying them; with huge set, a grown mapping of MEM_HUGE_BYTES or
 * more is advised onto huge pages (they stay whole where the kernel places the move on a
 * huge-page boundary, as Linux does from 6.7). NULL when out of memory; p is unchanged then. */
void *mem_zgrow(void *p, size_t old_bytes, size_t new_bytes, bool huge);
/* Faults in now, writable, the pages that hold bytes [from, to) of a mapped block of `bytes`
 * bytes, so that the first writes there take no page fault (advice: where the system lacks it,
 * nothing happens). The contents are unchanged. */
void mem_touch(void *p, size_t bytes, size_t from, size_t to);
/* Releases a block of bytes; p may be NULL. */
void mem_free(void *p, size_t bytes);

#endif
