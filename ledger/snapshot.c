/*
 * ledger/snapshot.c — a replica's whole state in one file, so that opening need not replay the
 * journal from the beginning.
 *
 * A snapshot holds every record the replica keeps (the ops themselves, which it must still be
 * able to send to a peer, and what was derived from them), field by field in little-endian
 * order, and the journal position it reflects: opening loads it and replays only the frames
 * after that position. docs/durability.md lists every field.
 *
 * 1. The file is written to a temporary name, synced, renamed and its directory synced
 *    (journal.c), so a crash leaves either the old snapshot or the new one, whole.
 * 2. A checksum (XXH3-64) covers every byte; a snapshot that fails it, any bound check on a
 *    count or an index, or the invariants replica_check_loaded checks (no account overdrawn,
 *    rights that add up, conservation, a deadline for every timed pending, one it can void)
 *    is not loaded (the journal decides what to do instead). A checksum anyone can recompute;
 *    the invariants hold a snapshot to what replaying the journal keeps op by op.
 * 3. Loading fills a replica that holds nothing yet; on failure the caller discards it.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ledger/branch.h"
#include "ledger/chain.h"
#include "ledger/codec.h"
#include "ledger/replica.h"
#include "ledger/snapshot.h"

static const uint8_t snapshot_magic[4] = {'T', 'L', 'Y', 'C'};
/* Version 2 added the journal's last CLOCK record, version 3 each origin's key and signed runs
 * (ledger/chain.c), version 4 the proofs of forks, version 5 the cluster's authority and the
 * admission certificates, version 6 the branches of forked replicas' histories and the second
 * finishes of pendings (ledger/branch.c); versions 1 to 5 still load. */
#define SNAPSHOT_VERSION 6
#define SNAPSHOT_HEADER 48

/* --- the records, each defined once -------------------------------------------------------- */

/* Each record's fields in file order, as X(width, what the writer writes, where the reader
 * reads it into). The writer, the reader and the record sizes are all made from these lists,
 * so they cannot drift apart. A field read into a bare name (a local of the loader) is checked
 * or converted before it is stored: the record does not keep it as written. */
#define FIELD_BYTES_8 1
#define FIELD_BYTES_16 2
#define FIELD_BYTES_32 4
#define FIELD_BYTES_64 8
#define FIELD_BYTES_128 16
#define FIELD_BYTES_id 16
#define FIELD_SIZE(width, out, in) +FIELD_BYTES_##width
#define FIELD_WRITE(width, out, in) w##width(w, out);
#define FIELD_READ(width, out, in) in = r##width(c);

#define OPEN_FIELDS(X)                                                                             \
    X(id, o->a.id, o->a.id)                                                                        \
    X(64, o->a.user_data, o->a.user_data)                                                          \
    X(32, o->a.ledger, o->a.ledger)                                                                \
    X(16, o->a.code, o->a.code)                                                                    \
    X(16, o->a.flags, o->a.flags)                                                                  \
    X(32, o->origin, o->origin)                                                                    \
    X(32, o->account, o->account)                                                                  \
    X(32, o->next, o->next)                                                                        \
    X(64, o->seq, o->seq)                                                                          \
    X(64, o->hlc, o->hlc)

/* then the holder count (32) and the holders */
#define ACCOUNT_FIELDS(X)                                                                          \
    X(id, a->id, a->id)                                                                            \
    X(32, a->ledger, a->ledger)                                                                    \
    X(16, a->flags, a->flags)                                                                      \
    X(8, a->conflicted, a->conflicted)                                                             \
    X(8, replica_account_head(r, a->id) == i, head)                                                \
    X(32, a->open, a->open)                                                                        \
    X(32, a->next, a->next)                                                                        \
    X(32, a->opens, a->opens)                                                                      \
    X(128, a->debits_posted, a->debits_posted)                                                     \
    X(128, a->credits_posted, a->credits_posted)                                                   \
    X(128, a->debits_pending, a->debits_pending)                                                   \
    X(128, a->credits_pending, a->credits_pending)

#define HOLDER_FIELDS(X)                                                                           \
    X(32, h->holder, holder)                                                                       \
    X(128, h->amount, amount)

#define TRANSFER_FIELDS(X)                                                                         \
    X(id, t->id, t->id)                                                                            \
    X(64, t->amount, t->amount)                                                                    \
    X(64, t->user_data, t->user_data)                                                              \
    X(64, t->seq, seq)                                                                             \
    X(64, t->hlc, t->hlc)                                                                          \
    X(32, transfer_ledger(r, t), ledger)                                                           \
    X(32, t->timeout_ms, t->timeout_ms)                                                            \
    X(32, t->origin, origin)                                                                       \
    X(32, t->debit, t->debit)                                                                      \
    X(32, t->credit, t->credit)                                                                    \
    X(32, t->link, t->link)                                                                        \
    X(32, t->next, t->next)                                                                        \
    X(16, t->code, t->code)                                                                        \
    X(16, t->flags, t->flags)                                                                      \
    X(8, t->kind, kind)                                                                            \
    X(8, t->state, state)                                                                          \
    X(8, t->expired, expired)

