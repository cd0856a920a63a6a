/*
 * test_replica.c — one replica through the public API: accounts, transfers, pending transfers,
 * escrow rights and grants, and every bad argument each call can receive. Every refusal is
 * checked to leave the replica exactly as it was (same digest).
 */
#include "support.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ledger/replica.h"

enum { BANK = 1, A = 2, B = 3, L = 4, L2 = 5, OTHER_LEDGER = 6 };
#define DEBITS_BOUND TALLY_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS
#define CREDITS_BOUND TALLY_ACCOUNT_CREDITS_MUST_NOT_EXCEED_DEBITS

typedef struct fixture {
    test_clock clock;
    tally_replica *r;
} fixture;

/* BANK (unbounded), A and B (debits bounded), L and L2 (credits bounded), OTHER_LEDGER. */
static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    f->clock.now_ms = 1700000000000u;
    f->r = replica_new(1, &f->clock);
    assert_result(tally_create_account(f->r, &(tally_account){tid(BANK), 0, 1, 1, 0}), TALLY_OK);
    tally_account a = account(A, 1, DEBITS_BOUND), b = account(B, 1, DEBITS_BOUND);
    tally_account l = account(L, 1, CREDITS_BOUND), l2 = account(L2, 1, CREDITS_BOUND);
    tally_account o = account(OTHER_LEDGER, 2, 0);
    assert_result(tally_create_account(f->r, &a), TALLY_OK);
    assert_result(tally_create_account(f->r, &b), TALLY_OK);
    assert_result(tally_create_account(f->r, &l), TALLY_OK);
    assert_result(tally_create_account(f->r, &l2), TALLY_OK);
    assert_result(tally_create_account(f->r, &o), TALLY_OK);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    assert_true(replica_check(f->r));
    tally_close(f->r);
    free(f);
    return 0;
}

static int create(fixture *f, tally_transfer t) {
    return tally_create_transfer(f->r, &t);
}

static tally_balance balance(fixture *f, uint64_t id) {
    tally_balance b;
    assert_result(tally_lookup_balance(f->r, tid(id), &b), TALLY_OK);
    return b;
}

/* tally_expire, asserting it succeeds: how many pendings it voided. */
static uint64_t expire(fixture *f) {
    uint64_t voided = 99;
    assert_result(tally_expire(f->r, &voided), TALLY_OK);
    return voided;
}

/* Asserts that a request is refused with `expected` and changes nothing. */
static void refused(fixture *f, tally_transfer t, int expected) {
    uint8_t before[16], after[16];
    tally_stats s0, s1;
    digest_of(f->r, before);
    tally_get_stats(f->r, &s0);
    assert_result(create(f, t), expected);
    digest_of(f->r, after);
    tally_get_stats(f->r, &s1);
    assert_memory_equal(before, after, 16);
    assert_int_equal(s0.ops, s1.ops);
}

/* --- lifecycle ----------------------------------------------------------------------------- */

static void open_rejects_bad_options_and_sets_out_to_null(void **state) {
    (void)state;
    tally_replica *r = (tally_replica *)&r;
    tally_options o;
    memset(&o, 0, sizeof o);
    assert_result(tally_open(NULL, &r), TALLY_EINVAL);
    assert_null(r);
    assert_result(tally_open(&o, NULL), TALLY_EINVAL);
    o.sync_mode = (tally_sync_mode)7;
    r = (tally_replica *)&r;
    assert_result(tally_open(&o, &r), TALLY_EINVAL);
    assert_null(r);
}

static void open_keeps_a_given_id_or_draws_a_random_nonzero_one(void **state) {
    (void)state;
    tally_replica *a = replica_new(0xabc, NULL);
    assert_int_equal(tally_replica_id(a), 0xabc);
    tally_close(a);
    tally_replica *b = replica_new(0, NULL), *c = replica_new(0, NULL);
    assert_int_not_equal(tally_replica_id(b), 0);
    assert_int_not_equal(tally_replica_id(b), tally_replica_id(c));
    tally_close(b);
    tally_close(c);
    assert_int_equal(tally_replica_id(NULL), 0);
}

static void close_and_free_accept_null(void **state) {
    (void)state;
    tally_close(NULL);
    tally_free(NULL);
}

static void every_result_has_a_name_and_a_sentence(void **state) {
    (void)state;
    for (int rc = 0; rc < TALLY_RESULT_COUNT_; rc++) {
        assert_string_not_equal(tally_result_name(rc), "UNKNOWN");
        assert_string_not_equal(tally_strerror(rc), "unknown result");
    }
    assert_string_equal(tally_result_name(TALLY_INSUFFICIENT_RIGHTS), "INSUFFICIENT_RIGHTS");
    assert_string_equal(tally_result_name(-1), "UNKNOWN");
    assert_string_equal(tally_strerror(TALLY_RESULT_COUNT_), "unknown result");
    assert_int_equal(TALLY_OK, 0);
    assert_int_equal(TALLY_ELOCKED, 25); /* the fixed part of the enum keeps its values */
}

/* --- accounts ------------------------------------------------------------------------------ */

static void create_account_refuses_bad_accounts(void **state) {
    fixture *f = *state;
    uint8_t before[16], after[16];
    digest_of(f->r, before);
    tally_account a = account(100, 1, 0);
    assert_result(tally_create_account(NULL, &a), TALLY_EINVAL);
    assert_result(tally_create_account(f->r, NULL), TALLY_EINVAL);
    a.id = tid(0);
    assert_result(tally_create_account(f->r, &a), TALLY_ID_ZERO);
    a = account(100, 0, 0);
    assert_result(tally_create_account(f->r, &a), TALLY_LEDGER_ZERO);
    a = account(100, 1, DEBITS_BOUND | CREDITS_BOUND);
    assert_result(tally_create_account(f->r, &a), TALLY_FLAGS_INVALID);
    a = account(100, 1, 1u << 5);
    assert_result(tally_create_account(f->r, &a), TALLY_FLAGS_INVALID);
    digest_of(f->r, after);
    assert_memory_equal(before, after, 16);
    tally_account looked;
    assert_result(tally_lookup_account(f->r, tid(100), &looked), TALLY_NOT_FOUND);
}

