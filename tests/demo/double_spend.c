/*
 * double_spend.c — the double-spend problem, played on three in-memory replicas.
 *
 * Account A holds 100. Replicas 1 and 2 are cut off from each other and both try to spend A's
 * 100. Consensus would make one of them wait; tally lets each decide alone, because the right to
 * spend A's money is held by exactly one replica at a time. `make demo` runs this.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tally.h"

#define N 3
static tally_replica *rep[N];
static const char *names[N] = {"replica 1", "replica 2", "replica 3"};
static const tally_id BANK = {0, 1}, A = {0, 0xA}, B = {0, 0xB}, C = {0, 0xC};
static int step_no;

static void check(int rc, const char *what) {
    if (rc != TALLY_OK) {
        fprintf(stderr, "demo: %s failed: %s\n", what, tally_result_name(rc));
        exit(1);
    }
}

/* Carries what `to` lacks from `from`: to's summary one way, from's delta the other. */
static void sync_pair(int from, int to) {
    uint8_t *summary, *delta;
    size_t summary_len, delta_len;
    check(tally_summary(rep[to], &summary, &summary_len), "summary");
    check(tally_delta(rep[from], summary, summary_len, 0, &delta, &delta_len), "delta");
    check(tally_apply(rep[to], delta, delta_len), "apply");
    tally_free(summary);
    tally_free(delta);
}

static void sync_all(void) {
    for (int i = 0; i < N; i++) {
        for (int k = 0; k < N; k++) {
            if (i != k) {
                sync_pair(i, k);
            }
        }
    }
}

static void show(const char *title) {
    printf("\n-- step %d: %s\n", ++step_no, title);
    printf("   %-10s %22s %22s %22s\n", "", "A: balance / my rights", "B: balance", "C: balance");
    for (int i = 0; i < N; i++) {
        tally_balance a, b, c;
        check(tally_lookup_balance(rep[i], A, &a), "balance");
        check(tally_lookup_balance(rep[i], B, &b), "balance");
        check(tally_lookup_balance(rep[i], C, &c), "balance");
        int64_t av = (int64_t)(a.credits_posted - a.debits_posted - a.debits_pending);
        printf("   %-10s %12" PRId64 " / %7" PRIu64 " %22" PRIu64 " %22" PRIu64 "\n", names[i], av,
               a.rights_here, b.credits_posted - b.debits_posted,
               c.credits_posted - c.debits_posted);
    }
}

static void show_digests(void) {
    for (int i = 0; i < N; i++) {
        uint8_t d[16];
        check(tally_digest(rep[i], d), "digest");
        printf("   %-10s digest ", names[i]);
        for (int k = 0; k < 16; k++) {
            printf("%02x", d[k]);
        }
        printf("\n");
    }
}

static int transfer(int at, uint64_t id, tally_id from, tally_id to, uint64_t amount) {
    tally_transfer t;
    memset(&t, 0, sizeof t);
    t.id = (tally_id){0, id};
    t.debit_account_id = from;
    t.credit_account_id = to;
    t.amount = amount;
    t.ledger = 1;
    t.code = 1;
    return tally_create_transfer(rep[at], &t);
}

int main(void) {
    for (int i = 0; i < N; i++) {
        tally_options o;
        memset(&o, 0, sizeof o);
        o.replica_id = (uint64_t)i + 1;
        check(tally_open(&o, &rep[i]), "open");
    }
    printf("tally: the double-spend problem, without consensus\n");
    printf("Three replicas. BANK is the outside world (unbounded); A, B and C may never go below "
           "0.\n");
    tally_account bank = {BANK, 0, 1, 1, 0};
    check(tally_create_account(rep[0], &bank), "open BANK");
    const tally_id bounded[3] = {A, B, C};
    for (int i = 0; i < 3; i++) {
        tally_account acc = {bounded[i], 0, 1, 1, TALLY_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS};
        check(tally_create_account(rep[0], &acc), "open account");
    }
    check(transfer(0, 100, BANK, A, 100), "deposit");
    sync_all();
    show("replica 1 deposits 100 into A; everyone syncs. Replica 1 holds A's rights.");

    printf("\n   The network splits: {replica 1} | {replica 2, replica 3}.\n");
    int rc1 = transfer(0, 101, A, B, 100);
    int rc2 = transfer(1, 102, A, C, 100);
    printf("   replica 1: spend A's 100 -> B : %s\n", tally_result_name(rc1));
    printf("   replica 2: spend A's 100 -> C : %s", tally_result_name(rc2));
    printf("  (A has the money, but replica 2 holds no rights on it)\n");
    sync_pair(1, 2);
    sync_pair(2, 1);
    show("both sides acted alone; nothing was overdrawn");

    sync_all();
    show("the partition heals; every replica sees A spent exactly once");

    check(transfer(0, 103, BANK, A, 100), "deposit");
    tally_rights_entry holders[4];
    size_t n_holders;
    check(tally_rights_holders(rep[0], A, holders, 4, &n_holders), "holders");
    printf("\n   replica 1 credits A with 100 more, which gives it 100 rights on A.\n");
    sync_all();
    check(tally_rights_holders(rep[1], A, holders, 4, &n_holders), "holders");
    printf("   replica 2 asks the richest holder it knows of (replica %" PRIu64 ", %" PRIu64
           " rights) for 100.\n",
           holders[0].replica_id, holders[0].amount);
    /* The asker is on the line, so the holder vouches for it although replica 2 has written
     * nothing yet (a plain tally_grant refuses a receiver never heard from). */
    tally_grant_request ask = {A, tally_replica_id(rep[1]), 100, 0, 0, TALLY_GRANT_TO_UNKNOWN};
    check(tally_grant_with(rep[holders[0].replica_id - 1], &ask), "grant");
    sync_all();
    rc2 = transfer(1, 104, A, C, 100);
    printf("   replica 2: spend A's 100 -> C : %s\n", tally_result_name(rc2));
    sync_all();
    show("replica 2 spent with the rights it was granted; all replicas converge");
    show_digests();
    uint8_t d0[16], di[16];
    tally_digest(rep[0], d0);
    int same = 1;
    for (int i = 1; i < N; i++) {
        tally_digest(rep[i], di);
        same &= memcmp(d0, di, 16) == 0;
    }
    printf("\n%s\n",
           same ? "All three digests are equal: the replicas have converged." : "DIGESTS DIFFER");
    for (int i = 0; i < N; i++) {
        tally_close(rep[i]);
    }
    return same && rc1 == TALLY_OK ? 0 : 1;
}