#define GRANT_FIELDS(X)                                                                            \
    X(32, g->account, g->account)                                                                  \
    X(32, g->origin, g->origin)                                                                    \
    X(32, g->to, g->to)                                                                            \
    X(64, g->seq, g->seq)                                                                          \
    X(64, g->hlc, g->hlc)                                                                          \
    X(64, g->amount, g->amount)

#define EXPIRY_FIELDS(X)                                                                           \
    X(64, e->deadline_ms, e->deadline_ms)                                                          \
    X(32, e->transfer, e->transfer)

/* The encoded size of each record: what a count of them is checked against before loading. */
enum {
    OPEN_BYTES = 0 OPEN_FIELDS(FIELD_SIZE),
    ACCOUNT_BYTES = 0 ACCOUNT_FIELDS(FIELD_SIZE) + FIELD_BYTES_32,
    HOLDER_BYTES = 0 HOLDER_FIELDS(FIELD_SIZE),
    TRANSFER_BYTES = 0 TRANSFER_FIELDS(FIELD_SIZE),
    GRANT_BYTES = 0 GRANT_FIELDS(FIELD_SIZE),
    EXPIRY_BYTES = 0 EXPIRY_FIELDS(FIELD_SIZE),
};
/* docs/durability.md gives these sizes: a field added or dropped above must be written there */
_Static_assert(OPEN_BYTES == 60 && ACCOUNT_BYTES == 104 && HOLDER_BYTES == 20 &&
                   TRANSFER_BYTES == 83 && GRANT_BYTES == 36 && EXPIRY_BYTES == 12,
               "the record sizes docs/durability.md gives");

/* --- writing: a buffered stream with a running checksum ------------------------------------ */

typedef struct writer {
    int fd;
    bool failed;
    size_t n;
    XXH3_state_t *hash;
    uint8_t buf[1 << 16];
} writer;

static void w_flush(writer *w) {
    XXH3_64bits_update(w->hash, w->buf, w->n); /* hashing a whole buffer at once is fast */
    size_t done = 0;
    while (!w->failed && done < w->n) {
        ssize_t k = write(w->fd, w->buf + done, w->n - done);
        if (k <= 0) {
            w->failed = true;
        } else {
            done += (size_t)k;
        }
    }
    w->n = 0;
}

static void w_bytes(writer *w, const void *p, size_t len) {
    const uint8_t *b = p;
    while (len > 0) {
        if (w->n == sizeof w->buf) {
            w_flush(w);
        }
        size_t k = sizeof w->buf - w->n < len ? sizeof w->buf - w->n : len;
        memcpy(w->buf + w->n, b, k);
        w->n += k;
        b += k;
        len -= k;
    }
}

static void w64(writer *w, uint64_t v) {
    uint8_t b[8];
    put_u64le(b, v);
    w_bytes(w, b, 8);
}
static void w32(writer *w, uint32_t v) {
    uint8_t b[4];
    put_u32le(b, v);
    w_bytes(w, b, 4);
}
static void w16(writer *w, uint16_t v) {
    uint8_t b[2];
    put_u16le(b, v);
    w_bytes(w, b, 2);
}
static void w8(writer *w, uint8_t v) { w_bytes(w, &v, 1); }
static void wid(writer *w, tally_id id) {
    w64(w, id.hi);
    w64(w, id.lo);
}
static void w128(writer *w, u128 v) {
    w64(w, v.hi);
    w64(w, v.lo);
}

/* The transfer map as a snapshot keeps it: the replica's table, or a copy sized to its keys when
 * the table is larger than they need (reserved ahead: tally_reserve), so that a snapshot holds no
 * more empty slots than a map grown as it went. */
typedef struct snapshot_map {
    const idmap_slot *slots;
    uint32_t capacity;
    idmap_slot *packed; /* owned; NULL when slots are the replica's */
} snapshot_map;

static bool snapshot_map_init(snapshot_map *sm, const idmap *m) {
    sm->slots = m->slots;
    sm->capacity = m->slots != NULL ? m->mask + 1 : 0;
    sm->packed = NULL;
    uint32_t fit = m->count > 0 ? (uint32_t)idmap_fit(m->count) : 0;
    if (fit >= sm->capacity) {
        return true;
    }
    if (fit > 0) {
        if ((sm->packed = calloc(fit, sizeof *sm->packed)) == NULL) {
            return false;
        }
        idmap_pack(m, sm->packed, fit);
    }
    sm->slots = sm->packed;
    sm->capacity = fit;
    return true;
}

