/*
 * ledger/apply.c — validating and applying ops: the escrow rules live here.
 *
 * Every derived quantity is a sum over ops, so applying concurrent ops in any causal order
 * gives the same state. The escrow rules, for an op created at replica h:
 *
 *   1. The *consuming* side of a bounded account is its debit side for
 *      DEBITS_MUST_NOT_EXCEED_CREDITS and its credit side for CREDITS_MUST_NOT_EXCEED_DEBITS.
 *   2. A TRANSFER (posted or pending) on a consuming side takes its amount from rights[h].
 *      A posted TRANSFER on the other side of a bounded account gives its amount to rights[h].
 *   3. A POST of a pending of amount p posting a <= p gives p - a back on the consuming side and
 *      a on the other side; a VOID gives p back on the consuming side. Only h, the pending's
 *      origin, posts or voids it, so what comes back goes to the replica that reserved it.
 *   4. A GRANT takes from rights[h] and gives to rights[to].
 *
 * Only h ever takes from rights[h], and h checks against everything it has applied, which
 * includes every op that ever took from rights[h]. So rights[h] >= 0 in every replica's view
 * and, since Σ rights equals the spendable amount S at every step, S >= 0 in every causally
 * closed state: no bounded account is ever overdrawn. docs/design.md has the proof in full.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "crdt/id.h"
#include "ledger/branch.h"
#include "ledger/replica.h"

int account_check_fields(const tally_account *a) {
    if (id_is_zero(a->id)) {
        return TALLY_ID_ZERO;
    }
    if (a->ledger == 0) {
        return TALLY_LEDGER_ZERO;
    }
    if ((a->flags & ~ACCOUNT_BOUND_FLAGS) != 0 ||
        (a->flags & ACCOUNT_BOUND_FLAGS) == ACCOUNT_BOUND_FLAGS) {
        return TALLY_FLAGS_INVALID;
    }
    return TALLY_OK;
}

/* Checks of a resolved transfer record, or of a request before it is resolved (a post or void
 * request may leave accounts, ledger and amount zero; resolution fills them in). */
static int transfer_check_kind_fields(const tally_transfer *t, bool resolved) {
    unsigned kind = t->flags & TRANSFER_KIND_FLAGS;
    if ((t->flags & ~TRANSFER_KIND_FLAGS) != 0 || (kind & (kind - 1)) != 0) {
        return TALLY_FLAGS_INVALID;
    }
    if (kind & (TALLY_TRANSFER_POST_PENDING | TALLY_TRANSFER_VOID_PENDING)) {
        if (id_is_zero(t->pending_id)) {
            return TALLY_ID_ZERO;
        }
        if (id_eq(t->pending_id, t->id)) {
            return TALLY_PENDING_ID_INVALID;
        }
        if (t->timeout_ms != 0) {
            return TALLY_TIMEOUT_NOT_PENDING;
        }
        if (!resolved) {
            return TALLY_OK;
        }
    } else {
        if (!id_is_zero(t->pending_id)) {
            return TALLY_PENDING_ID_INVALID;
        }
        if (t->timeout_ms != 0 && kind != TALLY_TRANSFER_PENDING) {
            return TALLY_TIMEOUT_NOT_PENDING;
        }
    }
    if (id_is_zero(t->debit_account_id) || id_is_zero(t->credit_account_id)) {
        return TALLY_ID_ZERO;
    }
    if (id_eq(t->debit_account_id, t->credit_account_id)) {
        return TALLY_ACCOUNTS_SAME;
    }
    if (t->ledger == 0) {
        return TALLY_LEDGER_ZERO;
    }
    if (t->amount == 0) {
        return TALLY_AMOUNT_ZERO;
    }
    return TALLY_OK;
}

int transfer_check_record(const tally_transfer *t) {
    return transfer_check_kind_fields(t, true);
}

int transfer_check_fields(const tally_transfer *t) {
    if (id_is_zero(t->id)) {
        return TALLY_ID_ZERO;
    }
    return transfer_check_kind_fields(t, false);
}

