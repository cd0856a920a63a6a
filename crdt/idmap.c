/*
 * crdt/idmap.c — see idmap.h for the invariants.
 */
#include "crdt/idmap.h"

#include <assert.h>
#include <string.h>

#include "crdt/mem.h"

/* A zeroed table of capacity slots, or NULL. Tables of 2 MiB and more go on huge pages where
 * the system offers them (crdt/mem.h): a lookup of a new random id lands on a random page of a
 * table that outgrows the caches, and with 4 KiB pages that is a TLB miss as well as a cache
 * miss, a two-level page walk in a virtual machine. docs/benchmarks.md has the measurement. */
static idmap_slot *slots_alloc(size_t capacity) {
    return mem_zalloc(capacity * sizeof(idmap_slot), true);
}

static void slots_free(idmap_slot *slots, uint32_t mask) {
    mem_free(slots, ((size_t)mask + 1) * sizeof *slots);
}

void idmap_init(idmap *m, idmap_key_fn key, const void *ctx) {
    m->slots = NULL;
    m->mask = 0;
    m->count = 0;
    m->key = key;
    m->ctx = ctx;
}

void idmap_free(idmap *m) {
    slots_free(m->slots, m->mask);
    m->slots = NULL;
    m->mask = 0;
    m->count = 0;
}

void idmap_clear(idmap *m) {
    if (m->slots != NULL) {
        memset(m->slots, 0, ((size_t)m->mask + 1) * sizeof *m->slots);
    }
    m->count = 0;
}

static bool idmap_resize(idmap *m, size_t capacity) {
    idmap_slot *slots = slots_alloc(capacity);
    if (slots == NULL) {
        return false;
    }
    uint32_t mask = (uint32_t)(capacity - 1);
    if (m->slots != NULL) {
        for (size_t i = 0; i <= m->mask; i++) {
            if (m->slots[i].ref != 0) {
                uint32_t k = m->slots[i].hash & mask;
                while (slots[k].ref != 0) {
                    k = (k + 1) & mask;
                }
                slots[k] = m->slots[i];
            }
        }
    }
    slots_free(m->slots, m->mask);
    m->slots = slots;
    m->mask = mask;
    return true;
}

bool idmap_grow(idmap *m, size_t n) {
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
    assert(value < IDMAP_NONE);
    if (m->slots == NULL || (size_t)m->count + 1 > ((size_t)m->mask + 1) / 4 * 3) {
        if (!idmap_reserve(m, (size_t)m->count * 2 + 1)) {
            return false;
        }
    }
    uint32_t h = idmap_hash(key);
    idmap_slot *s = idmap_probe(m, key, h);
    if (s->ref == 0) {
        s->hash = h;
        m->count++;
    }
    s->ref = value + 1;
    return true;
}

/* Inserts into slot s, where the probe for key ended, unless key is there already. */
static uint32_t insert_at(idmap *m, idmap_slot *s, uint32_t h, uint32_t value) {
    if (s->ref != 0) {
        return s->ref - 1;
    }
    s->ref = value + 1;
    s->hash = h;
    m->count++;
    return IDMAP_NONE;
}

uint32_t idmap_insert_hashed(idmap *m, tally_id key, uint32_t h, uint32_t value) {
    assert(value < IDMAP_NONE);
    assert(m->slots != NULL && (size_t)m->count + 1 <= ((size_t)m->mask + 1) / 4 * 3);
    return insert_at(m, idmap_probe(m, key, h), h, value);
}

uint32_t idmap_insert_spot(idmap *m, tally_id key, uint32_t h, uint32_t value,
                           const idmap_spot *spot) {
    assert(value < IDMAP_NONE);
    assert(m->slots != NULL && (size_t)m->count + 1 <= ((size_t)m->mask + 1) / 4 * 3);
    if (spot->mask != 0 && spot->mask == m->mask && spot->count == m->count) {
        /* Nothing inserted since the lookup: its probe would end in the same empty slot. */
        assert(m->slots[spot->index].ref == 0 ||
               id_eq(*m->key(m->ctx, m->slots[spot->index].ref - 1), key));
        return insert_at(m, &m->slots[spot->index], h, value);
    }
    return idmap_insert_hashed(m, key, h, value);
}
