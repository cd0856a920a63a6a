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
#include "ledger/chain.h"
#include "ledger/journal.h"
#include "ledger/replica.h"

/* How many requests of a batch are looked up together (see tally_create_transfers). */
#define BATCH_CHUNK 32

int replica_writable(tally_replica *r) {
    if (r->journal != NULL && r->journal->failed) {
        return TALLY_EIO;
    }
    if (r->origins.at[r->self].forked || r->origins.at[r->self].branches > 0) {
        return TALLY_ORIGIN_FORKED; /* its history parted: a write would make a third one */
    }
    if (replica_held(r)) {
        return TALLY_ORIGIN_HELD;
    }
    if (r->hold != 0) { /* confirmed by a peer: lifted before the first write it allows */
        int rc = chain_lift_hold(r);
        if (rc != TALLY_OK) {
            return rc;
        }
    }
    if (r->learned->own_behind > r->origins.at[r->self].seq) {
        return TALLY_ORIGIN_BEHIND;
    }
    const struct replica_admission *m = r->admission;
    if (m != NULL && (!m->may_write || replica_now_ms(r) / 1000 > m->not_after)) {
        return TALLY_NOT_ADMITTED; /* no certificate, one that only reads, or one that ended */
    }
    return TALLY_OK;
}

static const op_refs no_refs = OP_REFS_NONE;

/* Ends a write call: its ops signed (in runs, ledger/chain.c) and, with their records, to the
 * journal (replica_commit), after the invariants are checked in a build that asks for it
 * (TALLY_CHECK_WRITES). Signing out of memory leaves the ops applied and unsigned, so unsent:
 * the next write call signs them with its own, or opening does. */
static int commit(tally_replica *r, int rc) {
    (void)chain_seal(r);
    replica_debug_check(r);
    return replica_commit(r, rc);
}

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
    rc = expiry_clock_before(r, o); /* a deadline is replayed from the clock it was set by */
    if (rc == TALLY_OK) {
        rc = replica_journal_add(r, o);
    }
    if (rc != TALLY_OK) {
        return rc;
    }
    rc = op_apply(r, o, &refs, now_ms);
    if (rc != TALLY_OK) {
        replica_journal_unadd(r);
    } else {
        chain_own_op(r, o); /* hashed for its run now, while it is at hand */
    }
    return rc;
}

/* --- expiry of local pendings (ledger/expiry.c keeps the deadlines) ----------------------- */

static bool resource_error(int rc) {
    return rc == TALLY_ENOMEM || rc == TALLY_ETOOBIG || rc == TALLY_EIO;
}

/* Voids every pending created here that is due on the steady clock. An expiry's VOID cannot be
 * refused by the escrow rules: it takes no rights and shrinks every sum it touches (apply.c,
 * side_check_rights and transfer_check_overflow; docs/design.md section 4). So it fails only
 * for want of memory, room or a disk, which the write that ran it would fail for too. */