u128 account_spendable(const tally_replica *r, const account_rec *a) {
    u128 zero = {0, 0};
    const u128 *plus, *minus_posted, *minus_pending;
    if (a->flags & TALLY_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS) {
        plus = &a->credits_posted, minus_posted = &a->debits_posted;
        minus_pending = &a->debits_pending;
    } else if (a->flags & TALLY_ACCOUNT_CREDITS_MUST_NOT_EXCEED_DEBITS) {
        plus = &a->debits_posted, minus_posted = &a->credits_posted;
        minus_pending = &a->credits_pending;
    } else {
        return zero;
    }
    u128 spent = u128_plus(*minus_posted, *minus_pending);
    if (r->refinished.count > 0) {
        u128 again = branch_given_again(r, (uint32_t)(a - r->accounts.at),
                                        minus_pending == &a->debits_pending);
        spent = u128_minus(spent, again);
    }
    /* Invariant 2 of replica.h: the spendable amount of a bounded account is never negative,
     * but where a forked replica's histories spent what it held more than once: then it reads
     * as 0 here, and tally_fork_damage reports what they took beyond it. */
    u128 s = u128_minus(*plus, spent);
    return u128_negative(s) ? zero : s;
}

/* The rights holder may spend on a: for a branch of a forked replica's history, its
 * history's (ledger/branch.h, invariant 3), which may be below zero. */
static inline u128 rights_of(const tally_replica *r, const account_rec *a, uint32_t holder) {
    u128 zero = {0, 0};
    if (holder == NONE) {
        return zero;
    }
    return origin_is_branch(&r->origins.at[holder]) ? branch_rights(r, &a->rights, holder)
                                                    : rights_get(&a->rights, holder);
}

static inline bool rights_cover(u128 held, uint64_t take) {
    return !u128_negative(held) && u128_ge64(held, take);
}

/* Whether the ops of `by` come before an op of origin's in origin's history: the same origin,
 * or, for a branch, one of the histories it continues. */
static inline bool same_history(const tally_replica *r, uint32_t by, uint32_t origin) {
    return by == origin ||
           (origin_is_branch(&r->origins.at[origin]) && branch_in_lineage(r, by, origin));
}

/* The pending transfer with this id created at `origin`, or NONE. */
static uint32_t pending_find(const tally_replica *r, tally_id id, uint32_t origin) {
    for (uint32_t i = idmap_get(&r->transfer_map, id); i != NONE; i = r->transfers.at[i].next) {
        const transfer_rec *p = &r->transfers.at[i];
        if (p->kind == OP_TRANSFER && same_history(r, p->origin, origin)) {
            return (p->flags & TALLY_TRANSFER_PENDING) ? i : NONE;
        }
    }
    return NONE;
}

/* Whether the record chain for id (h: its hash) holds a record created at origin; *spot notes
 * where the lookup ended. */
static bool transfer_from_origin(const tally_replica *r, tally_id id, uint32_t h, uint32_t origin,
                                 idmap_spot *spot) {
    for (uint32_t i = idmap_get_spot(&r->transfer_map, id, h, spot); i != NONE;
         i = r->transfers.at[i].next) {
        if (same_history(r, r->transfers.at[i].origin, origin)) {
            return true;
        }
    }
    return false;
}

static bool fits64(u128 a, uint64_t b) {
    return u128_add_fits64(a, b);
}

/* The 64-bit limits a local write is held to (remote sums are exact, see crdt/u128.h). A
 * post moves its amount from the pending sums, where it is counted already, to the posted
 * ones: only the posted sums grow. A void only shrinks sums. */
static int transfer_check_overflow(const account_rec *d, const account_rec *c, uint8_t kind,
                                   bool pending, uint64_t a) {
    if (kind == OP_VOID) {
        return TALLY_OK;
    }
    if (kind == OP_POST) {
        return fits64(d->debits_posted, a) && fits64(c->credits_posted, a) ? TALLY_OK
                                                                           : TALLY_OVERFLOW;
    }
    if (pending) {
        if (!fits64(d->debits_pending, a) || !fits64(c->credits_pending, a)) {
            return TALLY_OVERFLOW;
        }
    } else if (!fits64(d->debits_posted, a) || !fits64(c->credits_posted, a)) {
        return TALLY_OVERFLOW;
    }
    u128 dt = u128_plus(d->debits_posted, d->debits_pending);
    u128 ct = u128_plus(c->credits_posted, c->credits_pending);
    if (!fits64(dt, a) || !fits64(ct, a)) {
        return TALLY_OVERFLOW;
    }
    return TALLY_OK;
}

