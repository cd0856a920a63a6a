/*
 * test_fork.c — past a fork (ledger/branch.c): when a replica's key signs two histories (a
 * cloned directory, a restored backup that writes again), every replica keeps both, as
 * branches, and all of them converge; what the histories spent twice is bounded by what the
 * forked replica held, and reported.
 */
#include "support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crdt/id.h"
#include "ledger/branch.h"
#include "ledger/replica.h"
#include "ledger/sync.h"

enum { BANK = 1, WALLET = 2, SHOP = 3, THIEF = 4, OTHER = 5 };
#define DEBITS_BOUND TALLY_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS


static uint64_t debits_of(tally_replica *r, uint64_t account) {
    tally_balance b;
    assert_result(tally_lookup_balance(r, tid(account), &b), TALLY_OK);
    return b.debits_posted;
}

static void sync_everyone(tally_replica **r, int n) {
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < n; i++) {
            for (int k = 0; k < n; k++) {
                if (i != k) {
                    assert_result(apply_from(r[i], r[k]), TALLY_OK);
                }
            }
        }
    }
    for (int i = 1; i < n; i++) {
        assert_converged(r[0], r[i]);
        assert_true(replica_check(r[i]));
    }
}

/* A copy of a replica (same id, same key) and the original each spend the wallet's 100 while
 * cut off from each other, and each reaches a peer first. Every replica ends with both
 * payments, the same digest, and the proof; the wallet is overdrawn by what was spent twice,
 * no more than the forked replica held. */
static void both_histories_of_a_copied_replica_converge(void **state) {
    (void)state;
    tally_replica *a = replica_new(1, NULL), *p = replica_new(2, NULL), *q = replica_new(3, NULL);
    fork_wallet(a);
    sync_pair(a, p);
    sync_pair(a, q);
    tally_replica *copy = replica_clone(a);
    tally_transfer pay = transfer(20, WALLET, SHOP, 60), steal = transfer(21, WALLET, THIEF, 70);
    assert_result(tally_create_transfer(a, &pay), TALLY_OK);
    assert_result(tally_create_transfer(copy, &steal), TALLY_OK);
    sync_pair(a, p);
    sync_pair(copy, q);
    /* the two histories meet at q: it keeps both */
    assert_result(apply_from(p, q), TALLY_OK);
    assert_int_equal(debits_of(q, WALLET), 130);
    assert_true(replica_check(q));
    size_t n;
    assert_result(tally_forks(q, 0, NULL, 0, &n), TALLY_OK);
    assert_int_equal(n, 1);
    tally_replica *all[4] = {p, q, a, copy};
    sync_everyone(all, 4);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(debits_of(all[i], WALLET), 130);
        assert_result(tally_forks(all[i], 0, NULL, 0, &n), TALLY_OK);
        assert_int_equal(n, 1);
    }
    /* the forked replica takes no writes, in either copy */
    tally_transfer more = transfer(22, OTHER, SHOP, 1);
    assert_result(tally_create_transfer(a, &more), TALLY_ORIGIN_FORKED);
    assert_result(tally_create_transfer(copy, &more), TALLY_ORIGIN_FORKED);
    for (int i = 0; i < 4; i++) {
        tally_close(all[i]);
    }
}

/* The damage report of r for the wallet: what replica `forked`'s histories took beyond what it
 * held, and the bound; 0 taken when r reports none. */
static uint64_t taken_on_wallet(tally_replica *r, uint64_t forked, uint64_t *bound) {
    tally_damage d[4];
    size_t n;
    assert_result(tally_fork_damage(r, 0, d, 4, &n), TALLY_OK);
    for (size_t i = 0; i < n && i < 4; i++) {
        assert_true(d[i].taken <= d[i].bound);
        if (d[i].replica_id == forked && id_eq(d[i].account_id, tid(WALLET))) {
            *bound = d[i].bound;
            return d[i].taken;
        }
    }
    *bound = 0;
    return 0;
}


