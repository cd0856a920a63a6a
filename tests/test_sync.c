/*
 * test_sync.c — summary, delta and apply between replicas: convergence, idempotence, order
 * independence, size limits, conflicts, and hostile bytes.
 */
#include "support.h"

#include <stdlib.h>

#include "crdt/id.h"
#include "ledger/codec.h"
#include "ledger/replica.h"
#include "ledger/sync.h"

#define DEBITS_BOUND TALLY_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS
#define CREDITS_BOUND TALLY_ACCOUNT_CREDITS_MUST_NOT_EXCEED_DEBITS
enum { BANK = 1, A = 2, B = 3, L = 4 };

static void open_accounts(tally_replica *r) {
    tally_account bank = account(BANK, 1, 0), a = account(A, 1, DEBITS_BOUND);
    tally_account b = account(B, 1, DEBITS_BOUND), l = account(L, 1, CREDITS_BOUND);
    assert_result(tally_create_account(r, &bank), TALLY_OK);
    assert_result(tally_create_account(r, &a), TALLY_OK);
    assert_result(tally_create_account(r, &b), TALLY_OK);
    assert_result(tally_create_account(r, &l), TALLY_OK);
}

static int create(tally_replica *r, tally_transfer t) {
    return tally_create_transfer(r, &t);
}

/* Random local activity on one replica: deposits, transfers, pendings, posts, grants. */
static void random_activity(tally_replica *r, uint64_t *seed, int n, uint64_t id_base) {
    for (int i = 0; i < n; i++) {
        uint64_t id = id_base + (uint64_t)i, k = test_rand(seed) % 6,
                 amount = 1 + test_rand(seed) % 50;
        tally_transfer t;
        switch (k) {
        case 0:
            t = transfer(id, BANK, A + test_rand(seed) % 2, amount);
            break;
        case 1:
            t = transfer(id, L, BANK, amount);
            break;
        case 2:
            t = transfer(id, A, B, amount);
            break;
        case 3:
            t = transfer(id, B, A, amount);
            t.flags = TALLY_TRANSFER_PENDING;
            break;
        case 4:
            memset(&t, 0, sizeof t);
            t.id = tid(id);
            t.pending_id = tid(id - 1 - test_rand(seed) % 4);
            t.flags =
                test_rand(seed) % 2 ? TALLY_TRANSFER_POST_PENDING : TALLY_TRANSFER_VOID_PENDING;
            break;
        default:
            (void)grant_to(r, tid(A), 1 + test_rand(seed) % 3, 1 + test_rand(seed) % 5);
            continue;
        }
        (void)create(r, t);
    }
}

/* --- convergence --------------------------------------------------------------------------- */

static void a_delta_brings_the_peer_to_the_same_digest(void **state) {
    (void)state;
    tally_replica *a = replica_new(1, NULL), *b = replica_new(2, NULL);
    open_accounts(a);
    uint64_t seed = 1;
    random_activity(a, &seed, 300, 1000);
    sync_pair(a, b);
    assert_converged(a, b);
    assert_true(replica_check(b));
    tally_stats sa, sb;
    tally_get_stats(a, &sa);
    tally_get_stats(b, &sb);
    assert_int_equal(sa.ops, sb.ops);
    assert_int_equal(tally_seen(b, 1), tally_seen(a, 1));
    tally_close(a);
    tally_close(b);
}

/* The version vector as numbers: every origin with ops here, by id, each with its highest seq;
 * a short buffer gets the first entries and the whole count. */
static void the_version_vector_lists_every_origin_in_order(void **state) {
    (void)state;
    tally_replica *a = replica_new(30, NULL), *b = replica_new(20, NULL);
    tally_replica *c = replica_new(10, NULL);
    size_t n = 99;
    assert_result(tally_version_vector(a, NULL, 0, &n), TALLY_OK);
    assert_int_equal(n, 0); /* no op yet, not even its own */
    open_accounts(a);
    tally_account x = account(900, 1, 0);
    assert_result(tally_create_account(c, &x), TALLY_OK);
    sync_pair(a, b);
    sync_pair(c, b);
    tally_version v[3];
    assert_result(tally_version_vector(b, v, 3, &n), TALLY_OK);
    assert_int_equal(n, 2);
    assert_int_equal(v[0].replica_id, 10);
    assert_int_equal(v[0].seq, 1);
    assert_int_equal(v[1].replica_id, 30);
    assert_int_equal(v[1].seq, tally_seen(a, 30));
    v[1].replica_id = 0;
    assert_result(tally_version_vector(b, v, 1, &n), TALLY_OK);
    assert_int_equal(n, 2);
    assert_int_equal(v[0].replica_id, 10);
    assert_int_equal(v[1].replica_id, 0); /* past cap: not written */
    assert_result(tally_version_vector(NULL, v, 1, &n), TALLY_EINVAL);
    assert_result(tally_version_vector(b, NULL, 1, &n), TALLY_EINVAL);
    assert_result(tally_version_vector(b, v, 1, NULL), TALLY_EINVAL);
    tally_close(a);
    tally_close(b);
    tally_close(c);
}