/* give_limited: whether rights given by this op are held to 64 bits. A post or void gives
 * back what its pending reserved (rule 3) and is never refused for it: rights are exact sums,
 * lookups report TALLY_OVERFLOW past 64 bits, and a pending must always be finishable. */
static inline int side_check_rights(const tally_replica *r, const account_rec *acct,
                                    bool debit_side, uint32_t holder, uint64_t take, uint64_t give,
                                    bool local, bool give_limited) {
    u128 held = rights_of(r, acct, holder);
    if (!rights_cover(held, take)) {
        if (!local || !u128_ge64(account_spendable(r, acct), take)) {
            return debit_side ? TALLY_EXCEEDS_CREDITS : TALLY_EXCEEDS_DEBITS;
        }
        return TALLY_INSUFFICIENT_RIGHTS;
    }
    if (local && give_limited && !fits64(held, give)) {
        return TALLY_OVERFLOW;
    }
    return TALLY_OK;
}

/* The incarnation for (id, ledger, flags): the caller's hint if it is that, else a lookup. */
static uint32_t account_hinted(const tally_replica *r, uint32_t hint, tally_id id, uint32_t ledger,
                               uint16_t flags) {
    if (hint < r->accounts.count) {
        const account_rec *a = &r->accounts.at[hint];
        if (id_eq(a->id, id) && a->ledger == ledger && a->flags == flags) {
            return hint;
        }
    }
    return replica_account_find(r, id, ledger, flags);
}

static int transfer_validate(const tally_replica *r, const op *o, bool local, op_refs *refs) {
    uint32_t origin = refs->origin;
    const tally_transfer *t = &o->u.transfer;
    bool by_timeout = o->kind == OP_VOID && o->expired;
    if (!by_timeout && id_is_zero(t->id)) {
        return TALLY_ID_ZERO;
    }
    if (by_timeout && !id_is_zero(t->id)) {
        return TALLY_FLAGS_INVALID; /* an expiry has no transfer id of its own */
    }
    int rc = transfer_check_kind_fields(t, true);
    if (rc != TALLY_OK) {
        return rc;
    }
    unsigned want = o->kind == OP_TRANSFER ? (t->flags & TALLY_TRANSFER_PENDING)
                    : o->kind == OP_POST   ? TALLY_TRANSFER_POST_PENDING
                                           : TALLY_TRANSFER_VOID_PENDING;
    if ((t->flags & TRANSFER_KIND_FLAGS) != want) {
        return TALLY_FLAGS_INVALID;
    }
    assert(by_timeout || refs->id_hash == idmap_hash(t->id));
    if (!local && !by_timeout && origin != NONE &&
        transfer_from_origin(r, t->id, refs->id_hash, origin, &refs->id_spot)) {
        return TALLY_EXISTS; /* an origin never creates one id twice */
    }
    uint32_t di = refs->debit =
        account_hinted(r, refs->debit, t->debit_account_id, t->ledger, o->debit_flags);
    if (di == NONE) {
        return TALLY_DEBIT_ACCOUNT_NOT_FOUND;
    }
    uint32_t ci = refs->credit =
        account_hinted(r, refs->credit, t->credit_account_id, t->ledger, o->credit_flags);
    if (ci == NONE) {
        return TALLY_CREDIT_ACCOUNT_NOT_FOUND;
    }
    const account_rec *d = &r->accounts.at[di], *c = &r->accounts.at[ci];
    uint64_t p = 0;
    bool pending = (t->flags & TALLY_TRANSFER_PENDING) != 0;
    if (o->kind != OP_TRANSFER) {
        uint32_t pi = refs->pending = pending_find(r, t->pending_id, origin);
        if (pi == NONE) {
            return TALLY_PENDING_NOT_FOUND;
        }
        const transfer_rec *pr = &r->transfers.at[pi];
        bool again = pr->state != TALLY_PENDING_OPEN && origin_is_branch(&r->origins.at[origin]) &&
                     !branch_finished_in(r, pi, origin);
        if (again) {
            /* another history of the origin's finished it: each may (docs/design.md) */
        } else if (pr->state == TALLY_PENDING_POSTED) {
            return TALLY_PENDING_ALREADY_POSTED;
        } else if (pr->state == TALLY_PENDING_VOIDED) {
            return TALLY_PENDING_ALREADY_VOIDED;
        } else if (pr->state == TALLY_PENDING_TIMED_OUT) {
            return TALLY_PENDING_EXPIRED;
        }
        if (pr->debit != di || pr->credit != ci || pr->code != t->code ||
            (by_timeout && pr->timeout_ms == 0)) {
            return TALLY_PENDING_MISMATCH;
        }
        p = pr->amount;
        if (t->amount > p) {
            return TALLY_EXCEEDS_PENDING_AMOUNT;
        }
        if (o->kind == OP_VOID && t->amount != p) {
            return TALLY_PENDING_MISMATCH;
        }
    }
    if (local) {
        rc = transfer_check_overflow(d, c, o->kind, pending, t->amount);
        if (rc != TALLY_OK) {
            return rc;
        }
    }
    uint64_t take, give;
    bool give_limited = o->kind == OP_TRANSFER;
    op_side_rights(d, true, o->kind, pending, p, t->amount, &take, &give);
    rc = side_check_rights(r, d, true, origin, take, give, local, give_limited);
    if (rc != TALLY_OK) {
        return rc;
    }
    op_side_rights(c, false, o->kind, pending, p, t->amount, &take, &give);
    return side_check_rights(r, c, false, origin, take, give, local, give_limited);
}