/* Three copies each spend all 100 of the wallet: 200 is taken beyond what the replica held,
 * exactly the bound (the 100 it held where they parted, once for each history past the
 * first), and every replica reports it alike. */
static void three_histories_take_at_most_twice_what_was_held(void **state) {
    (void)state;
    tally_replica *a = replica_new(1, NULL), *p = replica_new(2, NULL);
    fork_wallet(a);
    sync_pair(a, p);
    tally_replica *b = replica_clone(a), *c = replica_clone(a);
    for (int i = 0; i < 3; i++) {
        tally_replica *who = i == 0 ? a : i == 1 ? b : c;
        tally_transfer t = transfer(30 + (uint64_t)i, WALLET, THIEF, 100);
        assert_result(tally_create_transfer(who, &t), TALLY_OK);
    }
    tally_replica *all[4] = {p, a, b, c};
    sync_everyone(all, 4);
    uint64_t bound;
    for (int i = 0; i < 4; i++) {
        assert_int_equal(debits_of(all[i], WALLET), 300);
        assert_int_equal(taken_on_wallet(all[i], 1, &bound), 200);
        assert_int_equal(bound, 200);
    }
    tally_damage d;
    size_t n;
    assert_result(tally_fork_damage(p, 0, &d, 1, &n), TALLY_OK);
    assert_int_equal(n, 1);
    assert_int_equal(d.histories, 3);
    assert_int_equal(d.ledger, 1);
    assert_int_equal(d.flags, DEBITS_BOUND);
    for (int i = 0; i < 4; i++) {
        tally_close(all[i]);
    }
}

/* A history forks again further on: a copy of a copy. Each parting counts what the history
 * held there, and a grant made to the forked replica after the first parting, by a replica
 * that did not know, raises what its histories may take (and the bound) by that much. */
static void a_fork_of_a_fork_is_bounded_at_each_parting(void **state) {
    (void)state;
    tally_replica *a = replica_new(1, NULL), *p = replica_new(2, NULL);
    fork_wallet(a);
    tally_transfer top = transfer(11, BANK, WALLET, 50);
    sync_pair(a, p);
    tally_replica *b = replica_clone(a);
    tally_transfer spend_a = transfer(40, WALLET, SHOP, 70);
    assert_result(tally_create_transfer(a, &spend_a), TALLY_OK);
    /* p tops the wallet up and gives it to a (a's history at the parting held 100) */
    assert_result(tally_create_transfer(p, &top), TALLY_OK);
    assert_result(grant_to(p, tid(WALLET), 1, 50), TALLY_OK);
    sync_pair(p, b);
    tally_replica *c = replica_clone(b); /* b's history, with the grant, parts again */
    tally_transfer spend_b = transfer(41, WALLET, THIEF, 150),
                   spend_c = transfer(42, WALLET, SHOP, 150);
    assert_result(tally_create_transfer(b, &spend_b), TALLY_OK);
    assert_result(tally_create_transfer(c, &spend_c), TALLY_OK);
    tally_replica *all[4] = {p, a, b, c};
    sync_everyone(all, 4);
    /* held 150 in all (100, then 50 granted): spent 70 + 150 + 150 = 370, taken 220; bound: at
     * the first parting the trunk holds 150 (the grant counts there), at the second b's
     * history held 150 - 0: 150 + 150 = 300 */
    uint64_t bound;
    for (int i = 0; i < 4; i++) {
        assert_int_equal(debits_of(all[i], WALLET), 370);
        assert_int_equal(taken_on_wallet(all[i], 1, &bound), 220);
        assert_int_equal(bound, 300);
    }
    /* once p knows, it gives no more */
    assert_result(grant_to(p, tid(WALLET), 1, 1), TALLY_REPLICA_FORKED);
    for (int i = 0; i < 4; i++) {
        tally_close(all[i]);
    }
}

