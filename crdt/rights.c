/*
 * crdt/rights.c — see rights.h for the invariants.
 */
#include "crdt/rights.h"

#include <stdlib.h>
#include <string.h>

void rights_init(rights *m) {
    memset(m, 0, sizeof *m);
}

void rights_free(rights *m) {
    free(m->more);
    rights_init(m);
}

/* Entries 1.. (the first is checked inline by the callers). */
rights_entry *rights_find_more(const rights *m, uint32_t holder) {
    for (uint32_t i = 1; i < m->count; i++) {
        if (m->more[i - 1].holder == holder) {
            return &m->more[i - 1];
        }
    }
    return NULL;
}

/* rights_reserve has found no room and that holder is not the first. */
bool rights_reserve_more(rights *m, uint32_t holder) {
    if (rights_find_more(m, holder) != NULL) {
        return true;
    }
    uint32_t capacity = m->capacity > 1 ? m->capacity * 2 : 3;
    rights_entry *more = realloc(m->more, (capacity - 1) * sizeof *more);
    if (more == NULL) {
        return false;
    }
    m->more = more;
    m->capacity = capacity;
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
        e = rights_at(m, m->count++);
        e->holder = holder;
        e->amount.hi = 0;
        e->amount.lo = 0;
    }
    u128_add(&e->amount, amount);
    return true;
}

/* Removes entry e, which holds zero: the last entry fills the hole (invariant 1). */
static void rights_remove(rights *m, rights_entry *e) {
    *e = *rights_at(m, --m->count);
}

void rights_remove_first(rights *m) {
    rights_remove(m, &m->first);
}

bool rights_take_more(rights *m, uint32_t holder, uint64_t amount) {
    rights_entry *e = rights_find_more(m, holder);
    if (e == NULL || !u128_sub(&e->amount, amount)) {
        return false;
    }
    if (u128_is_zero(e->amount)) {
        rights_remove(m, e);
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