static int grant_validate(const tally_replica *r, const op *o, bool local, op_refs *refs) {
    uint32_t origin = refs->origin;
    if (id_is_zero(o->u.grant.account)) {
        return TALLY_ID_ZERO;
    }
    uint32_t ai = refs->debit =
        replica_account_find(r, o->u.grant.account, o->u.grant.ledger, o->u.grant.account_flags);
    if (ai == NONE) {
        return TALLY_NOT_FOUND;
    }
    const account_rec *a = &r->accounts.at[ai];
    if ((a->flags & ACCOUNT_BOUND_FLAGS) == 0) {
        return TALLY_ACCOUNT_UNBOUNDED;
    }
    uint64_t giver = origin != NONE ? r->origins.at[r->origins.at[origin].of].id : o->origin;
    if (o->u.grant.to == 0 || o->u.grant.to == o->origin || o->u.grant.to == giver) {
        return TALLY_EINVAL;
    }
    if (o->u.grant.amount == 0) {
        return TALLY_AMOUNT_ZERO;
    }
    if (!rights_cover(rights_of(r, a, origin), o->u.grant.amount)) {
        return TALLY_INSUFFICIENT_RIGHTS;
    }
    if (local &&
        !fits64(rights_of(r, a, replica_origin_find(r, o->u.grant.to)), o->u.grant.amount)) {
        return TALLY_OVERFLOW;
    }
    return TALLY_OK;
}

int op_validate(const tally_replica *r, const op *o, bool local, op_refs *refs) {
    if (o->origin == 0 || o->seq == 0) {
        return TALLY_ECORRUPT;
    }
    switch (o->kind) {
    case OP_OPEN:
        return account_check_fields(&o->u.account);
    case OP_TRANSFER:
    case OP_POST:
    case OP_VOID:
        return transfer_validate(r, o, local, refs);
    case OP_GRANT:
        return grant_validate(r, o, local, refs);
    default:
        return TALLY_ECORRUPT;
    }
}

/* --- apply ------------------------------------------------------------------------------- */

static bool account_fields_equal(const tally_account *a, const tally_account *b) {
    return id_eq(a->id, b->id) && a->user_data == b->user_data && a->ledger == b->ledger &&
           a->code == b->code && a->flags == b->flags;
}

static void conflict_mark_accounts(tally_replica *r, uint32_t head) {
    REC_INDEX(r->accounts, head);
    for (uint32_t i = head; i != NONE; i = r->accounts.at[i].next) {
        r->accounts.at[i].conflicted = 1;
    }
}

static bool account_conflicted(const account_rec *a) {
    return a->conflicted != 0;
}