/* A pending made before the histories part is finished in each: voided by one, posted by the
 * other. Each history may finish it (each is the replica that made it), both apply on every
 * replica whatever the order they arrive in, and lookups show the finish of the smaller dot. */
static void a_pending_finished_in_two_histories_converges(void **state) {
    (void)state;
    tally_replica *a = replica_new(1, NULL), *p = replica_new(2, NULL), *q = replica_new(3, NULL);
    tally_replica *b = fork_wallet_pending(a, p);
    sync_pair(a, q);
    tally_transfer post = finish(51, 50, TALLY_TRANSFER_POST_PENDING, 40);
    tally_transfer cancel = finish(52, 50, TALLY_TRANSFER_VOID_PENDING, 0);
    assert_result(tally_create_transfer(a, &post), TALLY_OK);
    assert_result(tally_create_transfer(b, &cancel), TALLY_OK);
    /* the void spends what it gave back */
    tally_transfer again = transfer(53, WALLET, THIEF, 100);
    assert_result(tally_create_transfer(b, &again), TALLY_OK);
    sync_pair(a, p);
    sync_pair(b, q);
    assert_result(apply_from(q, p), TALLY_OK);
    assert_result(apply_from(p, q), TALLY_OK);
    assert_converged(p, q);
    assert_true(replica_check(p));
    tally_replica *all[4] = {p, q, a, b};
    sync_everyone(all, 4);
    tally_transfer got;
    assert_result(tally_lookup_transfer(p, tid(50), &got), TALLY_OK);
    uint64_t bound;
    /* held 100, of which 40 pending: the histories spent 40 + 100 and gave 40 back once too
     * often; the wallet is 40 below its bound */
    assert_int_equal(taken_on_wallet(p, 1, &bound), 40);
    assert_int_equal(bound, 100);
    for (int i = 0; i < 4; i++) {
        tally_close(all[i]);
    }
}

/* A second history whose first op spends more than the replica held where it parts is
 * refused like any invalid op (checked against its history's rights: nothing a history can
 * spend grows by its being a branch), and leaves nothing behind but the proof: the first
 * history is where it was, and a later valid history is kept. */
static void a_second_history_that_overspends_is_refused_whole(void **state) {
    (void)state;
    enum { X = 500 };
    tally_replica *r = replica_new(1, NULL);
    op trunk[3] = {open_op(X, 1, BANK, 0), open_op(X, 2, WALLET, DEBITS_BOUND),
                   transfer_op(X, 3, 10, BANK, 0, WALLET, DEBITS_BOUND, 100)};
    op first = transfer_op(X, 4, 20, WALLET, DEBITS_BOUND, BANK, 0, 60);
    op too_much = transfer_op(X, 4, 21, WALLET, DEBITS_BOUND, BANK, 0, 101);
    op fine = transfer_op(X, 4, 22, WALLET, DEBITS_BOUND, BANK, 0, 100);
    bytes d = {0};
    test_chains_reset();
    make_delta(trunk, 3, &d);
    assert_result(tally_apply(r, d.at, d.len), TALLY_OK);
    bytes_free(&d);
    make_delta(&first, 1, &d);
    assert_result(tally_apply(r, d.at, d.len), TALLY_OK);
    bytes_free(&d);
    uint64_t log = r->log.count;
    tally_balance before;
    assert_result(tally_lookup_balance(r, tid(WALLET), &before), TALLY_OK);
    /* the same key, the same trunk, another op at seq 4 */
    test_chains_reset();
    make_delta(trunk, 3, &d);
    bytes_free(&d);
    make_delta(&too_much, 1, &d);
    assert_result(tally_apply(r, d.at, d.len), TALLY_ECORRUPT);
    bytes_free(&d);
    tally_balance after;
    assert_result(tally_lookup_balance(r, tid(WALLET), &after), TALLY_OK);
    assert_memory_equal(&before, &after, sizeof before);
    assert_int_equal(r->log.count, log);
    assert_int_equal(tally_seen(r, X), 4);
    size_t n;
    assert_result(tally_forks(r, 0, NULL, 0, &n), TALLY_OK);
    assert_int_equal(n, 1); /* signed all the same: the proof holds */
    assert_true(replica_check(r));
    uint32_t x = replica_origin_find(r, X);
    assert_int_equal(r->origins.at[x].seq, 4); /* its history is whole again */
    test_chains_reset();
    make_delta(trunk, 3, &d);
    bytes_free(&d);
    make_delta(&fine, 1, &d);
    assert_result(tally_apply(r, d.at, d.len), TALLY_OK);
    bytes_free(&d);
    assert_int_equal(debits_of(r, WALLET), 160);
    assert_true(replica_check(r));
    tally_close(r);
}