static void write_body(writer *w, const tally_replica *r, const snapshot_map *map) {
    w64(w, r->clock.last);
    w8(w, r->steady_journaled);
    w64(w, r->journaled_steady.now);
    w64(w, r->journaled_steady.wall_last);
    w64(w, r->pending_open);
    w64(w, 0); /* once the refused-for-rights counter, which is counted since open */
    w32(w, r->origins.count);
    for (uint32_t i = 0; i < r->origins.count; i++) {
        const origin_rec *o = &r->origins.at[i];
        w64(w, o->id);
        w64(w, o->seq);
        /* version 6: where its history is (branch.h) */
        w64(w, o->base);
        w32(w, o->of);
        w32(w, o->parent);
        w32(w, o->branches);
        if (origin_is_branch(o)) {
            w_bytes(w, o->genesis, CRYPTO_HASH);
        }
        for (uint64_t s = 0; s < o->seq - o->base; s++) {
            w32(w, o->position[s]);
        }
        w8(w, o->keyed);
        if (o->keyed) {
            w_bytes(w, o->pub, CRYPTO_KEY);
        }
        w32(w, o->runs.count);
        for (uint32_t k = 0; k < o->runs.count; k++) {
            w32(w, o->runs.at[k].last);
            w_bytes(w, o->runs.at[k].hash, CRYPTO_HASH);
            w_bytes(w, o->runs.at[k].sig, CRYPTO_SIG);
        }
    }
    w32(w, r->opens.count);
    for (uint32_t i = 0; i < r->opens.count; i++) {
        const open_rec *o = &r->opens.at[i];
        OPEN_FIELDS(FIELD_WRITE)
    }
    w32(w, r->accounts.count);
    for (uint32_t i = 0; i < r->accounts.count; i++) {
        const account_rec *a = &r->accounts.at[i];
        ACCOUNT_FIELDS(FIELD_WRITE)
        w32(w, a->rights.count);
        for (uint32_t k = 0; k < a->rights.count; k++) {
            const rights_entry *h = rights_at(&a->rights, k);
            HOLDER_FIELDS(FIELD_WRITE)
        }
    }
    w32(w, r->transfers.count);
    for (uint32_t i = 0; i < r->transfers.count; i++) {
        const transfer_rec *t = &r->transfers.at[i];
        TRANSFER_FIELDS(FIELD_WRITE)
    }
    /* The transfer map itself: rebuilding it would cost a random memory access per transfer,
     * reading it back is sequential. */
    w32(w, map->capacity);
    w32(w, r->transfer_map.count);
    for (uint32_t i = 0; i < map->capacity; i++) {
        w32(w, map->slots[i].ref);
        w32(w, map->slots[i].hash);
    }
    w32(w, r->grants.count);
    for (uint32_t i = 0; i < r->grants.count; i++) {
        const grant_rec *g = &r->grants.at[i];
        GRANT_FIELDS(FIELD_WRITE)
    }
    w32(w, r->log.count);
    for (uint32_t i = 0; i < r->log.count; i++) {
        w32(w, (uint32_t)r->log.at[i].kind << 29 | r->log.at[i].index);
    }
    w32(w, r->expiries.count);
    for (uint32_t i = 0; i < r->expiries.count; i++) {
        const expiry *e = &r->expiries.at[i];
        EXPIRY_FIELDS(FIELD_WRITE)
    }
    w32(w, r->conflicted_accounts.count);
    for (uint32_t i = 0; i < r->conflicted_accounts.count; i++) {
        wid(w, r->conflicted_accounts.at[i]);
    }
    w32(w, r->conflicted_transfers.count);
    for (uint32_t i = 0; i < r->conflicted_transfers.count; i++) {
        wid(w, r->conflicted_transfers.at[i]);
    }
    w32(w, r->forks.count);
    for (uint32_t i = 0; i < r->forks.count; i++) {
        const fork_rec *f = &r->forks.at[i];
        w32(w, f->origin);
        for (int side = 0; side < 2; side++) {
            w64(w, f->side[side].first);
            w64(w, f->side[side].last);
            w_bytes(w, f->side[side].rest, FORK_SIDE);
        }
    }
    /* admission (version 5): the authority's certificate (length 0: none), then the origins'
     * certificates */
    w32(w, r->admission != NULL ? r->admission->len : 0);
    if (r->admission != NULL) {
        w_bytes(w, r->admission->der, r->admission->len);
    }
    uint32_t certs = 0;
    for (uint32_t i = 0; i < r->origins.count; i++) {
        certs += r->origins.at[i].cert != NULL;
    }
    w32(w, certs);
    for (uint32_t i = 0; i < r->origins.count; i++) {
        const origin_rec *o = &r->origins.at[i];
        if (o->cert != NULL) {
            w32(w, i);
            w32(w, o->cert_len);
            w_bytes(w, o->cert, o->cert_len);
        }
    }
    /* version 6: finishes that are not their pending's link */
    w32(w, r->refinished.count);
    for (uint32_t i = 0; i < r->refinished.count; i++) {
        w32(w, r->refinished.at[i]);
    }
}

int snapshot_write(const tally_replica *r, int fd, uint64_t segment, uint64_t offset) {
    writer *w = malloc(sizeof *w);
    XXH3_state_t *hash = XXH3_createState();
    snapshot_map map;
    bool map_ok = snapshot_map_init(&map, &r->transfer_map);
    if (w == NULL || hash == NULL || !map_ok) {
        free(w);
        XXH3_freeState(hash);
        free(map.packed);
        return TALLY_ENOMEM;
    }
    w->fd = fd;
    w->failed = false;
    w->n = 0;
    w->hash = hash;
    XXH3_64bits_reset(hash);
    uint8_t h[SNAPSHOT_HEADER];
    memset(h, 0, sizeof h);
    memcpy(h, snapshot_magic, 4);
    put_u32le(h + 4, SNAPSHOT_VERSION);
    put_u64le(h + 8, r->id);
    put_u64le(h + 16, segment);
    put_u64le(h + 24, offset);
    put_u64le(h + 32, r->log.count);
    w_bytes(w, h, sizeof h);
    write_body(w, r, &map);
    free(map.packed);
    w_flush(w);
    uint64_t sum = XXH3_64bits_digest(hash);
    uint8_t tail[8];
    put_u64le(tail, sum);
    size_t n = w->n;
    memcpy(w->buf, tail, 8); /* the checksum itself is not hashed */
    w->n = 8;
    (void)n;
    size_t done = 0;
    while (!w->failed && done < w->n) {
        ssize_t k = write(w->fd, w->buf + done, w->n - done);
        w->failed = k <= 0;
        done += k > 0 ? (size_t)k : 0;
    }
    int rc = w->failed ? TALLY_EIO : TALLY_OK;
    XXH3_freeState(hash);
    free(w);
    return rc;
}