static void create_account_is_idempotent(void **state) {
    fixture *f = *state;
    tally_account a = account(A, 1, DEBITS_BOUND);
    assert_result(tally_create_account(f->r, &a), TALLY_EXISTS);
    a.user_data = 9;
    assert_result(tally_create_account(f->r, &a), TALLY_EXISTS_WITH_DIFFERENT_FIELDS);
    tally_account looked;
    assert_result(tally_lookup_account(f->r, tid(A), &looked), TALLY_OK);
    assert_int_equal(looked.user_data, 0);
    assert_int_equal(looked.flags, DEBITS_BOUND);
}

/* --- transfers ----------------------------------------------------------------------------- */

static void a_deposit_credits_the_account_and_gives_rights_here(void **state) {
    fixture *f = *state;
    assert_result(create(f, transfer(10, BANK, A, 100)), TALLY_OK);
    tally_balance a = balance(f, A), bank = balance(f, BANK);
    assert_int_equal(a.credits_posted, 100);
    assert_int_equal(a.rights_here, 100);
    assert_int_equal(bank.debits_posted, 100);
    assert_int_equal(bank.rights_here, 0); /* unbounded accounts have no rights */
    tally_transfer t;
    assert_result(tally_lookup_transfer(f->r, tid(10), &t), TALLY_OK);
    assert_int_equal(t.amount, 100);
    assert_true(t.debit_account_id.lo == BANK && t.credit_account_id.lo == A);
}

static void a_debit_beyond_the_balance_is_refused(void **state) {
    fixture *f = *state;
    assert_result(create(f, transfer(10, BANK, A, 100)), TALLY_OK);
    refused(f, transfer(11, A, B, 101), TALLY_EXCEEDS_CREDITS);
    assert_result(create(f, transfer(12, A, B, 100)), TALLY_OK);
    assert_int_equal(balance(f, A).rights_here, 0);
    assert_int_equal(balance(f, B).rights_here, 100);
    refused(f, transfer(13, A, B, 1), TALLY_EXCEEDS_CREDITS);
}

static void credits_bounded_accounts_mirror_the_rules(void **state) {
    fixture *f = *state;
    /* L may never have credits above debits: crediting it needs rights, debiting makes them. */
    refused(f, transfer(20, BANK, L, 1), TALLY_EXCEEDS_DEBITS);
    assert_result(create(f, transfer(21, L, BANK, 50)), TALLY_OK);
    assert_int_equal(balance(f, L).rights_here, 50);
    assert_result(create(f, transfer(22, BANK, L, 30)), TALLY_OK);
    assert_int_equal(balance(f, L).rights_here, 20);
    refused(f, transfer(23, L2, L, 21), TALLY_EXCEEDS_DEBITS);
}

static void spending_rights_held_elsewhere_is_insufficient_rights(void **state) {
    fixture *f = *state;
    tally_replica *other = replica_new(2, NULL);
    assert_result(create(f, transfer(30, BANK, A, 100)), TALLY_OK);
    sync_pair(f->r, other);
    tally_transfer t = transfer(31, A, B, 60);
    assert_result(tally_create_transfer(other, &t), TALLY_INSUFFICIENT_RIGHTS);
    tally_stats s;
    assert_result(tally_get_stats(other, &s), TALLY_OK);
    assert_int_equal(s.refused_rights, 1);
    t.amount = 101;
    assert_result(tally_create_transfer(other, &t), TALLY_EXCEEDS_CREDITS);
    /* a grant of 60 makes the 60 spendable there */
    assert_result(grant_to(f->r, tid(A), 2, 60), TALLY_OK);
    sync_pair(f->r, other);
    t.amount = 60;
    assert_result(tally_create_transfer(other, &t), TALLY_OK);
    assert_result(create(f, transfer(32, A, B, 41)), TALLY_INSUFFICIENT_RIGHTS);
    sync_pair(other, f->r);
    assert_result(create(f, transfer(32, A, B, 41)), TALLY_EXCEEDS_CREDITS);
    assert_result(create(f, transfer(32, A, B, 40)), TALLY_OK);
    tally_close(other);
}

static void create_transfer_refuses_every_malformed_transfer(void **state) {
    fixture *f = *state;
    assert_result(create(f, transfer(40, BANK, A, 100)), TALLY_OK);
    assert_result(tally_create_transfer(NULL, &(tally_transfer){0}), TALLY_EINVAL);
    assert_result(tally_create_transfer(f->r, NULL), TALLY_EINVAL);
    tally_transfer t = transfer(41, A, B, 1);
    t.flags = 1u << 7;
    refused(f, t, TALLY_FLAGS_INVALID);
    t.flags = TALLY_TRANSFER_PENDING | TALLY_TRANSFER_POST_PENDING;
    refused(f, t, TALLY_FLAGS_INVALID);
    refused(f, transfer(0, A, B, 1), TALLY_ID_ZERO);
    refused(f, transfer(41, 0, B, 1), TALLY_ID_ZERO);
    refused(f, transfer(41, A, 0, 1), TALLY_ID_ZERO);
    refused(f, transfer(41, A, A, 1), TALLY_ACCOUNTS_SAME);
    refused(f, transfer(41, 999, B, 1), TALLY_DEBIT_ACCOUNT_NOT_FOUND);
    refused(f, transfer(41, A, 999, 1), TALLY_CREDIT_ACCOUNT_NOT_FOUND);
    refused(f, transfer(41, A, OTHER_LEDGER, 1), TALLY_LEDGER_MISMATCH);
    t = transfer(41, A, B, 1);
    t.ledger = 0;
    refused(f, t, TALLY_LEDGER_ZERO);
    t.ledger = 2;
    refused(f, t, TALLY_LEDGER_MISMATCH);
    refused(f, transfer(41, A, B, 0), TALLY_AMOUNT_ZERO);
    t = transfer(41, A, B, 1);
    t.timeout_ms = 10;
    refused(f, t, TALLY_TIMEOUT_NOT_PENDING);
    t = transfer(41, A, B, 1);
    t.pending_id = tid(40);
    refused(f, t, TALLY_PENDING_ID_INVALID);
}