/* The ops of each history arrive interleaved with the other's, in deltas cut small (each
 * sender carrying what it sent, as a node does: a peer whose history parted from the sender's
 * names a head the sender cannot place, and is sent every run from the first); a replica that
 * restarts in between replays the same branches from its journal. */
static void histories_converge_through_small_deltas_and_restarts(void **state) {
    (void)state;
    char *dir = strdup("/tmp/tally-fork-XXXXXX");
    assert_non_null(mkdtemp(dir));
    tally_options o = {.dir = dir, .replica_id = 9, .sync_mode = TALLY_SYNC_COMMIT};
    tally_replica *a = replica_new(1, NULL), *d = NULL;
    fork_wallet(a);
    assert_result(tally_open(&o, &d), TALLY_OK);
    sync_pair(a, d);
    tally_replica *b = replica_clone(a);
    for (uint64_t i = 0; i < 20; i++) {
        tally_transfer ta = transfer(100 + i, WALLET, SHOP, 3),
                       tb = transfer(200 + i, WALLET, THIEF, 4);
        assert_result(tally_create_transfer(a, &ta), TALLY_OK);
        assert_result(tally_create_transfer(b, &tb), TALLY_OK);
    }
    /* as a node does: each sender reads d's summary once, then carries what it sent */
    vclock sent[2];
    for (int k = 0; k < 2; k++) {
        uint8_t *summary;
        size_t summary_len;
        assert_result(tally_summary(d, &summary, &summary_len), TALLY_OK);
        assert_result(sync_summary_decode(k == 0 ? a : b, summary, summary_len, &sent[k], NULL),
                      TALLY_OK);
        tally_free(summary);
    }
    for (int round = 0; round < 60; round++) {
        tally_replica *from = round % 2 == 0 ? a : b;
        uint8_t *delta;
        size_t len;
        vclock covered;
        assert_result(sync_delta(from, &sent[round % 2], NULL, 64, &delta, &len, &covered),
                      TALLY_OK);
        vclock_free(&sent[round % 2]);
        sent[round % 2] = covered;
        assert_result(tally_apply(d, delta, len), TALLY_OK);
        tally_free(delta);
        if (round % 7 == 6) {
            uint8_t before[16], after[16];
            digest_of(d, before);
            tally_close(d);
            assert_result(tally_open(&o, &d), TALLY_OK);
            digest_of(d, after);
            assert_memory_equal(before, after, 16);
        }
    }
    vclock_free(&sent[0]);
    vclock_free(&sent[1]);
    assert_int_equal(debits_of(d, WALLET), 140);
    tally_replica *all[3] = {d, a, b};
    sync_everyone(all, 3);
    tally_close(a);
    tally_close(b);
    tally_close(d);
    remove_tree(dir);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(both_histories_of_a_copied_replica_converge),
        cmocka_unit_test(three_histories_take_at_most_twice_what_was_held),
        cmocka_unit_test(a_fork_of_a_fork_is_bounded_at_each_parting),
        cmocka_unit_test(a_pending_finished_in_two_histories_converges),
        cmocka_unit_test(a_second_history_that_overspends_is_refused_whole),
        cmocka_unit_test(histories_converge_through_small_deltas_and_restarts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