static void applying_a_delta_twice_changes_nothing(void **state) {
    (void)state;
    tally_replica *a = replica_new(1, NULL), *b = replica_new(2, NULL);
    open_accounts(a);
    uint64_t seed = 2;
    random_activity(a, &seed, 200, 1000);
    uint8_t *summary, *delta, before[16], after[16];
    size_t summary_len, delta_len;
    assert_result(tally_summary(b, &summary, &summary_len), TALLY_OK);
    assert_result(tally_delta(a, summary, summary_len, 0, &delta, &delta_len), TALLY_OK);
    assert_result(tally_apply(b, delta, delta_len), TALLY_OK);
    digest_of(b, before);
    assert_result(tally_apply(b, delta, delta_len), TALLY_OK);
    digest_of(b, after);
    assert_memory_equal(before, after, 16);
    /* a delta for an up-to-date peer holds no op */
    tally_free(summary);
    tally_free(delta);
    assert_result(tally_summary(b, &summary, &summary_len), TALLY_OK);
    assert_result(tally_delta(a, summary, summary_len, 0, &delta, &delta_len), TALLY_OK);
    assert_int_equal(delta_len, 8);
    tally_free(summary);
    tally_free(delta);
    tally_close(a);
    tally_close(b);
}

static void merge_order_does_not_change_the_digest(void **state) {
    (void)state;
    for (uint64_t trial = 0; trial < 30; trial++) {
        tally_replica *r[3];
        for (int i = 0; i < 3; i++) {
            r[i] = replica_new((uint64_t)i + 1, NULL);
        }
        open_accounts(r[0]);
        uint64_t seed = trial;
        random_activity(r[0], &seed, 20, 100);
        sync_all(r, 3);
        /* concurrent activity on every replica */
        for (int i = 0; i < 3; i++) {
            random_activity(r[i], &seed, 60, 1000 * ((uint64_t)i + 2));
        }
        /* two observers merge the three in opposite orders, in pieces */
        tally_replica *x = replica_new(10, NULL), *y = replica_new(11, NULL);
        for (int i = 0; i < 3; i++) {
            sync_pair(r[i], x);
            sync_pair(r[2 - i], y);
        }
        assert_converged(x, y);
        assert_true(replica_check(x));
        sync_all(r, 3);
        assert_converged(r[0], x);
        assert_converged(r[1], r[2]);
        for (int i = 0; i < 3; i++) {
            assert_true(replica_check(r[i]));
            tally_close(r[i]);
        }
        tally_close(x);
        tally_close(y);
    }
}

static void max_bytes_bounds_a_delta_but_never_splits_an_op(void **state) {
    (void)state;
    tally_replica *a = replica_new(1, NULL), *b = replica_new(2, NULL);
    open_accounts(a);
    uint64_t seed = 3;
    random_activity(a, &seed, 400, 1000);
    size_t limits[] = {1, 60, 200, 1000};
    for (size_t k = 0; k < sizeof limits / sizeof limits[0]; k++) {
        tally_replica *c = replica_new(3 + k, NULL);
        int rounds = 0;
        for (;;) {
            uint8_t *summary, *delta;
            size_t summary_len, delta_len;
            uint64_t before = tally_seen(c, 1);
            assert_result(tally_summary(c, &summary, &summary_len), TALLY_OK);
            assert_result(tally_delta(a, summary, summary_len, limits[k], &delta, &delta_len),
                          TALLY_OK);
            assert_result(tally_apply(c, delta, delta_len), TALLY_OK);
            tally_free(summary);
            tally_free(delta);
            if (delta_len == 8) {
                break;
            }
            assert_true(tally_seen(c, 1) > before); /* every call makes progress */
            if (limits[k] == 1) {
                assert_int_equal(tally_seen(c, 1), before + 1); /* one op when nothing fits */
            } else if (tally_seen(c, 1) > before + 1) {
                assert_true(delta_len <= limits[k]);
            }
            rounds++;
        }
        assert_converged(a, c);
        assert_true(rounds > 1);
        tally_close(c);
    }
    tally_close(a);
    tally_close(b);
}

/* --- conflicts ----------------------------------------------------------------------------- */

static void one_transfer_id_on_two_replicas_is_kept_twice_and_listed(void **state) {
    (void)state;
    tally_replica *r[2] = {replica_new(1, NULL), replica_new(2, NULL)};
    open_accounts(r[0]);
    sync_all(r, 2);
    assert_result(create(r[0], transfer(50, BANK, A, 10)), TALLY_OK);
    assert_result(create(r[1], transfer(50, BANK, A, 20)), TALLY_OK);
    sync_all(r, 2);
    assert_converged(r[0], r[1]);
    for (int i = 0; i < 2; i++) {
        tally_balance b;
        assert_result(tally_lookup_balance(r[i], tid(A), &b), TALLY_OK);
        assert_int_equal(b.credits_posted, 30); /* both stay: nothing silently dropped */
        tally_conflict c[2];
        size_t n;
        assert_result(tally_conflicts(r[i], 0, c, 2, &n), TALLY_OK);
        assert_int_equal(n, 1);
        assert_int_equal(c[0].kind, TALLY_CONFLICT_TRANSFER);
        assert_int_equal(c[0].winner.origin, 1);
        assert_int_equal(c[0].other.origin, 2);
        tally_transfer t;
        assert_result(tally_lookup_transfer(r[i], tid(50), &t), TALLY_OK);
        assert_int_equal(t.amount, 10); /* lookups show the smaller dot */
        assert_result(create(r[i], transfer(50, BANK, A, 10)), TALLY_EXISTS);
    }
    size_t n;
    assert_result(tally_conflicts(r[0], 1, NULL, 0, &n), TALLY_OK);
    assert_int_equal(n, 1);
    assert_result(tally_conflicts(NULL, 0, NULL, 0, &n), TALLY_EINVAL);
    assert_result(tally_conflicts(r[0], 0, NULL, 1, &n), TALLY_EINVAL);
    tally_close(r[0]);
    tally_close(r[1]);
}

