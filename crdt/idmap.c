/*
 * crdt/idmap.c — see idmap.h for the invariants.
 */
#include "crdt/idmap.h"

#include <assert.h>
#include <string.h>

#include "crdt/guard.h"
#include "crdt/mem.h"

/* Tables are crdt/mem.h blocks. Those of 2 MiB and more go on huge pages where the system offers
 * them: a lookup of a new random id lands on a random page of a table that outgrows the caches,
 * and with 4 KiB pages that is a TLB miss as well as a cache miss, a two-level page walk in a
 * virtual machine. docs/benchmarks.md has the measurement. */
static size_t table_bytes(size_t capacity) {
    return capacity * sizeof(idmap_slot);
}

static void slots_free(idmap_slot *slots, uint32_t mask) {
    mem_free(slots, table_bytes((size_t)mask + 1));
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

bool idmap_remove(idmap *m, tally_id key) {
    uint32_t h = idmap_hash(key);
    idmap_slot *s = m->slots != NULL ? idmap_probe(m, key, h) : NULL;
    if (s == NULL || s->ref == 0) {
        return false;
    }
    /* backward-shift deletion: every later key of the run that may move into the hole does,
     * so that no probe ever stops short of its key (linear probing with no tombstones) */
    uint32_t hole = (uint32_t)(s - m->slots);
    m->slots[hole].ref = 0;
    for (uint32_t j = (hole + 1) & m->mask; m->slots[j].ref != 0; j = (j + 1) & m->mask) {
        uint32_t home = m->slots[j].hash & m->mask;
        /* j's key stays unless its home lies cyclically in (hole, j] */
        bool stays = hole < j ? home > hole && home <= j : home > hole || home <= j;
        if (!stays) {
            m->slots[hole] = m->slots[j];
            m->slots[j].ref = 0;
            hole = j;
        }
    }
    m->count--;
    return true;
}

/* The first empty slot from h's home: where an insert of a key with hash h puts it. */
static uint32_t first_empty(const idmap_slot *slots, uint32_t mask, uint32_t h) {
    uint32_t i = h & mask;
    while (slots[i].ref != 0) {
        i = (i + 1) & mask;
    }
    return i;
}

/* Takes the key at slot i (if any) out and inserts it again under mask; returns where it went
 * when that is below its home (its probe ran off the end of the table), else IDMAP_NONE. */
static uint32_t reinsert(idmap_slot *slots, uint32_t mask, uint32_t i) {
    idmap_slot s = slots[i];
    if (s.ref == 0) {
        return IDMAP_NONE;
    }
    slots[i].ref = 0;
    uint32_t k = first_empty(slots, mask, s.hash);
    slots[k] = s;
    return k < (s.hash & mask) ? k : IDMAP_NONE;
}

/* Rehashes, within the grown table, the keys in its first old_capacity slots (the rest are
 * empty), without a second table: a doubled map touches fresh memory only for its new half.
 *
 * A key's new home is its old home or that plus a multiple of old_capacity. Taking a key out
 * and inserting it again is safe when its probe runs only through slots that will not be emptied
 * later: slots already rehashed and the new ones (both only ever fill), and its own, just
 * emptied. Taking the old slots in run order, from just after an empty slot e to the end and
 * then from 0 to e, gives exactly that:
 *   - a key after e sits at or after its old home (its run cannot cross the empty e), so its
 *     probe from the old home ends at the latest in its own slot, or runs on into the new slots;
 *     and no part of the grown table's end is the new home of more of these keys than it has
 *     slots, so while they are taken no probe runs off the end into the slots before e;
 *   - a key before e whose run wrapped around the old end may run off the new end into slot 0:
 *     by then everything up to its own slot has been rehashed. */
static void rehash_in_place(idmap_slot *slots, uint32_t old_capacity, uint32_t mask) {
    uint32_t e = 0;
    while (slots[e].ref != 0) {
        e++; /* the load is at most 1/2 (or 3/4 in an old snapshot): some old slot is empty */
    }
    for (uint32_t i = e + 1; i < old_capacity; i++) {
        uint32_t wrapped = reinsert(slots, mask, i);
        assert(wrapped == IDMAP_NONE && "no probe runs off the end before the wrapping run");
        (void)wrapped;
    }
    for (uint32_t i = 0; i < e; i++) {
        (void)reinsert(slots, mask, i);
    }
}

static bool idmap_resize(idmap *m, size_t capacity) {
    size_t old_capacity = m->slots != NULL ? (size_t)m->mask + 1 : 0;
    idmap_slot *slots = mem_zgrow(m->slots, table_bytes(old_capacity), table_bytes(capacity), true);
    if (slots == NULL) {
        return false;
    }
    m->slots = slots;
    m->mask = (uint32_t)(capacity - 1);
    if (old_capacity > 0) {
        rehash_in_place(slots, (uint32_t)old_capacity, m->mask);
    }
    return true;
}

size_t idmap_fit(size_t n) {
    size_t capacity = 16;
    while (idmap_room(capacity) < n) {
        if (capacity >= IDMAP_CAPACITY_MAX) {
            return 0;
        }
        capacity *= 2;
    }
    return capacity;
}

void idmap_pack(const idmap *m, idmap_slot *out, uint32_t capacity) {
    assert((capacity & (capacity - 1)) == 0 && m->count <= idmap_room(capacity));
    for (size_t i = 0; m->slots != NULL && i <= m->mask; i++) {
        if (m->slots[i].ref != 0) {
            out[first_empty(out, capacity - 1, m->slots[i].hash)] = m->slots[i];
        }
    }
}

bool idmap_grow(idmap *m, size_t n) {
    size_t capacity = idmap_fit(n);
    if (capacity == 0) {
        return false;
    }
    if (m->slots != NULL && capacity <= (size_t)m->mask + 1) {
        return true;
    }
    return idmap_resize(m, capacity);
}

void idmap_touch(idmap *m) {
    if (m->slots != NULL) {
        size_t bytes = table_bytes((size_t)m->mask + 1);
        mem_touch(m->slots, bytes, 0, bytes);
    }
}

bool idmap_put(idmap *m, tally_id key, uint32_t value) {
    assert(value < IDMAP_NONE);
    uint32_t h = idmap_hash(key);
    idmap_slot *s = m->slots != NULL ? idmap_probe(m, key, h) : NULL;
    if (s == NULL || s->ref == 0) {
        /* A new key: the table grows (to the smallest size that holds it) only if it must. A
         * key already there is replaced in place, which never allocates. */
        if (m->slots == NULL || (size_t)m->count + 1 > idmap_room((size_t)m->mask + 1)) {
            if (!idmap_grow(m, (size_t)m->count + 1)) {
                return false;
            }
            s = idmap_probe(m, key, h);
        }
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
    /* a full table has no empty slot to end the probe: it would loop for ever */
    GUARD(m->slots != NULL && (size_t)m->count + 1 <= idmap_room((size_t)m->mask + 1));
    return insert_at(m, idmap_probe(m, key, h), h, value);
}

uint32_t idmap_insert_spot(idmap *m, tally_id key, uint32_t h, uint32_t value,
                           const idmap_spot *spot) {
    assert(value < IDMAP_NONE);
    GUARD(m->slots != NULL && (size_t)m->count + 1 <= idmap_room((size_t)m->mask + 1));
    if (spot->mask != 0 && spot->mask == m->mask && spot->count == m->count) {
        /* Nothing inserted since the lookup: its probe would end in the same empty slot. */
        assert(m->slots[spot->index].ref == 0 ||
               id_eq(*m->key(m->ctx, m->slots[spot->index].ref - 1), key));
        return insert_at(m, &m->slots[spot->index], h, value);
    }
    return idmap_insert_hashed(m, key, h, value);
}
