/*
 * crdt/vclock.c — see vclock.h for the invariants.
 */
#include "crdt/vclock.h"

#include "crdt/array.h"

#include <stdlib.h>
#include <string.h>

void vclock_init(vclock *v) {
    v->entries = NULL;
    v->count = 0;
    v->capacity = 0;
}

void vclock_free(vclock *v) {
    array_free(v->entries, v->capacity, sizeof *v->entries);
    vclock_init(v);
}

/* The index of origin's entry, or of where it would be inserted. */
static uint32_t vclock_find(const vclock *v, uint64_t origin) {
    uint32_t lo = 0, hi = v->count;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (v->entries[mid].origin < origin) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

uint64_t vclock_get(const vclock *v, uint64_t origin) {
    uint32_t i = vclock_find(v, origin);
    return i < v->count && v->entries[i].origin == origin ? v->entries[i].seq : 0;
}

uint32_t vclock_flags(const vclock *v, uint64_t origin) {
    uint32_t i = vclock_find(v, origin);
    return i < v->count && v->entries[i].origin == origin ? v->entries[i].flags : 0;
}

/* Makes room for origin's entry at i, where vclock_find put it. */
static bool vclock_insert(vclock *v, uint32_t i, uint64_t origin) {
    if (!array_reserve((void **)&v->entries, &v->capacity, v->count, 1, sizeof *v->entries,
                       VCLOCK_ENTRIES_MAX)) {
        return false;
    }
    memmove(&v->entries[i + 1], &v->entries[i], (v->count - i) * sizeof *v->entries);
    v->entries[i] = (vclock_entry){.origin = origin};
    v->count++;
    return true;
}

bool vclock_add_flags(vclock *v, uint64_t origin, uint32_t flags) {
    uint32_t i = vclock_find(v, origin);
    bool here = i < v->count && v->entries[i].origin == origin;
    if (flags == 0 || (!here && !vclock_insert(v, i, origin))) {
        return flags == 0;
    }
    v->entries[i].flags |= flags;
    return true;
}

bool vclock_set(vclock *v, uint64_t origin, uint64_t seq) {
    uint32_t i = vclock_find(v, origin);
    if (i < v->count && v->entries[i].origin == origin) {
        if (seq == 0 && v->entries[i].flags == 0) {
            memmove(&v->entries[i], &v->entries[i + 1], (v->count - i - 1) * sizeof *v->entries);
            v->count--;
        } else {
            v->entries[i].seq = seq;
        }
        return true;
    }
    if (seq == 0) {
        return true;
    }
    if (!vclock_insert(v, i, origin)) {
        return false;
    }
    v->entries[i].seq = seq;
    return true;
}

bool vclock_merge(vclock *a, const vclock *b) {
    for (uint32_t i = 0; i < b->count; i++) {
        const vclock_entry *e = &b->entries[i];
        if ((vclock_get(a, e->origin) < e->seq && !vclock_set(a, e->origin, e->seq)) ||
            !vclock_add_flags(a, e->origin, e->flags)) {
            return false;
        }
    }
    return true;
}

bool vclock_leq(const vclock *a, const vclock *b) {
    for (uint32_t i = 0; i < a->count; i++) {
        if (a->entries[i].seq > vclock_get(b, a->entries[i].origin)) {
            return false;
        }
    }
    return true;
}