static void a_retried_transfer_is_exists_never_applied_twice(void **state) {
    fixture *f = *state;
    tally_transfer t = transfer(50, BANK, A, 100);
    assert_result(create(f, t), TALLY_OK);
    refused(f, t, TALLY_EXISTS);
    t.amount = 99;
    refused(f, t, TALLY_EXISTS_WITH_DIFFERENT_FIELDS);
    t.amount = 100;
    t.user_data = 1;
    refused(f, t, TALLY_EXISTS_WITH_DIFFERENT_FIELDS);
    assert_int_equal(balance(f, A).credits_posted, 100);
}

static void amounts_near_uint64_max_overflow_cleanly(void **state) {
    fixture *f = *state;
    assert_result(create(f, transfer(60, BANK, A, UINT64_MAX)), TALLY_OK);
    refused(f, transfer(61, BANK, A, 1), TALLY_OVERFLOW);
    refused(f, transfer(61, BANK, B, 1), TALLY_OVERFLOW); /* BANK's debits would overflow */
    assert_result(create(f, transfer(62, A, B, UINT64_MAX)), TALLY_OK);
    tally_balance b = balance(f, B);
    assert_int_equal(b.credits_posted, UINT64_MAX);
    assert_int_equal(b.rights_here, UINT64_MAX);
    refused(f, transfer(63, L, B, 1), TALLY_OVERFLOW);
}

static void posted_and_pending_together_may_not_overflow(void **state) {
    fixture *f = *state;
    assert_result(create(f, transfer(66, BANK, A, 100)), TALLY_OK);
    tally_transfer p = transfer(67, BANK, A, UINT64_MAX - 50);
    p.flags = TALLY_TRANSFER_PENDING;
    refused(f, p, TALLY_OVERFLOW); /* A's credits, posted plus pending */
    p.amount = UINT64_MAX - 100;
    assert_result(create(f, p), TALLY_OK);
}

/* A post's pending amount is already counted in the totals it is checked against: posting it
 * moves money from pending to posted, and only the posted sum grows. */
static void a_post_counts_its_pending_once_in_the_overflow_check(void **state) {
    fixture *f = *state;
    uint64_t half = (UINT64_C(1) << 63) + 1;
    assert_result(create(f, transfer(80, BANK, A, half)), TALLY_OK);
    tally_transfer p = transfer(81, A, B, half);
    p.flags = TALLY_TRANSFER_PENDING;
    assert_result(create(f, p), TALLY_OK);
    assert_result(create(f, finish(82, 81, TALLY_TRANSFER_POST_PENDING, 0)), TALLY_OK);
    assert_int_equal(balance(f, B).credits_posted, half);
    assert_int_equal(balance(f, A).debits_posted, half);
    /* 1000 posted beside UINT64_MAX - 1500 already posted: the result fits */
    tally_account c = account(90, 1, 0), d = account(91, 1, 0);
    assert_result(tally_create_account(f->r, &c), TALLY_OK);
    assert_result(tally_create_account(f->r, &d), TALLY_OK);
    assert_result(create(f, transfer(83, 90, 91, UINT64_MAX - 1500)), TALLY_OK);
    p = transfer(84, 90, 91, 1000);
    p.flags = TALLY_TRANSFER_PENDING;
    assert_result(create(f, p), TALLY_OK);
    assert_result(create(f, finish(85, 84, TALLY_TRANSFER_POST_PENDING, 1000)), TALLY_OK);
    assert_int_equal(balance(f, 91).credits_posted, UINT64_MAX - 500);
    /* a sum that would not fit is still refused where it grows */
    refused(f, transfer(86, 90, 91, 501), TALLY_OVERFLOW);
}

/* --- pending transfers --------------------------------------------------------------------- */

static tally_transfer pending(uint64_t id, uint64_t debit, uint64_t credit, uint64_t amount,
                              uint32_t timeout_ms) {
    tally_transfer t = transfer(id, debit, credit, amount);
    t.flags = TALLY_TRANSFER_PENDING;
    t.timeout_ms = timeout_ms;
    return t;
}

static void a_pending_reserves_and_a_partial_post_releases_the_rest(void **state) {
    fixture *f = *state;
    assert_result(create(f, transfer(70, BANK, A, 100)), TALLY_OK);
    assert_result(create(f, pending(71, A, B, 80, 0)), TALLY_OK);
    tally_balance a = balance(f, A);
    assert_int_equal(a.debits_pending, 80);
    assert_int_equal(a.rights_here, 20);
    assert_int_equal(balance(f, B).credits_pending, 80);
    assert_int_equal(balance(f, B).rights_here, 0); /* pending credits are not spendable */
    refused(f, transfer(72, A, B, 21), TALLY_EXCEEDS_CREDITS);
    assert_result(create(f, finish(73, 71, TALLY_TRANSFER_POST_PENDING, 50)), TALLY_OK);
    a = balance(f, A);
    assert_int_equal(a.debits_pending, 0);
    assert_int_equal(a.debits_posted, 50);
    assert_int_equal(a.rights_here, 50);
    assert_int_equal(balance(f, B).rights_here, 50);
    tally_pending_state st;
    uint64_t origin;
    assert_result(tally_transfer_status(f->r, tid(71), &origin, &st), TALLY_OK);
    assert_int_equal(st, TALLY_PENDING_POSTED);
    assert_int_equal(origin, 1);
    tally_transfer post;
    assert_result(tally_lookup_transfer(f->r, tid(73), &post), TALLY_OK);
    assert_int_equal(post.amount, 50);
    assert_int_equal(post.debit_account_id.lo, A); /* filled in from the pending */
    refused(f, finish(74, 71, TALLY_TRANSFER_POST_PENDING, 0), TALLY_PENDING_ALREADY_POSTED);
    refused(f, finish(74, 71, TALLY_TRANSFER_VOID_PENDING, 0), TALLY_PENDING_ALREADY_POSTED);
    refused(f, finish(73, 71, TALLY_TRANSFER_POST_PENDING, 50), TALLY_EXISTS);
}

