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

static rights_entry *rights_find(const rights *m, uint32_t holder) {
    for (uint32_t i = 0; i < m->count; i++) {
        rights_entry *e = rights_at(m, i);
        if (e->holder == holder) {
            return e;
        }
    }
    return NULL;
}

u128 rights_get(const rights *m, uint32_t holder) {
    if (m->count > 0 && m->first.holder == holder) {
        return m->first.amount;
    }
    const rights_entry *e = rights_find(m, holder);
    u128 zero = {0, 0};
    return e != NULL ? e->amount : zero;
}

bool rights_reserve(rights *m, uint32_t holder) {
    if (m->count < 1 || m->count < m->capacity || rights_find(m, holder) != NULL) {
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

bool rights_add(rights *m, uint32_t holder, uint64_t amount) {
    if (amount == 0) {
        return true;
    }
    rights_entry *e = rights_find(m, holder);
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

bool rights_take(rights *m, uint32_t holder, uint64_t amount) {
    if (amount == 0) {
        return true;
    }
    rights_entry *e = rights_find(m, holder);
    if (e == NULL || !u128_sub(&e->amount, amount)) {
        return false;
    }
    if (u128_is_zero(e->amount)) {
        *e = *rights_at(m, --m->count); /* the last entry fills the hole */
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