/* --- reading: a cursor that refuses to run past the end ------------------------------------ */

typedef struct reader {
    const uint8_t *p, *end;
    bool bad;
} reader;

static bool r_need(reader *c, size_t n) {
    if (c->bad || (size_t)(c->end - c->p) < n) {
        c->bad = true;
        return false;
    }
    return true;
}
static uint64_t r64(reader *c) {
    if (!r_need(c, 8)) {
        return 0;
    }
    uint64_t v = get_u64le(c->p);
    c->p += 8;
    return v;
}
static uint32_t r32(reader *c) {
    if (!r_need(c, 4)) {
        return 0;
    }
    uint32_t v = get_u32le(c->p);
    c->p += 4;
    return v;
}
static uint16_t r16(reader *c) {
    if (!r_need(c, 2)) {
        return 0;
    }
    uint16_t v = get_u16le(c->p);
    c->p += 2;
    return v;
}
static uint8_t r8(reader *c) {
    if (!r_need(c, 1)) {
        return 0;
    }
    return *c->p++;
}
static tally_id rid(reader *c) {
    tally_id id;
    id.hi = r64(c);
    id.lo = r64(c);
    return id;
}
static u128 r128(reader *c) {
    u128 v;
    v.hi = r64(c);
    v.lo = r64(c);
    return v;
}

/* A count of records of at least `min_size` bytes each: bounded by what is left to read. */
static uint32_t r_count(reader *c, size_t min_size) {
    uint32_t n = r32(c);
    if (n > REPLICA_RECORDS_MAX || (size_t)(c->end - c->p) / min_size < n) {
        c->bad = true;
        return 0;
    }
    return n;
}

/* Loads the transfer map's slots as written. Every slot must point at a transfer; that a slot
 * sits where its key hashes is vouched for by the checksum (and a misplaced one could only make
 * a lookup miss: idmap_get confirms every hit against the record's id). */
static int load_transfer_map(tally_replica *r, reader *c) {
    uint32_t capacity = r32(c), count = r32(c);
    if (capacity == 0) {
        return count == 0 && r->transfers.count == 0 ? TALLY_OK : TALLY_ECORRUPT;
    }
    /* up to 3/4 full: the map's load limit when earlier versions wrote snapshots */
    if ((capacity & (capacity - 1)) != 0 || capacity > IDMAP_CAPACITY_MAX ||
        (uint64_t)count * 4 > (uint64_t)capacity * 3 ||
        (size_t)(c->end - c->p) / 8 < capacity) {
        return TALLY_ECORRUPT;
    }
    idmap *m = &r->transfer_map;
    if (!idmap_reserve(m, idmap_room(capacity)) || m->mask + 1 != capacity) {
        return m->slots == NULL ? TALLY_ENOMEM : TALLY_ECORRUPT;
    }
    uint32_t used = 0;
    for (uint32_t i = 0; i < capacity; i++) {
        uint32_t ref = r32(c), hash = r32(c);
        if (ref > r->transfers.count) {
            return TALLY_ECORRUPT;
        }
        m->slots[i].ref = ref;
        m->slots[i].hash = hash;
        used += ref != 0;
    }
    if (used != count) {
        return TALLY_ECORRUPT;
    }
    m->count = count;
    /* a table fuller than today's limit grows to it now (crdt/idmap.h, invariant 2) */
    return idmap_reserve(m, count) ? TALLY_OK : TALLY_ENOMEM;
}

#define ARRAY_LOAD(arr, n) (ARRAY_RESERVE(arr, n) ? ((arr).count = (n), true) : false)

static bool index_ok(uint32_t i, uint32_t count, bool none_ok) {
    return i < count || (none_ok && i == NONE);
}

/* An origin's key and runs (version 3): runs in increasing order from seq 1, all but the last
 * within the ops here (chain.h, invariant 2), and none without a key. */