static void a_void_gives_the_reservation_back(void **state) {
    fixture *f = *state;
    assert_result(create(f, transfer(80, BANK, A, 100)), TALLY_OK);
    assert_result(create(f, pending(81, A, B, 100, 0)), TALLY_OK);
    assert_int_equal(balance(f, A).rights_here, 0);
    assert_result(create(f, finish(82, 81, TALLY_TRANSFER_VOID_PENDING, 0)), TALLY_OK);
    assert_int_equal(balance(f, A).rights_here, 100);
    assert_int_equal(balance(f, B).credits_pending, 0);
    refused(f, finish(83, 81, TALLY_TRANSFER_POST_PENDING, 0), TALLY_PENDING_ALREADY_VOIDED);
    refused(f, finish(82, 81, TALLY_TRANSFER_VOID_PENDING, 0), TALLY_EXISTS);
}

static void post_and_void_refuse_what_does_not_match_the_pending(void **state) {
    fixture *f = *state;
    assert_result(create(f, transfer(90, BANK, A, 100)), TALLY_OK);
    assert_result(create(f, pending(91, A, B, 60, 0)), TALLY_OK);
    refused(f, finish(92, 999, TALLY_TRANSFER_POST_PENDING, 0), TALLY_PENDING_NOT_FOUND);
    refused(f, finish(92, 90, TALLY_TRANSFER_POST_PENDING, 0), TALLY_PENDING_NOT_FOUND);
    refused(f, finish(92, 0, TALLY_TRANSFER_POST_PENDING, 0), TALLY_ID_ZERO);
    refused(f, finish(92, 92, TALLY_TRANSFER_POST_PENDING, 0), TALLY_PENDING_ID_INVALID);
    refused(f, finish(92, 91, TALLY_TRANSFER_POST_PENDING, 61), TALLY_EXCEEDS_PENDING_AMOUNT);
    refused(f, finish(92, 91, TALLY_TRANSFER_VOID_PENDING, 59), TALLY_PENDING_MISMATCH);
    tally_transfer t = finish(92, 91, TALLY_TRANSFER_POST_PENDING, 0);
    t.credit_account_id = tid(A);
    refused(f, t, TALLY_PENDING_MISMATCH);
    t = finish(92, 91, TALLY_TRANSFER_POST_PENDING, 0);
    t.ledger = 2;
    refused(f, t, TALLY_PENDING_MISMATCH);
    t = finish(92, 91, TALLY_TRANSFER_POST_PENDING, 0);
    t.timeout_ms = 5;
    refused(f, t, TALLY_TIMEOUT_NOT_PENDING);
    t = finish(92, 91, TALLY_TRANSFER_POST_PENDING, 0);
    t.debit_account_id = tid(A);
    t.ledger = 1;
    assert_result(create(f, t), TALLY_OK); /* fields equal to the pending's are fine */
}

static void only_the_origin_posts_its_pending(void **state) {
    fixture *f = *state;
    tally_replica *other = replica_new(2, NULL);
    assert_result(create(f, transfer(100, BANK, A, 100)), TALLY_OK);
    assert_result(create(f, pending(101, A, B, 10, 0)), TALLY_OK);
    sync_pair(f->r, other);
    tally_transfer t = finish(102, 101, TALLY_TRANSFER_POST_PENDING, 0);
    assert_result(tally_create_transfer(other, &t), TALLY_PENDING_NOT_HERE);
    assert_result(create(f, t), TALLY_OK);
    tally_close(other);
}

static void a_pending_expires_on_its_origin_clock(void **state) {
    fixture *f = *state;
    assert_result(create(f, transfer(110, BANK, A, 100)), TALLY_OK);
    assert_result(create(f, pending(111, A, B, 70, 1000)), TALLY_OK);
    assert_result(create(f, pending(112, A, B, 10, 5000)), TALLY_OK);
    assert_int_equal(expire(f), 0);
    f->clock.now_ms += 999;
    assert_int_equal(expire(f), 0);
    f->clock.now_ms += 1;
    assert_int_equal(expire(f), 1);
    assert_int_equal(balance(f, A).rights_here, 90);
    tally_pending_state st;
    assert_result(tally_transfer_status(f->r, tid(111), NULL, &st), TALLY_OK);
    assert_int_equal(st, TALLY_PENDING_TIMED_OUT);
    refused(f, finish(113, 111, TALLY_TRANSFER_POST_PENDING, 0), TALLY_PENDING_EXPIRED);
    /* a create call voids what is due before it looks */
    f->clock.now_ms += 4000;
    assert_result(create(f, finish(113, 112, TALLY_TRANSFER_POST_PENDING, 0)),
                  TALLY_PENDING_EXPIRED);
    assert_int_equal(balance(f, A).rights_here, 100);
    assert_result(tally_expire(NULL, NULL), TALLY_EINVAL);
}

