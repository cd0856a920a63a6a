/*
 * bench_core.c — `make bench`: the in-memory engine against SQLite, side by side in one run.
 *
 * Workload: 10,000 accounts that may not go below zero (each funded at the start) and batches
 * of 8,189 transfers between random pairs of them, with random 128-bit ids. tally runs
 * tally_create_transfers per batch; SQLite runs the same transfers with the same overdraft rule
 * (a guarded UPDATE) in one transaction per batch, WAL mode, synchronous=OFF. Both must accept
 * exactly the same transfers (checked). Then a second replica applies the deltas the first
 * one produces for it: apply rate, delta size per transfer (the accounts and their funding
 * reach the second replica before the clock starts, so the deltas hold only the transfers).
 * SQLite runs after both tally phases, so that they do not run in the wake of its disk writes.
 *
 * Last, how much memory each replica grew by and how long a plain loop takes to fault in as much
 * fresh memory, so the share of the time that is the kernel's page faults can be read off; and
 * what a transfer costs on an account with 65,536 rights holders beside one with two.
 *
 * With --apply-rounds N, the same deltas are then applied again into N - 1 fresh replicas, one
 * after the other, and the median printed: the memory a closed replica gave back is what the
 * next one gets, so those rounds show apply without the cost of memory new to the process (on a
 * virtual machine, also new to the host), which the first round pays in full. Then the same
 * again into N - 1 replicas that first reserve room for everything they will hold
 * (tally_reserve, timed apart): apply without growing tables or faulting in fresh pages, as on a
 * server that knows its size and pays for its memory at start.
 *
 * Options: --batches N (default 100), --apply-rounds N (default 1), --smoke (a quick run for
 * ctest that checks results only), --only-tally (no SQLite: for profiling).
 */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/mman.h>
#include <unistd.h>

#include <sqlite3.h>

#include "tally.h"

#define BATCH 8189
#define ACCOUNTS 10000
#define FUNDING 1000

#define BENCH_SEED 0x243f6a8885a308d3u
#include "bench_util.h"

static _Noreturn void die(const char *what, int rc) {
    fprintf(stderr, "bench: %s: %s\n", what, tally_result_name(rc));
    exit(1);
}

static tally_id random_id(void) {
    tally_id id = {rnd(), rnd() | 1};
    return id;
}

/* --- fresh memory: what the replica's growth costs this machine by itself -------------------- */

/* Resident bytes of this process (Linux /proc/self/statm), 0 if unknown. */
static size_t resident_bytes(void) {
    unsigned long size = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f != NULL) {
        if (fscanf(f, "%lu %lu", &size, &resident) != 2) {
            resident = 0;
        }
        fclose(f);
    }
    return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

/* Seconds a plain loop takes to touch `bytes` of fresh anonymous memory, one write per page:
 * the page faults and zeroing alone, which any program growing by that much pays. */
static double touch_fresh(size_t bytes) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    char *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        return 0;
    }
    double t0 = now_s();
    for (size_t i = 0; i < bytes; i += page) {
        ((volatile char *)p)[i] = 1;
    }
    double s = now_s() - t0;
    munmap(p, bytes);
    return s;
}

/* --- SQLite, the baseline ------------------------------------------------------------------ */

typedef struct sql {
    sqlite3 *db;
    sqlite3_stmt *debit, *credit, *insert, *begin, *commit;
    char path[64];
} sql;

static void sql_exec(sql *s, const char *q) {
    char *err = NULL;
    if (sqlite3_exec(s->db, q, NULL, NULL, &err) != SQLITE_OK) {
        fprintf(stderr, "bench: sqlite: %s: %s\n", q, err);
        exit(1);
    }
}

static sqlite3_stmt *sql_prepare(sql *s, const char *q) {
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, q, -1, &st, NULL) != SQLITE_OK) {
        fprintf(stderr, "bench: sqlite prepare: %s\n", sqlite3_errmsg(s->db));
        exit(1);
    }
    return st;
}

