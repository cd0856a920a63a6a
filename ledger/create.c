/*
 * ledger/create.c — local writes: turning API requests into resolved ops at this replica.
 *
 * A request is checked in the order a caller can act on: flags and id first, then whether the
 * id exists (so a retry of a request that succeeded is always TALLY_EXISTS), then the fields,
 * then the state (accounts, pending transfers, rights) through op_validate, which is the same
 * check a peer's op passes. Only then does the op get its dot and timestamp and apply.
 *
 * 1. A refused request changes nothing (except the refused_rights counter).
 * 2. Every pending created here whose timeout has passed on this replica's clock is voided
 *    before a create call looks at anything: expiry is decided only by the origin.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "crdt/id.h"
#include "ledger/replica.h"

/* How many requests of a batch are looked up together (see tally_create_transfers). */
#define BATCH_CHUNK 32

static const op_refs no_refs = OP_REFS_NONE;

/* Validates, stamps and applies a local op. now_ms is the wall clock, read once per call (a
 * batch is one moment); the HLC still gives every op its own timestamp. */
static int local_commit(tally_replica *r, op *o, uint64_t now_ms, op_refs refs) {
    o->origin = r->id;
    o->seq = r->origins.at[r->self].seq + 1;
    refs.origin = r->self;
    int rc = op_validate(r, o, true, &refs);
    if (rc != TALLY_OK) {
        r->refused_rights += rc == TALLY_INSUFFICIENT_RIGHTS;
        return rc;
    }
    o->hlc = hlc_tick(&r->clock, now_ms);
    rc = replica_journal_add(r, o);
    if (rc != TALLY_OK) {
        return rc;
    }
    rc = op_apply(r, o, &refs, now_ms);
    if (rc != TALLY_OK) {
        replica_journal_unadd(r);
    }
    return rc;
}

/* --- expiry of local pendings (a min-heap by deadline) ------------------------------------- */

static void expiry_pop(tally_replica *r) {
    expiry last = r->expiries.at[--r->expiries.count];
    uint32_t i = 0, n = r->expiries.count;
    for (;;) {
        uint32_t child = 2 * i + 1;
        if (child >= n) {
            break;
        }
        if (child + 1 < n &&
            r->expiries.at[child + 1].deadline_ms < r->expiries.at[child].deadline_ms) {
            child++;
        }
        if (last.deadline_ms <= r->expiries.at[child].deadline_ms) {
            break;
        }
        r->expiries.at[i] = r->expiries.at[child];
        i = child;
    }
    if (n > 0) {
        r->expiries.at[i] = last;
    }
}

static int expire_due(tally_replica *r, uint64_t now, uint64_t *voided) {
    while (r->expiries.count > 0 && r->expiries.at[0].deadline_ms <= now) {
        const transfer_rec *p = &r->transfers.at[r->expiries.at[0].transfer];
        if (p->state == TALLY_PENDING_OPEN) {
            op o;
            op_clear(&o);
            o.kind = OP_VOID;
            o.expired = 1;
            o.debit_flags = r->accounts.at[p->debit].flags;
            o.credit_flags = r->accounts.at[p->credit].flags;
            transfer_view(r, p, &o.u.transfer);
            o.u.transfer.id = (tally_id){0, 0};
            o.u.transfer.pending_id = p->id;
            o.u.transfer.flags = TALLY_TRANSFER_VOID_PENDING;
            o.u.transfer.timeout_ms = 0;
            o.u.transfer.user_data = 0;
            int rc = local_commit(r, &o, now, no_refs);
            if (rc != TALLY_OK) {
                return rc;
            }
            *voided += 1;
        }
        expiry_pop(r);
    }
    return TALLY_OK;
}

int tally_expire(tally_replica *r, uint64_t *voided) {
    uint64_t n = 0;
    if (voided != NULL) {
        *voided = 0;
    }
    if (r == NULL) {
        return TALLY_EINVAL;
    }
    int rc = replica_writable(r);
    if (rc != TALLY_OK) {
        return rc;
    }
    rc = replica_commit(r, expire_due(r, replica_now_ms(r), &n));
    if (voided != NULL) {
        *voided = n;
    }
    return rc;
}