/* The timestamp of the transfer record with this id (ledger/replica.h). */
static uint64_t stamp_of(fixture *f, uint64_t id) {
    return f->r->transfers.at[idmap_get(&f->r->transfer_map, tid(id))].hlc;
}

/* The wall clock jumps to the year 2500 for one write and comes back: the timestamps stay
 * ordered, and a pending created afterwards still expires on time. */
static void a_forward_glitch_of_the_own_clock_does_not_stop_later_timeouts(void **state) {
    fixture *f = *state;
    assert_result(create(f, transfer(160, BANK, A, 100)), TALLY_OK);
    uint64_t now = f->clock.now_ms;
    f->clock.now_ms = UINT64_C(16725225600000); /* 2500-01-01 */
    assert_result(create(f, transfer(161, BANK, A, 1)), TALLY_OK);
    f->clock.now_ms = now + 10;
    assert_result(create(f, pending(162, A, B, 50, 1000)), TALLY_OK);
    assert_true(stamp_of(f, 162) > stamp_of(f, 161));
    f->clock.now_ms += 999;
    assert_int_equal(expire(f), 0);
    f->clock.now_ms += 1;
    assert_int_equal(expire(f), 1);
    assert_int_equal(balance(f, A).rights_here, 101);
    assert_result(create(f, transfer(163, BANK, A, 1)), TALLY_OK);
    assert_true(stamp_of(f, 163) > stamp_of(f, 162));
}

/* A wall clock that reads past the end of the timestamps' 48 bits of milliseconds (a broken
 * clock, or the year 10889): timestamps still increase there, and a pending made then is due
 * after its timeout, not at once. */
static void a_wall_clock_past_the_end_of_the_stamps_keeps_timeouts(void **state) {
    fixture *f = *state;
    assert_result(create(f, transfer(175, BANK, A, 100)), TALLY_OK);
    f->clock.now_ms = (UINT64_C(1) << 48) + 5000;
    assert_result(create(f, transfer(176, BANK, A, 1)), TALLY_OK);
    assert_result(create(f, pending(177, A, B, 60, 1000)), TALLY_OK);
    assert_true(stamp_of(f, 177) > stamp_of(f, 176));
    assert_true(stamp_of(f, 176) > stamp_of(f, 175));
    uint64_t next = 0;
    assert_result(tally_next_expiry(f->r, &next), TALLY_OK);
    assert_int_equal(next, 1000);
    assert_int_equal(expire(f), 0);
    f->clock.now_ms += 999;
    assert_int_equal(expire(f), 0);
    f->clock.now_ms += 1;
    assert_int_equal(expire(f), 1);
}

/* The wall clock reads near the end of 64 bits once, then comes back: a pending made after
 * that still waits its timeout. The steady clock used to start at, or step to, the raw reading
 * and stay saturated at UINT64_MAX, where every deadline is due at once. */
static void a_wall_clock_at_the_end_of_64_bits_keeps_timeouts(void **state) {
    fixture *f = *state;
    assert_result(create(f, transfer(178, BANK, A, 100)), TALLY_OK);
    uint64_t now = f->clock.now_ms;
    f->clock.now_ms = UINT64_MAX - 5;
    assert_int_equal(expire(f), 0);
    f->clock.now_ms = now;
    assert_result(create(f, pending(179, A, B, 60, 1000)), TALLY_OK);
    uint64_t next = 0;
    assert_result(tally_next_expiry(f->r, &next), TALLY_OK);
    assert_int_equal(next, 1000);
    f->clock.now_ms += 999;
    assert_int_equal(expire(f), 0);
    f->clock.now_ms += 1;
    assert_int_equal(expire(f), 1);
}

/* A broken clock that reads 0 and the end of 64 bits in turn, ~70,000 times over (a daemon
 * polling tally_next_expiry meets it that often in minutes): once it reads true again, a new
 * pending still waits its timeout. Each flip used to add 2^48 ms to the steady clock until it
 * stuck at UINT64_MAX, where every deadline was due at once, for good. */
static void a_clock_flipping_to_the_ends_of_64_bits_keeps_timeouts(void **state) {
    fixture *f = *state;
    assert_result(create(f, transfer(180, BANK, A, 100)), TALLY_OK);
    uint64_t now = f->clock.now_ms, in_ms;
    for (int i = 0; i < 70000; i++) {
        f->clock.now_ms = 0;
        assert_result(tally_next_expiry(f->r, &in_ms), TALLY_OK);
        f->clock.now_ms = UINT64_MAX;
        assert_result(tally_next_expiry(f->r, &in_ms), TALLY_OK);
    }
    f->clock.now_ms = now;
    assert_result(create(f, pending(181, A, B, 60, 60000)), TALLY_OK);
    assert_result(tally_next_expiry(f->r, &in_ms), TALLY_OK);
    assert_int_equal(in_ms, 60000);
    f->clock.now_ms += 59999;
    assert_int_equal(expire(f), 0);
    f->clock.now_ms += 1;
    assert_int_equal(expire(f), 1);
}

/* The wall clock jumps back a year while a pending is open: the pending still expires after
 * its timeout of the clock moving forward, not a year later. */