static int load_runs(tally_replica *r, reader *c, uint32_t i) {
    origin_rec *o = &r->origins.at[i];
    uint8_t keyed = r8(c);
    if (keyed > 1 || (keyed && !r_need(c, CRYPTO_KEY))) {
        return TALLY_ECORRUPT;
    }
    if (keyed) {
        if (!crypto_key_valid(c->p) || !chain_set_key(r, i, c->p)) {
            return crypto_key_valid(c->p) ? TALLY_ENOMEM : TALLY_ECORRUPT;
        }
        c->p += CRYPTO_KEY;
    }
    uint32_t n = r_count(c, 4 + CRYPTO_HASH + CRYPTO_SIG);
    if (c->bad || (n > 0 && !keyed)) {
        return TALLY_ECORRUPT;
    }
    if (!ARRAY_RESERVE(o->runs, n)) {
        return TALLY_ENOMEM;
    }
    for (uint32_t k = 0; k < n && !c->bad; k++) {
        run_rec *run = &o->runs.at[ARRAY_PUSH(o->runs)];
        run->last = r32(c);
        if (!r_need(c, CRYPTO_HASH + CRYPTO_SIG) || run->last < chain_run_first(o, k) ||
            (k + 1 < n && run->last > o->seq)) {
            return TALLY_ECORRUPT;
        }
        memcpy(run->hash, c->p, CRYPTO_HASH);
        memcpy(run->sig, c->p + CRYPTO_HASH, CRYPTO_SIG);
        c->p += CRYPTO_HASH + CRYPTO_SIG;
    }
    return c->bad ? TALLY_ECORRUPT : TALLY_OK;
}

/* The branches (branch.h, invariant 1): each in its replica's history, under its key, and
 * each replica's count of them right. */
static int branches_ok(const tally_replica *r) {
    uint32_t n = r->origins.count;
    for (uint32_t i = 0; i < n; i++) {
        const origin_rec *o = &r->origins.at[i];
        uint32_t count = 0;
        for (uint32_t k = 0; k < n; k++) {
            count += k != i && r->origins.at[k].of == i;
        }
        if (origin_is_branch(o)) {
            const origin_rec *x = &r->origins.at[o->of];
            uint32_t steps = 0;
            uint32_t a = o->parent;
            while (a != o->of && a != NONE && steps++ < n) {
                a = r->origins.at[a].parent;
            }
            if (a != o->of || origin_is_branch(x) || !o->keyed || !x->keyed || o->branches != 0 ||
                memcmp(o->pub, x->pub, CRYPTO_KEY) != 0 || o->cert != NULL ||
                o->base < r->origins.at[o->parent].base) {
                return TALLY_ECORRUPT;
            }
        } else if (o->branches != count) {
            return TALLY_ECORRUPT;
        }
    }
    return TALLY_OK;
}

static int load_origins(tally_replica *r, reader *c, uint32_t version) {
    uint32_t n = r_count(c, 16);
    if (n == 0 || n > REPLICA_ORIGINS_MAX) {
        return TALLY_ECORRUPT; /* at least this replica itself */
    }
    for (uint32_t i = 0; i < n && !c->bad; i++) {
        uint64_t id = r64(c), seq = r64(c), base = 0;
        uint32_t of = i, parent = NONE, branches = 0;
        uint8_t genesis[CRYPTO_HASH];
        if (version >= 6) {
            base = r64(c);
            of = r32(c);
            parent = r32(c);
            branches = r32(c);
            if (parent != NONE && r_need(c, CRYPTO_HASH)) {
                memcpy(genesis, c->p, CRYPTO_HASH);
                c->p += CRYPTO_HASH;
            }
        }
        if (id == 0 || base > seq || seq - base > (uint64_t)(c->end - c->p) / 4 ||
            replica_origin_find(r, id) != NONE || of >= n || (parent != NONE && parent >= n) ||
            (parent == NONE) != (of == i) || (parent == NONE && base != 0) ||
            branches > BRANCHES_MAX || c->bad) {
            return TALLY_ECORRUPT;
        }
        uint32_t o = replica_origin_get(r, id);
        if (o != i) {
            return o == NONE ? TALLY_ENOMEM : TALLY_ECORRUPT;
        }
        origin_rec *orr = &r->origins.at[o];
        if (seq - base >= REPLICA_RECORDS_MAX || seq > UINT32_MAX) {
            return TALLY_ECORRUPT; /* more ops than a log holds */
        }
        orr->base = base;
        orr->of = of;
        orr->parent = parent;
        orr->branches = branches;
        orr->seq = base;
        if (!origin_reserve(orr, (uint32_t)(seq - base))) {
            return TALLY_ENOMEM;
        }
        orr->seq = seq;
        for (uint64_t s = 0; s < seq - base; s++) {
            orr->position[s] = r32(c);
        }
        int rc = version >= 3 ? load_runs(r, c, o) : TALLY_OK;
        if (rc != TALLY_OK) {
            return rc;
        }
        if (parent != NONE) {
            memcpy(orr->genesis, genesis, CRYPTO_HASH); /* load_runs made one from its id */
        }
    }
    return c->bad ? TALLY_ECORRUPT : branches_ok(r);
}

/* One account incarnation and its holders, as record i. */
static int load_account(tally_replica *r, reader *c, uint32_t i) {
    account_rec *a = &r->accounts.at[i];
    bool head;
    ACCOUNT_FIELDS(FIELD_READ)
    uint32_t holders = r_count(c, HOLDER_BYTES);
    for (uint32_t k = 0; k < holders && !c->bad; k++) {
        uint32_t holder;
        u128 amount;
        HOLDER_FIELDS(FIELD_READ)
        if (holder >= r->origins.count || u128_is_zero(amount) ||
            !u128_is_zero(rights_get(&a->rights, holder))) {
            return TALLY_ECORRUPT;
        }
        if (!rights_add(&a->rights, holder, 1)) {
            return TALLY_ENOMEM;
        }
        rights_at(&a->rights, a->rights.count - 1)->amount = amount;
    }
    if (id_is_zero(a->id) || (head && idmap_get(&r->account_map, a->id) != NONE)) {
        return TALLY_ECORRUPT;
    }
    return head && !idmap_put(&r->account_map, a->id, i) ? TALLY_ENOMEM : TALLY_OK;
}