/* --- accounts ------------------------------------------------------------------------------ */

static int create_account(tally_replica *r, const tally_account *a);

int tally_create_account(tally_replica *r, const tally_account *a) {
    if (r == NULL || a == NULL) {
        return TALLY_EINVAL;
    }
    int rc = replica_writable(r);
    if (rc != TALLY_OK) {
        return rc;
    }
    return replica_commit(r, create_account(r, a));
}

static int create_account(tally_replica *r, const tally_account *a) {
    if (id_is_zero(a->id)) {
        return TALLY_ID_ZERO;
    }
    uint32_t head = replica_account_head(r, a->id);
    if (head != NONE) {
        const tally_account *have = &r->opens.at[r->accounts.at[head].open].a;
        bool same = have->user_data == a->user_data && have->ledger == a->ledger &&
                    have->code == a->code && have->flags == a->flags;
        return same ? TALLY_EXISTS : TALLY_EXISTS_WITH_DIFFERENT_FIELDS;
    }
    op o;
    op_clear(&o);
    o.kind = OP_OPEN;
    o.u.account = *a;
    return local_commit(r, &o, replica_now_ms(r), no_refs);
}

/* --- transfers ----------------------------------------------------------------------------- */

static bool post_or_void(const tally_transfer *t) {
    return (t->flags & (TALLY_TRANSFER_POST_PENDING | TALLY_TRANSFER_VOID_PENDING)) != 0;
}

/* A zero field of a post or void request means "as the pending". */
static bool same_or_zero_id(tally_id asked, tally_id have) {
    return id_is_zero(asked) || id_eq(asked, have);
}

static bool same_or_zero(uint64_t asked, uint64_t have) {
    return asked == 0 || asked == have;
}

/* Whether a retried request asks for exactly what record s already is. */
static bool transfer_matches(const tally_replica *r, const transfer_rec *rec,
                             const tally_transfer *t) {
    tally_transfer have;
    transfer_view(r, rec, &have);
    const tally_transfer *s = &have;
    if (s->flags != t->flags || !id_eq(s->pending_id, t->pending_id) ||
        s->user_data != t->user_data || s->timeout_ms != t->timeout_ms) {
        return false;
    }
    if (!post_or_void(t)) {
        return id_eq(s->debit_account_id, t->debit_account_id) &&
               id_eq(s->credit_account_id, t->credit_account_id) && s->amount == t->amount &&
               s->ledger == t->ledger && s->code == t->code;
    }
    uint64_t full = r->transfers.at[rec->link].amount;
    return same_or_zero_id(t->debit_account_id, s->debit_account_id) &&
           same_or_zero_id(t->credit_account_id, s->credit_account_id) &&
           same_or_zero(t->ledger, s->ledger) && same_or_zero(t->code, s->code) &&
           (t->amount == 0 ? s->amount == full : s->amount == t->amount);
}

/* Fills a post or void with its pending's accounts, ledger, code and amount. */
static int resolve_post_or_void(const tally_replica *r, op *o, op_refs *refs) {
    tally_transfer *t = &o->u.transfer;
    uint32_t found = NONE;
    bool elsewhere = false;
    for (uint32_t i = idmap_get(&r->transfer_map, t->pending_id); i != NONE;
         i = r->transfers.at[i].next) {
        const transfer_rec *p = &r->transfers.at[i];
        if (p->kind != OP_TRANSFER || !(p->flags & TALLY_TRANSFER_PENDING)) {
            continue;
        }
        if (p->origin == r->self) {
            found = i;
        } else {
            elsewhere = true;
        }
    }
    if (found == NONE) {
        return elsewhere ? TALLY_PENDING_NOT_HERE : TALLY_PENDING_NOT_FOUND;
    }
    const transfer_rec *p = &r->transfers.at[found];
    tally_id debit = r->accounts.at[p->debit].id, credit = r->accounts.at[p->credit].id;
    uint32_t ledger = transfer_ledger(r, p);
    if (!same_or_zero_id(t->debit_account_id, debit) ||
        !same_or_zero_id(t->credit_account_id, credit) || !same_or_zero(t->ledger, ledger) ||
        !same_or_zero(t->code, p->code)) {
        return TALLY_PENDING_MISMATCH;
    }
    t->debit_account_id = debit;
    t->credit_account_id = credit;
    t->ledger = ledger;
    t->code = p->code;
    if (t->amount == 0) {
        t->amount = p->amount;
    } else if (t->amount > p->amount) {
        return TALLY_EXCEEDS_PENDING_AMOUNT;
    } else if ((t->flags & TALLY_TRANSFER_VOID_PENDING) && t->amount != p->amount) {
        return TALLY_PENDING_MISMATCH;
    }
    o->kind = (t->flags & TALLY_TRANSFER_POST_PENDING) ? OP_POST : OP_VOID;
    refs->debit = p->debit;
    refs->credit = p->credit;
    o->debit_flags = r->accounts.at[p->debit].flags;
    o->credit_flags = r->accounts.at[p->credit].flags;
    return TALLY_OK;
}