/* Replica 1 opens X bounded; replica 2, cut off, opens X unbounded and spends from it freely.
 * If the smaller dot simply won, the merged X would be 1000 below its bound. Each open is its
 * own incarnation instead, with its own balance and rights, and neither breaks its rule. */
static void conflicting_opens_never_break_a_bound(void **state) {
    (void)state;
    tally_replica *r[2] = {replica_new(1, NULL), replica_new(2, NULL)};
    open_accounts(r[0]);
    sync_all(r, 2);
    tally_account bounded = account(77, 1, DEBITS_BOUND), loose = account(77, 1, 0);
    assert_result(tally_create_account(r[0], &bounded), TALLY_OK);
    assert_result(tally_create_account(r[1], &loose), TALLY_OK);
    assert_result(create(r[1], transfer(60, 77, BANK, 1000)), TALLY_OK);
    assert_result(create(r[0], transfer(61, BANK, 77, 5)), TALLY_OK);
    sync_all(r, 2);
    assert_converged(r[0], r[1]);
    for (int i = 0; i < 2; i++) {
        assert_true(replica_check(r[i]));
        tally_account seen;
        assert_result(tally_lookup_account(r[i], tid(77), &seen), TALLY_OK);
        assert_int_equal(seen.flags, DEBITS_BOUND); /* the smaller dot's fields */
        tally_balance b;
        assert_result(tally_lookup_balance(r[i], tid(77), &b), TALLY_OK);
        assert_int_equal(b.credits_posted, 5);
        assert_int_equal(b.debits_posted, 0);
        tally_conflict c;
        size_t n;
        assert_result(tally_conflicts(r[i], 0, &c, 1, &n), TALLY_OK);
        assert_int_equal(n, 1);
        assert_int_equal(c.kind, TALLY_CONFLICT_ACCOUNT);
        assert_int_equal(c.winner.origin, 1);
        assert_int_equal(c.other.origin, 2);
    }
    /* new writes go to the winner, on either replica */
    assert_result(create(r[1], transfer(62, 77, BANK, 1)), TALLY_INSUFFICIENT_RIGHTS);
    assert_result(create(r[0], transfer(62, 77, BANK, 6)), TALLY_EXCEEDS_CREDITS);
    tally_close(r[0]);
    tally_close(r[1]);
}

/* The hijack: A opens wallet W bounded and holds 100 in it; B, cut off and with the smaller
 * replica id, opens W unbounded. After the merge, W as looked up and written by id must stay
 * the bounded wallet on every replica, and B's incarnation stays reachable by name. */