/* One transfer, as record i. What the record does not keep must be what it would have derived
 * (the rest of the indices are checked once everything is loaded). */
static int load_transfer(tally_replica *r, reader *c, uint32_t i) {
    transfer_rec *t = &r->transfers.at[i];
    uint64_t seq;
    uint32_t ledger, origin;
    uint8_t kind, state, expired;
    TRANSFER_FIELDS(FIELD_READ)
    if (seq > UINT32_MAX || origin >= REPLICA_ORIGINS_MAX || t->debit >= r->accounts.count ||
        r->accounts.at[t->debit].ledger != ledger || kind > OP_KIND_MAX ||
        state > TALLY_PENDING_TIMED_OUT || expired > 1) {
        return TALLY_ECORRUPT;
    }
    t->seq = (uint32_t)seq;
    t->origin = (uint16_t)origin;
    t->kind = kind;
    t->state = state;
    t->expired = expired;
    return TALLY_OK;
}

static int load_records(tally_replica *r, reader *c) {
    uint32_t n = r_count(c, OPEN_BYTES);
    if (!ARRAY_LOAD(r->opens, n)) {
        return TALLY_ENOMEM;
    }
    for (uint32_t i = 0; i < n; i++) {
        open_rec *o = &r->opens.at[i];
        OPEN_FIELDS(FIELD_READ)
    }
    n = r_count(c, ACCOUNT_BYTES);
    if (!ARRAY_LOAD(r->accounts, n)) {
        return TALLY_ENOMEM;
    }
    if (n > 0) {
        memset(r->accounts.at, 0, (size_t)n * sizeof *r->accounts.at);
    }
    int rc = TALLY_OK;
    for (uint32_t i = 0; i < n && !c->bad && rc == TALLY_OK; i++) {
        rc = load_account(r, c, i);
    }
    n = rc == TALLY_OK ? r_count(c, TRANSFER_BYTES) : 0;
    if (rc == TALLY_OK && !ARRAY_LOAD(r->transfers, n)) {
        return TALLY_ENOMEM;
    }
    for (uint32_t i = 0; i < n && !c->bad && rc == TALLY_OK; i++) {
        rc = load_transfer(r, c, i);
    }
    if (rc == TALLY_OK) {
        rc = load_transfer_map(r, c);
    }
    if (rc != TALLY_OK) {
        return rc;
    }
    n = r_count(c, GRANT_BYTES);
    if (!ARRAY_LOAD(r->grants, n)) {
        return TALLY_ENOMEM;
    }
    for (uint32_t i = 0; i < n; i++) {
        grant_rec *g = &r->grants.at[i];
        GRANT_FIELDS(FIELD_READ)
    }
    return c->bad ? TALLY_ECORRUPT : TALLY_OK;
}

/* The proofs of forks (version 4), each checked again as if it came from a peer: a snapshot
 * cannot make an honest origin look forked. */
static int load_forks(tally_replica *r, reader *c) {
    uint32_t n = r_count(c, 4 + 2 * (16 + FORK_SIDE));
    for (uint32_t i = 0; i < n && !c->bad; i++) {
        uint32_t origin = r32(c);
        if (origin >= r->origins.count) {
            return TALLY_ECORRUPT;
        }
        op f;
        op_clear(&f);
        f.kind = OP_FORK;
        f.origin = r->origins.at[origin].id;
        for (int side = 0; side < 2; side++) {
            f.u.fork.first[side] = r64(c);
            f.u.fork.last[side] = r64(c);
            if (!r_need(c, FORK_SIDE)) {
                return TALLY_ECORRUPT;
            }
            f.u.fork.side[side] = c->p;
            c->p += FORK_SIDE;
        }
        int rc = chain_fork_accept(r, &f);
        if (rc != TALLY_OK) {
            return rc;
        }
        if (r->forks.count != i + 1) {
            return TALLY_ECORRUPT; /* one per origin, each of an origin with a key */
        }
    }
    return c->bad ? TALLY_ECORRUPT : TALLY_OK;
}

/* A certificate: its length (0: none) and DER, read into a, pointing into the snapshot. */
static bool read_admit(reader *c, op *a) {
    uint32_t len = r32(c);
    if (c->bad || len > CODEC_ADMIT_DER_MAX || !r_need(c, len)) {
        return false;
    }
    a->u.admit.der = c->p;
    a->u.admit.len = len;
    c->p += len;
    return true;
}

