/*
 * crdt/idmap.c — see idmap.h for the invariants.
 */
#include "crdt/idmap.h"

#include <assert.h>
#include <stdlib.h>

void idmap_init(idmap *m) {
    m->slots = NULL;
    m->mask = 0;
    m->count = 0;
}

void idmap_free(idmap *m) {
    free(m->slots);
    idmap_init(m);
}

static void idmap_insert_fresh(idmap_slot *slots, uint32_t mask, tally_id key, uint32_t value) {
    uint32_t i = (uint32_t)id_hash(key) & mask;
    while (!id_is_zero(slots[i].key)) {
        i = (i + 1) & mask;
    }
    slots[i].key = key;
    slots[i].value = value;
}

static bool idmap_resize(idmap *m, size_t capacity) {
    idmap_slot *slots = calloc(capacity, sizeof *slots);
    if (slots == NULL) {
        return false;
    }
    uint32_t mask = (uint32_t)(capacity - 1);
    if (m->slots != NULL) {
        for (size_t i = 0; i <= m->mask; i++) {
            if (!id_is_zero(m->slots[i].key)) {
                idmap_insert_fresh(slots, mask, m->slots[i].key, m->slots[i].value);
            }
        }
    }
    free(m->slots);
    m->slots = slots;
    m->mask = mask;
    return true;
}

bool idmap_reserve(idmap *m, size_t n) {
    if (m->slots != NULL && n <= ((size_t)m->mask + 1) / 4 * 3) {
        return true;
    }
    size_t capacity = 16;
    while (capacity / 4 * 3 < n) {
        if (capacity >= IDMAP_CAPACITY_MAX) {
            return false;
        }
        capacity *= 2;
    }
    if (m->slots != NULL && capacity <= (size_t)m->mask + 1) {
        return true;
    }
    return idmap_resize(m, capacity);
}

bool idmap_put(idmap *m, tally_id key, uint32_t value) {
    assert(!id_is_zero(key));
    if (m->slots == NULL || (size_t)m->count + 1 > ((size_t)m->mask + 1) / 4 * 3) {
        if (!idmap_reserve(m, (size_t)m->count * 2 + 1)) {
            return false;
        }
    }
    uint32_t i = (uint32_t)id_hash(key) & m->mask;
    for (;; i = (i + 1) & m->mask) {
        idmap_slot *s = &m->slots[i];
        if (id_eq(s->key, key)) {
            s->value = value;
            return true;
        }
        if (id_is_zero(s->key)) {
            s->key = key;
            s->value = value;
            m->count++;
            return true;
        }
    }
}
