/*
 * ledger/query.c — the read-only calls: lookups of accounts, balances, rights and transfers,
 * incarnations and conflicts, and the replica's statistics.
 */
#include <assert.h>
#include <string.h>

#include "crdt/id.h"
#include "ledger/branch.h"
#include "ledger/replica.h"

uint64_t tally_replica_id(const tally_replica *r) {
    return r != NULL ? r->id : 0;
}

uint64_t tally_seen(const tally_replica *r, uint64_t origin) {
    uint32_t i = r != NULL ? replica_origin_find(r, origin) : NONE;
    uint64_t seen = 0; /* of a forked replica, its furthest history */
    for (uint32_t k = i != NONE ? branch_next(r, i, NONE) : NONE; k != NONE;
         k = branch_next(r, i, k)) {
        seen = r->origins.at[k].seq > seen ? r->origins.at[k].seq : seen;
    }
    return seen;
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
    size_t n = 0;
    for (uint32_t i = 0; i < a->rights.count; i++) {
        const rights_entry *held = rights_at(&a->rights, i);
        if (origin_is_branch(&r->origins.at[held->holder])) {
            continue; /* a forked replica's history: what it spent shows in tally_fork_damage */
        }
        ++*count;
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
    REC_INDEX(r->accounts, t->debit);
    REC_INDEX(r->accounts, t->credit);
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
    REC_INDEX(r->opens, open);
    const open_rec *o = &r->opens.at[open];
    tally_dot d = {r->origins.at[o->origin].id, o->seq};
    return d;
}

static tally_dot transfer_dot(const tally_replica *r, uint32_t t) {
    REC_INDEX(r->transfers, t);
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

void replica_op_at(const tally_replica *r, uint32_t position, op *o) {
    const log_entry *j = &r->log.at[position];
    op_clear(o);
    o->kind = (uint8_t)j->kind;
    switch (j->kind) {
    case OP_OPEN: {
        const open_rec *rec = &r->opens.at[j->index];
        o->origin = r->origins.at[r->origins.at[rec->origin].of].id;
        o->seq = rec->seq;
        o->hlc = rec->hlc;
        o->u.account = rec->a;
        break;
    }
    case OP_GRANT: {
        const grant_rec *g = &r->grants.at[j->index];
        const account_rec *a = &r->accounts.at[g->account];
        o->origin = r->origins.at[r->origins.at[g->origin].of].id;
        o->seq = g->seq;
        o->hlc = g->hlc;
        o->u.grant.account = a->id;
        o->u.grant.ledger = a->ledger;
        o->u.grant.account_flags = (uint8_t)a->flags;
        o->u.grant.to = r->origins.at[g->to].id;
        o->u.grant.amount = g->amount;
        break;
    }
    default: {
        const transfer_rec *t = &r->transfers.at[j->index];
        o->origin = r->origins.at[r->origins.at[t->origin].of].id;
        o->seq = t->seq;
        o->hlc = t->hlc;
        o->expired = t->expired;
        o->debit_flags = (uint8_t)r->accounts.at[t->debit].flags;
        o->credit_flags = (uint8_t)r->accounts.at[t->credit].flags;
        transfer_view(r, t, &o->u.transfer);
        break;
    }
    }
}
