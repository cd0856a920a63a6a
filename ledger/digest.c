/*
 * ledger/digest.c — tally_digest: one 128-bit value that two replicas, a test or an operator
 * compare to know that two replicas have converged.
 *
 * The digest is XXH3-128 over a canonical encoding of the version vector and the derived
 * state. Each record (an origin's seq and whether it is known to have forked, an account
 * incarnation with its balances, each holder's rights, each OPEN, transfer and grant) is encoded
 * canonically and hashed on its own; the record hashes of a kind are added together modulo 2^128.
 * Addition is commutative, so the digest does not depend on the order in which a replica happened
 * to apply ops, allocate indices or lay out its hash tables, and it needs no sorting and no memory.
 *
 * 1. Equal op sets give equal digests (everything hashed is a function of the op set).
 * 2. Any difference in a balance, a holder's rights, a pending state, a winner or the version
 *    vector, or in which origins are known to have forked, changes the digest, barring a
 *    128-bit hash collision.
 */
#include <string.h>

#include "crdt/id.h"
#include "ledger/codec.h"
#include "ledger/replica.h"

typedef struct enc {
    uint8_t b[256];
    size_t n;
} enc;

static void e64(enc *e, uint64_t v) {
    put_u64le(e->b + e->n, v);
    e->n += 8;
}
static void eid(enc *e, tally_id id) {
    e64(e, id.hi);
    e64(e, id.lo);
}
static void e128(enc *e, u128 v) {
    e64(e, v.hi);
    e64(e, v.lo);
}

static void sum_add(u128 *sum, const enc *e) {
    XXH128_hash_t h = XXH3_128bits(e->b, e->n);
    u128 v = {h.high64, h.low64};
    *sum = u128_plus(*sum, v);
}

static uint64_t origin_id(const tally_replica *r, uint32_t i) {
    return r->origins.at[i].id;
}

static void transfer_fields(enc *e, const tally_transfer *t) {
    eid(e, t->id);
    eid(e, t->debit_account_id);
    eid(e, t->credit_account_id);
    eid(e, t->pending_id);
    e64(e, t->amount);
    e64(e, t->user_data);
    e64(e, (uint64_t)t->ledger << 32 | t->timeout_ms);
    e64(e, (uint64_t)t->code << 16 | t->flags);
}

/* An account incarnation's key in every record that names one: its id, ledger and bounds. */
static void account_key(enc *e, const account_rec *a) {
    eid(e, a->id);
    e64(e, (uint64_t)a->ledger << 32 | a->flags);
}

/* Each kind of record hashed into its own sum, in this order. */
enum { SUM_ORIGINS, SUM_ACCOUNTS, SUM_RIGHTS, SUM_OPENS, SUM_TRANSFERS, SUM_GRANTS, SUMS };

static void sum_origins(const tally_replica *r, u128 sums[SUMS]) {
    enc e;
    for (uint32_t i = 0; i < r->origins.count; i++) {
        if (r->origins.at[i].seq != 0) {
            e.n = 0;
            e64(&e, r->origins.at[i].id);
            e64(&e, r->origins.at[i].seq);
            if (r->origins.at[i].forked) {
                e64(&e, 1); /* known here to have forked its history (chain.c) */
            }
            sum_add(&sums[SUM_ORIGINS], &e);
        }
    }
}

/* Each incarnation with its balances, and each of its holders' rights. */
static void sum_accounts(const tally_replica *r, u128 sums[SUMS]) {
    enc e;
    for (uint32_t i = 0; i < r->accounts.count; i++) {
        const account_rec *a = &r->accounts.at[i];
        const open_rec *win = &r->opens.at[a->open];
        e.n = 0;
        account_key(&e, a);
        e64(&e, origin_id(r, win->origin));
        e64(&e, win->seq);
        e64(&e, (uint64_t)(replica_account_head(r, a->id) == i));
        e128(&e, a->debits_posted);
        e128(&e, a->credits_posted);
        e128(&e, a->debits_pending);
        e128(&e, a->credits_pending);
        sum_add(&sums[SUM_ACCOUNTS], &e);
        for (uint32_t k = 0; k < a->rights.count; k++) {
            e.n = 0;
            account_key(&e, a);
            e64(&e, origin_id(r, rights_at(&a->rights, k)->holder));
            e128(&e, rights_at(&a->rights, k)->amount);
            sum_add(&sums[SUM_RIGHTS], &e);
        }
    }
}

static void sum_opens(const tally_replica *r, u128 sums[SUMS]) {
    enc e;
    for (uint32_t i = 0; i < r->opens.count; i++) {
        const open_rec *o = &r->opens.at[i];
        e.n = 0;
        eid(&e, o->a.id);
        e64(&e, o->a.user_data);
        e64(&e, (uint64_t)o->a.ledger << 32 | (uint64_t)o->a.code << 16 | o->a.flags);
        e64(&e, origin_id(r, o->origin));
        e64(&e, o->seq);
        e64(&e, o->hlc);
        sum_add(&sums[SUM_OPENS], &e);
    }
}

static void sum_transfers(const tally_replica *r, u128 sums[SUMS]) {
    enc e;
    for (uint32_t i = 0; i < r->transfers.count; i++) {
        const transfer_rec *t = &r->transfers.at[i];
        tally_transfer view;
        transfer_view(r, t, &view);
        e.n = 0;
        transfer_fields(&e, &view);
        e64(&e, origin_id(r, t->origin));
        e64(&e, t->seq);
        e64(&e, t->hlc);
        e64(&e, (uint64_t)t->kind << 16 | (uint64_t)t->state << 8 | t->expired);
        e64(&e, (uint64_t)r->accounts.at[t->debit].flags << 8 | r->accounts.at[t->credit].flags);
        e64(&e, (uint64_t)(t->expired || idmap_get(&r->transfer_map, t->id) == i));
        sum_add(&sums[SUM_TRANSFERS], &e);
    }
}

static void sum_grants(const tally_replica *r, u128 sums[SUMS]) {
    enc e;
    for (uint32_t i = 0; i < r->grants.count; i++) {
        const grant_rec *g = &r->grants.at[i];
        e.n = 0;
        account_key(&e, &r->accounts.at[g->account]);
        e64(&e, origin_id(r, g->origin));
        e64(&e, g->seq);
        e64(&e, g->hlc);
        e64(&e, origin_id(r, g->to));
        e64(&e, g->amount);
        sum_add(&sums[SUM_GRANTS], &e);
    }
}

int tally_digest(const tally_replica *r, uint8_t out[16]) {
    if (out != NULL) {
        memset(out, 0, 16);
    }
    if (r == NULL || out == NULL) {
        return TALLY_EINVAL;
    }
    u128 sums[SUMS];
    memset(sums, 0, sizeof sums);
    sum_origins(r, sums);
    sum_accounts(r, sums);
    sum_opens(r, sums);
    sum_transfers(r, sums);
    sum_grants(r, sums);
    enc e;
    memcpy(e.b, "tally-digest-v1\0", 16);
    e.n = 16;
    for (int k = 0; k < SUMS; k++) {
        e128(&e, sums[k]);
    }
    XXH128_hash_t h = XXH3_128bits(e.b, e.n);
    put_u64le(out, h.high64);
    put_u64le(out + 8, h.low64);
    return TALLY_OK;
}
