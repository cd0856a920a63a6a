/*
 * ledger/check.c — replica_check: the whole-object checker (SQLite's assert_pager_state).
 *
 * It recomputes every balance and every holder's rights from the ops and compares them with
 * what the replica keeps, and checks the invariants of replica.h and of docs/design.md
 * sections 3 and 4:
 *   1. no bounded account's spendable amount is below zero;
 *   2. Σ rights == spendable amount, for every bounded incarnation;
 *   3. per ledger, Σ credits == Σ debits, posted and pending;
 * plus the journal, version vector, chains and pending states. It allocates, so it reports
 * false when out of memory as well: it is for tests and debug builds, not for hot paths.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "crdt/id.h"
#include "ledger/branch.h"
#include "ledger/replica.h"

typedef struct shadow {
    u128 dp, cp, dq, cq; /* debits/credits posted/pending */
    rights rights;
} shadow;

/* A branch's own rights may go below zero (ledger/branch.h, invariant 3); a replica's never. */
static bool take(const tally_replica *r, rights *m, uint32_t holder, uint64_t amount) {
    return origin_is_branch(&r->origins.at[holder])
               ? rights_shift(m, holder, u128_negated(u128_of(amount)))
               : rights_take(m, holder, amount);
}

/* A pending's amount leaves its pending sums with its first finish; a second one (by another
 * history of a forked replica, ledger/branch.h) leaves them as they are. */
static bool unreserve(u128 *sum, uint64_t p, bool again) {
    return again || u128_sub(sum, p);
}

/* rights_add fails only for want of memory, which *no_memory then records: the replica is not
 * at fault. A branch's entry may be below zero, and reach zero going up. */
static bool add(const tally_replica *r, bool *no_memory, rights *m, uint32_t holder,
                uint64_t amount) {
    bool ok = origin_is_branch(&r->origins.at[holder]) ? rights_shift(m, holder, u128_of(amount))
                                                       : rights_add(m, holder, amount);
    *no_memory |= !ok;
    return ok;
}

/* Replays a transfer-like record's effect onto the shadow balances. */
static bool replay_transfer(const tally_replica *r, shadow *s, uint32_t ti, uint8_t *finished,
                            bool *no_memory) {
    const transfer_rec *t = &r->transfers.at[ti];
    shadow *d = &s[t->debit], *c = &s[t->credit];
    const account_rec *da = &r->accounts.at[t->debit], *ca = &r->accounts.at[t->credit];
    bool d_cons = da->flags & TALLY_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS;
    bool d_prod = da->flags & TALLY_ACCOUNT_CREDITS_MUST_NOT_EXCEED_DEBITS;
    bool c_cons = ca->flags & TALLY_ACCOUNT_CREDITS_MUST_NOT_EXCEED_DEBITS;
    bool c_prod = ca->flags & TALLY_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS;
    uint64_t a = t->amount;
    bool ok = true;
    if (t->kind == OP_TRANSFER) {
        bool pending = t->flags & TALLY_TRANSFER_PENDING;
        u128_add(pending ? &d->dq : &d->dp, a);
        u128_add(pending ? &c->cq : &c->cp, a);
        ok = ok && (!d_cons || take(r, &d->rights, t->origin, a));
        ok = ok && (!c_cons || take(r, &c->rights, t->origin, a));
        ok = ok && (pending || !d_prod || add(r, no_memory, &d->rights, t->origin, a));
        ok = ok && (pending || !c_prod || add(r, no_memory, &c->rights, t->origin, a));
        return ok;
    }
    uint64_t p = r->transfers.at[t->link].amount;
    bool again = finished[t->link]; /* finished before, in the order of the log */
    finished[t->link] = 1;
    ok = unreserve(&d->dq, p, again) && unreserve(&c->cq, p, again);
    if (t->kind == OP_POST) {
        u128_add(&d->dp, a);
        u128_add(&c->cp, a);
        ok = ok && (!d_cons || add(r, no_memory, &d->rights, t->origin, p - a));
        ok = ok && (!d_prod || add(r, no_memory, &d->rights, t->origin, a));
        ok = ok && (!c_cons || add(r, no_memory, &c->rights, t->origin, p - a));
        ok = ok && (!c_prod || add(r, no_memory, &c->rights, t->origin, a));
    } else {
        ok = ok && (!d_cons || add(r, no_memory, &d->rights, t->origin, p));
        ok = ok && (!c_cons || add(r, no_memory, &c->rights, t->origin, p));
    }
    return ok;
}

static bool replay(const tally_replica *r, shadow *s, bool *no_memory) {
    uint8_t *finished = calloc((size_t)r->transfers.count + 1, 1); /* by pending */
    if (finished == NULL) {
        *no_memory = true;
        return false;
    }
    bool ok = true;
    for (uint32_t pos = 0; pos < r->log.count && ok; pos++) {
        const log_entry *j = &r->log.at[pos];
        if (j->kind == OP_GRANT) {
            const grant_rec *g = &r->grants.at[j->index];
            rights *m = &s[g->account].rights;
            ok = take(r, m, g->origin, g->amount) && add(r, no_memory, m, g->to, g->amount);
        } else if (j->kind != OP_OPEN) {
            ok = replay_transfer(r, s, j->index, finished, no_memory);
        }
    }
    free(finished);
    return ok;
}

