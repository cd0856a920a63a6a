/*
 * bench_durable.c — `make bench`: durable transfers against SQLite and against the disk itself,
 * side by side in one run; and how long a replica with a long journal takes to open, with and
 * without a snapshot.
 *
 * For batch sizes 1, 100 and 8189: tally with TALLY_SYNC_COMMIT (one write and one fdatasync
 * per batch); SQLite in WAL mode with synchronous=FULL committing the same batches with the
 * same overdraft rule; and a plain C loop that writes the same number of bytes per commit and
 * calls fdatasync, the most any program could do on this disk for those bytes.
 *
 * Options: --dir D (default /tmp), --open N (transfers in the open-time journal, default
 * 10,000,000; 0 skips it), --smoke (a quick run for ctest).
 */
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "tally.h"

#define ACCOUNTS 10000

#define BENCH_SEED 0x9e3779b97f4a7c15u
#include "bench_util.h"

static _Noreturn void die(const char *what, const char *detail) {
    fprintf(stderr, "bench_durable: %s: %s\n", what, detail);
    exit(1);
}

static tally_id accounts[ACCOUNTS], bank;

static void make_transfers(tally_transfer *t, size_t n) {
    for (size_t i = 0; i < n; i++) {
        memset(&t[i], 0, sizeof t[i]);
        t[i].id = (tally_id){rnd(), rnd() | 1};
        uint64_t d = rnd() % ACCOUNTS, c = rnd() % (ACCOUNTS - 1);
        t[i].debit_account_id = accounts[d];
        t[i].credit_account_id = accounts[c >= d ? c + 1 : c];
        t[i].amount = 1 + rnd() % 100;
        t[i].ledger = 1;
        t[i].code = 1;
    }
}

static void rm_rf(const char *path) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    if (system(cmd) != 0) {
        die("cannot remove", path);
    }
}

/* A durable replica with the accounts funded (not timed). */
static tally_replica *tally_fresh(const char *dir, tally_sync_mode mode) {
    rm_rf(dir);
    tally_options o;
    memset(&o, 0, sizeof o);
    o.dir = dir;
    o.replica_id = 1;
    o.sync_mode = mode;
    char error[256] = "";
    o.error = error;
    o.error_size = sizeof error;
    tally_replica *r;
    if (tally_open(&o, &r) != TALLY_OK) {
        die("open", error);
    }
    tally_account b = {bank, 0, 1, 1, 0};
    tally_create_account(r, &b);
    tally_transfer *fund = calloc(ACCOUNTS, sizeof *fund);
    int *results = calloc(ACCOUNTS, sizeof *results);
    for (int i = 0; i < ACCOUNTS; i++) {
        tally_account a = {accounts[i], 0, 1, 1, TALLY_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS};
        tally_create_account(r, &a);
        fund[i].id = (tally_id){rnd(), rnd() | 1};
        fund[i].debit_account_id = bank;
        fund[i].credit_account_id = accounts[i];
        fund[i].amount = 1000000;
        fund[i].ledger = 1;
        fund[i].code = 1;
    }
    tally_create_transfers(r, fund, ACCOUNTS, results);
    free(fund);
    free(results);
    return r;
}

static long file_bytes(const char *dir) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "du -sb '%s' | cut -f1", dir);
    FILE *p = popen(cmd, "r");
    long n = 0;
    if (p == NULL || fscanf(p, "%ld", &n) != 1) {
        n = 0;
    }
    if (p != NULL) {
        pclose(p);
    }
    return n;
}

/* --- SQLite, synchronous=FULL -------------------------------------------------------------- */

static sqlite3 *sql_fresh(const char *path) {
    char wal[512];
    unlink(path);
    snprintf(wal, sizeof wal, "%s-wal", path);
    unlink(wal);
    snprintf(wal, sizeof wal, "%s-shm", path);
    unlink(wal);
    sqlite3 *db;
    if (sqlite3_open(path, &db) != SQLITE_OK) {
        die("sqlite open", path);
    }
    sqlite3_exec(db,
                 "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
                 "CREATE TABLE accounts (id BLOB PRIMARY KEY, debits_posted INTEGER NOT NULL, "
                 "credits_posted INTEGER NOT NULL) WITHOUT ROWID;"
                 "CREATE TABLE transfers (id BLOB PRIMARY KEY, debit BLOB NOT NULL, "
                 "credit BLOB NOT NULL, amount INTEGER NOT NULL, ledger INTEGER, code INTEGER) "
                 "WITHOUT ROWID;",
                 NULL, NULL, NULL);
    sqlite3_stmt *ins;
    sqlite3_prepare_v2(db, "INSERT INTO accounts VALUES (?1, 0, 1000000)", -1, &ins, NULL);
    sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
    for (int i = 0; i < ACCOUNTS; i++) {
        sqlite3_bind_blob(ins, 1, &accounts[i], 16, SQLITE_STATIC);
        sqlite3_step(ins);
        sqlite3_reset(ins);
    }
    sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    sqlite3_finalize(ins);
    return db;
}

