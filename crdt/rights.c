/*
 * crdt/rights.c — see rights.h for the invariants.
 */
#include "crdt/rights.h"

#include <stdlib.h>

void rights_init(rights *m) {
    m->entries = NULL;
    m->count = 0;
    m->capacity = 0;
}

void rights_free(rights *m) {
    free(m->entries);
    rights_init(m);
}

static rights_entry *rights_find(const rights *m, uint32_t holder) {
    for (uint32_t i = 0; i < m->count; i++) {
        if (m->entries[i].holder == holder) {
            return &m->entries[i];
        }
    }
    return NULL;
}

u128 rights_get(const rights *m, uint32_t holder) {
    const rights_entry *e = rights_find(m, holder);
    u128 zero = {0, 0};
    return e != NULL ? e->amount : zero;
}

bool rights_reserve(rights *m, uint32_t holder) {
    if (rights_find(m, holder) != NULL || m->count < m->capacity) {
        return true;
    }
    uint32_t capacity = m->capacity ? m->capacity * 2 : 2;
    rights_entry *entries = realloc(m->entries, capacity * sizeof *entries);
    if (entries == NULL) {
        return false;
    }
    m->entries = entries;
    m->capacity = capacity;
    return true;
}

bool rights_add(rights *m, uint32_t holder, uint64_t amount) {
    if (amount == 0) {
        return true;
    }
    rights_entry *e = rights_find(m, holder);
    if (e == NULL) {
        if (!rights_reserve(m, holder)) {
            return false;
        }
        e = &m->entries[m->count++];
        e->holder = holder;
        e->amount.hi = 0;
        e->amount.lo = 0;
    }
    u128_add(&e->amount, amount);
    return true;
}

bool rights_take(rights *m, uint32_t holder, uint64_t amount) {
    if (amount == 0) {
        return true;
    }
    rights_entry *e = rights_find(m, holder);
    if (e == NULL || !u128_sub(&e->amount, amount)) {
        return false;
    }
    if (u128_is_zero(e->amount)) {
        *e = m->entries[--m->count];
    }
    return true;
}

u128 rights_sum(const rights *m) {
    u128 sum = {0, 0};
    for (uint32_t i = 0; i < m->count; i++) {
        sum = u128_plus(sum, m->entries[i].amount);
    }
    return sum;
}