static void open_apply(tally_replica *r, const op *o, uint32_t origin) {
    REC_INDEX(r->origins, origin);
    const tally_account *fields = &o->u.account;
    uint32_t oi = ARRAY_PUSH(r->opens);
    open_rec *rec = &r->opens.at[oi];
    rec->a = *fields;
    rec->origin = origin;
    rec->seq = o->seq;
    rec->hlc = o->hlc;
    uint16_t bound = fields->flags & ACCOUNT_BOUND_FLAGS;
    uint32_t head = idmap_get(&r->account_map, fields->id);
    uint32_t ai = replica_account_find(r, fields->id, fields->ledger, bound);
    bool conflict = false;
    if (head != NONE && !account_conflicted(&r->accounts.at[head])) {
        conflict = !account_fields_equal(&r->opens.at[r->accounts.at[head].open].a, fields);
    }
    if (ai == NONE) {
        ai = ARRAY_PUSH(r->accounts);
        account_rec *a = &r->accounts.at[ai];
        memset(a, 0, sizeof *a);
        a->id = fields->id;
        a->ledger = fields->ledger;
        a->flags = bound;
        a->open = oi;
        a->opens = NONE;
        a->next = NONE;
        rights_init(&a->rights);
        if (head == NONE) {
            idmap_put(&r->account_map, fields->id, ai); /* reserved by the caller */
        } else {
            a->conflicted = r->accounts.at[head].conflicted;
            a->next = r->accounts.at[head].next;
            r->accounts.at[head].next = ai;
        }
    } else {
        const open_rec *win = &r->opens.at[r->accounts.at[ai].open];
        if (dot_less(o->origin, o->seq, r->origins.at[win->origin].id, win->seq)) {
            r->accounts.at[ai].open = oi;
        }
    }
    rec->account = ai;
    rec->next = r->accounts.at[ai].opens;
    r->accounts.at[ai].opens = oi;
    if (head != NONE && ai != head) {
        /* Keep the first incarnation in incarnation order at the head, where lookups by id
         * look first. */
        if (incarnation_before(r, ai, head)) {
            uint32_t prev = head;
            while (r->accounts.at[prev].next != ai) {
                prev = r->accounts.at[prev].next;
            }
            r->accounts.at[prev].next = r->accounts.at[ai].next;
            r->accounts.at[ai].next = head;
            idmap_put(&r->account_map, fields->id, ai); /* replaces: cannot allocate */
            head = ai;
        }
    }
    if (conflict) {
        conflict_mark_accounts(r, head == NONE ? ai : head);
        r->conflicted_accounts.at[ARRAY_PUSH(r->conflicted_accounts)] = fields->id;
    }
}

/* again: a second finish of one pending, by another history of a forked origin's (docs/design.md,
 * "Past a fork"): its amount left the pending sums with the first, and it gives the
 * reservation back to its own history all the same (branch_given_again counts that). */
static void counters_apply(account_rec *a, bool debit_side, uint8_t kind, bool pending, uint64_t p,
                           uint64_t amount, bool again) {
    u128 *posted = debit_side ? &a->debits_posted : &a->credits_posted;
    u128 *reserved = debit_side ? &a->debits_pending : &a->credits_pending;
    bool ok = true;
    switch (kind) {
    case OP_TRANSFER:
        u128_add(pending ? reserved : posted, amount);
        break;
    case OP_POST:
    case OP_VOID:
        ok = again || u128_sub(reserved, p);
        if (kind == OP_POST) {
            u128_add(posted, amount);
        }
        break;
    }
    assert(ok && "a pending amount is reserved until its post or void");
    (void)ok;
}

/* Takes rights the op was validated for: a branch's own entry may go below zero (its
 * history's rights covered it, ledger/branch.h). */
static inline bool holder_take(const tally_replica *r, rights *m, uint32_t holder,
                               uint64_t amount) {
    return origin_is_branch(&r->origins.at[holder])
               ? rights_shift(m, holder, u128_negated(u128_of(amount)))
               : rights_take(m, holder, amount);
}

/* Gives rights: a branch's own entry may be below zero, and reach zero going up. */
static inline bool holder_give(const tally_replica *r, rights *m, uint32_t holder,
                               uint64_t amount) {
    return origin_is_branch(&r->origins.at[holder]) ? rights_shift(m, holder, u128_of(amount))
                                                    : rights_add(m, holder, amount);
}