static void a_backward_jump_of_the_own_clock_does_not_keep_a_reservation(void **state) {
    fixture *f = *state;
    assert_result(create(f, transfer(170, BANK, A, 100)), TALLY_OK);
    assert_result(create(f, pending(171, A, B, 60, 1000)), TALLY_OK);
    uint64_t next = 0;
    assert_result(tally_next_expiry(f->r, &next), TALLY_OK);
    assert_int_equal(next, 1000);
    f->clock.now_ms += 400;
    assert_int_equal(expire(f), 0);
    f->clock.now_ms -= UINT64_C(365) * 24 * 3600 * 1000;
    assert_int_equal(expire(f), 0);
    assert_result(tally_next_expiry(f->r, &next), TALLY_OK);
    assert_int_equal(next, 600);
    f->clock.now_ms += 599;
    assert_int_equal(expire(f), 0);
    f->clock.now_ms += 1;
    assert_result(tally_next_expiry(f->r, &next), TALLY_OK);
    assert_int_equal(next, 0);
    assert_int_equal(expire(f), 1);
    assert_int_equal(balance(f, A).rights_here, 100);
    assert_result(tally_next_expiry(f->r, &next), TALLY_OK);
    assert_int_equal(next, UINT64_MAX);
    assert_result(tally_next_expiry(NULL, &next), TALLY_EINVAL);
    assert_result(tally_next_expiry(f->r, NULL), TALLY_EINVAL);
}

/* --- grants and rights --------------------------------------------------------------------- */

static void grant_refuses_what_it_cannot_do(void **state) {
    fixture *f = *state;
    assert_result(create(f, transfer(120, BANK, A, 100)), TALLY_OK);
    uint8_t before[16], after[16];
    digest_of(f->r, before);
    tally_grant_request g = {tid(A), 2, 1, 0, 0, TALLY_GRANT_TO_UNKNOWN};
    assert_result(tally_grant(NULL, tid(A), 2, 1), TALLY_EINVAL);
    assert_result(tally_grant_with(NULL, &g), TALLY_EINVAL);
    assert_result(tally_grant_with(f->r, NULL), TALLY_EINVAL);
    g.flags = 1u << 7;
    assert_result(tally_grant_with(f->r, &g), TALLY_EINVAL);
    g.flags = TALLY_GRANT_TO_UNKNOWN;
    assert_result(tally_grant(f->r, tid(0), 2, 1), TALLY_ID_ZERO);
    assert_result(tally_grant(f->r, tid(999), 2, 1), TALLY_NOT_FOUND);
    assert_result(tally_grant(f->r, tid(BANK), 2, 1), TALLY_ACCOUNT_UNBOUNDED);
    assert_result(tally_grant(f->r, tid(A), 0, 1), TALLY_EINVAL);
    assert_result(tally_grant(f->r, tid(A), 1, 1), TALLY_EINVAL); /* to itself */
    g.amount = 0;
    assert_result(tally_grant_with(f->r, &g), TALLY_AMOUNT_ZERO);
    g.amount = 101;
    assert_result(tally_grant_with(f->r, &g), TALLY_INSUFFICIENT_RIGHTS);
    g.amount = 1;
    g.ledger = 2; /* A has no incarnation in ledger 2 */
    g.bound = DEBITS_BOUND;
    assert_result(tally_grant_with(f->r, &g), TALLY_NOT_FOUND);
    digest_of(f->r, after);
    assert_memory_equal(before, after, 16);
    g.ledger = 1;
    g.amount = 100;
    assert_result(tally_grant_with(f->r, &g), TALLY_OK);
    uint64_t held;
    assert_result(tally_rights(f->r, tid(A), 2, &held), TALLY_OK);
    assert_int_equal(held, 100);
    assert_result(tally_rights(f->r, tid(A), 1, &held), TALLY_OK);
    assert_int_equal(held, 0);
}

/* `tally grant --to 12345`, a typo: rights given to an id nobody holds are stranded for good.
 * A receiver must have been heard from, unless the caller vouches for it. */
static void a_grant_to_a_replica_never_heard_from_is_refused(void **state) {
    fixture *f = *state;
    assert_result(create(f, transfer(125, BANK, A, 100)), TALLY_OK);
    uint8_t before[16], after[16];
    digest_of(f->r, before);
    assert_result(tally_grant(f->r, tid(A), 12345, 10), TALLY_REPLICA_UNKNOWN);
    digest_of(f->r, after);
    assert_memory_equal(before, after, 16);
    /* a replica is heard from once one of its ops is applied here */
    tally_replica *peer = replica_new(7, NULL);
    sync_pair(f->r, peer);
    tally_transfer t = transfer(126, BANK, B, 1);
    assert_result(tally_create_transfer(peer, &t), TALLY_OK);
    assert_result(tally_grant(f->r, tid(A), 7, 10), TALLY_REPLICA_UNKNOWN);
    sync_pair(peer, f->r);
    assert_result(tally_grant(f->r, tid(A), 7, 10), TALLY_OK);
    /* being named as a receiver by someone else is not being heard from */
    assert_result(tally_grant(peer, tid(A), 12345, 1), TALLY_REPLICA_UNKNOWN);
    tally_grant_request g = {tid(A), 12345, 10, 0, 0, TALLY_GRANT_TO_UNKNOWN};
    assert_result(tally_grant_with(f->r, &g), TALLY_OK);
    sync_pair(f->r, peer);
    assert_result(tally_grant(peer, tid(A), 12345, 1), TALLY_REPLICA_UNKNOWN);
    tally_close(peer);
}

static void rights_holders_lists_the_richest_first(void **state) {
    fixture *f = *state;
    assert_result(create(f, transfer(130, BANK, A, 100)), TALLY_OK);
    assert_result(grant_to(f->r, tid(A), 7, 30), TALLY_OK);
    assert_result(grant_to(f->r, tid(A), 8, 50), TALLY_OK);
    tally_rights_entry e[3];
    size_t n;
    assert_result(tally_rights_holders(f->r, tid(A), e, 3, &n), TALLY_OK);
    assert_int_equal(n, 3);
    assert_int_equal(e[0].replica_id, 8);
    assert_int_equal(e[1].replica_id, 7);
    assert_int_equal(e[2].replica_id, 1);
    assert_int_equal(e[2].amount, 20);
    assert_result(tally_rights_holders(f->r, tid(A), e, 1, &n), TALLY_OK);
    assert_int_equal(n, 3);
    assert_int_equal(e[0].replica_id, 8);
    assert_result(tally_rights_holders(f->r, tid(A), NULL, 0, &n), TALLY_OK);
    assert_int_equal(n, 3);
    assert_result(tally_rights_holders(f->r, tid(A), NULL, 1, &n), TALLY_EINVAL);
    assert_result(tally_rights_holders(f->r, tid(A), e, 1, NULL), TALLY_EINVAL);
    assert_result(tally_rights_holders(f->r, tid(0), e, 1, &n), TALLY_ID_ZERO);
    assert_result(tally_rights_holders(f->r, tid(999), e, 1, &n), TALLY_NOT_FOUND);
}