static void sql_open(sql *s) {
    snprintf(s->path, sizeof s->path, "/tmp/tally-bench-%d.db", (int)getpid());
    unlink(s->path);
    if (sqlite3_open(s->path, &s->db) != SQLITE_OK) {
        fprintf(stderr, "bench: cannot open %s\n", s->path);
        exit(1);
    }
    sql_exec(s, "PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF;");
    sql_exec(s, "CREATE TABLE accounts (id BLOB PRIMARY KEY, debits_posted INTEGER NOT NULL, "
                "credits_posted INTEGER NOT NULL) WITHOUT ROWID;"
                "CREATE TABLE transfers (id BLOB PRIMARY KEY, debit BLOB NOT NULL, "
                "credit BLOB NOT NULL, amount INTEGER NOT NULL, ledger INTEGER, code INTEGER) "
                "WITHOUT ROWID;");
    /* The overdraft rule: a debit applies only while credits cover it. */
    s->debit = sql_prepare(s, "UPDATE accounts SET debits_posted = debits_posted + ?2 "
                              "WHERE id = ?1 AND credits_posted - debits_posted >= ?2");
    s->credit = sql_prepare(s, "UPDATE accounts SET credits_posted = credits_posted + ?2 "
                               "WHERE id = ?1");
    s->insert = sql_prepare(s, "INSERT INTO transfers VALUES (?1, ?2, ?3, ?4, ?5, ?6)");
    s->begin = sql_prepare(s, "BEGIN");
    s->commit = sql_prepare(s, "COMMIT");
}

static void sql_close(sql *s) {
    sqlite3_finalize(s->debit);
    sqlite3_finalize(s->credit);
    sqlite3_finalize(s->insert);
    sqlite3_finalize(s->begin);
    sqlite3_finalize(s->commit);
    sqlite3_close(s->db);
    unlink(s->path);
    char wal[80];
    snprintf(wal, sizeof wal, "%s-wal", s->path);
    unlink(wal);
    snprintf(wal, sizeof wal, "%s-shm", s->path);
    unlink(wal);
}

static void step_done(sqlite3_stmt *st) {
    sqlite3_step(st);
    sqlite3_reset(st);
}

static void blob(uint8_t out[16], tally_id id) {
    memcpy(out, &id.hi, 8);
    memcpy(out + 8, &id.lo, 8);
}

/* One batch in one transaction; returns how many transfers were accepted. */
static size_t sql_batch(sql *s, const tally_transfer *t, size_t n) {
    size_t ok = 0;
    step_done(s->begin);
    for (size_t i = 0; i < n; i++) {
        uint8_t id[16], d[16], c[16];
        blob(id, t[i].id);
        blob(d, t[i].debit_account_id);
        blob(c, t[i].credit_account_id);
        sqlite3_bind_blob(s->debit, 1, d, 16, SQLITE_STATIC);
        sqlite3_bind_int64(s->debit, 2, (sqlite3_int64)t[i].amount);
        step_done(s->debit);
        if (sqlite3_changes(s->db) == 0) {
            continue; /* refused: would overdraw (a funded account always exists here) */
        }
        sqlite3_bind_blob(s->credit, 1, c, 16, SQLITE_STATIC);
        sqlite3_bind_int64(s->credit, 2, (sqlite3_int64)t[i].amount);
        step_done(s->credit);
        sqlite3_bind_blob(s->insert, 1, id, 16, SQLITE_STATIC);
        sqlite3_bind_blob(s->insert, 2, d, 16, SQLITE_STATIC);
        sqlite3_bind_blob(s->insert, 3, c, 16, SQLITE_STATIC);
        sqlite3_bind_int64(s->insert, 4, (sqlite3_int64)t[i].amount);
        sqlite3_bind_int64(s->insert, 5, t[i].ledger);
        sqlite3_bind_int64(s->insert, 6, t[i].code);
        step_done(s->insert);
        ok++;
    }
    step_done(s->commit);
    return ok;
}

static void sql_fund(sql *s, const tally_id *accounts) {
    sqlite3_stmt *ins = sql_prepare(s, "INSERT INTO accounts VALUES (?1, 0, ?2)");
    step_done(s->begin);
    for (int i = 0; i < ACCOUNTS; i++) {
        uint8_t id[16];
        blob(id, accounts[i]);
        sqlite3_bind_blob(ins, 1, id, 16, SQLITE_STATIC);
        sqlite3_bind_int64(ins, 2, FUNDING);
        step_done(ins);
    }
    step_done(s->commit);
    sqlite3_finalize(ins);
}

/* --- tally --------------------------------------------------------------------------------- */

/* An empty in-memory replica. */
static tally_replica *open_replica(uint64_t id) {
    tally_options o;
    memset(&o, 0, sizeof o);
    o.replica_id = id;
    tally_replica *r;
    int rc = tally_open(&o, &r);
    if (rc != TALLY_OK) {
        die("open", rc);
    }
    return r;
}