static bool rights_equal(const rights *a, const rights *b) {
    if (a->count != b->count) {
        return false;
    }
    for (uint32_t i = 0; i < a->count; i++) {
        const rights_entry *e = rights_at(a, i);
        if (u128_cmp(e->amount, rights_get(b, e->holder)) != 0) {
            return false;
        }
    }
    return true;
}

/* Whether every holder of a's rights holds at least zero, a branch counting its history's
 * (ledger/branch.h, invariant 3); *branched is set when a branch holds some. */
static bool holders_invariant(const tally_replica *r, const account_rec *a, bool *branched) {
    *branched = false;
    for (uint32_t k = 0; k < a->rights.count; k++) {
        uint32_t holder = rights_at(&a->rights, k)->holder;
        if (holder >= r->origins.count) {
            return false;
        }
        bool branch = origin_is_branch(&r->origins.at[holder]);
        *branched |= branch;
        u128 held =
            branch ? branch_rights(r, &a->rights, holder) : rights_at(&a->rights, k)->amount;
        if (u128_negative(held)) {
            return false;
        }
    }
    return true;
}

/* Invariants 1 and 2 of one incarnation, and its place in its chain, from what it keeps: no
 * bounded account below zero, but where a forked replica's histories each spent what it held
 * (then every holder, each branch with its history, holds at least zero: the damage is
 * bounded as docs/design.md shows). */
static bool account_invariants(const tally_replica *r, uint32_t i) {
    REC_INDEX(r->accounts, i);
    const account_rec *a = &r->accounts.at[i];
    const u128 *plus = NULL, *minus = NULL, *held = NULL;
    if (a->flags & TALLY_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS) {
        plus = &a->credits_posted, minus = &a->debits_posted, held = &a->debits_pending;
    } else if (a->flags & TALLY_ACCOUNT_CREDITS_MUST_NOT_EXCEED_DEBITS) {
        plus = &a->debits_posted, minus = &a->credits_posted, held = &a->credits_pending;
    }
    if (plus != NULL) {
        u128 spent = u128_plus(*minus, *held);
        u128 spendable = u128_minus(*plus, spent);
        if (r->refinished.count > 0) {
            u128 again = branch_given_again(r, i, held == &a->debits_pending);
            spendable = u128_plus(spendable, again);
        }
        bool branched;
        if (!holders_invariant(r, a, &branched) || (u128_negative(spendable) && !branched) ||
            u128_cmp(spendable, rights_sum(&a->rights)) != 0) {
            return false; /* overdrawn, or rights that do not add up to the spendable */
        }
    } else if (a->rights.count != 0) {
        return false;
    }
    uint32_t head = replica_account_head(r, a->id);
    if (head == NONE || replica_account_find(r, a->id, a->ledger, a->flags) != i) {
        return false;
    }
    return !incarnation_before(r, i, head); /* the head comes first in incarnation order */
}

/* Every balance and holder's rights as the records add up (the shadow), and the invariants. */
static bool check_accounts(const tally_replica *r, const shadow *s) {
    for (uint32_t i = 0; i < r->accounts.count; i++) {
        const account_rec *a = &r->accounts.at[i];
        if (u128_cmp(a->debits_posted, s[i].dp) || u128_cmp(a->credits_posted, s[i].cp) ||
            u128_cmp(a->debits_pending, s[i].dq) || u128_cmp(a->credits_pending, s[i].cq) ||
            !rights_equal(&a->rights, &s[i].rights) || !account_invariants(r, i)) {
            return false;
        }
    }
    return true;
}

/* Per ledger: Σ credits == Σ debits, posted and pending. Quadratic in ledgers, which are few. */
static bool check_conservation(const tally_replica *r) {
    for (uint32_t i = 0; i < r->accounts.count; i++) {
        uint32_t ledger = r->accounts.at[i].ledger;
        bool first = true;
        for (uint32_t k = 0; k < i && first; k++) {
            first = r->accounts.at[k].ledger != ledger;
        }
        if (!first) {
            continue;
        }
        u128 dp = {0, 0}, cp = {0, 0}, dq = {0, 0}, cq = {0, 0};
        for (uint32_t k = i; k < r->accounts.count; k++) {
            const account_rec *a = &r->accounts.at[k];
            if (a->ledger == ledger) {
                dp = u128_plus(dp, a->debits_posted);
                cp = u128_plus(cp, a->credits_posted);
                dq = u128_plus(dq, a->debits_pending);
                cq = u128_plus(cq, a->credits_pending);
            }
        }
        if (u128_cmp(dp, cp) != 0 || u128_cmp(dq, cq) != 0) {
            return false;
        }
    }
    return true;
}

