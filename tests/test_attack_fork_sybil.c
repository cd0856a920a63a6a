/*
 * test_attack_fork_sybil.c — adversarial: a branch's id is public (SHA-256 of a tag, the
 * forked replica's id and its first run's hash). A replica that takes that id for its own
 * (no authority: ids are chosen freely) makes the branch impossible where its ops came first,
 * and its own ops impossible where the branch came first: neither breaks a replica's state.
 */
#include "support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crdt/id.h"
#include "ledger/branch.h"
#include "ledger/replica.h"

enum { BANK = 1, WALLET = 2, SHOP = 3, ZACC = 77 };
#define DEBITS_BOUND TALLY_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS
enum { X = 500 };

static bytes trunk_d, a_d, just_b;

static void make_histories(void) {
    op trunk[4] = {open_op(X, 1, BANK, 0), open_op(X, 2, WALLET, DEBITS_BOUND),
                   transfer_op(X, 3, 10, BANK, 0, WALLET, DEBITS_BOUND, 100),
                   transfer_op(X, 4, 20, WALLET, DEBITS_BOUND, BANK, 0, 60)};
    op b = transfer_op(X, 4, 21, WALLET, DEBITS_BOUND, BANK, 0, 50);
    memset(&trunk_d, 0, sizeof trunk_d);
    memset(&a_d, 0, sizeof a_d);
    memset(&just_b, 0, sizeof just_b);
    test_chains_reset();
    make_delta(trunk, 3, &trunk_d);
    make_delta(trunk + 3, 1, &a_d);
    test_chains_reset();
    bytes t = {0};
    make_delta(trunk, 3, &t);
    bytes_free(&t);
    make_delta(&b, 1, &just_b);
}

static int apply_ta(tally_replica *r) {
    int rc = tally_apply(r, trunk_d.at, trunk_d.len);
    return rc != TALLY_OK ? rc : tally_apply(r, a_d.at, a_d.len);
}

static void sybil_takes_a_branch_id(void **state) {
    (void)state;
    tally_replica *scratch = replica_new(9, NULL);
    make_histories();
    assert_result(apply_ta(scratch), TALLY_OK);
    assert_result(tally_apply(scratch, just_b.at, just_b.len), TALLY_OK);
    uint64_t branch = 0;
    for (uint32_t i = 0; i < scratch->origins.count; i++) {
        if (origin_is_branch(&scratch->origins.at[i])) {
            branch = scratch->origins.at[i].id; /* one of the two */
        }
    }
    assert_int_not_equal(branch, 0);
    tally_close(scratch);
    bytes_free(&trunk_d);
    bytes_free(&a_d);
    bytes_free(&just_b);
    /* Z: a replica whose id is that branch's, opening an account */
    op z = open_op(branch, 1, ZACC, 0);
    bytes dz = {0};
    make_delta(&z, 1, &dz);
    tally_replica *p = replica_new(1, NULL), *q = replica_new(2, NULL);
    make_histories();
    int rp1 = tally_apply(p, dz.at, dz.len);
    int rp2 = apply_ta(p);
    int rp3 = tally_apply(p, just_b.at, just_b.len);
    int rq1 = apply_ta(q);
    int rq2 = tally_apply(q, just_b.at, just_b.len);
    int rq3 = tally_apply(q, dz.at, dz.len);
    print_message("p: %s %s %s; q: %s %s %s\n", tally_result_name(rp1), tally_result_name(rp2),
                  tally_result_name(rp3), tally_result_name(rq1), tally_result_name(rq2),
                  tally_result_name(rq3));
    for (int round = 0; round < 3; round++) {
        (void)apply_from(p, q);
        (void)apply_from(q, p);
    }
    tally_transfer t;
    tally_account a;
    print_message("p has b's transfer: %d, q has Z's account: %d\n",
                  tally_lookup_transfer(p, tid(21), &t) == TALLY_OK,
                  tally_lookup_account(q, tid(ZACC), &a) == TALLY_OK);
    /* Without an authority an id is anyone's to take: a replica named as a branch is refused
     * where the branch came first, and the branch where it came first. Neither state breaks
     * (docs/design.md, "Past a fork": in a cluster with an authority no replica can have an
     * id it was not given). */
    assert_result(rp1, TALLY_OK);
    assert_result(rp3, TALLY_ECORRUPT);
    assert_result(rq3, TALLY_ECORRUPT);
    assert_true(replica_check(p));
    assert_true(replica_check(q));
    bytes_free(&dz);
    bytes_free(&trunk_d);
    bytes_free(&a_d);
    bytes_free(&just_b);
    tally_close(p);
    tally_close(q);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sybil_takes_a_branch_id),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