/* heads: the chain heads of the debit and credit account ids, looked up by the caller. */
static int resolve_transfer(const tally_replica *r, op *o, op_refs *refs, const uint32_t heads[2]) {
    const tally_transfer *t = &o->u.transfer;
    uint32_t d = heads[0];
    if (d == NONE) {
        return TALLY_DEBIT_ACCOUNT_NOT_FOUND;
    }
    uint32_t c = heads[1];
    if (c == NONE) {
        return TALLY_CREDIT_ACCOUNT_NOT_FOUND;
    }
    if (r->accounts.at[d].ledger != t->ledger || r->accounts.at[c].ledger != t->ledger) {
        return TALLY_LEDGER_MISMATCH;
    }
    o->kind = OP_TRANSFER;
    refs->debit = d;
    refs->credit = c;
    o->debit_flags = r->accounts.at[d].flags;
    o->credit_flags = r->accounts.at[c].flags;
    return TALLY_OK;
}

/* What a transfer request needs looked up before it is created: the chain heads of its two
 * account ids (NONE where there is none) and the hash of its own id. */
typedef struct lookahead {
    uint32_t heads[2];
    uint32_t id_hash;
} lookahead;

static void look_ahead(const tally_replica *r, const tally_transfer *t, lookahead *la) {
    la->heads[0] = replica_account_head(r, t->debit_account_id);
    la->heads[1] = replica_account_head(r, t->credit_account_id);
    la->id_hash = idmap_hash(t->id);
}

/* la: see look_ahead; a batch looks a chunk of requests up ahead, all at once. */
static int create_transfer(tally_replica *r, const tally_transfer *t, uint64_t now_ms,
                           const lookahead *la) {
    unsigned kind = t->flags & TRANSFER_KIND_FLAGS;
    if ((t->flags & ~TRANSFER_KIND_FLAGS) != 0 || (kind & (kind - 1)) != 0) {
        return TALLY_FLAGS_INVALID;
    }
    if (id_is_zero(t->id)) {
        return TALLY_ID_ZERO;
    }
    uint32_t id_hash = la->id_hash;
    idmap_spot spot;
    uint32_t have = idmap_get_spot(&r->transfer_map, t->id, id_hash, &spot);
    if (have != NONE) {
        return transfer_matches(r, &r->transfers.at[have], t) ? TALLY_EXISTS
                                                              : TALLY_EXISTS_WITH_DIFFERENT_FIELDS;
    }
    int rc = transfer_check_fields(t);
    if (rc != TALLY_OK) {
        return rc;
    }
    op o;
    op_clear(&o);
    o.u.transfer = *t;
    op_refs refs = no_refs;
    refs.id_hash = id_hash;
    refs.id_spot = spot;
    rc = post_or_void(t) ? resolve_post_or_void(r, &o, &refs)
                         : resolve_transfer(r, &o, &refs, la->heads);
    return rc != TALLY_OK ? rc : local_commit(r, &o, now_ms, refs);
}