static int expire_due(tally_replica *r, uint64_t now, uint64_t *voided) {
    for (uint32_t ti = expiry_next(r);
         ti != NONE && steady_diff(r->expiries.at[0].deadline_ms, r->steady.now) <= 0;
         ti = expiry_next(r)) {
        const transfer_rec *p = &r->transfers.at[ti];
        op o;
        op_clear(&o);
        o.kind = OP_VOID;
        o.expired = 1;
        o.debit_flags = (uint8_t)r->accounts.at[p->debit].flags;
        o.credit_flags = (uint8_t)r->accounts.at[p->credit].flags;
        transfer_view(r, p, &o.u.transfer);
        o.u.transfer.id = (tally_id){0, 0};
        o.u.transfer.pending_id = p->id;
        o.u.transfer.flags = TALLY_TRANSFER_VOID_PENDING;
        o.u.transfer.timeout_ms = 0;
        o.u.transfer.user_data = 0;
        o.u.transfer.debit_bound = o.u.transfer.credit_bound = 0;
        int rc = local_commit(r, &o, now, no_refs);
        if (resource_error(rc)) {
            return rc;
        }
        assert(rc == TALLY_OK && "an expiry takes no rights and grows no sum");
        *voided += rc == TALLY_OK;
        expiry_pop(r); /* whatever happened, this expiry is never tried again */
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
    rc = commit(r, expire_due(r, expiry_clock_read(r), &n));
    if (voided != NULL) {
        *voided = n;
    }
    return rc;
}

int tally_next_expiry(tally_replica *r, uint64_t *in_ms) {
    if (in_ms != NULL) {
        *in_ms = UINT64_MAX;
    }
    if (r == NULL || in_ms == NULL) {
        return TALLY_EINVAL;
    }
    (void)expiry_clock_read(r);
    if (expiry_next(r) != NONE) {
        int64_t left = steady_diff(r->expiries.at[0].deadline_ms, r->steady.now);
        *in_ms = left > 0 ? (uint64_t)left : 0;
    }
    return TALLY_OK;
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
    return commit(r, create_account(r, a));
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
    return local_commit(r, &o, expiry_clock_read(r), no_refs);
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

/* Whether a retried request asks for exactly what record rec already is. */
static bool transfer_matches(const tally_replica *r, const transfer_rec *rec,
                             const tally_transfer *t) {
    tally_transfer have;
    transfer_view(r, rec, &have);
    const tally_transfer *s = &have;
    bool named = (t->flags & TALLY_TRANSFER_BOUNDS_NAMED) != 0;
    if (s->flags != (t->flags & ~TALLY_TRANSFER_BOUNDS_NAMED) ||
        !id_eq(s->pending_id, t->pending_id) || s->user_data != t->user_data ||
        s->timeout_ms != t->timeout_ms) {
        return false;
    }
    if (named && (s->debit_bound != t->debit_bound || s->credit_bound != t->credit_bound)) {
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

/* A retry: TALLY_EXISTS when any record with this id, whichever replica made it, is what the
 * request asks for (the replica that made it must never answer a retry of its own transfer
 * with DIFFERENT_FIELDS because a concurrent one with a smaller dot now leads the chain). */
static int transfer_exists(const tally_replica *r, uint32_t head, const tally_transfer *t) {
    for (uint32_t i = head; i != NONE; i = r->transfers.at[i].next) {
        if (transfer_matches(r, &r->transfers.at[i], t)) {
            return TALLY_EXISTS;
        }
    }
    return TALLY_EXISTS_WITH_DIFFERENT_FIELDS;
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

/* The incarnation a write by id goes to (tally.h, "Incarnations"; docs/design.md section 5):
 * in the transfer's ledger, a bounded one before an unbounded one; both bounds there make the
 * id ambiguous. head: the id's chain head, NONE if the id is unknown. */
static int account_for_write(const tally_replica *r, uint32_t head, uint32_t ledger,
                             uint32_t *out) {
    *out = NONE;
    const account_rec *h = &r->accounts.at[head];
    if (h->next == NONE) { /* one incarnation: the common case */
        *out = head;
        return h->ledger == ledger ? TALLY_OK : TALLY_LEDGER_MISMATCH;
    }
    uint32_t found = NONE;
    uint16_t bounds = 0;
    for (uint32_t i = head; i != NONE; i = r->accounts.at[i].next) {
        const account_rec *a = &r->accounts.at[i];
        if (a->ledger == ledger) {
            bounds |= a->flags;
            if (found == NONE || (a->flags != 0 && r->accounts.at[found].flags == 0)) {
                found = i;
            }
        }
    }
    *out = found;
    return found == NONE                   ? TALLY_LEDGER_MISMATCH
           : bounds == ACCOUNT_BOUND_FLAGS ? TALLY_ACCOUNT_AMBIGUOUS
                                           : TALLY_OK;
}

static bool bound_valid(uint16_t bound) {
    return (bound & ~ACCOUNT_BOUND_FLAGS) == 0 && bound != ACCOUNT_BOUND_FLAGS;
}

/* heads: the chain heads of the debit and credit account ids, looked up by the caller. */
static int resolve_transfer(const tally_replica *r, op *o, op_refs *refs, const uint32_t heads[2],
                            const tally_transfer *req) {
    const tally_transfer *t = &o->u.transfer;
    if (heads[0] == NONE) {
        return TALLY_DEBIT_ACCOUNT_NOT_FOUND;
    }
    if (heads[1] == NONE) {
        return TALLY_CREDIT_ACCOUNT_NOT_FOUND;
    }
    uint32_t d, c;
    if (req->flags & TALLY_TRANSFER_BOUNDS_NAMED) {
        if (!bound_valid(req->debit_bound) || !bound_valid(req->credit_bound)) {
            return TALLY_FLAGS_INVALID;
        }
        d = replica_account_find(r, t->debit_account_id, t->ledger, req->debit_bound);
        if (d == NONE) {
            return TALLY_DEBIT_ACCOUNT_NOT_FOUND;
        }
        c = replica_account_find(r, t->credit_account_id, t->ledger, req->credit_bound);
        if (c == NONE) {
            return TALLY_CREDIT_ACCOUNT_NOT_FOUND;
        }
    } else {
        int rc = account_for_write(r, heads[0], t->ledger, &d);
        if (rc == TALLY_OK) {
            rc = account_for_write(r, heads[1], t->ledger, &c);
        }
        if (rc != TALLY_OK) {
            return rc;
        }
    }
    o->kind = OP_TRANSFER;
    refs->debit = d;
    refs->credit = c;
    o->debit_flags = (uint8_t)r->accounts.at[d].flags;
    o->credit_flags = (uint8_t)r->accounts.at[c].flags;
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
    bool named = (t->flags & TALLY_TRANSFER_BOUNDS_NAMED) != 0;
    if ((t->flags & ~(TRANSFER_KIND_FLAGS | TALLY_TRANSFER_BOUNDS_NAMED)) != 0 ||
        (kind & (kind - 1)) != 0 || (named && post_or_void(t))) {
        return TALLY_FLAGS_INVALID;
    }
    if (id_is_zero(t->id)) {
        return TALLY_ID_ZERO;
    }
    uint32_t id_hash = la->id_hash;
    idmap_spot spot;
    uint32_t have = idmap_get_spot(&r->transfer_map, t->id, id_hash, &spot);
    if (have != NONE) {
        return transfer_exists(r, have, t);
    }
    op o;
    op_clear(&o);
    o.u.transfer = *t;
    o.u.transfer.flags = (uint16_t)(t->flags & ~TALLY_TRANSFER_BOUNDS_NAMED);
    o.u.transfer.debit_bound = o.u.transfer.credit_bound = 0; /* an op names them in its flags */
    int rc = transfer_check_fields(&o.u.transfer);
    if (rc != TALLY_OK) {
        return rc;
    }
    op_refs refs = no_refs;
    refs.id_hash = id_hash;
    refs.id_spot = spot;
    rc = post_or_void(t) ? resolve_post_or_void(r, &o, &refs)
                         : resolve_transfer(r, &o, &refs, la->heads, t);
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
    uint64_t voided = 0, now = expiry_clock_read(r);
    rc = expire_due(r, now, &voided);
    if (rc == TALLY_OK) {
        lookahead la;
        look_ahead(r, t, &la);
        rc = create_transfer(r, t, now, &la);
    }
    return commit(r, rc);
}

/* Rule 3 of tally.h: every out parameter is written, also when the batch fails whole. */
static int batch_answer(int *results, size_t n, int rc) {
    for (size_t i = 0; results != NULL && i < n; i++) {
        results[i] = rc;
    }
    return rc;
}

int tally_create_transfers(tally_replica *r, const tally_transfer *t, size_t n, int *results) {
    if (r == NULL || (n > 0 && (t == NULL || results == NULL)) || n > REPLICA_RECORDS_MAX) {
        return batch_answer(results, n, TALLY_EINVAL);
    }
    int rc = replica_writable(r);
    if (rc == TALLY_ORIGIN_BEHIND || rc == TALLY_ORIGIN_FORKED || rc == TALLY_ORIGIN_HELD) {
        batch_answer(results, n, rc); /* each transfer is refused, as by the rules */
        return TALLY_OK;
    }
    if (rc != TALLY_OK) {
        return batch_answer(results, n, rc);
    }
    uint64_t voided = 0, now = expiry_clock_read(r);
    rc = expire_due(r, now, &voided);
    if (rc == TALLY_OK && !reserve_local_transfers(r, (uint32_t)n)) {
        rc = TALLY_ENOMEM;
    }
    if (rc != TALLY_OK) {
        return batch_answer(results, n, commit(r, rc));
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
    rc = commit(r, TALLY_OK); /* one write, one sync, for the whole batch */
    return rc == TALLY_OK ? TALLY_OK : batch_answer(results, n, rc);
}

/* --- grants -------------------------------------------------------------------------------- */

/* The bounded incarnation a grant by id takes rights from: the head, which is bounded if any
 * incarnation of the id is; an id with two bounded incarnations cannot say which is meant. */
static int grant_account_by_id(const tally_replica *r, tally_id id, uint32_t *out) {
    uint32_t head = *out = replica_account_head(r, id);
    if (head == NONE) {
        return TALLY_NOT_FOUND;
    }
    if ((r->accounts.at[head].flags & ACCOUNT_BOUND_FLAGS) == 0) {
        return TALLY_ACCOUNT_UNBOUNDED;
    }
    for (uint32_t i = r->accounts.at[head].next; i != NONE; i = r->accounts.at[i].next) {
        if ((r->accounts.at[i].flags & ACCOUNT_BOUND_FLAGS) != 0) {
            return TALLY_ACCOUNT_AMBIGUOUS;
        }
    }
    return TALLY_OK;
}

static int grant(tally_replica *r, const tally_grant_request *g) {
    if ((g->flags & ~(uint16_t)TALLY_GRANT_TO_UNKNOWN) != 0) {
        return TALLY_EINVAL;
    }
    if (id_is_zero(g->account_id)) {
        return TALLY_ID_ZERO;
    }
    uint32_t a;
    int rc;
    if (g->ledger == 0) {
        rc = grant_account_by_id(r, g->account_id, &a);
    } else if (!bound_valid(g->bound)) {
        rc = TALLY_FLAGS_INVALID;
    } else {
        a = replica_account_find(r, g->account_id, g->ledger, g->bound);
        rc = a == NONE ? TALLY_NOT_FOUND : g->bound == 0 ? TALLY_ACCOUNT_UNBOUNDED : TALLY_OK;
    }
    if (rc != TALLY_OK) {
        return rc;
    }
    if (g->to_replica == 0 || g->to_replica == r->id) {
        return TALLY_EINVAL;
    }
    uint32_t to = replica_origin_find(r, g->to_replica);
    if (to != NONE && (r->origins.at[to].forked || r->origins.at[to].branches > 0 ||
                       origin_is_branch(&r->origins.at[to]))) {
        /* what it is given, any of its histories may spend (a branch's id names one) */
        return TALLY_REPLICA_FORKED;
    }
    if (!(g->flags & TALLY_GRANT_TO_UNKNOWN)) {
        if (to == NONE || r->origins.at[to].seq == 0) {
            return TALLY_REPLICA_UNKNOWN; /* never heard from: a typo would strand the rights */
        }
    }
    op o;
    op_clear(&o);
    o.kind = OP_GRANT;
    o.u.grant.account = g->account_id;
    o.u.grant.ledger = r->accounts.at[a].ledger;
    o.u.grant.account_flags = (uint8_t)r->accounts.at[a].flags;
    o.u.grant.to = g->to_replica;
    o.u.grant.amount = g->amount;
    return local_commit(r, &o, expiry_clock_read(r), no_refs);
}

int tally_grant_with(tally_replica *r, const tally_grant_request *g) {
    if (r == NULL || g == NULL) {
        return TALLY_EINVAL;
    }
    int rc = replica_writable(r);
    if (rc != TALLY_OK) {
        return rc;
    }
    return commit(r, grant(r, g));
}

int tally_grant(tally_replica *r, tally_id account_id, uint64_t to_replica, uint64_t amount) {
    tally_grant_request g = {account_id, to_replica, amount, 0, 0, 0};
    return tally_grant_with(r, &g);
}