/* --- lookups and batches ------------------------------------------------------------------- */

static void lookups_refuse_bad_arguments_and_clear_their_output(void **state) {
    fixture *f = *state;
    tally_balance b;
    tally_transfer t;
    tally_account a;
    uint64_t v = 5;
    memset(&b, 0xff, sizeof b);
    assert_result(tally_lookup_balance(f->r, tid(999), &b), TALLY_NOT_FOUND);
    assert_int_equal(b.credits_posted, 0);
    assert_result(tally_lookup_balance(f->r, tid(0), &b), TALLY_ID_ZERO);
    assert_result(tally_lookup_balance(NULL, tid(A), &b), TALLY_EINVAL);
    assert_result(tally_lookup_balance(f->r, tid(A), NULL), TALLY_EINVAL);
    memset(&t, 0xff, sizeof t);
    assert_result(tally_lookup_transfer(f->r, tid(999), &t), TALLY_NOT_FOUND);
    assert_int_equal(t.amount, 0);
    assert_result(tally_lookup_transfer(f->r, tid(0), &t), TALLY_ID_ZERO);
    assert_result(tally_lookup_transfer(NULL, tid(1), &t), TALLY_EINVAL);
    assert_result(tally_lookup_transfer(f->r, tid(1), NULL), TALLY_EINVAL);
    assert_result(tally_lookup_account(f->r, tid(0), &a), TALLY_ID_ZERO);
    assert_result(tally_lookup_account(NULL, tid(A), &a), TALLY_EINVAL);
    assert_result(tally_lookup_account(f->r, tid(A), NULL), TALLY_EINVAL);
    assert_result(tally_rights(f->r, tid(A), 1, NULL), TALLY_EINVAL);
    assert_result(tally_rights(f->r, tid(0), 1, &v), TALLY_ID_ZERO);
    assert_int_equal(v, 0);
    assert_result(tally_rights(NULL, tid(A), 1, &v), TALLY_EINVAL);
    assert_result(tally_rights(f->r, tid(999), 1, &v), TALLY_NOT_FOUND);
    assert_result(tally_transfer_status(f->r, tid(999), NULL, NULL), TALLY_NOT_FOUND);
    assert_result(tally_get_stats(NULL, &(tally_stats){0}), TALLY_EINVAL);
    assert_result(tally_get_stats(f->r, NULL), TALLY_EINVAL);
    assert_int_equal(tally_seen(NULL, 1), 0);
    assert_int_equal(tally_seen(f->r, 1), 6); /* the fixture's six opens */
}

static void a_batch_applies_in_order_with_a_result_each(void **state) {
    fixture *f = *state;
    tally_transfer t[4] = {transfer(140, BANK, A, 10), transfer(141, A, B, 10),
                           transfer(142, A, B, 1), transfer(140, BANK, A, 10)};
    int results[4];
    assert_result(tally_create_transfers(f->r, t, 4, results), TALLY_OK);
    assert_result(results[0], TALLY_OK);
    assert_result(results[1], TALLY_OK); /* sees the deposit before it */
    assert_result(results[2], TALLY_EXCEEDS_CREDITS);
    assert_result(results[3], TALLY_EXISTS);
    assert_result(tally_create_transfers(f->r, NULL, 0, NULL), TALLY_OK);
    assert_result(tally_create_transfers(f->r, t, 1, NULL), TALLY_EINVAL);
    assert_result(tally_create_transfers(f->r, NULL, 1, results), TALLY_EINVAL);
    assert_result(tally_create_transfers(NULL, t, 1, results), TALLY_EINVAL);
}

/* Rule 3 of tally.h: every out parameter is written, also when the batch fails as a whole. */
static void a_batch_that_fails_whole_writes_every_result(void **state) {
    fixture *f = *state;
    tally_transfer t[3] = {transfer(145, BANK, A, 10), transfer(146, BANK, A, 10),
                           transfer(147, BANK, A, 10)};
    int results[3] = {-7, -7, -7};
    assert_result(tally_create_transfers(NULL, t, 3, results), TALLY_EINVAL);
    for (int i = 0; i < 3; i++) {
        assert_result(results[i], TALLY_EINVAL);
    }
    results[0] = results[1] = results[2] = -7;
    assert_result(tally_create_transfers(f->r, NULL, 3, results), TALLY_EINVAL);
    for (int i = 0; i < 3; i++) {
        assert_result(results[i], TALLY_EINVAL);
    }
    /* a replica behind its own origin refuses each transfer, in results */
    f->r->learned->own_behind = f->r->origins.at[f->r->self].seq + 1;
    results[0] = results[1] = results[2] = -7;
    assert_result(tally_create_transfers(f->r, t, 3, results), TALLY_OK);
    for (int i = 0; i < 3; i++) {
        assert_result(results[i], TALLY_ORIGIN_BEHIND);
    }
    f->r->learned->own_behind = 0;
}

/* tally_reserve refuses what no replica can hold and leaves the state as it was; what it
 * reserves then takes writes as any replica does. */
