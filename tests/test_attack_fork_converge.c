/*
 * test_attack_fork_converge.c — adversarial: replicas that saw the same signed runs of a
 * forked origin, in different orders, must end with equal digests after exchanging everything.
 */
#include "support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crdt/id.h"
#include "ledger/branch.h"
#include "ledger/replica.h"
#include "ledger/sync.h"

enum { BANK = 1, WALLET = 2, SHOP = 3 };
#define DEBITS_BOUND TALLY_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS
enum { X = 500 };

static const op *trunk_ops(void) {
    static op t[3];
    t[0] = open_op(X, 1, BANK, 0);
    t[1] = open_op(X, 2, WALLET, DEBITS_BOUND);
    t[2] = transfer_op(X, 3, 10, BANK, 0, WALLET, DEBITS_BOUND, 100);
    return t;
}

/* Applies trunk then `tail` (one run, chained to the trunk) to r; returns tally_apply's result
 * for the tail. */
static int apply_history(tally_replica *r, const op *tail, size_t n, bool trunk_too) {
    bytes d = {0};
    test_chains_reset();
    make_delta(trunk_ops(), 3, &d);
    if (trunk_too) {
        assert_result(tally_apply(r, d.at, d.len), TALLY_OK);
    }
    bytes_free(&d);
    make_delta(tail, n, &d);
    int rc = tally_apply(r, d.at, d.len);
    bytes_free(&d);
    return rc;
}

static void dump(const char *name, const tally_replica *r) {
    for (uint32_t i = 0; i < r->origins.count; i++) {
        const origin_rec *o = &r->origins.at[i];
        if (o->of != i || o->branches || o->seq) {
            print_message("%s[%u] id=%016llx seq=%llu base=%llu of=%u parent=%d runs=%u br=%u\n",
                          name, i, (unsigned long long)o->id, (unsigned long long)o->seq,
                          (unsigned long long)o->base, o->of, (int)o->parent, o->runs.count,
                          o->branches);
        }
    }
}

static void exchange(tally_replica *a, tally_replica *b) {
    for (int round = 0; round < 3; round++) {
        (void)apply_from(a, b);
        (void)apply_from(b, a);
    }
}

/* 1. A second history whose op is refused (overspends) leaves two empty branch entries (the
 * new one, and the rest, moved back) in the origin table of the replica that saw it. A replica
 * that never saw the refused run has none. After a full exchange they must agree. */
static void refused_branch_leaves_no_trace(void **state) {
    (void)state;
    tally_replica *p = replica_new(1, NULL), *q = replica_new(2, NULL);
    op first = transfer_op(X, 4, 20, WALLET, DEBITS_BOUND, BANK, 0, 60);
    op too_much = transfer_op(X, 4, 21, WALLET, DEBITS_BOUND, BANK, 0, 101);
    assert_result(apply_history(p, &first, 1, true), TALLY_OK);
    assert_result(apply_history(q, &first, 1, true), TALLY_OK);
    assert_result(apply_history(p, &too_much, 1, false), TALLY_ECORRUPT);
    exchange(p, q);
    if (getenv("DUMP")) {
        dump("p", p);
        dump("q", q);
    }
    assert_true(replica_check(p));
    assert_true(replica_check(q));
    uint32_t xp = replica_origin_find(p, X), xq = replica_origin_find(q, X);
    print_message("forked: p %d q %d\n", p->origins.at[xp].forked, q->origins.at[xq].forked);
    tally_version v[8];
    size_t np, nq;
    assert_result(tally_version_vector(p, v, 8, &np), TALLY_OK);
    assert_result(tally_version_vector(q, v, 8, &nq), TALLY_OK);
    assert_int_equal(np, nq);
    assert_converged(p, q);
    tally_close(p);
    tally_close(q);
}

/* 2. More histories than BRANCHES_MAX: which ones a replica refuses depends on the order they
 * reach it; two replicas that got them in opposite orders and then exchange everything must
 * still converge. */
static void past_branches_max_each_keeps_what_it_met_first(void **state) {
    (void)state;
    enum { H = BRANCHES_MAX + 2 };
    tally_replica *p = replica_new(1, NULL), *q = replica_new(2, NULL);
    int refused_p = 0, refused_q = 0;
    for (int i = 0; i < H; i++) {
        op t = transfer_op(X, 4, 100 + (uint64_t)i, WALLET, DEBITS_BOUND, BANK, 0, 1);
        int rc = apply_history(p, &t, 1, i == 0);
        refused_p += rc != TALLY_OK;
    }
    for (int i = H - 1; i >= 0; i--) {
        op t = transfer_op(X, 4, 100 + (uint64_t)i, WALLET, DEBITS_BOUND, BANK, 0, 1);
        int rc = apply_history(q, &t, 1, i == H - 1);
        refused_q += rc != TALLY_OK;
    }
    print_message("refused at p: %d, at q: %d\n", refused_p, refused_q);
    exchange(p, q);
    print_message("debits of the wallet: p %llu, q %llu\n",
                  (unsigned long long)p->accounts.at[1].debits_posted.lo,
                  (unsigned long long)q->accounts.at[1].debits_posted.lo);
    assert_true(replica_check(p));
    assert_true(replica_check(q));
    /* Past BRANCHES_MAX histories of one replica, each replica keeps the first it met and
     * refuses the rest (docs/design.md, "Past a fork"): the two need not keep the same ones,
     * and what is promised is what each keeps: bounded, and reported. */
    assert_int_equal(refused_p, H - BRANCHES_MAX);
    assert_int_equal(refused_q, H - BRANCHES_MAX);
    tally_damage d[4];
    size_t n;
    for (int side = 0; side < 2; side++) {
        assert_result(tally_fork_damage(side == 0 ? p : q, 0, d, 4, &n), TALLY_OK);
        for (size_t i = 0; i < n && i < 4; i++) {
            assert_true(d[i].taken <= d[i].bound);
            assert_int_equal(d[i].histories, BRANCHES_MAX);
        }
    }
    tally_close(p);
    tally_close(q);
}

