/*
 * ledger/replica.c — opening and closing a replica, its tables, and the read-only queries.
 */
#define _GNU_SOURCE
#include "ledger/replica.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "crdt/id.h"
#include "ledger/journal.h"
#include "ledger/snapshot.h"
#include "ledger/sync.h"

const char *tally_strerror(int result) {
    switch (result) {
#define TALLY_STRERROR_(name, message)                                                             \
    case TALLY_##name:                                                                             \
        return message;
        TALLY_RESULT_MAP(TALLY_STRERROR_)
#undef TALLY_STRERROR_
    }
    return "unknown result";
}

const char *tally_result_name(int result) {
    switch (result) {
#define TALLY_NAME_(name, message)                                                                 \
    case TALLY_##name:                                                                             \
        return #name;
        TALLY_RESULT_MAP(TALLY_NAME_)
#undef TALLY_NAME_
    }
    return "UNKNOWN";
}

static uint64_t wall_clock_ms(void *ctx) {
    (void)ctx;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t replica_now_ms(const tally_replica *r) {
    return r->clock_ms(r->clock_ctx);
}

uint64_t replica_clock_read(tally_replica *r) {
    uint64_t wall = replica_now_ms(r);
    steady_read(&r->steady, wall);
    return wall;
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

static int random_replica_id(uint64_t *out) {
    do {
        if (getrandom(out, sizeof *out, 0) != (ssize_t)sizeof *out) {
            return TALLY_EIO;
        }
    } while (*out == 0);
    return TALLY_OK;
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

int replica_writable(const tally_replica *r) {
    if (r->journal != NULL && r->journal->failed) {
        return TALLY_EIO;
    }
    if (r->learned->own_behind > r->origins.at[r->self].seq) {
        return TALLY_ORIGIN_BEHIND;
    }
    return TALLY_OK;
}

static void say_error(const tally_options *opts, const char *message) {
    if (opts->error != NULL && opts->error_size > 0) {
        snprintf(opts->error, opts->error_size, "%s", message);
    }
}

static void replica_free_tables(tally_replica *r);

static int hook_load(void *ctx, const uint8_t *buf, size_t len, uint64_t *segment,
                     uint64_t *offset) {
    return snapshot_load(ctx, buf, len, segment, offset);
}

static void hook_reset(void *ctx) {
    tally_replica *r = ctx;
    replica_free_tables(r);
    r->id = 0;
    r->self = NONE;
    expiry_clock_start(r);
}

/* Opens the journal in opts->dir and loads it into r: a snapshot, then the frames after it. */
static int replica_open_journal(tally_replica *r, const tally_options *opts) {
    r->journal = calloc(1, sizeof *r->journal);
    if (r->journal == NULL) {
        return TALLY_ENOMEM;
    }
    uint64_t id = opts->replica_id;
    journal_hooks hooks = {hook_load, hook_reset, replica_replay_frame, r};
    r->replaying = true;
    int rc = journal_open(r->journal, opts->dir, opts->sync_mode,
                          (opts->flags & TALLY_OPEN_REPAIR) != 0, &id, &hooks, opts->error,
                          opts->error_size);
    r->replaying = false;
    if (rc == TALLY_OK && r->id == 0) {
        rc = replica_set_id(r, id); /* a journal with no ops yet */
    } else if (rc == TALLY_OK && r->id != id) {
        rc = TALLY_ECORRUPT;
        if (opts->error != NULL && opts->error_size > 0) {
            snprintf(opts->error, opts->error_size,
                     "%s: the snapshot and the journal belong to different replicas", opts->dir);
        }
    }
    return rc;
}

static int snapshot_to(void *ctx, int fd, uint64_t segment, uint64_t offset) {
    return snapshot_write(ctx, fd, segment, offset);
}

/* With a pending of this replica's still due, a CLOCK record of its own (ledger/expiry.c,
 * invariant 3): the time up to now then counts after a restart even if the wall clock has
 * stepped back by then. */
static int journal_clock_now(tally_replica *r) {
    if (r->journal->failed || expiry_next(r) == NONE) {
        return TALLY_OK;
    }
    (void)replica_clock_read(r);
    int rc = expiry_clock_journal(r);
    return rc == TALLY_OK ? journal_commit(r->journal) : rc;
}

int tally_snapshot(tally_replica *r) {
    if (r == NULL || r->journal == NULL) {
        return TALLY_EINVAL;
    }
    int rc = journal_clock_now(r);
    return rc == TALLY_OK ? journal_snapshot(r->journal, snapshot_to, r) : rc;
}

int tally_open(const tally_options *opts, tally_replica **out) {
    if (out != NULL) {
        *out = NULL;
    }
    if (opts == NULL || out == NULL ||
        (opts->sync_mode != TALLY_SYNC_NONE && opts->sync_mode != TALLY_SYNC_COMMIT) ||
        (opts->flags & ~(uint32_t)TALLY_OPEN_REPAIR) != 0) {
        return TALLY_EINVAL;
    }
    if (opts->error != NULL && opts->error_size > 0) {
        opts->error[0] = '\0';
    }
    tally_replica *r = calloc(1, sizeof *r);
    if (r == NULL) {
        return TALLY_ENOMEM;
    }
    idmap_init(&r->account_map, account_key, r);
    idmap_init(&r->transfer_map, transfer_key, r);
    idmap_init(&r->origin_map, origin_map_key, r);
    r->clock_ms = opts->clock_ms != NULL ? opts->clock_ms : wall_clock_ms;
    r->clock_ctx = opts->clock_ctx;
    expiry_clock_start(r); /* before the journal's pendings are replayed */
    r->learned = calloc(1, sizeof *r->learned);
    int rc = r->learned == NULL ? TALLY_ENOMEM : TALLY_OK;
    if (rc == TALLY_OK && opts->dir != NULL) {
        rc = replica_open_journal(r, opts);
        expiry_clock_opened(r);
    } else if (rc == TALLY_OK) {
        uint64_t id = opts->replica_id;
        rc = id == 0 ? random_replica_id(&id) : TALLY_OK;
        if (rc == TALLY_OK) {
            rc = replica_set_id(r, id);
        }
    }
    if (rc != TALLY_OK) {
        if (rc == TALLY_ENOMEM || rc == TALLY_EIO) {
            if (opts->error != NULL && opts->error_size > 0 && opts->error[0] == '\0') {
                say_error(opts, tally_strerror(rc));
            }
        }
        if (r->journal != NULL) {
            journal_close(r->journal); /* as it is: a journal that did not open gets no record */
            free(r->journal);
            r->journal = NULL;
        }
        tally_close(r);
        return rc;
    }
    *out = r;
    return TALLY_OK;
}

/* Frees every table; leaves them empty and usable (the maps initialised again). */
static void replica_free_tables(tally_replica *r) {
    for (uint32_t i = 0; i < r->accounts.count; i++) {
        rights_free(&r->accounts.at[i].rights);
    }
    for (uint32_t i = 0; i < r->origins.count; i++) {
        const origin_rec *o = &r->origins.at[i];
        array_free(o->position, o->capacity, sizeof *o->position);
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
    idmap_init(&r->account_map, account_key, r);
    idmap_init(&r->transfer_map, transfer_key, r);
    idmap_init(&r->origin_map, origin_map_key, r);
    r->pending_open = 0;
    r->refused_rights = 0;
    r->clock.last = 0;
}

void tally_close(tally_replica *r) {
    if (r == NULL) {
        return;
    }
    if (r->journal != NULL) {
        (void)journal_clock_now(r); /* nobody to tell if it fails: the record helps, no more */
        journal_close(r->journal);
        free(r->journal);
    }
    free(r->learned);
    replica_free_tables(r);
    idmap_free(&r->account_map);
    idmap_free(&r->transfer_map);
    idmap_free(&r->origin_map);
    free(r);
}

void tally_free(void *buf) {
    free(buf);
}

uint64_t tally_replica_id(const tally_replica *r) {
    return r != NULL ? r->id : 0;
}

uint64_t tally_seen(const tally_replica *r, uint64_t origin) {
    uint32_t i = r != NULL ? replica_origin_find(r, origin) : NONE;
    return i != NONE ? r->origins.at[i].seq : 0;
}

/* The head incarnation of an account id, with the usual argument checks. */
static int account_lookup(const tally_replica *r, tally_id id, const account_rec **out) {
    *out = NULL;
    if (r == NULL) {
        return TALLY_EINVAL;
    }
    if (id_is_zero(id)) {
        return TALLY_ID_ZERO;
    }
    uint32_t i = replica_account_head(r, id);
    if (i == NONE) {
        return TALLY_NOT_FOUND;
    }
    *out = &r->accounts.at[i];
    return TALLY_OK;
}

int tally_lookup_account(const tally_replica *r, tally_id account_id, tally_account *out) {
    if (out == NULL) {
        return TALLY_EINVAL;
    }
    memset(out, 0, sizeof *out);
    const account_rec *a;
    int rc = account_lookup(r, account_id, &a);
    if (rc == TALLY_OK) {
        *out = r->opens.at[a->open].a;
    }
    return rc;
}

/* An incarnation's balance as the API shows it: TALLY_OVERFLOW when a sum exceeds 64 bits. */
static int balance_view(const tally_replica *r, const account_rec *a, tally_balance *out) {
    u128 here = rights_get(&a->rights, r->self);
    out->debits_posted = u128_sat64(a->debits_posted);
    out->credits_posted = u128_sat64(a->credits_posted);
    out->debits_pending = u128_sat64(a->debits_pending);
    out->credits_pending = u128_sat64(a->credits_pending);
    out->rights_here = u128_sat64(here);
    bool wide = a->debits_posted.hi | a->credits_posted.hi | a->debits_pending.hi |
                a->credits_pending.hi | here.hi;
    return wide ? TALLY_OVERFLOW : TALLY_OK;
}

int tally_lookup_balance(const tally_replica *r, tally_id account_id, tally_balance *out) {
    if (out == NULL) {
        return TALLY_EINVAL;
    }
    memset(out, 0, sizeof *out);
    const account_rec *a;
    int rc = account_lookup(r, account_id, &a);
    return rc != TALLY_OK ? rc : balance_view(r, a, out);
}

int tally_rights(const tally_replica *r, tally_id account_id, uint64_t replica_id, uint64_t *out) {
    if (out == NULL) {
        return TALLY_EINVAL;
    }
    *out = 0;
    const account_rec *a;
    int rc = account_lookup(r, account_id, &a);
    if (rc != TALLY_OK) {
        return rc;
    }
    uint32_t holder = replica_origin_find(r, replica_id);
    if (holder == NONE) {
        return TALLY_OK;
    }
    u128 held = rights_get(&a->rights, holder);
    *out = u128_sat64(held);
    return held.hi ? TALLY_OVERFLOW : TALLY_OK;
}

int tally_rights_holders(const tally_replica *r, tally_id account_id, tally_rights_entry *out,
                         size_t cap, size_t *count) {
    if (count != NULL) {
        *count = 0;
    }
    if (count == NULL || (out == NULL && cap > 0)) {
        return TALLY_EINVAL;
    }
    const account_rec *a;
    int rc = account_lookup(r, account_id, &a);
    if (rc != TALLY_OK) {
        return rc;
    }
    *count = a->rights.count;
    size_t n = 0;
    for (uint32_t i = 0; i < a->rights.count; i++) {
        const rights_entry *held = rights_at(&a->rights, i);
        tally_rights_entry e = {r->origins.at[held->holder].id, u128_sat64(held->amount)};
        /* Insertion sort into the first cap places: richest first, then by replica id. */
        size_t j = n < cap ? n++ : cap;
        while (j > 0 && (out[j - 1].amount < e.amount ||
                         (out[j - 1].amount == e.amount && out[j - 1].replica_id > e.replica_id))) {
            if (j < cap) {
                out[j] = out[j - 1];
            }
            j--;
        }
        if (j < cap) {
            out[j] = e;
        }
    }
    return TALLY_OK;
}

static int transfer_lookup(const tally_replica *r, tally_id id, const transfer_rec **out) {
    *out = NULL;
    if (r == NULL) {
        return TALLY_EINVAL;
    }
    if (id_is_zero(id)) {
        return TALLY_ID_ZERO;
    }
    uint32_t i = idmap_get(&r->transfer_map, id);
    if (i == NONE) {
        return TALLY_NOT_FOUND;
    }
    *out = &r->transfers.at[i];
    return TALLY_OK;
}

void transfer_view(const tally_replica *r, const transfer_rec *t, tally_transfer *out) {
    memset(out, 0, sizeof *out);
    out->id = t->id;
    out->debit_account_id = r->accounts.at[t->debit].id;
    out->credit_account_id = r->accounts.at[t->credit].id;
    if (t->kind != OP_TRANSFER) {
        out->pending_id = r->transfers.at[t->link].id;
    }
    out->amount = t->amount;
    out->user_data = t->user_data;
    out->ledger = transfer_ledger(r, t);
    out->timeout_ms = t->timeout_ms;
    out->code = t->code;
    out->flags = t->flags;
    out->debit_bound = r->accounts.at[t->debit].flags;
    out->credit_bound = r->accounts.at[t->credit].flags;
}

int tally_lookup_transfer(const tally_replica *r, tally_id transfer_id, tally_transfer *out) {
    if (out == NULL) {
        return TALLY_EINVAL;
    }
    memset(out, 0, sizeof *out);
    const transfer_rec *t;
    int rc = transfer_lookup(r, transfer_id, &t);
    if (rc == TALLY_OK) {
        transfer_view(r, t, out);
    }
    return rc;
}

int tally_transfer_status(const tally_replica *r, tally_id transfer_id, uint64_t *origin,
                          tally_pending_state *state) {
    if (origin != NULL) {
        *origin = 0;
    }
    if (state != NULL) {
        *state = TALLY_PENDING_NONE;
    }
    const transfer_rec *t;
    int rc = transfer_lookup(r, transfer_id, &t);
    if (rc == TALLY_OK) {
        if (origin != NULL) {
            *origin = r->origins.at[t->origin].id;
        }
        if (state != NULL) {
            *state = (tally_pending_state)t->state;
        }
    }
    return rc;
}

static tally_dot open_dot(const tally_replica *r, uint32_t open) {
    const open_rec *o = &r->opens.at[open];
    tally_dot d = {r->origins.at[o->origin].id, o->seq};
    return d;
}

static tally_dot transfer_dot(const tally_replica *r, uint32_t t) {
    tally_dot d = {r->origins.at[r->transfers.at[t].origin].id, r->transfers.at[t].seq};
    return d;
}

/* Incarnations in the order tally_incarnations lists them: the head, then by ledger and bound
 * flags. */
static bool listed_before(const tally_replica *r, uint32_t head, uint32_t a, uint32_t b) {
    if (a == head || b == head) {
        return a == head;
    }
    const account_rec *x = &r->accounts.at[a], *y = &r->accounts.at[b];
    return x->ledger != y->ledger ? x->ledger < y->ledger : x->flags < y->flags;
}

int tally_incarnations(const tally_replica *r, tally_id account_id, tally_incarnation *out,
                       size_t cap, size_t *count) {
    if (count != NULL) {
        *count = 0;
    }
    if (count == NULL || (out == NULL && cap > 0)) {
        return TALLY_EINVAL;
    }
    if (out != NULL) {
        memset(out, 0, cap * sizeof *out);
    }
    const account_rec *head;
    int rc = account_lookup(r, account_id, &head);
    if (rc != TALLY_OK) {
        return rc;
    }
    uint32_t h = (uint32_t)(head - r->accounts.at), n = 0;
    for (uint32_t i = h; i != NONE; i = r->accounts.at[i].next) {
        n++;
    }
    *count = n;
    /* The head, then each next one in (ledger, flags) order, which is unique within an id: a
     * selection that costs cap walks of the chain, and needs no memory. */
    uint32_t prev = h;
    for (size_t k = 0; k < cap && k < n; k++) {
        uint32_t pick = h;
        if (k > 0) {
            pick = NONE;
            for (uint32_t i = r->accounts.at[h].next; i != NONE; i = r->accounts.at[i].next) {
                if ((k == 1 || listed_before(r, h, prev, i)) &&
                    (pick == NONE || listed_before(r, h, i, pick))) {
                    pick = i;
                }
            }
        }
        const account_rec *a = &r->accounts.at[pick];
        out[k].account = r->opens.at[a->open].a;
        out[k].open = open_dot(r, a->open);
        out[k].head = pick == h;
        if (balance_view(r, a, &out[k].balance) != TALLY_OK) {
            rc = TALLY_OVERFLOW;
        }
        prev = pick;
    }
    return rc;
}

/* Emits one conflict into the caller's window [first, first + cap). */
static void conflict_emit(tally_conflict *out, size_t first, size_t cap, size_t *n,
                          tally_conflict c) {
    if (*n >= first && *n - first < cap) {
        out[*n - first] = c;
    }
    (*n)++;
}

int tally_conflicts(const tally_replica *r, size_t first, tally_conflict *out, size_t cap,
                    size_t *count) {
    if (count != NULL) {
        *count = 0;
    }
    if (r == NULL || count == NULL || (out == NULL && cap > 0)) {
        return TALLY_EINVAL;
    }
    size_t n = 0;
    for (uint32_t k = 0; k < r->conflicted_accounts.count; k++) {
        tally_id id = r->conflicted_accounts.at[k];
        uint32_t head = replica_account_head(r, id);
        const tally_account *win = &r->opens.at[r->accounts.at[head].open].a;
        /* Every OPEN of this id whose fields differ from the winner's is one conflict. */
        for (uint32_t ai = head; ai != NONE; ai = r->accounts.at[ai].next) {
            for (uint32_t i = r->accounts.at[ai].opens; i != NONE; i = r->opens.at[i].next) {
                const tally_account *a = &r->opens.at[i].a;
                if (a->ledger != win->ledger || a->flags != win->flags || a->code != win->code ||
                    a->user_data != win->user_data) {
                    tally_conflict c = {TALLY_CONFLICT_ACCOUNT,
                                        id,
                                        open_dot(r, r->accounts.at[head].open),
                                        open_dot(r, i),
                                        a->ledger,
                                        a->flags,
                                        {0, 0, 0, 0, 0}};
                    (void)balance_view(r, &r->accounts.at[ai], &c.balance);
                    conflict_emit(out, first, cap, &n, c);
                }
            }
        }
    }
    for (uint32_t k = 0; k < r->conflicted_transfers.count; k++) {
        tally_id id = r->conflicted_transfers.at[k];
        uint32_t head = idmap_get(&r->transfer_map, id);
        for (uint32_t i = r->transfers.at[head].next; i != NONE; i = r->transfers.at[i].next) {
            tally_conflict c = {TALLY_CONFLICT_TRANSFER, id, transfer_dot(r, head),
                                transfer_dot(r, i), 0, 0, {0, 0, 0, 0, 0}};
            conflict_emit(out, first, cap, &n, c);
        }
    }
    *count = n;
    return TALLY_OK;
}

int tally_get_stats(const tally_replica *r, tally_stats *out) {
    if (out != NULL) {
        memset(out, 0, sizeof *out);
    }
    if (r == NULL || out == NULL) {
        return TALLY_EINVAL;
    }
    size_t conflicts = 0;
    tally_conflicts(r, 0, NULL, 0, &conflicts);
    out->ops = r->log.count;
    out->accounts = r->account_map.count;
    out->transfers = r->transfers.count;
    out->pending = r->pending_open;
    out->conflicts = conflicts;
    for (uint32_t i = 0; i < r->origins.count; i++) {
        out->origins += r->origins.at[i].seq != 0;
    }
    out->refused_rights = r->refused_rights;
    return TALLY_OK;
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