static void a_concurrent_unbounded_open_cannot_take_over_a_bounded_account(void **state) {
    (void)state;
    tally_replica *r[2] = {replica_new(1, NULL), replica_new(2, NULL)}; /* B = 1, A = 2 */
    open_accounts(r[1]);
    sync_all(r, 2);
    tally_account wallet = account(77, 1, DEBITS_BOUND), loose = account(77, 1, 0);
    assert_result(tally_create_account(r[1], &wallet), TALLY_OK);
    assert_result(create(r[1], transfer(60, BANK, 77, 100)), TALLY_OK);
    assert_result(tally_create_account(r[0], &loose), TALLY_OK);
    assert_result(create(r[0], transfer(61, BANK, 77, 7)), TALLY_OK); /* into B's own W */
    sync_all(r, 2);
    assert_converged(r[0], r[1]);
    for (int i = 0; i < 2; i++) {
        tally_account seen;
        assert_result(tally_lookup_account(r[i], tid(77), &seen), TALLY_OK);
        assert_int_equal(seen.flags, DEBITS_BOUND);
        tally_balance b;
        assert_result(tally_lookup_balance(r[i], tid(77), &b), TALLY_OK);
        assert_int_equal(b.credits_posted, 100);
        tally_conflict c;
        size_t n;
        assert_result(tally_conflicts(r[i], 0, &c, 1, &n), TALLY_OK);
        assert_int_equal(n, 1);
        assert_int_equal(c.kind, TALLY_CONFLICT_ACCOUNT);
        assert_int_equal(c.winner.origin, 2);
        assert_int_equal(c.other.origin, 1);
        assert_int_equal(c.ledger, 1);
        assert_int_equal(c.flags, 0);
        assert_int_equal(c.balance.credits_posted, 7);
        tally_incarnation inc[3];
        assert_result(tally_incarnations(r[i], tid(77), inc, 3, &n), TALLY_OK);
        assert_int_equal(n, 2);
        assert_int_equal(inc[0].head, 1);
        assert_int_equal(inc[0].account.flags, DEBITS_BOUND);
        assert_int_equal(inc[0].balance.credits_posted, 100);
        assert_int_equal(inc[0].balance.rights_here, i == 1 ? 100 : 0);
        assert_int_equal(inc[0].open.origin, 2);
        assert_int_equal(inc[1].head, 0);
        assert_int_equal(inc[1].account.flags, 0);
        assert_int_equal(inc[1].balance.credits_posted, 7);
    }
    /* the debit of a million from "W" is refused everywhere */
    assert_result(create(r[0], transfer(62, 77, BANK, 1000000)), TALLY_EXCEEDS_CREDITS);
    assert_result(create(r[1], transfer(62, 77, BANK, 1000000)), TALLY_EXCEEDS_CREDITS);
    assert_result(create(r[0], transfer(62, 77, BANK, 1)), TALLY_INSUFFICIENT_RIGHTS);
    assert_result(create(r[1], transfer(62, 77, BANK, 100)), TALLY_OK);
    /* B's incarnation is reached by naming it */
    tally_transfer named = transfer(63, 77, BANK, 7);
    named.flags = TALLY_TRANSFER_BOUNDS_NAMED;
    named.debit_bound = 0;
    named.credit_bound = 0;
    assert_result(create(r[0], named), TALLY_OK);
    assert_result(create(r[0], named), TALLY_EXISTS);
    tally_transfer back;
    assert_result(tally_lookup_transfer(r[0], tid(63), &back), TALLY_OK);
    assert_int_equal(back.flags, 0);
    assert_int_equal(back.debit_bound, 0);
    assert_result(tally_lookup_transfer(r[0], tid(60), &back), TALLY_OK);
    assert_int_equal(back.credit_bound, DEBITS_BOUND);
    named.id = tid(64);
    named.debit_bound = CREDITS_BOUND; /* no such incarnation */
    assert_result(create(r[0], named), TALLY_DEBIT_ACCOUNT_NOT_FOUND);
    named.debit_bound = 3;
    assert_result(create(r[0], named), TALLY_FLAGS_INVALID);
    sync_all(r, 2);
    assert_converged(r[0], r[1]);
    size_t n;
    tally_incarnation inc[2];
    assert_result(tally_incarnations(r[1], tid(77), inc, 2, &n), TALLY_OK);
    assert_int_equal(inc[0].balance.debits_posted, 100);
    assert_int_equal(inc[1].balance.debits_posted, 7);
    assert_result(tally_incarnations(r[1], tid(78), inc, 2, &n), TALLY_NOT_FOUND);
    assert_result(tally_incarnations(r[1], tid(0), inc, 2, &n), TALLY_ID_ZERO);
    assert_result(tally_incarnations(r[1], tid(77), NULL, 2, &n), TALLY_EINVAL);
    assert_result(tally_incarnations(r[1], tid(77), NULL, 0, &n), TALLY_OK);
    assert_int_equal(n, 2);
    tally_close(r[0]);
    tally_close(r[1]);
}

/* The same take-over through the other bound: a credits-bounded W takes debits without limit.
 * With both bounds in one ledger, a write by id cannot tell which is meant and is refused;
 * each is still reached by name, and a grant by id is refused the same way. */
static void an_account_with_both_bounds_in_a_ledger_is_written_only_by_name(void **state) {
    (void)state;
    tally_replica *r[2] = {replica_new(1, NULL), replica_new(2, NULL)};
    open_accounts(r[1]);
    sync_all(r, 2);
    tally_account wallet = account(77, 1, DEBITS_BOUND), other = account(77, 1, CREDITS_BOUND);
    assert_result(tally_create_account(r[1], &wallet), TALLY_OK);
    assert_result(create(r[1], transfer(60, BANK, 77, 100)), TALLY_OK);
    assert_result(tally_create_account(r[0], &other), TALLY_OK);
    sync_all(r, 2);
    for (int i = 0; i < 2; i++) {
        assert_result(create(r[i], transfer(70 + (uint64_t)i, 77, BANK, 1000000)),
                      TALLY_ACCOUNT_AMBIGUOUS);
        assert_result(create(r[i], transfer(72 + (uint64_t)i, BANK, 77, 1)),
                      TALLY_ACCOUNT_AMBIGUOUS);
        assert_result(tally_grant(r[i], tid(77), 3 - (uint64_t)(i + 1), 1),
                      TALLY_ACCOUNT_AMBIGUOUS);
    }
    tally_transfer named = transfer(74, 77, BANK, 30);
    named.flags = TALLY_TRANSFER_BOUNDS_NAMED;
    named.debit_bound = DEBITS_BOUND;
    assert_result(create(r[1], named), TALLY_OK);
    tally_grant_request g = {tid(77), 1, 20, 1, DEBITS_BOUND, 0};
    assert_result(tally_grant_with(r[1], &g), TALLY_OK);
    sync_all(r, 2);
    assert_converged(r[0], r[1]);
    uint64_t held;
    tally_incarnation inc[3];
    size_t n;
    assert_result(tally_incarnations(r[0], tid(77), inc, 3, &n), TALLY_OK);
    assert_int_equal(n, 2);
    for (size_t k = 0; k < n; k++) {
        if (inc[k].account.flags == DEBITS_BOUND) {
            assert_int_equal(inc[k].balance.rights_here, 20);
            assert_int_equal(inc[k].balance.debits_posted, 30);
        }
    }
    (void)held;
    tally_close(r[0]);
    tally_close(r[1]);
}