/* 3. A fork at seq 1 (both histories start at genesis), reaching two replicas in opposite
 * orders. */
static void fork_at_first_run_converges(void **state) {
    (void)state;
    tally_replica *p = replica_new(1, NULL), *q = replica_new(2, NULL);
    op a[2] = {open_op(X, 1, BANK, 0), open_op(X, 2, WALLET, DEBITS_BOUND)};
    op b[1] = {open_op(X, 1, SHOP, 0)};
    bytes da = {0}, db = {0};
    test_chains_reset();
    make_delta(a, 2, &da);
    test_chains_reset();
    make_delta(b, 1, &db);
    assert_result(tally_apply(p, da.at, da.len), TALLY_OK);
    assert_result(tally_apply(p, db.at, db.len), TALLY_OK);
    assert_result(tally_apply(q, db.at, db.len), TALLY_OK);
    assert_result(tally_apply(q, da.at, da.len), TALLY_OK);
    bytes_free(&da);
    bytes_free(&db);
    assert_converged(p, q);
    exchange(p, q);
    assert_converged(p, q);
    assert_true(replica_check(p));
    tally_close(p);
    tally_close(q);
}

/* p and q hold X's history with its first 60 spent; p is then sent BRANCHES_MAX second
 * histories that each overspend, and refuses them. */
static void refuse_branches_max(tally_replica *p, tally_replica *q) {
    op first = transfer_op(X, 4, 20, WALLET, DEBITS_BOUND, BANK, 0, 60);
    assert_result(apply_history(p, &first, 1, true), TALLY_OK);
    assert_result(apply_history(q, &first, 1, true), TALLY_OK);
    for (int i = 0; i < BRANCHES_MAX; i++) {
        op bad = transfer_op(X, 4, 1000 + (uint64_t)i, WALLET, DEBITS_BOUND, BANK, 0, 101);
        assert_result(apply_history(p, &bad, 1, false), TALLY_ECORRUPT);
    }
}

/* 4. Refused second histories (each overspends) use up BRANCHES_MAX: afterwards a valid
 * second history (an honest copy's payments) is refused forever here, while a replica that
 * never saw the refused runs keeps it. */
static void refused_histories_exhaust_branches(void **state) {
    (void)state;
    tally_replica *p = replica_new(1, NULL), *q = replica_new(2, NULL);
    refuse_branches_max(p, q);
    print_message("p: %u origins, %u branches\n", p->origins.count,
                  p->origins.at[replica_origin_find(p, X)].branches);
    op fine = transfer_op(X, 4, 22, WALLET, DEBITS_BOUND, BANK, 0, 100);
    assert_result(apply_history(q, &fine, 1, false), TALLY_OK);
    exchange(p, q);
    tally_transfer got;
    assert_result(tally_lookup_transfer(q, tid(22), &got), TALLY_OK);
    assert_result(tally_lookup_transfer(p, tid(22), &got), TALLY_OK);
    tally_close(p);
    tally_close(q);
}

/* 5. Liveness: as 4, and an honest replica q then writes an op that depends on the second
 * history (a transfer to the account it opened), then an unrelated op. p, which refused the
 * second history for want of branch slots, can take neither: every later op of q's is stuck
 * behind it. */
static void honest_ops_stuck_behind_a_refused_history(void **state) {
    (void)state;
    enum { NEWACC = 40, LATER = 41 };
    tally_replica *p = replica_new(1, NULL), *q = replica_new(2, NULL);
    refuse_branches_max(p, q);
    op second = open_op(X, 4, NEWACC, 0); /* the honest copy's history: it opens an account */
    assert_result(apply_history(q, &second, 1, false), TALLY_OK);
    tally_transfer t = transfer(90, BANK, NEWACC, 5);
    assert_result(tally_create_transfer(q, &t), TALLY_OK);
    tally_account later = account(LATER, 1, 0);
    assert_result(tally_create_account(q, &later), TALLY_OK);
    exchange(p, q);
    tally_account got;
    assert_result(tally_lookup_account(p, tid(LATER), &got), TALLY_OK);
    tally_close(p);
    tally_close(q);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(refused_branch_leaves_no_trace),
        cmocka_unit_test(past_branches_max_each_keeps_what_it_met_first),
        cmocka_unit_test(fork_at_first_run_converges),
        cmocka_unit_test(refused_histories_exhaust_branches),
        cmocka_unit_test(honest_ops_stuck_behind_a_refused_history),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
