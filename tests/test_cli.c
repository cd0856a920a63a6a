/*
 * test_cli.c — the tally command, end to end: on a local directory and against a tallyd.
 */
#include "support.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static char out[16384];

/* Runs the tally command with args; returns its exit status, its output in `out`. */
static int tally(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int tally(const char *fmt, ...) {
    char args[1024], cmd[1400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "%s %s 2>&1", TALLY_PATH, args);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = '\0';
    int status = pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void every_command_works_on_a_local_directory(void **state) {
    (void)state;
    char dir[] = "/tmp/tally-cli-XXXXXX";
    assert_non_null(mkdtemp(dir));
    assert_int_equal(tally("--data %s account create 1 --ledger 1", dir), 0);
    assert_non_null(strstr(out, "OK"));
    assert_int_equal(tally("--data %s account create 0xA --ledger 1 --code 7 "
                           "--flags debits_must_not_exceed_credits", dir), 0);
    assert_int_equal(tally("--data %s account create 0xA --ledger 1", dir), 1);
    assert_non_null(strstr(out, "EXISTS_WITH_DIFFERENT_FIELDS"));
    assert_int_equal(tally("--data %s transfer 100 --debit 1 --credit 0xA --amount 70 "
                           "--ledger 1 --code 1", dir), 0);
    assert_int_equal(tally("--data %s transfer 101 --debit 10 --credit 1 --amount 71 "
                           "--ledger 1 --code 1", dir), 1);
    assert_non_null(strstr(out, "EXCEEDS_CREDITS"));
    assert_int_equal(tally("--data %s transfer 102 --debit 10 --credit 1 --amount 30 --ledger 1 "
                           "--code 1 --pending --timeout-ms 60000", dir), 0);
    assert_int_equal(tally("--data %s transfer 103 --post 102 --amount 20", dir), 0);
    assert_int_equal(tally("--data %s balance 10", dir), 0);
    assert_non_null(strstr(out, "account 0xa"));
    /* 70 in; a pending of 30 reserved, 20 of it posted and 10 released: 50 spendable here */
    const char *rights = strstr(out, "rights here");
    assert_non_null(rights);
    assert_int_equal(atoi(rights + strlen("rights here")), 50);
    assert_int_equal(tally("--json --data %s balance 0xa", dir), 0);
    assert_non_null(strstr(out, "\"credits_posted\":70"));
    assert_non_null(strstr(out, "\"debits_posted\":20"));
    assert_int_equal(tally("--data %s transfer-info 102", dir), 0);
    assert_non_null(strstr(out, "posted"));
    assert_int_equal(tally("--data %s transfer 104 --debit 10 --credit 1 --amount 5 --ledger 1 "
                           "--code 1 --pending", dir), 0);
    assert_int_equal(tally("--data %s transfer 105 --void 104", dir), 0);
    assert_int_equal(tally("--data %s transfer-info 104", dir), 0);
    assert_non_null(strstr(out, "voided"));
    assert_int_equal(tally("--data %s transfer 106 --post 104", dir), 1);
    assert_non_null(strstr(out, "PENDING_ALREADY_VOIDED"));
    assert_int_equal(tally("--data %s grant 10 --to 99 --amount 5", dir), 0);
    assert_int_equal(tally("--data %s conflicts", dir), 0);
    assert_non_null(strstr(out, "no conflicts"));
    assert_int_equal(tally("--data %s status", dir), 0);
    assert_non_null(strstr(out, "digest"));
    assert_int_equal(tally("--data %s balance 999", dir), 1);
    assert_non_null(strstr(out, "NOT_FOUND"));
    /* usage errors and unreachable things */
    assert_int_equal(tally("--data %s frobnicate", dir), 2);
    assert_int_equal(tally("--data %s account create 5", dir), 2);
    assert_int_equal(tally("status"), 2);
    assert_int_equal(tally("--data %s rights request 10 --amount 1", dir), 2);
    assert_int_equal(tally("--server 127.0.0.1:1 status"), 3);
    assert_int_equal(tally("--server [::1]:1 status"), 3);
    assert_int_equal(tally("--server localhost:1 status"), 3);
    assert_int_equal(tally("--server no-port status"), 3);
    assert_int_equal(tally("--server tally-test.invalid:1 status"), 3);
    assert_int_equal(tally("--help"), 0);
    assert_non_null(strstr(out, "usage"));
    assert_int_equal(tally("--data %s transfer --help", dir), 0);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

static void commands_go_to_a_tallyd_with_server(void **state) {
    (void)state;
    char dir[] = "/tmp/tally-cli-XXXXXX";
    assert_non_null(mkdtemp(dir));
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 2);
        close(fds[0]);
        execl(TALLYD_PATH, TALLYD_PATH, "--data", dir, "--listen", "127.0.0.1:0", "--control",
              "127.0.0.1:0", (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    char log[4096] = "";
    size_t len = 0;
    int control = 0;
    while (control == 0 && len < sizeof log - 1) {
        ssize_t n = read(fds[0], log + len, sizeof log - 1 - len);
        assert_true(n > 0);
        len += (size_t)n;
        log[len] = '\0';
        const char *ready = strstr(log, "control port ");
        if (ready != NULL && strchr(ready, '\n') != NULL) {
            control = atoi(ready + strlen("control port "));
        }
    }
    assert_int_equal(tally("--server 127.0.0.1:%d account create 1 --ledger 1", control), 0);
    assert_int_equal(tally("--server 127.0.0.1:%d account create 2 --ledger 1 "
                           "--flags debits_must_not_exceed_credits", control), 0);
    assert_int_equal(tally("--server 127.0.0.1:%d transfer 5 --debit 1 --credit 2 --amount 9 "
                           "--ledger 1 --code 1", control), 0);
    assert_int_equal(tally("--server 127.0.0.1:%d balance 2", control), 0);
    assert_non_null(strstr(out, "rights here"));
    assert_int_equal(tally("--server localhost:%d rights request 2 --amount 3", control), 1);
    assert_non_null(strstr(out, "INSUFFICIENT_RIGHTS")); /* no peer holds any */
    assert_int_equal(tally("--json --server 127.0.0.1:%d status", control), 0);
    assert_non_null(strstr(out, "\"ops\":3"));
    kill(pid, SIGTERM);
    int status;
    waitpid(pid, &status, 0);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    close(fds[0]);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_command_works_on_a_local_directory),
        cmocka_unit_test(commands_go_to_a_tallyd_with_server),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