/* A retry at the replica that created a transfer answers EXISTS although a concurrent
 * transfer with the same id and a smaller dot now wins lookups. */
static void a_retry_at_the_creating_replica_is_exists_after_a_conflict(void **state) {
    (void)state;
    tally_replica *r[2] = {replica_new(1, NULL), replica_new(2, NULL)};
    open_accounts(r[0]);
    sync_all(r, 2);
    assert_result(create(r[1], transfer(50, BANK, A, 20)), TALLY_OK);
    assert_result(create(r[0], transfer(50, BANK, A, 10)), TALLY_OK);
    sync_all(r, 2);
    assert_result(create(r[1], transfer(50, BANK, A, 20)), TALLY_EXISTS);
    assert_result(create(r[0], transfer(50, BANK, A, 10)), TALLY_EXISTS);
    assert_result(create(r[1], transfer(50, BANK, A, 10)), TALLY_EXISTS); /* it exists too */
    assert_result(create(r[1], transfer(50, BANK, A, 30)), TALLY_EXISTS_WITH_DIFFERENT_FIELDS);
    assert_converged(r[0], r[1]);
    tally_close(r[0]);
    tally_close(r[1]);
}

/* A holds rights near UINT64_MAX on A (a deposit of MAX - 5, then a grant from another
 * replica) and has a pending due to expire: the expiry gives rights back past 64 bits. It
 * must apply (sums are exact) and never block unrelated writes. */
static void an_expiry_returning_rights_past_64_bits_never_blocks_writes(void **state) {
    (void)state;
    test_clock clock = {1700000000000u};
    tally_replica *r[2] = {replica_new(1, &clock), replica_new(2, NULL)};
    open_accounts(r[0]);
    sync_all(r, 2);
    /* r[1], cut off, takes a deposit of 20 into A and grants its rights to r[0] */
    assert_result(create(r[1], transfer(90, BANK, A, 20)), TALLY_OK);
    assert_result(tally_grant(r[1], tid(A), 1, 20), TALLY_OK);
    /* r[0] takes a deposit of MAX - 5 and reserves 10 twice: it holds MAX - 25 */
    assert_result(create(r[0], transfer(91, BANK, A, UINT64_MAX - 5)), TALLY_OK);
    tally_transfer p = transfer(92, A, B, 10);
    p.flags = TALLY_TRANSFER_PENDING;
    p.timeout_ms = 1000;
    assert_result(create(r[0], p), TALLY_OK);
    tally_transfer manual = p;
    manual.id = tid(93);
    manual.timeout_ms = 0;
    assert_result(create(r[0], manual), TALLY_OK);
    sync_all(r, 2); /* r[0] holds MAX - 5; each void gives 10 back, past 64 bits */
    clock.now_ms += 1000;
    tally_account x = account(97, 1, 0), y = account(98, 1, 0); /* unrelated to A */
    assert_result(tally_create_account(r[0], &x), TALLY_OK);
    assert_result(tally_create_account(r[0], &y), TALLY_OK);
    assert_result(create(r[0], transfer(95, 97, 98, 1)), TALLY_OK);
    tally_pending_state st;
    assert_result(tally_transfer_status(r[0], tid(92), NULL, &st), TALLY_OK);
    assert_int_equal(st, TALLY_PENDING_TIMED_OUT);
    assert_result(create(r[0], finish(96, 93, TALLY_TRANSFER_VOID_PENDING, 0)), TALLY_OK);
    uint64_t voided = 9;
    assert_result(tally_expire(r[0], &voided), TALLY_OK);
    assert_int_equal(voided, 0);
    uint64_t held;
    assert_result(tally_rights(r[0], tid(A), 1, &held), TALLY_OVERFLOW); /* exact, reported */
    assert_int_equal(held, UINT64_MAX);
    assert_true(replica_check(r[0]));
    sync_all(r, 2);
    assert_converged(r[0], r[1]);
    tally_close(r[0]);
    tally_close(r[1]);
}

static void identical_concurrent_opens_are_one_account(void **state) {
    (void)state;
    tally_replica *r[2] = {replica_new(1, NULL), replica_new(2, NULL)};
    tally_account a = account(5, 1, DEBITS_BOUND);
    assert_result(tally_create_account(r[0], &a), TALLY_OK);
    assert_result(tally_create_account(r[1], &a), TALLY_OK);
    sync_all(r, 2);
    assert_converged(r[0], r[1]);
    size_t n;
    assert_result(tally_conflicts(r[0], 0, NULL, 0, &n), TALLY_OK);
    assert_int_equal(n, 0);
    tally_stats s;
    tally_get_stats(r[0], &s);
    assert_int_equal(s.accounts, 1);
    assert_int_equal(s.ops, 2);
    tally_close(r[0]);
    tally_close(r[1]);
}

/* --- hostile bytes ------------------------------------------------------------------------- */

typedef struct pair {
    tally_replica *src, *dst;
    uint8_t *delta;
    size_t len;
} pair;

static void pair_make(pair *p, uint64_t seed) {
    p->src = replica_new(1, NULL);
    p->dst = replica_new(2, NULL);
    open_accounts(p->src);
    random_activity(p->src, &seed, 40, 1000);
    uint8_t *summary;
    size_t summary_len;
    assert_result(tally_summary(p->dst, &summary, &summary_len), TALLY_OK);
    assert_result(tally_delta(p->src, summary, summary_len, 0, &p->delta, &p->len), TALLY_OK);
    tally_free(summary);
}