static bool check_journal(const tally_replica *r) {
    uint64_t total = 0;
    for (uint32_t i = 0; i < r->origins.count; i++) {
        const origin_rec *o = &r->origins.at[i];
        if (o->seq < o->base || o->of >= r->origins.count ||
            origin_is_branch(&r->origins.at[o->of]) ||
            (origin_is_branch(o) && !branch_in_lineage(r, o->of, o->parent))) {
            return false; /* a branch leaves its replica's history (branch.h, invariant 1) */
        }
        total += o->seq - o->base;
        for (uint64_t s = o->base + 1; s <= o->seq; s++) {
            uint32_t pos = origin_position(o, s);
            if (pos >= r->log.count || (s > o->base + 1 && pos <= origin_position(o, s - 1))) {
                return false;
            }
        }
    }
    if (total != r->log.count) {
        return false;
    }
    uint64_t open = 0;
    for (uint32_t i = 0; i < r->transfers.count; i++) {
        const transfer_rec *t = &r->transfers.at[i];
        if (t->kind == OP_TRANSFER && (t->flags & TALLY_TRANSFER_PENDING)) {
            open += t->state == TALLY_PENDING_OPEN;
            if ((t->state == TALLY_PENDING_OPEN) != (t->link == NONE)) {
                return false;
            }
        }
    }
    return open == r->pending_open;
}

/* Fields no op could have (a transfer of amount 0, from an account to itself, ...). */
static bool check_records(const tally_replica *r) {
    for (uint32_t i = 0; i < r->transfers.count; i++) {
        tally_transfer view;
        transfer_view(r, &r->transfers.at[i], &view);
        if (transfer_check_record(&view) != TALLY_OK) {
            return false;
        }
    }
    return true;
}

/* The expiry heap (ledger/expiry.c, invariant 1): ordered, and an entry for every open
 * pending of this replica's with a timeout, none for another's. */
static bool check_expiries(const tally_replica *r, bool *no_memory) {
    uint8_t *listed = calloc((size_t)r->transfers.count + 1, 1);
    if (listed == NULL) {
        *no_memory = true;
        return false;
    }
    bool ok = true;
    for (uint32_t i = 0; i < r->expiries.count && ok; i++) {
        const expiry *e = &r->expiries.at[i];
        ok = e->transfer < r->transfers.count &&
             (i == 0 || steady_diff(r->expiries.at[(i - 1) / 2].deadline_ms, e->deadline_ms) <= 0);
        if (ok) {
            ok = expiry_kept(r, &r->transfers.at[e->transfer]);
            listed[e->transfer] = 1;
        }
    }
    for (uint32_t i = 0; i < r->transfers.count && ok; i++) {
        const transfer_rec *t = &r->transfers.at[i];
        ok = listed[i] || !expiry_kept(r, t) || t->state != TALLY_PENDING_OPEN;
    }
    free(listed);
    return ok;
}

int replica_check_status(const tally_replica *r) {
    bool no_memory = false;
    shadow *s = calloc((size_t)r->accounts.count + 1, sizeof *s);
    if (s == NULL) {
        return TALLY_ENOMEM;
    }
    bool ok = replay(r, s, &no_memory) && check_accounts(r, s) && check_conservation(r) &&
              check_records(r) && check_journal(r) && check_expiries(r, &no_memory);
    for (uint32_t i = 0; i < r->accounts.count; i++) {
        rights_free(&s[i].rights);
    }
    free(s);
    return ok ? TALLY_OK : no_memory ? TALLY_ENOMEM : TALLY_ECORRUPT;
}

bool replica_check_loaded(const tally_replica *r) {
    for (uint32_t i = 0; i < r->accounts.count; i++) {
        if (!account_invariants(r, i)) {
            return false;
        }
    }
    for (uint32_t i = 0; i < r->expiries.count; i++) {
        /* the pendings this replica will void by itself: their VOID must be an op it can make */
        tally_transfer view;
        transfer_view(r, &r->transfers.at[r->expiries.at[i].transfer], &view);
        if (transfer_check_record(&view) != TALLY_OK) {
            return false;
        }
    }
    return check_conservation(r);
}

bool replica_check(const tally_replica *r) {
    return replica_check_status(r) == TALLY_OK;
}

#ifdef TALLY_CHECK_WRITES
/* Every write while the replica holds up to CHECK_EVERY_WRITE_OPS ops, then whenever their
 * count has doubled since the last check: the tests' states are all checked, and a benchmark's
 * millions of ops cost a few whole checks, not millions. */
#define CHECK_EVERY_WRITE_OPS 2048

void replica_debug_check(tally_replica *r) {
    if (r->log.count > CHECK_EVERY_WRITE_OPS && r->log.count / 2 < r->checked_log) {
        return;
    }
    r->checked_log = r->log.count;
    int rc = replica_check_status(r);
    assert(rc != TALLY_ECORRUPT && "an invariant of ledger/replica.h is broken");
    (void)rc;
}
#endif