/* Admission (version 5), each certificate checked again as if it came from a peer. */
static int load_admission(tally_replica *r, reader *c) {
    op a;
    op_clear(&a);
    a.kind = OP_ADMIT;
    if (!read_admit(c, &a)) {
        return TALLY_ECORRUPT;
    }
    int rc = a.u.admit.len > 0 ? chain_admit_accept(r, &a, CHAIN_ADMIT_REPLAY) : TALLY_OK;
    uint32_t n = rc == TALLY_OK ? r_count(c, 8) : 0;
    for (uint32_t i = 0; i < n && rc == TALLY_OK && !c->bad; i++) {
        uint32_t origin = r32(c);
        if (origin >= r->origins.count || r->admission == NULL || !read_admit(c, &a) ||
            a.u.admit.len == 0) {
            return TALLY_ECORRUPT;
        }
        a.origin = r->origins.at[origin].id;
        rc = chain_admit_accept(r, &a, CHAIN_ADMIT_REPLAY);
        if (rc == TALLY_OK && r->origins.at[origin].cert == NULL) {
            rc = TALLY_ECORRUPT; /* one per origin */
        }
    }
    return rc != TALLY_OK ? rc : c->bad ? TALLY_ECORRUPT : TALLY_OK;
}

static int load_rest(tally_replica *r, reader *c) {
    uint32_t n = r_count(c, 4);
    if (!ARRAY_LOAD(r->log, n)) {
        return TALLY_ENOMEM;
    }
    for (uint32_t i = 0; i < n; i++) {
        uint32_t v = r32(c);
        r->log.at[i].kind = v >> 29;
        r->log.at[i].index = v & ((UINT32_C(1) << 29) - 1);
    }
    n = r_count(c, EXPIRY_BYTES);
    if (!ARRAY_LOAD(r->expiries, n)) {
        return TALLY_ENOMEM;
    }
    for (uint32_t i = 0; i < n; i++) {
        expiry *e = &r->expiries.at[i];
        EXPIRY_FIELDS(FIELD_READ)
    }
    n = r_count(c, 16);
    if (!ARRAY_LOAD(r->conflicted_accounts, n)) {
        return TALLY_ENOMEM;
    }
    for (uint32_t i = 0; i < n; i++) {
        r->conflicted_accounts.at[i] = rid(c);
    }
    n = r_count(c, 16);
    if (!ARRAY_LOAD(r->conflicted_transfers, n)) {
        return TALLY_ENOMEM;
    }
    for (uint32_t i = 0; i < n; i++) {
        r->conflicted_transfers.at[i] = rid(c);
    }
    return c->bad ? TALLY_ECORRUPT : TALLY_OK;
}

/* Every index in every record points inside its table: a snapshot cannot make the replica
 * read out of bounds, whatever its bytes. */
static bool indices_ok(const tally_replica *r) {
    uint32_t no = r->origins.count, na = r->accounts.count, nt = r->transfers.count;
    uint32_t nopen = r->opens.count, ng = r->grants.count;
    for (uint32_t i = 0; i < nopen; i++) {
        const open_rec *o = &r->opens.at[i];
        if (!index_ok(o->origin, no, false) || !index_ok(o->account, na, false) ||
            !index_ok(o->next, nopen, true)) {
            return false;
        }
    }
    for (uint32_t i = 0; i < na; i++) {
        const account_rec *a = &r->accounts.at[i];
        if (!index_ok(a->open, nopen, false) || !index_ok(a->next, na, true) ||
            !index_ok(a->opens, nopen, true)) {
            return false;
        }
    }
    for (uint32_t i = 0; i < nt; i++) {
        const transfer_rec *t = &r->transfers.at[i];
        if (!index_ok(t->origin, no, false) || !index_ok(t->debit, na, false) ||
            !index_ok(t->credit, na, false) || !index_ok(t->link, nt, true) ||
            !index_ok(t->next, nt, true) || t->kind < OP_TRANSFER || t->kind > OP_VOID ||
            (t->kind != OP_TRANSFER && t->link == NONE)) {
            return false;
        }
    }
    for (uint32_t i = 0; i < ng; i++) {
        const grant_rec *g = &r->grants.at[i];
        if (!index_ok(g->account, na, false) || !index_ok(g->origin, no, false) ||
            !index_ok(g->to, no, false)) {
            return false;
        }
    }
    for (uint32_t i = 0; i < r->log.count; i++) {
        const log_entry *e = &r->log.at[i];
        uint32_t limit = e->kind == OP_OPEN ? nopen : e->kind == OP_GRANT ? ng : nt;
        if (e->kind < OP_OPEN || e->kind > OP_KIND_MAX || e->index >= limit) {
            return false;
        }
    }
    uint64_t total = 0;
    for (uint32_t i = 0; i < no; i++) {
        const origin_rec *o = &r->origins.at[i];
        total += o->seq - o->base;
        for (uint64_t s = 0; s < o->seq - o->base; s++) {
            if (o->position[s] >= r->log.count) {
                return false;
            }
        }
    }
    for (uint32_t i = 0; i < r->refinished.count; i++) {
        uint32_t f = r->refinished.at[i];
        if (f >= nt || r->transfers.at[f].kind == OP_TRANSFER || r->transfers.at[f].link >= nt) {
            return false;
        }
    }
    for (uint32_t i = 0; i < r->expiries.count; i++) {
        if (r->expiries.at[i].transfer >= nt) {
            return false;
        }
    }
    for (uint32_t i = 0; i < r->conflicted_accounts.count; i++) {
        if (replica_account_head(r, r->conflicted_accounts.at[i]) == NONE) {
            return false;
        }
    }
    for (uint32_t i = 0; i < r->conflicted_transfers.count; i++) {
        if (idmap_get(&r->transfer_map, r->conflicted_transfers.at[i]) == NONE) {
            return false;
        }
    }
    return total == r->log.count;
}