static size_t sql_batches(sqlite3 *db, const tally_transfer *t, size_t n, size_t batch) {
    sqlite3_stmt *debit, *credit, *insert;
    sqlite3_prepare_v2(db,
                       "UPDATE accounts SET debits_posted = debits_posted + ?2 WHERE id = ?1 "
                       "AND credits_posted - debits_posted >= ?2",
                       -1, &debit, NULL);
    sqlite3_prepare_v2(db, "UPDATE accounts SET credits_posted = credits_posted + ?2 WHERE id = ?1",
                       -1, &credit, NULL);
    sqlite3_prepare_v2(db, "INSERT INTO transfers VALUES (?1, ?2, ?3, ?4, ?5, ?6)", -1, &insert,
                       NULL);
    size_t ok = 0;
    for (size_t b = 0; b < n; b += batch) {
        sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
        for (size_t i = b; i < b + batch && i < n; i++) {
            sqlite3_bind_blob(debit, 1, &t[i].debit_account_id, 16, SQLITE_STATIC);
            sqlite3_bind_int64(debit, 2, (sqlite3_int64)t[i].amount);
            sqlite3_step(debit);
            sqlite3_reset(debit);
            if (sqlite3_changes(db) == 0) {
                continue;
            }
            sqlite3_bind_blob(credit, 1, &t[i].credit_account_id, 16, SQLITE_STATIC);
            sqlite3_bind_int64(credit, 2, (sqlite3_int64)t[i].amount);
            sqlite3_step(credit);
            sqlite3_reset(credit);
            sqlite3_bind_blob(insert, 1, &t[i].id, 16, SQLITE_STATIC);
            sqlite3_bind_blob(insert, 2, &t[i].debit_account_id, 16, SQLITE_STATIC);
            sqlite3_bind_blob(insert, 3, &t[i].credit_account_id, 16, SQLITE_STATIC);
            sqlite3_bind_int64(insert, 4, (sqlite3_int64)t[i].amount);
            sqlite3_bind_int64(insert, 5, t[i].ledger);
            sqlite3_bind_int64(insert, 6, t[i].code);
            sqlite3_step(insert);
            sqlite3_reset(insert);
            ok++;
        }
        if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
            die("sqlite commit", sqlite3_errmsg(db));
        }
    }
    sqlite3_finalize(debit);
    sqlite3_finalize(credit);
    sqlite3_finalize(insert);
    return ok;
}

/* --- the disk alone ------------------------------------------------------------------------ */

/* Appends `commits` writes of `bytes` each, with an fdatasync after each; returns seconds. */
static double raw_disk(const char *path, size_t commits, size_t bytes) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
    if (fd < 0) {
        die("open", path);
    }
    uint8_t *buf = malloc(bytes);
    for (size_t i = 0; i < bytes; i++) {
        buf[i] = (uint8_t)rnd();
    }
    double t0 = now_s();
    for (size_t c = 0; c < commits; c++) {
        if (write(fd, buf, bytes) != (ssize_t)bytes || fdatasync(fd) != 0) {
            die("write", path);
        }
    }
    double s = now_s() - t0;
    close(fd);
    unlink(path);
    free(buf);
    return s;
}

/* --- one batch size ------------------------------------------------------------------------ */