static void reserve_refuses_bad_arguments_and_changes_no_state(void **state) {
    fixture *f = *state;
    uint8_t before[16], after[16];
    digest_of(f->r, before);
    assert_result(tally_reserve(NULL, 1, 1), TALLY_EINVAL);
    assert_result(tally_reserve(f->r, UINT64_MAX, 0), TALLY_ETOOBIG);
    assert_result(tally_reserve(f->r, 0, UINT64_MAX), TALLY_ETOOBIG);
    assert_result(tally_reserve(f->r, (uint64_t)1 << 29, 1), TALLY_ETOOBIG); /* the sum */
    assert_result(tally_reserve(f->r, 0, 0), TALLY_OK);
    assert_result(tally_reserve(f->r, 3, 3), TALLY_OK); /* fewer than it holds: nothing to do */
    assert_result(tally_reserve(f->r, 100, 1000), TALLY_OK);
    digest_of(f->r, after);
    assert_memory_equal(before, after, 16);
    tally_stats st;
    assert_result(tally_get_stats(f->r, &st), TALLY_OK);
    assert_int_equal(st.accounts, 6);
    tally_transfer t = transfer(150, BANK, A, 10);
    assert_result(tally_create_transfer(f->r, &t), TALLY_OK);
    tally_transfer got;
    assert_result(tally_lookup_transfer(f->r, tid(150), &got), TALLY_OK);
    assert_int_equal(got.amount, 10);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

/* The checker finds a broken invariant (an account's balance no op accounts for, rights that
 * do not add up): replica_check_status says so, and a build with TALLY_CHECK_WRITES (the
 * sanitizer build in `make test`) stops at the next write instead of going on from it. */
static void a_broken_invariant_is_caught_at_the_next_write(void **state) {
    fixture *f = *state;
    assert_result(create(f, transfer(190, BANK, A, 100)), TALLY_OK);
    assert_result(replica_check_status(f->r), TALLY_OK);
    account_rec *a = &f->r->accounts.at[replica_account_head(f->r, tid(A))];
    a->credits_posted.lo += 1; /* money from nowhere */
    assert_result(replica_check_status(f->r), TALLY_ECORRUPT);
#ifdef TALLY_CHECK_WRITES
    fflush(NULL);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        (void)!freopen("/dev/null", "w", stderr); /* the assertion's message is expected */
        (void)create(f, transfer(191, BANK, B, 1));
        _exit(0); /* not reached when the check runs */
    }
    int status = 0;
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
#endif
    a->credits_posted.lo -= 1;
    assert_result(replica_check_status(f->r), TALLY_OK);
}

/* A write into room that was not reserved (a library bug: op_reserve makes room before any
 * apply) is stopped before it happens, in every build, Release included: the process traps
 * instead of writing past the end of the array. */
static void a_write_past_reserved_room_traps_before_it_happens(void **state) {
    fixture *f = *state;
    assert_result(create(f, transfer(194, BANK, A, 100)), TALLY_OK);
    assert_result(create(f, pending(195, A, B, 5, 1000)), TALLY_OK);
    uint32_t ti = f->r->transfers.count - 1;
    fflush(NULL);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        signal(SIGILL, SIG_DFL); /* cmocka catches it otherwise, and runs on in the child */
        signal(SIGTRAP, SIG_DFL);
        f->r->expiries.capacity = f->r->expiries.count; /* as if op_reserve had not run */
        expiry_add(f->r, ti);
        _exit(0); /* not reached */
    }
    int status = 0;
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_true(WIFSIGNALED(status));
    assert_true(WTERMSIG(status) == SIGILL || WTERMSIG(status) == SIGTRAP);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(open_rejects_bad_options_and_sets_out_to_null),
        cmocka_unit_test(open_keeps_a_given_id_or_draws_a_random_nonzero_one),
        cmocka_unit_test(close_and_free_accept_null),
        cmocka_unit_test(every_result_has_a_name_and_a_sentence),
        T(create_account_refuses_bad_accounts),
        T(create_account_is_idempotent),
        T(a_deposit_credits_the_account_and_gives_rights_here),
        T(a_debit_beyond_the_balance_is_refused),
        T(credits_bounded_accounts_mirror_the_rules),
        T(spending_rights_held_elsewhere_is_insufficient_rights),
        T(create_transfer_refuses_every_malformed_transfer),
        T(a_retried_transfer_is_exists_never_applied_twice),
        T(amounts_near_uint64_max_overflow_cleanly),
        T(posted_and_pending_together_may_not_overflow),
        T(a_post_counts_its_pending_once_in_the_overflow_check),
        T(a_pending_reserves_and_a_partial_post_releases_the_rest),
        T(a_void_gives_the_reservation_back),
        T(post_and_void_refuse_what_does_not_match_the_pending),
        T(only_the_origin_posts_its_pending),
        T(a_pending_expires_on_its_origin_clock),
        T(a_forward_glitch_of_the_own_clock_does_not_stop_later_timeouts),
        T(a_wall_clock_past_the_end_of_the_stamps_keeps_timeouts),
        T(a_wall_clock_at_the_end_of_64_bits_keeps_timeouts),
        T(a_clock_flipping_to_the_ends_of_64_bits_keeps_timeouts),
        T(a_backward_jump_of_the_own_clock_does_not_keep_a_reservation),
        T(grant_refuses_what_it_cannot_do),
        T(a_grant_to_a_replica_never_heard_from_is_refused),
        T(rights_holders_lists_the_richest_first),
        T(lookups_refuse_bad_arguments_and_clear_their_output),
        T(a_batch_applies_in_order_with_a_result_each),
        T(a_batch_that_fails_whole_writes_every_result),
        T(reserve_refuses_bad_arguments_and_changes_no_state),
        T(a_broken_invariant_is_caught_at_the_next_write),
        T(a_write_past_reserved_room_traps_before_it_happens),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