/* Walks a family of linked lists (an index's `next` through next_of) from each head, marking
 * nodes: a node reached twice means a cycle or two lists sharing a tail, either of which would
 * send a lookup round forever. */
typedef uint32_t (*next_fn)(const tally_replica *r, uint32_t i);
static bool walk(const tally_replica *r, uint8_t *seen, uint32_t head, next_fn next) {
    for (uint32_t i = head; i != NONE; i = next(r, i)) {
        if (seen[i]) {
            return false;
        }
        seen[i] = 1;
    }
    return true;
}
static uint32_t account_next(const tally_replica *r, uint32_t i) { return r->accounts.at[i].next; }
static uint32_t open_next(const tally_replica *r, uint32_t i) { return r->opens.at[i].next; }
static uint32_t transfer_next(const tally_replica *r, uint32_t i) {
    return r->transfers.at[i].next;
}

static int chains_ok(const tally_replica *r) {
    size_t most = r->accounts.count > r->opens.count ? r->accounts.count : r->opens.count;
    most = most > r->transfers.count ? most : r->transfers.count;
    uint8_t *seen = calloc(most + 1, 1);
    if (seen == NULL) {
        return TALLY_ENOMEM;
    }
    bool ok = true;
    for (uint32_t i = 0; ok && i < r->accounts.count; i++) {
        if (replica_account_head(r, r->accounts.at[i].id) == i) {
            ok = walk(r, seen, i, account_next);
        }
    }
    memset(seen, 0, most + 1);
    for (uint32_t i = 0; ok && i < r->accounts.count; i++) {
        ok = walk(r, seen, r->accounts.at[i].opens, open_next);
    }
    memset(seen, 0, most + 1);
    const idmap *m = &r->transfer_map;
    for (uint32_t k = 0; ok && m->slots != NULL && k <= m->mask; k++) {
        if (m->slots[k].ref != 0) {
            ok = walk(r, seen, m->slots[k].ref - 1, transfer_next);
        }
    }
    free(seen);
    return ok ? TALLY_OK : TALLY_ECORRUPT;
}

int snapshot_load(tally_replica *r, const uint8_t *buf, size_t len, uint64_t *segment,
                  uint64_t *offset) {
    uint32_t version = len >= 8 ? get_u32le(buf + 4) : 0;
    if (len < SNAPSHOT_HEADER + 8 || memcmp(buf, snapshot_magic, 4) != 0 || version < 1 ||
        version > SNAPSHOT_VERSION ||
        !CHECKSUM_OK(get_u64le(buf + len - 8), XXH3_64bits(buf, len - 8))) {
        return TALLY_ECORRUPT;
    }
    uint64_t id = get_u64le(buf + 8);
    if (id == 0 || (r->id != 0 && r->id != id)) {
        return TALLY_ECORRUPT;
    }
    *segment = get_u64le(buf + 16);
    *offset = get_u64le(buf + 24);
    reader c = {buf + SNAPSHOT_HEADER, buf + len - 8, false};
    r->clock.last = r64(&c);
    if (version >= 2) {
        uint8_t journaled = r8(&c);
        uint64_t steady_ms = r64(&c), wall_ms = r64(&c);
        if (journaled > 1) {
            return TALLY_ECORRUPT;
        }
        if (journaled) {
            expiry_clock_resume(r, steady_ms, wall_ms); /* as replaying the record would */
        }
    }
    r->pending_open = r64(&c);
    (void)r64(&c); /* refused_rights: counted since open, not kept (tally_stats) */
    int rc = load_origins(r, &c, version);
    if (rc == TALLY_OK) {
        rc = load_records(r, &c);
    }
    if (rc == TALLY_OK) {
        rc = load_rest(r, &c);
    }
    if (rc == TALLY_OK && version >= 4) {
        rc = load_forks(r, &c);
    }
    if (rc == TALLY_OK && version >= 5) {
        rc = load_admission(r, &c);
    }
    if (rc == TALLY_OK && version >= 6) {
        uint32_t n = r_count(&c, 4);
        rc = ARRAY_RESERVE(r->refinished, n) ? TALLY_OK : TALLY_ENOMEM;
        for (uint32_t i = 0; i < n && rc == TALLY_OK && !c.bad; i++) {
            r->refinished.at[ARRAY_PUSH(r->refinished)] = r32(&c);
        }
    }
    if (rc != TALLY_OK) {
        return rc;
    }
    if (c.bad || c.p != c.end || !indices_ok(r) || get_u64le(buf + 32) != r->log.count) {
        return TALLY_ECORRUPT;
    }
    if ((rc = chains_ok(r)) != TALLY_OK) {
        return rc;
    }
    r->id = id;
    r->self = replica_origin_find(r, id);
    if (r->self == NONE || !expiry_rebuild(r, version < 2)) {
        return TALLY_ECORRUPT;
    }
    /* held to the invariants replaying the journal keeps op by op: no account overdrawn,
     * rights that add up, conservation, records with fields an op can have */
    return replica_check_loaded(r) ? TALLY_OK : TALLY_ECORRUPT;
}