static void pair_free(pair *p) {
    tally_free(p->delta);
    tally_close(p->src);
    tally_close(p->dst);
}

/* After anything at all was applied, the correct delta still brings dst to src's digest. */
static void pair_heals(pair *p) {
    assert_true(replica_check(p->dst));
    assert_result(tally_apply(p->dst, p->delta, p->len), TALLY_OK);
    assert_converged(p->src, p->dst);
}

static void every_bit_flip_of_a_delta_is_rejected(void **state) {
    (void)state;
    pair p;
    pair_make(&p, 5);
    uint8_t empty[16];
    tally_replica *fresh = replica_new(2, NULL);
    digest_of(fresh, empty);
    tally_close(fresh);
    for (size_t bit = 0; bit < p.len * 8; bit++) {
        p.delta[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        assert_result(tally_apply(p.dst, p.delta, p.len), TALLY_ECORRUPT);
        p.delta[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        uint8_t d[16];
        digest_of(p.dst, d);
        assert_memory_equal(d, empty, 16); /* one block: nothing of it got in */
    }
    pair_heals(&p);
    pair_free(&p);
}

static void a_delta_cut_at_any_length_applies_a_prefix_or_nothing(void **state) {
    (void)state;
    pair p;
    pair_make(&p, 6);
    for (size_t len = 0; len < p.len; len++) {
        tally_replica *dst = replica_new(2, NULL);
        int rc = tally_apply(dst, p.delta, len);
        assert_true(rc == TALLY_OK || rc == TALLY_ECORRUPT);
        if (len == 8) {
            assert_result(rc, TALLY_OK); /* the header alone is an empty delta */
        }
        assert_true(replica_check(dst));
        assert_result(tally_apply(dst, p.delta, p.len), TALLY_OK);
        assert_converged(p.src, dst);
        tally_close(dst);
    }
    pair_free(&p);
}

static void random_bytes_never_break_a_replica(void **state) {
    (void)state;
    pair p;
    pair_make(&p, 7);
    uint64_t seed = 99;
    uint8_t junk[512];
    for (int trial = 0; trial < 2000; trial++) {
        size_t len = test_rand(&seed) % sizeof junk;
        for (size_t i = 0; i < len; i++) {
            junk[i] = (uint8_t)test_rand(&seed);
        }
        if (trial % 2 && len >= 8) {
            memcpy(junk, "TLYD\3\0\0\0", 8); /* get past the header */
        }
        assert_result(tally_apply(p.dst, junk, len),
                      len == 8 && trial % 2 ? TALLY_OK : TALLY_ECORRUPT);
        uint8_t *out;
        size_t out_len;
        assert_result(tally_delta(p.src, junk, len, 0, &out, &out_len), TALLY_ECORRUPT);
        assert_null(out);
    }
    pair_heals(&p);
    assert_result(tally_apply(p.dst, NULL, 5), TALLY_EINVAL);
    assert_result(tally_apply(NULL, p.delta, p.len), TALLY_EINVAL);
    assert_result(tally_apply(p.dst, NULL, 0), TALLY_ECORRUPT);
    pair_free(&p);
}

static void every_bit_flip_of_a_summary_is_rejected(void **state) {
    (void)state;
    tally_replica *a = replica_new(1, NULL), *b = replica_new(2, NULL), *c = replica_new(3, NULL);
    open_accounts(a);
    open_accounts(b);
    sync_pair(a, c);
    sync_pair(b, c);
    uint8_t *summary, *delta = (uint8_t *)&delta;
    size_t len, delta_len;
    assert_result(tally_summary(c, &summary, &len), TALLY_OK);
    assert_int_equal(len, 12 + 2 * 64 + 8);
    vclock v;
    assert_result(sync_summary_decode(c, summary, len, &v, NULL), TALLY_OK);
    assert_int_equal(vclock_get(&v, 1), 4);
    assert_int_equal(vclock_get(&v, 2), 4);
    vclock_free(&v);
    for (size_t bit = 0; bit < len * 8; bit++) {
        summary[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        assert_result(tally_delta(a, summary, len, 0, &delta, &delta_len), TALLY_ECORRUPT);
        assert_null(delta);
        summary[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    for (size_t cut = 0; cut < len; cut++) {
        assert_result(tally_delta(a, summary, cut, 0, &delta, &delta_len), TALLY_ECORRUPT);
    }
    assert_result(tally_delta(a, NULL, 3, 0, &delta, &delta_len), TALLY_EINVAL);
    assert_result(tally_delta(NULL, summary, len, 0, &delta, &delta_len), TALLY_EINVAL);
    assert_result(tally_delta(a, summary, len, 0, NULL, &delta_len), TALLY_EINVAL);
    assert_result(tally_delta(a, summary, len, 0, &delta, NULL), TALLY_EINVAL);
    tally_free(summary);
    assert_result(tally_summary(NULL, &summary, &len), TALLY_EINVAL);
    assert_null(summary);
    assert_int_equal(len, 0);
    assert_result(tally_summary(a, NULL, &len), TALLY_EINVAL);
    tally_close(a);
    tally_close(b);
    tally_close(c);
}


static void a_gap_in_an_origin_stops_the_delta_there(void **state) {
    (void)state;
    tally_replica *r = replica_new(1, NULL);
    op ops[3] = {open_op(9, 1, 10, 0), open_op(9, 2, 11, 0), open_op(9, 4, 12, 0)};
    bytes d = {0};
    make_delta(ops, 3, &d);
    assert_result(tally_apply(r, d.at, d.len), TALLY_ECORRUPT);
    assert_int_equal(tally_seen(r, 9), 2); /* the ops before the gap stay */
    tally_account a;
    assert_result(tally_lookup_account(r, tid(12), &a), TALLY_NOT_FOUND);
    assert_true(replica_check(r));
    bytes_free(&d);
    tally_close(r);
}

static void an_op_spending_rights_its_origin_lacks_is_rejected(void **state) {
    (void)state;
    tally_replica *r = replica_new(1, NULL);
    op ops[4] = {open_op(9, 1, BANK, 0), open_op(9, 2, A, DEBITS_BOUND),
                 transfer_op(9, 3, 100, BANK, 0, A, DEBITS_BOUND, 50),
                 /* replica 8 never held any of A's rights */
                 transfer_op(8, 1, 101, A, DEBITS_BOUND, BANK, 0, 10)};
    bytes d = {0};
    make_delta(ops, 4, &d);
    assert_result(tally_apply(r, d.at, d.len), TALLY_ECORRUPT);
    assert_int_equal(tally_seen(r, 9), 3);
    assert_int_equal(tally_seen(r, 8), 0);
    /* and a run none of whose ops applied is not kept as one of 8's, nor its key */
    uint32_t eight = replica_origin_find(r, 8);
    assert_true(eight == NONE ||
                (r->origins.at[eight].runs.count == 0 && !r->origins.at[eight].keyed));
    tally_balance b;
    assert_result(tally_lookup_balance(r, tid(A), &b), TALLY_OK);
    assert_int_equal(b.debits_posted, 0);
    /* and one naming an account incarnation that does not exist here */
    bytes_free(&d);
    op wrong = transfer_op(9, 4, 102, A, 0, BANK, 0, 10);
    make_delta(&wrong, 1, &d);
    assert_result(tally_apply(r, d.at, d.len), TALLY_ECORRUPT);
    assert_int_equal(tally_seen(r, 9), 3);
    assert_true(replica_check(r));
    bytes_free(&d);
    tally_close(r);
}

static void a_peer_cannot_post_another_replicas_pending(void **state) {
    (void)state;
    tally_replica *r = replica_new(1, NULL);
    op ops[4] = {open_op(9, 1, BANK, 0), open_op(9, 2, B, DEBITS_BOUND),
                 transfer_op(9, 3, 100, BANK, 0, B, DEBITS_BOUND, 50),
                 transfer_op(8, 1, 101, BANK, 0, B, DEBITS_BOUND, 10)};
    ops[3].u.transfer.flags = TALLY_TRANSFER_PENDING;
    ops[3].origin = 9;
    ops[3].seq = 4;
    op post = ops[3];
    post.kind = OP_POST;
    post.origin = 8;
    post.seq = 1;
    post.u.transfer.id = tid(102);
    post.u.transfer.pending_id = tid(101);
    post.u.transfer.flags = TALLY_TRANSFER_POST_PENDING;
    bytes d = {0};
    make_delta(ops, 4, &d);
    assert_result(tally_apply(r, d.at, d.len), TALLY_OK);
    bytes_free(&d);
    make_delta(&post, 1, &d);
    assert_result(tally_apply(r, d.at, d.len), TALLY_ECORRUPT);
    tally_pending_state st;
    assert_result(tally_transfer_status(r, tid(101), NULL, &st), TALLY_OK);
    assert_int_equal(st, TALLY_PENDING_OPEN);
    bytes_free(&d);
    tally_close(r);
}

static void an_origin_may_not_create_one_transfer_id_twice(void **state) {
    (void)state;
    tally_replica *r = replica_new(1, NULL);
    op ops[4] = {open_op(9, 1, BANK, 0), open_op(9, 2, B, 0),
                 transfer_op(9, 3, 100, BANK, 0, B, 0, 50),
                 transfer_op(9, 4, 100, BANK, 0, B, 0, 50)};
    bytes d = {0};
    make_delta(ops, 4, &d);
    assert_result(tally_apply(r, d.at, d.len), TALLY_ECORRUPT);
    assert_int_equal(tally_seen(r, 9), 3);
    bytes_free(&d);
    tally_close(r);
}

/* Appends an account literal (reference 0, id {0, n}, flags, ledger < 128) to a payload. */
static size_t literal(uint8_t *p, uint64_t n, uint8_t flags, uint8_t ledger) {
    p[0] = 0;
    put_u64le(p + 1, 0);
    put_u64le(p + 9, n);
    p[17] = flags;
    p[18] = ledger;
    return 19;
}

/* A transfer names its accounts by dictionary entries, and its ledger is theirs: entries that
 * disagree are a corrupt op, even under a valid checksum. tally_apply decodes a run's ops and
 * fills their accounts before any of them applies. */
static void a_transfer_whose_accounts_disagree_on_the_ledger_is_refused(void **state) {
    (void)state;
    for (uint8_t credit_ledger = 1; credit_ledger <= 2; credit_ledger++) {
        enum { OPEN_SAME_CODE = OP_OPEN | 1u << 4, NEXT = 1u << 3 };
        uint8_t payload[256];
        size_t n = 0;
        /* OPEN of {0, 20} in ledger 1 by origin 9, seq 1 (origin literal, seq, hlc 0) */
        payload[n++] = OPEN_SAME_CODE;
        payload[n++] = 0;
        put_u64le(payload + n, 9);
        n += 8;
        payload[n++] = 1;
        payload[n++] = 0;
        n += literal(payload + n, 20, 0, 1);
        /* OPEN of {0, 21}, seq 2, in credit_ledger */
        payload[n++] = OPEN_SAME_CODE | NEXT;
        payload[n++] = 0;
        n += literal(payload + n, 21, 0, credit_ledger);
        /* TRANSFER {0, 50}, seq 3: 5 from entry 1 ({0, 20}) to entry 2 ({0, 21}) */
        payload[n++] = OP_TRANSFER | 1u << 4 | NEXT;
        payload[n++] = 0;
        put_u64le(payload + n, 0);
        put_u64le(payload + n + 8, 50);
        n += 16;
        payload[n++] = 1;
        payload[n++] = 2;
        payload[n++] = 5;
        /* the run's SIGN record, origin 9 as dictionary entry 1, over the ops as they would
         * be with agreeing ledgers */
        op ops[3] = {open_op(9, 1, 20, 0), open_op(9, 2, 21, 0),
                     transfer_op(9, 3, 50, 20, 0, 21, 0, 5)};
        ops[0].u.account.code = ops[1].u.account.code = ops[2].u.transfer.code = 0;
        op sign;
        uint8_t chain[CRYPTO_HASH], sig[CRYPTO_SIG];
        test_chains_reset();
        sign_run(ops, 3, &sign, chain, sig);
        payload[n++] = OP_SIGN;
        payload[n++] = 1;
        payload[n++] = 1;
        payload[n++] = 3;
        memcpy(payload + n, chain, CRYPTO_HASH);
        memcpy(payload + n + CRYPTO_HASH, sig, CRYPTO_SIG);
        n += CRYPTO_HASH + CRYPTO_SIG;
        uint8_t delta[8 + CODEC_BLOCK_HEADER + sizeof payload];
        memcpy(delta, "TLYD\3\0\0\0", 8);
        put_u32le(delta + 8, (uint32_t)n);
        put_u32le(delta + 12, 4);
        put_u64le(delta + 16, XXH3_64bits_withSeed(payload, n, (uint64_t)n << 32 | 4));
        memcpy(delta + 8 + CODEC_BLOCK_HEADER, payload, n);
        tally_replica *r = replica_new(1, NULL);
        int rc = tally_apply(r, delta, 8 + CODEC_BLOCK_HEADER + n);
        tally_transfer t;
        if (credit_ledger == 1) { /* the control: the same bytes with agreeing ledgers apply */
            assert_result(rc, TALLY_OK);
            assert_int_equal(tally_seen(r, 9), 3);
            assert_result(tally_lookup_transfer(r, tid(50), &t), TALLY_OK);
            assert_int_equal(t.amount, 5);
        } else {
            assert_result(rc, TALLY_ECORRUPT);
            assert_int_equal(tally_seen(r, 9), 0); /* a run applies whole or not at all */
            assert_result(tally_lookup_transfer(r, tid(50), &t), TALLY_NOT_FOUND);
        }
        assert_true(replica_check(r));
        tally_close(r);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_delta_brings_the_peer_to_the_same_digest),
        cmocka_unit_test(the_version_vector_lists_every_origin_in_order),
        cmocka_unit_test(applying_a_delta_twice_changes_nothing),
        cmocka_unit_test(merge_order_does_not_change_the_digest),
        cmocka_unit_test(max_bytes_bounds_a_delta_but_never_splits_an_op),
        cmocka_unit_test(one_transfer_id_on_two_replicas_is_kept_twice_and_listed),
        cmocka_unit_test(conflicting_opens_never_break_a_bound),
        cmocka_unit_test(a_concurrent_unbounded_open_cannot_take_over_a_bounded_account),
        cmocka_unit_test(an_account_with_both_bounds_in_a_ledger_is_written_only_by_name),
        cmocka_unit_test(a_retry_at_the_creating_replica_is_exists_after_a_conflict),
        cmocka_unit_test(an_expiry_returning_rights_past_64_bits_never_blocks_writes),
        cmocka_unit_test(identical_concurrent_opens_are_one_account),
        cmocka_unit_test(every_bit_flip_of_a_delta_is_rejected),
        cmocka_unit_test(a_delta_cut_at_any_length_applies_a_prefix_or_nothing),
        cmocka_unit_test(random_bytes_never_break_a_replica),
        cmocka_unit_test(every_bit_flip_of_a_summary_is_rejected),
        cmocka_unit_test(a_gap_in_an_origin_stops_the_delta_there),
        cmocka_unit_test(an_op_spending_rights_its_origin_lacks_is_rejected),
        cmocka_unit_test(a_peer_cannot_post_another_replicas_pending),
        cmocka_unit_test(an_origin_may_not_create_one_transfer_id_twice),
        cmocka_unit_test(a_transfer_whose_accounts_disagree_on_the_ledger_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