static inline void side_apply(const tally_replica *r, account_rec *a, bool debit_side, uint8_t kind,
                              bool pending, uint64_t p, uint64_t amount, uint32_t origin,
                              bool again) {
    uint64_t take, give;
    op_side_rights(a, debit_side, kind, pending, p, amount, &take, &give);
    bool ok = holder_take(r, &a->rights, origin, take) && holder_give(r, &a->rights, origin, give);
    assert(ok && "validated and reserved before apply");
    (void)ok;
    counters_apply(a, debit_side, kind, pending, p, amount, again);
}

static void transfer_link_by_id(tally_replica *r, uint32_t ti, const op_refs *refs) {
    REC_INDEX(r->transfers, ti);
    transfer_rec *t = &r->transfers.at[ti];
    uint32_t head = idmap_insert_spot(&r->transfer_map, t->id, refs->id_hash, ti,
                                      &refs->id_spot); /* reserved */
    if (head == NONE) {
        return;
    }
    if (r->transfers.at[head].next == NONE) {
        r->conflicted_transfers.at[ARRAY_PUSH(r->conflicted_transfers)] = t->id;
    }
    const transfer_rec *h = &r->transfers.at[head];
    if (dot_less(r->origins.at[t->origin].id, t->seq, r->origins.at[h->origin].id, h->seq)) {
        t->next = head;
        idmap_put(&r->transfer_map, t->id, ti);
    } else {
        t->next = h->next;
        r->transfers.at[head].next = ti;
    }
}

static void transfer_apply(tally_replica *r, const op *o, const op_refs *refs, uint32_t origin) {
    REC_INDEX(r->origins, origin);
    REC_INDEX(r->accounts, refs->debit);
    REC_INDEX(r->accounts, refs->credit);
    const tally_transfer *t = &o->u.transfer;
    uint32_t ti = ARRAY_PUSH(r->transfers);
    transfer_rec *rec = &r->transfers.at[ti];
    rec->id = t->id;
    rec->amount = t->amount;
    rec->user_data = t->user_data;
    rec->timeout_ms = t->timeout_ms;
    rec->code = t->code;
    rec->flags = t->flags;
    rec->seq = (uint32_t)o->seq; /* op_reserve: at most UINT32_MAX */
    rec->hlc = o->hlc;
    rec->origin = (uint16_t)origin;
    rec->debit = refs->debit;
    rec->credit = refs->credit;
    rec->link = NONE;
    rec->next = NONE;
    rec->kind = o->kind;
    rec->expired = o->expired;
    bool pending = (t->flags & TALLY_TRANSFER_PENDING) != 0;
    rec->state = pending ? TALLY_PENDING_OPEN : TALLY_PENDING_NONE;
    uint64_t p = 0;
    bool again = false;
    if (o->kind != OP_TRANSFER) {
        uint32_t pi = refs->pending;
        transfer_rec *pr = &r->transfers.at[pi];
        p = pr->amount;
        rec->link = pi;
        again = pr->state != TALLY_PENDING_OPEN;
        if (again) {
            branch_finished_again(r, pi, ti); /* reserved by op_reserve */
        } else {
            pr->link = ti;
            pr->state = finish_state(o->kind, o->expired);
            r->pending_open--;
        }
    } else if (pending) {
        r->pending_open++;
        if (expiry_kept(r, rec)) {
            expiry_add(r, ti);
        }
    }
    side_apply(r, &r->accounts.at[rec->debit], true, o->kind, pending, p, t->amount, origin, again);
    side_apply(r, &r->accounts.at[rec->credit], false, o->kind, pending, p, t->amount, origin,
               again);
    if (!o->expired) {
        transfer_link_by_id(r, ti, refs);
    }
}

static void grant_apply(tally_replica *r, const op *o, const op_refs *refs, uint32_t origin,
                        uint32_t to) {
    REC_INDEX(r->origins, origin);
    REC_INDEX(r->origins, to);
    REC_INDEX(r->accounts, refs->debit);
    uint32_t gi = ARRAY_PUSH(r->grants);
    grant_rec *g = &r->grants.at[gi];
    g->account = refs->debit;
    g->origin = origin;
    g->to = to;
    g->seq = o->seq;
    g->hlc = o->hlc;
    g->amount = o->u.grant.amount;
    rights *m = &r->accounts.at[g->account].rights;
    bool ok = holder_take(r, m, origin, g->amount) && holder_give(r, m, to, g->amount);
    assert(ok && "validated and reserved before apply");
    (void)ok;
}