/* A replica that has pulled `setup` (the accounts and their funding) and nothing else. */
static tally_replica *peer_setup(uint64_t id, const uint8_t *setup, size_t setup_len) {
    tally_replica *peer = open_replica(id);
    int rc = tally_apply(peer, setup, setup_len);
    if (rc != TALLY_OK) {
        die("peer setup", rc);
    }
    return peer;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median of n values (sorts them). */
static double median_of(double *s, int n) {
    qsort(s, (size_t)n, sizeof *s, cmp_double);
    return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

/* Applies the deltas into `rounds` fresh replicas; the median seconds. With reserve_transfers
 * set, each replica first reserves room for the accounts and that many transfers
 * (tally_reserve), and *reserve_s gets the median seconds that took. */
static double apply_again(int rounds, const uint8_t *setup, size_t setup_len,
                          uint8_t *const *deltas, const size_t *lens, size_t n,
                          const uint8_t expect[16], uint64_t reserve_transfers, double *reserve_s) {
    double *s = calloc((size_t)rounds, sizeof *s), *rs = calloc((size_t)rounds, sizeof *rs);
    for (int k = 0; k < rounds; k++) {
        tally_replica *peer = peer_setup(100 + (uint64_t)k, setup, setup_len);
        double t0 = now_s();
        if (reserve_transfers > 0) {
            int rc = tally_reserve(peer, ACCOUNTS + 1, reserve_transfers);
            if (rc != TALLY_OK) {
                die("reserve", rc);
            }
        }
        rs[k] = now_s() - t0;
        t0 = now_s();
        for (size_t i = 0; i < n; i++) {
            int rc = tally_apply(peer, deltas[i], lens[i]);
            if (rc != TALLY_OK) {
                die("apply again", rc);
            }
        }
        s[k] = now_s() - t0;
        uint8_t d[16];
        tally_digest(peer, d);
        if (memcmp(d, expect, 16) != 0) {
            fprintf(stderr, "bench: a replica applying the deltas again did not converge\n");
            exit(1);
        }
        tally_close(peer);
    }
    double median = median_of(s, rounds);
    if (reserve_s != NULL) {
        *reserve_s = median_of(rs, rounds);
    }
    free(s);
    free(rs);
    return median;
}

static tally_replica *tally_setup(uint64_t id, const tally_id *accounts, tally_id bank) {
    tally_replica *r = open_replica(id);
    int rc;
    tally_account a = {bank, 0, 1, 1, 0};
    if ((rc = tally_create_account(r, &a)) != TALLY_OK) {
        die("open bank", rc);
    }
    tally_transfer *fund = calloc(ACCOUNTS, sizeof *fund);
    int *results = calloc(ACCOUNTS, sizeof *results);
    for (int i = 0; i < ACCOUNTS; i++) {
        tally_account acc = {accounts[i], 0, 1, 1, TALLY_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS};
        if ((rc = tally_create_account(r, &acc)) != TALLY_OK) {
            die("open account", rc);
        }
        fund[i].id = random_id();
        fund[i].debit_account_id = bank;
        fund[i].credit_account_id = accounts[i];
        fund[i].amount = FUNDING;
        fund[i].ledger = 1;
        fund[i].code = 1;
    }
    if ((rc = tally_create_transfers(r, fund, ACCOUNTS, results)) != TALLY_OK) {
        die("fund", rc);
    }
    free(fund);
    free(results);
    return r;
}

/* --- meeting a fork ------------------------------------------------------------------------ */

/* A copy of a replica's directory (a restored backup) writes one transfer after the original
 * wrote n more; a peer holding the original's history then meets the copy's: it keeps both,
 * moving the original's n ops past the parting into a branch of their own (docs/design.md,
 * "Past a fork"). Seconds that apply takes; *moved is set to the ops moved. */
static double fork_phase(const tally_transfer *t, size_t n, const tally_id *accounts, tally_id bank,
                         size_t *moved) {
    char dir[] = "/tmp/tally-bench-fork-XXXXXX", copy[64], cmd[160];
    if (mkdtemp(dir) == NULL) {
        die("fork: a directory", TALLY_EIO);
    }
    snprintf(copy, sizeof copy, "%s-copy", dir);
    tally_options o;
    memset(&o, 0, sizeof o);
    o.dir = dir;
    o.replica_id = 1;
    o.sync_mode = TALLY_SYNC_NONE;
    tally_replica *r;
    int rc = tally_open(&o, &r);
    tally_account a = {bank, 0, 1, 1, 0};
    if (rc != TALLY_OK || (rc = tally_create_account(r, &a)) != TALLY_OK) {
        die("fork: open", rc);
    }
    for (int i = 0; i < ACCOUNTS; i++) {
        tally_account acc = {accounts[i], 0, 1, 1, TALLY_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS};
        tally_transfer f = {.id = random_id(),
                            .debit_account_id = bank,
                            .credit_account_id = accounts[i],
                            .amount = FUNDING,
                            .ledger = 1,
                            .code = 1};
        if ((rc = tally_create_account(r, &acc)) != TALLY_OK ||
            (rc = tally_create_transfer(r, &f)) != TALLY_OK) {
            die("fork: setup", rc);
        }
    }
    tally_close(r);
    snprintf(cmd, sizeof cmd, "cp -a %s %s", dir, copy);
    if (system(cmd) != 0) {
        die("fork: copy", TALLY_EIO);
    }
    if ((rc = tally_open(&o, &r)) != TALLY_OK) {
        die("fork: reopen", rc);
    }
    int *results = malloc(BATCH * sizeof *results);
    for (size_t at = 0; at < n; at += BATCH) {
        size_t k = n - at < BATCH ? n - at : BATCH;
        if ((rc = tally_create_transfers(r, t + at, k, results)) != TALLY_OK) {
            die("fork: create", rc);
        }
    }
    free(results);
    tally_replica *peer = open_replica(2), *c;
    uint8_t *summary, *delta;
    size_t summary_len, delta_len;
    o.dir = copy;
    if (tally_summary(peer, &summary, &summary_len) != TALLY_OK ||
        tally_delta(r, summary, summary_len, 0, &delta, &delta_len) != TALLY_OK ||
        tally_apply(peer, delta, delta_len) != TALLY_OK || (rc = tally_open(&o, &c)) != TALLY_OK ||
        (rc = tally_lift_hold(c)) != TALLY_OK) {
        die("fork: the peer, the copy", rc);
    }
    tally_free(summary);
    tally_free(delta);
    tally_transfer again = {.id = random_id(),
                            .debit_account_id = accounts[0],
                            .credit_account_id = accounts[1],
                            .amount = 1,
                            .ledger = 1,
                            .code = 1};
    /* the peer's head lies past the copy's: the copy meets the fork first (the peer's history
     * comes to it), and then sends its own */
    if ((rc = tally_create_transfer(c, &again)) != TALLY_OK ||
        (rc = tally_summary(c, &summary, &summary_len)) != TALLY_OK ||
        (rc = tally_delta(peer, summary, summary_len, 0, &delta, &delta_len)) != TALLY_OK ||
        (rc = tally_apply(c, delta, delta_len)) != TALLY_OK) {
        die("fork: the copy meets it", rc);
    }
    tally_free(summary);
    tally_free(delta);
    if ((rc = tally_summary(peer, &summary, &summary_len)) != TALLY_OK ||
        (rc = tally_delta(c, summary, summary_len, 0, &delta, &delta_len)) != TALLY_OK) {
        die("fork: the copy's write", rc);
    }
    double t0 = now_s();
    rc = tally_apply(peer, delta, delta_len);
    double took = now_s() - t0;
    size_t forks = 0;
    if (rc != TALLY_OK || tally_forks(peer, 0, NULL, 0, &forks) != TALLY_OK || forks != 1) {
        die("fork: the peer meets it", rc);
    }
    *moved = n;
    tally_free(summary);
    tally_free(delta);
    tally_close(c);
    tally_close(r);
    tally_close(peer);
    snprintf(cmd, sizeof cmd, "rm -rf %s %s", dir, copy);
    if (system(cmd) != 0) {
        die("fork: clean up", TALLY_EIO);
    }
    return took;
}

/* --- an account with many rights holders -------------------------------------------------- */

/* Transfers out of an account that `holders` replicas hold rights on, by one of them that is not
 * the first holder (the first is found inline; every other one goes through the map): seconds
 * per transfer. Replica 1 takes a deposit and grants a unit to each of holders - 2 replicas,
 * then plenty to replica 2, which spends in batches. */
static double holders_phase(uint32_t holders, uint32_t transfers) {
    tally_replica *bank = open_replica(1), *spender = open_replica(2);
    tally_account src = {.id = {0, 1}, .ledger = 1, .code = 1}; /* unbounded */
    tally_account a = {.id = {0, 2}, .ledger = 1, .code = 1,
                       .flags = TALLY_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS};
    tally_account b = {.id = {0, 3}, .ledger = 1, .code = 1};
    if (tally_create_account(bank, &src) != TALLY_OK || tally_create_account(bank, &a) ||
        tally_create_account(bank, &b)) {
        die("holders: accounts", 1);
    }
    tally_transfer deposit = {.id = {1, 1}, .debit_account_id = src.id,
                              .credit_account_id = a.id, .amount = UINT64_C(1) << 40,
                              .ledger = 1, .code = 1};
    int rc = tally_create_transfer(bank, &deposit);
    for (uint32_t h = 0; rc == TALLY_OK && h + 2 < holders; h++) {
        tally_grant_request g = {a.id, 1000 + h, 1, 0, 0, TALLY_GRANT_TO_UNKNOWN};
        rc = tally_grant_with(bank, &g);
    }
    tally_grant_request g = {a.id, 2, UINT64_C(1) << 39, 0, 0, TALLY_GRANT_TO_UNKNOWN};
    if (rc != TALLY_OK || (rc = tally_grant_with(bank, &g)) != TALLY_OK) {
        die("holders: grants", rc);
    }
    uint8_t *summary, *delta;
    size_t summary_len, delta_len;
    if (tally_summary(spender, &summary, &summary_len) ||
        tally_delta(bank, summary, summary_len, 0, &delta, &delta_len) ||
        tally_apply(spender, delta, delta_len)) {
        die("holders: sync", 1);
    }
    tally_free(summary);
    tally_free(delta);
    size_t held = 0;
    if (tally_rights_holders(spender, a.id, NULL, 0, &held) != TALLY_OK || held != holders) {
        die("holders: the spender does not see every holder", 1);
    }
    tally_transfer *t = calloc(BATCH, sizeof *t);
    int *results = calloc(BATCH, sizeof *results);
    double elapsed = 0;
    for (uint32_t done = 0; done < transfers; done += BATCH) {
        uint32_t n = transfers - done < BATCH ? transfers - done : BATCH;
        for (uint32_t i = 0; i < n; i++) {
            t[i] = (tally_transfer){.id = random_id(), .debit_account_id = a.id,
                                    .credit_account_id = b.id, .amount = 1, .ledger = 1,
                                    .code = 1};
        }
        double t0 = now_s();
        if (tally_create_transfers(spender, t, n, results) != TALLY_OK) {
            die("holders: transfers", 1);
        }
        elapsed += now_s() - t0;
        for (uint32_t i = 0; i < n; i++) {
            if (results[i] != TALLY_OK) {
                die("holders: a transfer refused", results[i]);
            }
        }
    }
    free(t);
    free(results);
    tally_close(bank);
    tally_close(spender);
    return elapsed / transfers;
}

int main(int argc, char **argv) {
    int batches = 100, apply_rounds = 1;
    bool smoke = false, only_tally = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--smoke")) {
            smoke = true;
            batches = 3;
        } else if (!strcmp(argv[i], "--only-tally")) {
            only_tally = true; /* for profiling: skips SQLite and the comparison */
        } else if (!strcmp(argv[i], "--batches") && i + 1 < argc) {
            batches = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--apply-rounds") && i + 1 < argc) {
            apply_rounds = atoi(argv[++i]);
        } else {
            fprintf(stderr, "usage: tally_bench [--batches N] [--apply-rounds N] [--smoke] "
                            "[--only-tally]\n");
            return 2;
        }
    }
    if (batches < 1 || apply_rounds < 1) {
        fprintf(stderr, "tally_bench: --batches and --apply-rounds take a number from 1\n");
        return 2;
    }
    size_t n = (size_t)batches * BATCH;
    tally_id *accounts = malloc(ACCOUNTS * sizeof *accounts);
    for (int i = 0; i < ACCOUNTS; i++) {
        accounts[i] = random_id();
    }
    tally_id bank = random_id();
    tally_transfer *t = calloc(n, sizeof *t);
    for (size_t i = 0; i < n; i++) {
        t[i].id = random_id();
        uint64_t d = rnd() % ACCOUNTS, c = rnd() % (ACCOUNTS - 1);
        t[i].debit_account_id = accounts[d];
        t[i].credit_account_id = accounts[c >= d ? c + 1 : c];
        t[i].amount = 1 + rnd() % 100;
        t[i].ledger = 1;
        t[i].code = 1;
    }
    int *results = malloc(BATCH * sizeof *results);

    printf("tally bench: %d batches of %d transfers over %d accounts (random 128-bit ids)\n",
           batches, BATCH, ACCOUNTS);
    /* tally; a second replica takes the accounts and funding now, so that the deltas measured
     * below hold exactly the workload's transfers */
    tally_replica *r = tally_setup(1, accounts, bank);
    tally_stats setup_stats;
    tally_get_stats(r, &setup_stats);
    uint8_t *setup, *empty_summary;
    size_t setup_len, empty_len;
    {
        tally_replica *empty = open_replica(2);
        if (tally_summary(empty, &empty_summary, &empty_len) != TALLY_OK ||
            tally_delta(r, empty_summary, empty_len, 0, &setup, &setup_len) != TALLY_OK) {
            die("setup delta", TALLY_EINVAL);
        }
        tally_close(empty);
        tally_free(empty_summary);
    }
    tally_replica *peer = peer_setup(2, setup, setup_len);
    size_t tally_ok = 0;
    size_t rss_before_create = resident_bytes();
    double t0 = now_s();
    for (int b = 0; b < batches; b++) {
        int rc = tally_create_transfers(r, t + (size_t)b * BATCH, BATCH, results);
        if (rc != TALLY_OK) {
            die("create_transfers", rc);
        }
        for (int i = 0; i < BATCH; i++) {
            tally_ok += results[i] == TALLY_OK;
        }
    }
    double tally_s = now_s() - t0;
    size_t create_growth = resident_bytes() - rss_before_create;

    /* sync: the second replica pulls the transfers, in deltas of at most 4 MiB */
    uint8_t *summary, *delta;
    size_t summary_len, delta_len, delta_bytes = 0, deltas = 0;
    /* the deltas, kept for --apply-rounds */
    uint8_t **kept = NULL;
    size_t *kept_len = NULL;
    double delta_s = 0, apply_s = 0;
    tally_stats st;
    tally_get_stats(r, &st);
    size_t apply_growth = 0;
    for (;;) {
        tally_summary(peer, &summary, &summary_len);
        t0 = now_s();
        int rc = tally_delta(r, summary, summary_len, 4u << 20, &delta, &delta_len);
        delta_s += now_s() - t0;
        tally_free(summary);
        if (rc != TALLY_OK) {
            die("delta", rc);
        }
        if (delta_len == 8) {
            tally_free(delta);
            break;
        }
        size_t rss = resident_bytes();
        t0 = now_s();
        rc = tally_apply(peer, delta, delta_len);
        apply_s += now_s() - t0;
        apply_growth += resident_bytes() - rss;
        if (rc != TALLY_OK) {
            die("apply", rc);
        }
        delta_bytes += delta_len;
        kept = realloc(kept, (deltas + 1) * sizeof *kept);
        kept_len = realloc(kept_len, (deltas + 1) * sizeof *kept_len);
        if (kept == NULL || kept_len == NULL) {
            die("keeping the deltas", TALLY_ENOMEM);
        }
        kept[deltas] = delta;
        kept_len[deltas] = delta_len;
        deltas++;
    }
    /* SQLite, last: run between tally's two phases, its seconds of writes left the guest's
     * memory such that the apply after them ran a third slower (docs/benchmarks.md). */
    size_t sql_ok = tally_ok;
    double sql_s = 1;
    if (!only_tally) {
        sql s;
        sql_open(&s);
        sql_fund(&s, accounts);
        sql_ok = 0;
        t0 = now_s();
        for (int b = 0; b < batches; b++) {
            sql_ok += sql_batch(&s, t + (size_t)b * BATCH, BATCH);
        }
        sql_s = now_s() - t0;
        sql_close(&s);
    }
    if (sql_ok != tally_ok) {
        fprintf(stderr, "bench: tally accepted %zu transfers, SQLite %zu: they must agree\n",
                tally_ok, sql_ok);
        return 1;
    }

    uint8_t d1[16], d2[16];
    tally_digest(r, d1);
    tally_digest(peer, d2);
    if (memcmp(d1, d2, 16) != 0) {
        fprintf(stderr, "bench: the peer did not converge\n");
        return 1;
    }

    double tally_rate = (double)n / tally_s, sql_rate = (double)n / sql_s;
    double ops = (double)(st.ops - setup_stats.ops);
    printf("accepted: %zu of %zu (the rest would overdraw)%s\n", tally_ok, n,
           only_tally ? "" : ", the same in both");
    printf("%-44s %14.0f transfers/s  (%.3f s)\n", "tally_create_transfers (in memory, 1 core)",
           tally_rate, tally_s);
    if (!only_tally) {
        printf("%-44s %14.0f transfers/s  (%.3f s)\n", "SQLite 3 (WAL, synchronous=OFF, guarded)",
               sql_rate, sql_s);
        printf("%-44s %14.1fx\n", "tally / SQLite", tally_rate / sql_rate);
    }
    printf("%-44s %14.0f ops/s        (%.3f s, %.0f ops)\n", "tally_delta (encode for a peer)",
           ops / delta_s, delta_s, ops);
    printf("%-44s %14.0f ops/s        (%.3f s)\n", "tally_apply (validate and apply)",
           ops / apply_s, apply_s);
    printf("%-44s %14.1f bytes/transfer (%zu bytes in %zu deltas of <= 4 MiB)\n", "delta size",
           (double)delta_bytes / ops, delta_bytes, deltas);
    /* The replicas' growth, and what touching as much fresh memory costs by itself here. */
    double create_touch = touch_fresh(create_growth), apply_touch = touch_fresh(apply_growth);
    printf("%-44s %14.1f MB, of which fresh pages alone %.3f s (%.0f%% of its time)\n",
           "memory grown by create", (double)create_growth / 1e6, create_touch,
           100 * create_touch / tally_s);
    printf("%-44s %14.1f MB, of which fresh pages alone %.3f s (%.0f%% of its time)\n",
           "memory grown by apply", (double)apply_growth / 1e6, apply_touch,
           100 * apply_touch / apply_s);
    if (apply_rounds > 1) {
        tally_close(peer); /* its memory is what the next replicas get */
        peer = NULL;
        double again = apply_again(apply_rounds - 1, setup, setup_len, kept, kept_len, deltas, d1,
                                   0, NULL);
        char what[64];
        snprintf(what, sizeof what, "tally_apply, again (median of %d)", apply_rounds - 1);
        printf("%-44s %14.0f ops/s        (%.3f s)\n", what, ops / again, again);
        /* a replica that reserved its memory first, as a server that knows its size would */
        double reserve_s;
        double reserved = apply_again(apply_rounds - 1, setup, setup_len, kept, kept_len, deltas,
                                      d1, st.transfers, &reserve_s);
        snprintf(what, sizeof what, "tally_apply, reserved first (median of %d)", apply_rounds - 1);
        printf("%-44s %14.0f ops/s        (%.3f s; tally_reserve took %.3f s before)\n", what,
               ops / reserved, reserved, reserve_s);
    }
    /* A transfer out of an account with many rights holders costs what one with two does. */
    uint32_t holder_transfers = smoke ? 20000 : 200000;
    double two = holders_phase(2, holder_transfers), many = holders_phase(65536, holder_transfers);
    printf("%-44s %14.3f us/transfer\n", "transfers, account with 2 rights holders", two * 1e6);
    printf("%-44s %14.3f us/transfer  (%.1fx)\n", "transfers, account with 65,536 holders",
           many * 1e6, many / two);
    /* Meeting a fork moves the ops past the parting into a branch: once, like applying them. */
    size_t moved;
    double fork_s = fork_phase(t, smoke ? 20000 : n, accounts, bank, &moved);
    printf("%-44s %14.0f ops/s        (%.3f s, %zu ops past the parting)\n",
           "meeting a fork (ops moved to a branch)", (double)moved / fork_s, fork_s, moved);
    if (smoke) {
        printf("bench: smoke run only; figures from `make bench` go in docs/benchmarks.md\n");
    }
    for (size_t i = 0; i < deltas; i++) {
        tally_free(kept[i]);
    }
    free(kept);
    free(kept_len);
    tally_free(setup);
    tally_close(r);
    tally_close(peer);
    free(t);
    free(results);
    free(accounts);
    return 0;
}
