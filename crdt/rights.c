/*
 * crdt/rights.c — see rights.h for the invariants.
 *
 * Entries 1.. live in `more`. Past RIGHTS_INDEX_MIN of them, the same allocation also holds an
 * index after the entries: an open-addressing table (linear probing, kept at most half full,
 * deletion by backward shift so no tombstones pile up) mapping a holder to its entry's
 * position. An account that ~65,000 replicas hold rights on then costs a transfer an expected
 * probe or two instead of a scan of every holder (rights_probes measures it in the tests).
 */
#include "crdt/rights.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

/* Capacity (entries, the first counted) from which the holders are indexed: below it a scan of
 * at most this many entries, all in one or two cache lines, is as fast as hashing. */
#define RIGHTS_INDEX_MIN 12

void rights_init(rights *m) {
    memset(m, 0, sizeof *m);
}

void rights_free(rights *m) {
    free(m->more);
    rights_init(m);
}

/* Index slots for a capacity: 0 (no index), or a power of two at least twice the capacity. */
static uint32_t index_slots(uint32_t capacity) {
    if (capacity < RIGHTS_INDEX_MIN) {
        return 0;
    }
    uint32_t n = 32;
    while (n < 2 * capacity) {
        n <<= 1;
    }
    return n;
}

/* The index: slot values are entry positions 1..count-1, 0 for an empty slot. */
static uint32_t *index_of(const rights *m) {
    return (uint32_t *)(void *)(m->more + (m->capacity - 1));
}

static uint32_t index_home(uint32_t holder, uint32_t slots) {
    uint32_t h = holder * UINT32_C(0x9E3779B1);
    return (h ^ (h >> 15)) & (slots - 1);
}

static uint32_t holder_at(const rights *m, uint32_t position) {
    return m->more[position - 1].holder;
}

/* The slot holding holder's position, or the empty slot where the probe ended; *probes (may be
 * NULL) counts the slots looked at. */
static uint32_t index_find(const rights *m, uint32_t holder, uint32_t *probes) {
    uint32_t slots = index_slots(m->capacity), *index = index_of(m);
    uint32_t s = index_home(holder, slots);
    for (uint32_t n = 1;; n++, s = (s + 1) & (slots - 1)) {
        if (probes != NULL) {
            *probes = n;
        }
        if (index[s] == 0 || holder_at(m, index[s]) == holder) {
            return s;
        }
    }
}

static void index_insert(rights *m, uint32_t position) {
    uint32_t s = index_find(m, holder_at(m, position), NULL);
    assert(index_of(m)[s] == 0 && "a holder has one entry");
    index_of(m)[s] = position;
}

/* Removes holder's slot, shifting back the slots after it that probed past it. */
static void index_remove(rights *m, uint32_t holder) {
    uint32_t slots = index_slots(m->capacity), *index = index_of(m), mask = slots - 1;
    uint32_t hole = index_find(m, holder, NULL);
    assert(index[hole] != 0);
    index[hole] = 0;
    for (uint32_t j = (hole + 1) & mask; index[j] != 0; j = (j + 1) & mask) {
        uint32_t home = index_home(holder_at(m, index[j]), slots);
        /* j's entry may move into the hole unless its home lies cyclically in (hole, j] */
        bool stays = hole < j ? home > hole && home <= j : home > hole || home <= j;
        if (!stays) {
            index[hole] = index[j];
            index[j] = 0;
            hole = j;
        }
    }
}

static void index_rebuild(rights *m) {
    uint32_t slots = index_slots(m->capacity);
    if (slots == 0) {
        return;
    }
    memset(index_of(m), 0, (size_t)slots * sizeof(uint32_t));
    for (uint32_t i = 1; i < m->count; i++) {
        index_insert(m, i);
    }
}

/* Entries 1.. (the first is checked inline by the callers). */
rights_entry *rights_find_more(const rights *m, uint32_t holder) {
    if (index_slots(m->capacity) != 0) {
        uint32_t position = index_of(m)[index_find(m, holder, NULL)];
        return position != 0 ? &m->more[position - 1] : NULL;
    }
    for (uint32_t i = 1; i < m->count; i++) {
        if (m->more[i - 1].holder == holder) {
            return &m->more[i - 1];
        }
    }
    return NULL;
}