/* Reserves rights entries for holder on the accounts a transfer-like op touches. */
static bool transfer_reserve_rights(tally_replica *r, const op_refs *refs, uint32_t holder) {
    return rights_reserve(&r->accounts.at[refs->debit].rights, holder) &&
           rights_reserve(&r->accounts.at[refs->credit].rights, holder);
}

/* Allocates everything op_apply will need, so that applying cannot fail halfway. */
static int op_reserve(tally_replica *r, const op *o, const op_refs *refs, uint32_t origin,
                      uint32_t *to) {
    origin_rec *orr = &r->origins.at[origin];
    if (orr->seq >= UINT32_MAX || !ARRAY_RESERVE(r->log, 1)) {
        return r->log.count >= REPLICA_RECORDS_MAX ? TALLY_ETOOBIG : TALLY_ENOMEM;
    }
    if (!origin_reserve(orr, 1)) {
        return TALLY_ENOMEM;
    }
    switch (o->kind) {
    case OP_OPEN:
        if (!ARRAY_RESERVE(r->opens, 1) || !ARRAY_RESERVE(r->accounts, 1) ||
            !ARRAY_RESERVE(r->conflicted_accounts, 1) ||
            !idmap_reserve(&r->account_map, (size_t)r->account_map.count + 1)) {
            return TALLY_ENOMEM;
        }
        return TALLY_OK;
    case OP_TRANSFER:
    case OP_POST:
    case OP_VOID:
        if (!ARRAY_RESERVE(r->transfers, 1) || !ARRAY_RESERVE(r->expiries, 1) ||
            !ARRAY_RESERVE(r->conflicted_transfers, 1) ||
            (o->kind != OP_TRANSFER && r->transfers.at[refs->pending].state != TALLY_PENDING_OPEN &&
             !ARRAY_RESERVE(r->refinished, 1)) ||
            !idmap_reserve(&r->transfer_map, (size_t)r->transfer_map.count + 1) ||
            !transfer_reserve_rights(r, refs, origin)) {
            return TALLY_ENOMEM;
        }
        return TALLY_OK;
    case OP_GRANT: {
        *to = replica_origin_get(r, o->u.grant.to);
        if (*to == NONE) {
            return r->origins.count >= REPLICA_ORIGINS_MAX ? TALLY_ETOOBIG : TALLY_ENOMEM;
        }
        if (!ARRAY_RESERVE(r->grants, 1) ||
            !rights_reserve(&r->accounts.at[refs->debit].rights, *to)) {
            return TALLY_ENOMEM;
        }
        return TALLY_OK;
    }
    }
    return TALLY_ECORRUPT;
}

int op_apply(tally_replica *r, const op *o, const op_refs *refs, uint64_t now_ms) {
    uint32_t origin = refs->origin != NONE ? refs->origin : replica_origin_get(r, o->origin);
    if (origin == NONE) {
        return r->origins.count >= REPLICA_ORIGINS_MAX ? TALLY_ETOOBIG : TALLY_ENOMEM;
    }
    assert(r->origins.at[origin].seq + 1 == o->seq);
    uint32_t to = NONE;
    int rc = op_reserve(r, o, refs, origin, &to);
    if (rc != TALLY_OK) {
        return rc;
    }
    uint32_t index = 0;
    switch (o->kind) {
    case OP_OPEN:
        index = r->opens.count;
        open_apply(r, o, origin);
        break;
    case OP_TRANSFER:
    case OP_POST:
    case OP_VOID:
        index = r->transfers.count;
        transfer_apply(r, o, refs, origin);
        break;
    case OP_GRANT:
        index = r->grants.count;
        grant_apply(r, o, refs, origin, to);
        break;
    }
    origin_rec *orr = &r->origins.at[origin];
    orr->position[orr->seq++ - orr->base] = r->log.count;
    log_entry *j = &r->log.at[ARRAY_PUSH(r->log)];
    j->kind = o->kind;
    j->index = index;
    if (origin == r->self) {
        hlc_restore(&r->clock, o->hlc); /* replayed, or brought back by a peer */
    } else {
        hlc_observe(&r->clock, o->hlc, now_ms);
    }
    return TALLY_OK;
}
