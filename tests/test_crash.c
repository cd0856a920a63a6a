/*
 * test_crash.c — kill -9 at random moments, and nothing acknowledged is lost.
 *
 * Each round forks a child that opens the replica's directory with TALLY_SYNC_COMMIT and
 * creates batches of transfers as fast as it can; after each batch returns, it reports every
 * transfer that was accepted through a pipe. The parent lets it run for a random few
 * milliseconds, kills it with SIGKILL (wherever it is: mid-write, mid-fsync, between the
 * two, in the middle of writing a snapshot), reopens the directory itself, and checks that every reported transfer is there with its
 * fields and that every invariant holds. Rounds: TALLY_CRASH_ROUNDS (default 50);
 * `make crash ROUNDS=N` runs N. Every 25 rounds the directory starts over, so that a long run
 * does not spend its time replaying an ever longer journal.
 */
#include "support.h"

#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ledger/replica.h"

#define DEBITS_BOUND TALLY_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS
enum { BANK = 1, ACCOUNTS = 8, ROUNDS_PER_DIRECTORY = 25 };

/* Every field of a transfer follows from its id, so the parent can check what it reads back. */
static tally_transfer transfer_for(uint64_t id) {
    uint64_t s = id;
    uint64_t pick = test_rand(&s);
    uint64_t debit = pick % 3 == 0 ? BANK : 2 + pick % ACCOUNTS;
    uint64_t credit = 2 + (pick / 8) % ACCOUNTS;
    if (credit == debit) {
        credit = 2 + (credit - 1) % ACCOUNTS;
    }
    tally_transfer t = transfer(id, debit, credit, 1 + test_rand(&s) % 50);
    t.user_data = id ^ 0x5a5a;
    t.code = (uint16_t)(1 + id % 7);
    return t;
}

static tally_options durable(const char *dir) {
    tally_options o;
    memset(&o, 0, sizeof o);
    o.dir = dir;
    o.replica_id = 1;
    o.sync_mode = TALLY_SYNC_COMMIT;
    return o;
}

static _Noreturn void child(const char *dir, int out, uint64_t round) {
    tally_options o = durable(dir);
    tally_replica *r;
    if (tally_open(&o, &r) != TALLY_OK) {
        _exit(2);
    }
    tally_account bank = account(BANK, 1, 0);
    (void)tally_create_account(r, &bank);
    for (uint64_t a = 2; a < 2 + ACCOUNTS; a++) {
        tally_account acc = account(a, 1, DEBITS_BOUND);
        (void)tally_create_account(r, &acc);
    }
    uint64_t seed = round, next = round << 32;
    for (;;) {
        tally_transfer batch[32];
        int results[32];
        size_t n = 1 + test_rand(&seed) % 32;
        for (size_t i = 0; i < n; i++) {
            batch[i] = transfer_for(++next);
        }
        if (tally_create_transfers(r, batch, n, results) != TALLY_OK) {
            _exit(3);
        }
        for (size_t i = 0; i < n; i++) {
            if (results[i] == TALLY_OK &&
                write(out, &batch[i].id.lo, sizeof batch[i].id.lo) != sizeof batch[i].id.lo) {
                _exit(4);
            }
        }
        if (test_rand(&seed) % 16 == 0 && tally_snapshot(r) != TALLY_OK) {
            _exit(5); /* and now and then a snapshot, which a kill may interrupt too */
        }
    }
}

static void sleep_ms(uint64_t ms) {
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void nothing_acknowledged_is_lost_across_kill_9(void **state) {
    (void)state;
    const char *env = getenv("TALLY_CRASH_ROUNDS");
    uint64_t rounds = env != NULL ? strtoull(env, NULL, 10) : 50;
    char dir[] = "/tmp/tally-crash-XXXXXX";
    assert_non_null(mkdtemp(dir));
    uint64_t seed = (uint64_t)time(NULL), acknowledged_total = 0;
    size_t capacity = 1 << 16;
    uint64_t *acked = malloc(capacity * sizeof *acked);
    size_t n_acked = 0;
    for (uint64_t round = 1; round <= rounds; round++) {
        if (round % ROUNDS_PER_DIRECTORY == 0) {
            /* a fresh directory now and then keeps each reopen short over long runs */
            char cmd[96];
            snprintf(cmd, sizeof cmd, "rm -rf %s/*", dir);
            assert_int_equal(system(cmd), 0);
            acknowledged_total += n_acked;
            n_acked = 0;
        }
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            child(dir, fds[1], round);
        }
        close(fds[1]);
        fcntl(fds[0], F_SETFL, O_NONBLOCK);
        uint64_t deadline_ms = 2 + test_rand(&seed) % 40;
        /* read while the child runs (a full pipe would only slow it down), then kill it */
        for (uint64_t waited = 0; waited < deadline_ms; waited++) {
            sleep_ms(1);
            uint64_t id;
            while (read(fds[0], &id, sizeof id) == sizeof id) {
                if (n_acked == capacity) {
                    capacity *= 2;
                    acked = realloc(acked, capacity * sizeof *acked);
                }
                acked[n_acked++] = id;
            }
        }
        kill(pid, SIGKILL);
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFSIGNALED(status)); /* it was still running: it did not fail on its own */
        uint64_t id;
        while (read(fds[0], &id, sizeof id) == sizeof id) { /* what it said before dying */
            if (n_acked == capacity) {
                capacity *= 2;
                acked = realloc(acked, capacity * sizeof *acked);
            }
            acked[n_acked++] = id;
        }
        close(fds[0]);
        /* reopen: every acknowledged transfer, ever, is there with its fields */
        tally_options o = durable(dir);
        char error[512] = "";
        o.error = error;
        o.error_size = sizeof error;
        tally_replica *r;
        int rc = tally_open(&o, &r);
        if (rc != TALLY_OK) {
            print_error("round %" PRIu64 ": %s\n", round, error);
        }
        assert_result(rc, TALLY_OK);
        assert_true(replica_check(r));
        for (size_t i = 0; i < n_acked; i++) {
            tally_transfer want = transfer_for(acked[i]), got;
            want.debit_bound = want.debit_account_id.lo == BANK ? 0 : DEBITS_BOUND; /* read back */
            want.credit_bound = DEBITS_BOUND;
            assert_result(tally_lookup_transfer(r, want.id, &got), TALLY_OK);
            assert_memory_equal(&want, &got, sizeof want);
        }
        tally_close(r);
    }
    acknowledged_total += n_acked;
    print_message("crash: %" PRIu64 " kill -9 rounds, %" PRIu64 " acknowledged transfers, "
                  "none lost\n",
                  rounds, acknowledged_total);
    assert_true(acknowledged_total > 0);
    free(acked);
    char cmd[64];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(nothing_acknowledged_is_lost_across_kill_9),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
