/*
 * ledger/replica.c — a replica's tables (made, freed, reserved ahead), how origins and accounts
 * are found in them, its clocks, and what every write goes through to reach the journal.
 */
#include "ledger/replica.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crdt/id.h"
#include "ledger/journal.h"

static uint64_t wall_clock_ms(void *ctx) {
    (void)ctx;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t replica_now_ms(const tally_replica *r) {
    return r->clock_ms(r->clock_ctx);
}

static const tally_id *account_key(const void *ctx, uint32_t i) {
    return &((const tally_replica *)ctx)->accounts.at[i].id;
}
static const tally_id *transfer_key(const void *ctx, uint32_t i) {
    return &((const tally_replica *)ctx)->transfers.at[i].id;
}
static const tally_id *origin_map_key(const void *ctx, uint32_t i) {
    return &((const tally_replica *)ctx)->origins.at[i].key;
}

void replica_init(tally_replica *r, uint64_t (*clock_ms)(void *ctx), void *clock_ctx) {
    idmap_init(&r->account_map, account_key, r);
    idmap_init(&r->transfer_map, transfer_key, r);
    idmap_init(&r->origin_map, origin_map_key, r);
    r->replay_branch = NONE;
    r->branch_made.branch.index = r->branch_made.rest.index = NONE;
    r->clock_ms = clock_ms != NULL ? clock_ms : wall_clock_ms;
    r->clock_ctx = clock_ctx;
}

static tally_id origin_key(uint64_t id) {
    tally_id key = {0, id};
    return key;
}

uint32_t replica_origin_find(const tally_replica *r, uint64_t id) {
    return id == 0 ? NONE : idmap_get(&r->origin_map, origin_key(id));
}

uint32_t replica_origin_get(tally_replica *r, uint64_t id) {
    uint32_t i = replica_origin_find(r, id);
    if (i != NONE || id == 0) {
        return i;
    }
    if (r->origins.count >= REPLICA_ORIGINS_MAX || !ARRAY_RESERVE(r->origins, 1) ||
        !idmap_reserve(&r->origin_map, (size_t)r->origin_map.count + 1)) {
        return NONE;
    }
    i = r->origins.count++;
    origin_rec *o = &r->origins.at[i];
    memset(o, 0, sizeof *o);
    o->id = id;
    o->key = origin_key(id);
    o->of = i;
    o->parent = NONE;
    idmap_put(&r->origin_map, o->key, i);
    return i;
}

uint32_t replica_account_find(const tally_replica *r, tally_id id, uint32_t ledger,
                              uint16_t flags) {
    for (uint32_t i = idmap_get(&r->account_map, id); i != NONE; i = r->accounts.at[i].next) {
        const account_rec *a = &r->accounts.at[i];
        if (a->ledger == ledger && a->flags == flags) {
            return i;
        }
    }
    return NONE;
}

int replica_set_id(tally_replica *r, uint64_t id) {
    r->id = id;
    r->self = replica_origin_get(r, id);
    return r->self == NONE ? TALLY_ENOMEM : TALLY_OK;
}

int replica_journal_add(tally_replica *r, const op *o) {
    return r->journal == NULL || r->replaying ? TALLY_OK : journal_add(r->journal, o);
}

void replica_journal_unadd(tally_replica *r) {
    if (r->journal != NULL && !r->replaying) {
        journal_unadd(r->journal);
    }
}

int replica_commit(tally_replica *r, int rc) {
    int written = r->journal != NULL ? journal_commit(r->journal) : TALLY_OK;
    if (written == TALLY_OK && r->on_change != NULL && r->log.count != r->notified_log) {
        r->notified_log = r->log.count;
        r->on_change(r->on_change_ctx); /* durable by now: peers may have it */
    }
    return written != TALLY_OK ? written : rc;
}

void replica_free_admission(tally_replica *r) {
    if (r->admission != NULL) {
        free(r->admission->der);
        free(r->admission);
        r->admission = NULL;
    }
}

void replica_free_tables(tally_replica *r) {
    for (uint32_t i = 0; i < r->accounts.count; i++) {
        rights_free(&r->accounts.at[i].rights);
    }
    for (uint32_t i = 0; i < r->origins.count; i++) {
        const origin_rec *o = &r->origins.at[i];
        array_free(o->position, o->capacity, sizeof *o->position);
        ARRAY_FREE(o->runs);
        free(o->cert);
    }
    ARRAY_FREE(r->opens);
    ARRAY_FREE(r->accounts);
    ARRAY_FREE(r->transfers);
    ARRAY_FREE(r->grants);
    ARRAY_FREE(r->log);
    ARRAY_FREE(r->origins);
    ARRAY_FREE(r->expiries);
    ARRAY_FREE(r->conflicted_accounts);
    ARRAY_FREE(r->conflicted_transfers);
    ARRAY_FREE(r->forks);
    ARRAY_FREE(r->refinished);
    idmap_free(&r->account_map);
    idmap_free(&r->transfer_map);
    idmap_free(&r->origin_map);
    memset(&r->opens, 0, sizeof r->opens);
    memset(&r->accounts, 0, sizeof r->accounts);
    memset(&r->transfers, 0, sizeof r->transfers);
    memset(&r->grants, 0, sizeof r->grants);
    memset(&r->log, 0, sizeof r->log);
    memset(&r->origins, 0, sizeof r->origins);
    memset(&r->expiries, 0, sizeof r->expiries);
    memset(&r->conflicted_accounts, 0, sizeof r->conflicted_accounts);
    memset(&r->conflicted_transfers, 0, sizeof r->conflicted_transfers);
    memset(&r->forks, 0, sizeof r->forks);
    memset(&r->refinished, 0, sizeof r->refinished);
    idmap_init(&r->account_map, account_key, r);
    idmap_init(&r->transfer_map, transfer_key, r);
    idmap_init(&r->origin_map, origin_map_key, r);
    r->pending_open = 0;
    r->refused_rights = 0;
    r->clock.last = 0;
}

void tally_free(void *buf) {
    free(buf);
}

/* Room for n elements in all. */
#define RESERVE_TOTAL(arr, n) ((n) <= (arr).count || ARRAY_RESERVE(arr, (n) - (arr).count))

int tally_reserve(tally_replica *r, uint64_t accounts, uint64_t transfers) {
    if (r == NULL) {
        return TALLY_EINVAL;
    }
    if (accounts > REPLICA_RECORDS_MAX || transfers > REPLICA_RECORDS_MAX - accounts) {
        return TALLY_ETOOBIG;
    }
    uint32_t a = (uint32_t)accounts, t = (uint32_t)transfers, ops = a + t;
    /* the positions of this replica's own ops; a peer's are reserved as its ops arrive */
    origin_rec *self = &r->origins.at[r->self];
    if (!RESERVE_TOTAL(r->opens, a) || !RESERVE_TOTAL(r->accounts, a) ||
        !idmap_reserve(&r->account_map, a) || !RESERVE_TOTAL(r->transfers, t) ||
        !idmap_reserve(&r->transfer_map, t) || !RESERVE_TOTAL(r->log, ops) ||
        (ops > self->seq && !origin_reserve(self, (uint32_t)(ops - self->seq))) ||
        /* each write makes room for one more of these before it knows it needs it */
        !ARRAY_RESERVE(r->expiries, 1) || !ARRAY_RESERVE(r->conflicted_accounts, 1) ||
        !ARRAY_RESERVE(r->conflicted_transfers, 1)) {
        return TALLY_ENOMEM;
    }
    ARRAY_TOUCH(r->opens, a);
    ARRAY_TOUCH(r->accounts, a);
    ARRAY_TOUCH(r->transfers, t);
    ARRAY_TOUCH(r->log, ops);
    array_touch(self->position, self->capacity, (uint32_t)self->seq, ops, sizeof *self->position);
    idmap_touch(&r->account_map);
    idmap_touch(&r->transfer_map);
    return TALLY_OK;
}