/* Room for n more local transfers, so a batch does not run out of memory halfway. */
static bool reserve_local_transfers(tally_replica *r, uint32_t n) {
    origin_rec *self = &r->origins.at[r->self];
    return origin_reserve(self, n) && ARRAY_RESERVE(r->log, n) && ARRAY_RESERVE(r->transfers, n) &&
           idmap_reserve(&r->transfer_map, (size_t)r->transfer_map.count + n);
}

int tally_create_transfer(tally_replica *r, const tally_transfer *t) {
    if (r == NULL || t == NULL) {
        return TALLY_EINVAL;
    }
    int rc = replica_writable(r);
    if (rc != TALLY_OK) {
        return rc;
    }
    uint64_t voided = 0, now = replica_now_ms(r);
    rc = expire_due(r, now, &voided);
    if (rc == TALLY_OK) {
        lookahead la;
        look_ahead(r, t, &la);
        rc = create_transfer(r, t, now, &la);
    }
    return replica_commit(r, rc);
}

int tally_create_transfers(tally_replica *r, const tally_transfer *t, size_t n, int *results) {
    if (r == NULL || (n > 0 && (t == NULL || results == NULL))) {
        return TALLY_EINVAL;
    }
    if (n > REPLICA_RECORDS_MAX) {
        return TALLY_EINVAL;
    }
    int rc = replica_writable(r);
    if (rc != TALLY_OK) {
        return rc;
    }
    uint64_t voided = 0, now = replica_now_ms(r);
    rc = expire_due(r, now, &voided);
    if (rc != TALLY_OK) {
        return replica_commit(r, rc);
    }
    if (!reserve_local_transfers(r, (uint32_t)n)) {
        return replica_commit(r, TALLY_ENOMEM);
    }
    /* A batch goes in chunks. First the lookups of the whole chunk, which depend on nothing the
     * chunk changes (a transfer never adds an account): the account records found, and the
     * transfer-map slots of the new ids, start loading together, so their cache misses overlap,
     * and so do the records the chunk will write. Then the requests, in order. */
    for (size_t base = 0; base < n; base += BATCH_CHUNK) {
        size_t m = n - base < BATCH_CHUNK ? n - base : BATCH_CHUNK;
        lookahead la[BATCH_CHUNK];
        for (size_t k = 0; k < m; k++) {
            look_ahead(r, &t[base + k], &la[k]);
            idmap_prefetch_hashed(&r->transfer_map, la[k].id_hash);
            for (int side = 0; side < 2; side++) {
                if (la[k].heads[side] != NONE) {
                    replica_account_prefetch(r, la[k].heads[side]);
                }
            }
        }
        replica_transfers_prefetch(r, (uint32_t)m);
        for (size_t k = 0; k < m; k++) {
            results[base + k] = create_transfer(r, &t[base + k], now, &la[k]);
        }
    }
    return replica_commit(r, TALLY_OK); /* one write, one sync, for the whole batch */
}

/* --- grants -------------------------------------------------------------------------------- */

static int grant(tally_replica *r, tally_id account_id, uint64_t to_replica, uint64_t amount);

int tally_grant(tally_replica *r, tally_id account_id, uint64_t to_replica, uint64_t amount) {
    if (r == NULL) {
        return TALLY_EINVAL;
    }
    int rc = replica_writable(r);
    if (rc != TALLY_OK) {
        return rc;
    }
    return replica_commit(r, grant(r, account_id, to_replica, amount));
}

static int grant(tally_replica *r, tally_id account_id, uint64_t to_replica, uint64_t amount) {
    if (id_is_zero(account_id)) {
        return TALLY_ID_ZERO;
    }
    uint32_t a = replica_account_head(r, account_id);
    if (a == NONE) {
        return TALLY_NOT_FOUND;
    }
    op o;
    op_clear(&o);
    o.kind = OP_GRANT;
    o.u.grant.account = account_id;
    o.u.grant.ledger = r->accounts.at[a].ledger;
    o.u.grant.account_flags = (uint8_t)r->accounts.at[a].flags;
    o.u.grant.to = to_replica;
    o.u.grant.amount = amount;
    return local_commit(r, &o, replica_now_ms(r), no_refs);
}