uint32_t rights_probes(const rights *m, uint32_t holder) {
    if (rights_is_first(m, holder)) {
        return 1;
    }
    if (index_slots(m->capacity) != 0) {
        uint32_t probes = 0;
        (void)index_find(m, holder, &probes);
        return 1 + probes;
    }
    for (uint32_t i = 1; i < m->count; i++) {
        if (m->more[i - 1].holder == holder) {
            return 1 + i;
        }
    }
    return m->count;
}

/* rights_reserve has found no room and that holder is not the first. */
bool rights_reserve_more(rights *m, uint32_t holder) {
    if (rights_find_more(m, holder) != NULL) {
        return true;
    }
    uint32_t capacity = m->capacity > 1 ? m->capacity * 2 : 3;
    size_t size = (capacity - 1) * sizeof *m->more + index_slots(capacity) * sizeof(uint32_t);
    rights_entry *more = realloc(m->more, size);
    if (more == NULL) {
        return false;
    }
    m->more = more;
    m->capacity = capacity;
    index_rebuild(m);
    return true;
}

bool rights_add_more(rights *m, uint32_t holder, uint64_t amount) {
    rights_entry *e = rights_find_more(m, holder);
    if (e == NULL) {
        if (!rights_reserve(m, holder)) {
            return false;
        }
        if (m->capacity == 0) {
            m->capacity = 1;
        }
        uint32_t position = m->count++;
        e = rights_at(m, position);
        e->holder = holder;
        e->amount.hi = 0;
        e->amount.lo = 0;
        if (position > 0 && index_slots(m->capacity) != 0) {
            index_insert(m, position);
        }
    }
    u128_add(&e->amount, amount);
    return true;
}

/* Removes the entry at position, which holds zero: the last entry fills the hole
 * (invariant 1), and the index follows. */
static void rights_remove(rights *m, uint32_t position) {
    uint32_t last = m->count - 1;
    bool indexed = index_slots(m->capacity) != 0;
    if (indexed && position > 0) {
        index_remove(m, holder_at(m, position));
    }
    if (indexed && last > 0 && last != position) {
        /* the last entry moves to position: out of the index, and back in unless it became
         * the first entry, which is never indexed */
        index_remove(m, holder_at(m, last));
    }
    *rights_at(m, position) = *rights_at(m, last);
    m->count--;
    if (indexed && position > 0 && position != last) {
        index_insert(m, position);
    }
}

bool rights_shift(rights *m, uint32_t holder, u128 delta) {
    if (u128_is_zero(delta)) {
        return true;
    }
    if (u128_is_zero(rights_get(m, holder))) {
        /* a new entry: made holding 1, then moved to delta */
        if (!rights_add(m, holder, 1)) {
            return false;
        }
        delta = u128_minus(delta, u128_of(1));
    }
    for (uint32_t i = 0; i < m->count; i++) {
        rights_entry *e = rights_at(m, i);
        if (e->holder == holder) {
            e->amount = u128_plus(e->amount, delta);
            if (u128_is_zero(e->amount)) {
                rights_remove(m, i);
            }
            return true;
        }
    }
    assert(0 && "the entry was found or made above");
    return false;
}

void rights_remove_first(rights *m) {
    rights_remove(m, 0);
}

bool rights_take_more(rights *m, uint32_t holder, uint64_t amount) {
    rights_entry *e = rights_find_more(m, holder);
    if (e == NULL || !u128_sub(&e->amount, amount)) {
        return false;
    }
    if (u128_is_zero(e->amount)) {
        rights_remove(m, (uint32_t)(e - m->more) + 1);
    }
    return true;
}

u128 rights_sum(const rights *m) {
    u128 sum = {0, 0};
    for (uint32_t i = 0; i < m->count; i++) {
        sum = u128_plus(sum, rights_at(m, i)->amount);
    }
    return sum;
}