static void compare(const char *base, size_t batch, size_t n) {
    char dir[256], db[256], raw[256];
    snprintf(dir, sizeof dir, "%s/tally-bench-durable", base);
    snprintf(db, sizeof db, "%s/tally-bench-durable.db", base);
    snprintf(raw, sizeof raw, "%s/tally-bench-durable.raw", base);
    tally_transfer *t = malloc(n * sizeof *t);
    make_transfers(t, n);
    int *results = malloc(batch * sizeof *results);

    tally_replica *r = tally_fresh(dir, TALLY_SYNC_COMMIT);
    long before = file_bytes(dir);
    size_t tally_ok = 0;
    double t0 = now_s();
    for (size_t b = 0; b < n; b += batch) {
        size_t k = b + batch <= n ? batch : n - b;
        if (tally_create_transfers(r, t + b, k, results) != TALLY_OK) {
            die("create_transfers", "failed");
        }
        for (size_t i = 0; i < k; i++) {
            tally_ok += results[i] == TALLY_OK;
        }
    }
    double tally_s = now_s() - t0;
    tally_close(r);
    long written = file_bytes(dir) - before;
    rm_rf(dir);

    sqlite3 *s = sql_fresh(db);
    t0 = now_s();
    size_t sql_ok = sql_batches(s, t, n, batch);
    double sql_s = now_s() - t0;
    sqlite3_close(s);
    unlink(db);
    if (sql_ok != tally_ok) {
        fprintf(stderr, "bench_durable: tally accepted %zu, SQLite %zu: they must agree\n",
                tally_ok, sql_ok);
        exit(1);
    }

    size_t commits = (n + batch - 1) / batch;
    double raw_s = raw_disk(raw, commits, (size_t)written / commits);
    double tr = (double)n / tally_s, sr = (double)n / sql_s, rr = (double)n / raw_s;
    printf("batch %5zu: tally %10.0f/s   SQLite FULL %9.0f/s (x%.1f)   disk alone %10.0f/s "
           "(tally %.0f%%)   %zu commits, %.1f bytes/transfer\n",
           batch, tr, sr, tr / sr, rr, 100.0 * tr / rr, commits, (double)written / (double)n);
    free(t);
    free(results);
}

/* --- open time ----------------------------------------------------------------------------- */

static void open_time(const char *base, size_t n) {
    char dir[256];
    snprintf(dir, sizeof dir, "%s/tally-bench-open", base);
    tally_replica *r = tally_fresh(dir, TALLY_SYNC_NONE);
    enum { BATCH = 8189 };
    tally_transfer *t = malloc(BATCH * sizeof *t);
    int results[BATCH];
    for (size_t done = 0; done < n; done += BATCH) {
        size_t k = n - done < BATCH ? n - done : BATCH;
        make_transfers(t, k);
        tally_create_transfers(r, t, k, results);
    }
    free(t);
    tally_stats st;
    tally_get_stats(r, &st);
    tally_close(r);
    long journal = file_bytes(dir);
    tally_options o;
    memset(&o, 0, sizeof o);
    o.dir = dir;
    double t0 = now_s();
    if (tally_open(&o, &r) != TALLY_OK) {
        die("reopen", dir);
    }
    double replay_s = now_s() - t0;
    t0 = now_s();
    if (tally_snapshot(r) != TALLY_OK) {
        die("snapshot", dir);
    }
    double snapshot_s = now_s() - t0;
    uint8_t d1[16], d2[16];
    tally_digest(r, d1);
    tally_close(r);
    long with_snapshot = file_bytes(dir);
    t0 = now_s();
    if (tally_open(&o, &r) != TALLY_OK) {
        die("reopen with snapshot", dir);
    }
    double load_s = now_s() - t0;
    tally_digest(r, d2);
    tally_close(r);
    rm_rf(dir);
    if (memcmp(d1, d2, 16) != 0) {
        die("open time", "the snapshot gave another state");
    }
    printf("open, %" PRIu64 " ops (%zu transfers), journal %.0f MB: replaying it %.2f s; "
           "writing a snapshot %.2f s (directory then %.0f MB); opening from the snapshot "
           "%.2f s\n",
           st.ops, n, (double)journal / 1e6, replay_s, snapshot_s, (double)with_snapshot / 1e6,
           load_s);
}

int main(int argc, char **argv) {
    const char *base = "/tmp";
    size_t open_n = 10000000;
    bool smoke = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--dir") && i + 1 < argc) {
            base = argv[++i];
        } else if (!strcmp(argv[i], "--open") && i + 1 < argc) {
            open_n = strtoull(argv[++i], NULL, 10);
        } else if (!strcmp(argv[i], "--smoke")) {
            smoke = true;
        } else {
            fprintf(stderr, "usage: tally_bench_durable [--dir D] [--open N] [--smoke]\n");
            return 2;
        }
    }
    for (int i = 0; i < ACCOUNTS; i++) {
        accounts[i] = (tally_id){rnd(), rnd() | 1};
    }
    bank = (tally_id){rnd(), rnd() | 1};
    printf("tally durable bench in %s: TALLY_SYNC_COMMIT vs SQLite (WAL, synchronous=FULL) vs "
           "write+fdatasync of the same bytes\n",
           base);
    if (smoke) {
        compare(base, 1, 50);
        compare(base, 100, 1000);
        open_time(base, 20000);
        return 0;
    }
    compare(base, 1, 3000);
    compare(base, 100, 100000);
    compare(base, 8189, 8189 * 60);
    if (open_n > 0) {
        open_time(base, open_n);
    }
    return 0;
}
