/*
 * test_attack_fork_durable.c — adversarial: a durable replica whose own history forks (a copy
 * of it writes and sends it its history), with pendings finished in both histories, grants and
 * nested forks; it restarts from its journal, then from a snapshot, and must read the same
 * state as before and as a replica that only ever held it in memory.
 */
#include "support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crdt/id.h"
#include "ledger/branch.h"
#include "ledger/replica.h"

enum { BANK = 1, WALLET = 2, SHOP = 3, THIEF = 4, OTHER = 5 };
#define DEBITS_BOUND TALLY_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS


static void check_damage(tally_replica *r) {
    tally_damage d[16];
    size_t n;
    assert_result(tally_fork_damage(r, 0, d, 16, &n), TALLY_OK);
    for (size_t i = 0; i < n && i < 16; i++) {
        print_message("damage: replica %llu taken %llu bound %llu histories %u\n",
                      (unsigned long long)d[i].replica_id, (unsigned long long)d[i].taken,
                      (unsigned long long)d[i].bound, d[i].histories);
        assert_true(d[i].taken <= d[i].bound);
    }
}

static void reopen_same(tally_options *o, tally_replica **d, bool snapshot) {
    uint8_t before[16], after[16];
    digest_of(*d, before);
    if (snapshot) {
        assert_result(tally_snapshot(*d), TALLY_OK);
    }
    tally_close(*d);
    *d = NULL;
    assert_result(tally_open(o, d), TALLY_OK);
    digest_of(*d, after);
    assert_memory_equal(before, after, 16);
    assert_true(replica_check(*d));
}

/* The durable replica a is copied (b, c a copy of b); each of the three spends and finishes a
 * pending in its own way; the copies' histories reach a, which restarts from its journal and
 * from a snapshot. */
static void own_history_forks_at_a_durable_replica(void **state) {
    (void)state;
    char *dir = strdup("/tmp/tally-advfork-XXXXXX");
    assert_non_null(mkdtemp(dir));
    tally_options o = {.dir = dir, .replica_id = 1, .sync_mode = TALLY_SYNC_COMMIT};
    tally_replica *a = NULL, *p = replica_new(2, NULL);
    assert_result(tally_open(&o, &a), TALLY_OK);
    tally_replica *b = fork_wallet_pending(a, p);
    tally_transfer post = finish(51, 50, TALLY_TRANSFER_POST_PENDING, 40);
    tally_transfer cancel = finish(52, 50, TALLY_TRANSFER_VOID_PENDING, 0);
    assert_result(tally_create_transfer(a, &post), TALLY_OK);
    tally_transfer pa = transfer(60, WALLET, THIEF, 60);
    assert_result(tally_create_transfer(a, &pa), TALLY_OK);
    tally_transfer h2 = transfer(70, WALLET, SHOP, 30);
    h2.flags = TALLY_TRANSFER_PENDING;
    assert_result(tally_create_transfer(b, &h2), TALLY_OK);
    tally_replica *c = replica_clone(b);
    assert_result(tally_create_transfer(b, &cancel), TALLY_OK);
    tally_transfer pb = transfer(61, WALLET, THIEF, 70);
    assert_result(tally_create_transfer(b, &pb), TALLY_OK);
    tally_transfer v2 = finish(71, 70, TALLY_TRANSFER_VOID_PENDING, 0);
    assert_result(tally_create_transfer(c, &v2), TALLY_OK);
    tally_transfer pc = transfer(62, WALLET, THIEF, 60);
    assert_result(tally_create_transfer(c, &pc), TALLY_OK);
    /* c's history reaches a first, then b's */
    assert_result(apply_from(c, a), TALLY_OK);
    reopen_same(&o, &a, false);
    assert_result(apply_from(b, a), TALLY_OK);
    reopen_same(&o, &a, false);
    reopen_same(&o, &a, true);
    reopen_same(&o, &a, false);
    /* p hears them in the other order */
    assert_result(apply_from(b, p), TALLY_OK);
    assert_result(apply_from(c, p), TALLY_OK);
    tally_replica *all[4] = {a, p, b, c};
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 4; i++) {
            for (int k = 0; k < 4; k++) {
                if (i != k) {
                    (void)apply_from(all[i], all[k]);
                }
            }
        }
    }
    for (int i = 1; i < 4; i++) {
        assert_converged(all[0], all[i]);
    }
    reopen_same(&o, &a, true);
    assert_converged(a, p);
    check_damage(a);
    check_damage(p);
    for (int i = 0; i < 4; i++) {
        tally_close(i == 0 ? a : all[i]);
    }
    remove_tree(dir);
    free(dir);
}

/* A pending made before the parting, posted in one history and voided in the other: the
 * account's pending sum is then taken down twice. Its balance must still be readable, and
 * its pending sum not below zero (what the replicas still hold reserved: nothing). */
static void twice_finished_pending_keeps_balance_readable(void **state) {
    (void)state;
    tally_replica *a = replica_new(1, NULL), *p = replica_new(2, NULL);
    tally_replica *b = fork_wallet_pending(a, p);
    tally_transfer post = finish(51, 50, TALLY_TRANSFER_POST_PENDING, 40);
    tally_transfer cancel = finish(52, 50, TALLY_TRANSFER_VOID_PENDING, 0);
    assert_result(tally_create_transfer(a, &post), TALLY_OK);
    assert_result(tally_create_transfer(b, &cancel), TALLY_OK);
    sync_pair(a, p);
    sync_pair(b, p);
    tally_balance bw, bs;
    int rw = tally_lookup_balance(p, tid(WALLET), &bw);
    int rs = tally_lookup_balance(p, tid(SHOP), &bs);
    print_message("wallet: %s debits_pending %llu; shop: %s credits_pending %llu\n",
                  tally_result_name(rw), (unsigned long long)bw.debits_pending,
                  tally_result_name(rs), (unsigned long long)bs.credits_pending);
    tally_transfer h = transfer(80, BANK, SHOP, 1);
    h.flags = TALLY_TRANSFER_PENDING;
    int rh = tally_create_transfer(p, &h);
    print_message("an honest pending to the shop afterwards: %s\n", tally_result_name(rh));
    assert_result(rh, TALLY_OK);
    assert_result(rw, TALLY_OK);
    assert_result(rs, TALLY_OK);
    assert_int_equal(bw.debits_pending, 0);
    tally_close(a);
    tally_close(b);
    tally_close(p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(own_history_forks_at_a_durable_replica),
        cmocka_unit_test(twice_finished_pending_keeps_balance_readable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
