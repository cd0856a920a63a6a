/*
 * test_cli.c — the tally command, end to end: on a local directory and against a tallyd.
 */
#include "support.h"

#include <sys/stat.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "net/cmd/control.h"

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

/* The last command's output contains text; if not, both are printed. */
static void assert_output_has(const char *text) {
    if (strstr(out, text) == NULL) {
        fail_msg("the output does not have \"%s\": \"%s\"", text, out);
    }
}

/* A fresh data directory, and the --data target naming it. */
static void fresh_target(char dir[32], char target[64]) {
    snprintf(dir, 32, "/tmp/tally-cli-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(target, 64, "--data %s", dir);
}

static void remove_dir(const char *dir) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

typedef struct tallyd {
    pid_t pid;
    int log_fd;
    int control_port;
} tallyd;

/* Starts a tallyd on dir with free loopback ports and waits until it is ready. */
static void tallyd_start(tallyd *d, const char *dir) {
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    d->pid = fork();
    if (d->pid == 0) {
        dup2(fds[1], 2);
        close(fds[0]);
        execl(TALLYD_PATH, TALLYD_PATH, "--data", dir, "--listen", "127.0.0.1:0", "--control",
              "127.0.0.1:0", (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    d->log_fd = fds[0];
    char log[4096] = "";
    size_t len = 0;
    d->control_port = 0;
    while (d->control_port == 0 && len < sizeof log - 1) {
        ssize_t n = read(d->log_fd, log + len, sizeof log - 1 - len);
        assert_true(n > 0);
        len += (size_t)n;
        log[len] = '\0';
        const char *ready = strstr(log, "control port ");
        if (ready != NULL && strchr(ready, '\n') != NULL) {
            d->control_port = atoi(ready + strlen("control port "));
        }
    }
}

/* Stops it with SIGTERM, which must end it cleanly. */
static void tallyd_stop(tallyd *d) {
    kill(d->pid, SIGTERM);
    int status;
    waitpid(d->pid, &status, 0);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    close(d->log_fd);
}

/* The number after the first "key": in a JSON text. */
static long json_number(const char *json, const char *key) {
    char pattern[64];
    snprintf(pattern, sizeof pattern, "\"%s\":", key);
    const char *at = strstr(json, pattern);
    assert_non_null(at);
    return strtol(at + strlen(pattern), NULL, 10);
}

/* `tally TARGET status` prints exactly these lines: the counts given (checked against
 * `tally --json TARGET status` too), and the replica id and digest that the JSON reply has. */
static void assert_status_lines(const char *target, long ops, long accounts, long transfers,
                                long pending, long conflicts, bool with_node) {
    assert_int_equal(tally("--json %s status", target), 0);
    assert_int_equal(json_number(out, "ops"), ops);
    assert_int_equal(json_number(out, "accounts"), accounts);
    assert_int_equal(json_number(out, "transfers"), transfers);
    assert_int_equal(json_number(out, "pending"), pending);
    assert_int_equal(json_number(out, "conflicts"), conflicts);
    char replica[32] = "", digest[40] = "", key[72] = "";
    const char *at = strstr(out, "\"replica_id\":\"");
    assert_non_null(at);
    assert_int_equal(sscanf(at, "\"replica_id\":\"%31[0-9]\"", replica), 1);
    at = strstr(out, "\"digest\":\"");
    assert_non_null(at);
    assert_int_equal(sscanf(at, "\"digest\":\"%39[0-9a-f]\"", digest), 1);
    at = strstr(out, "\"public_key\":\"");
    assert_non_null(at);
    assert_int_equal(sscanf(at, "\"public_key\":\"%64[0-9a-f]\"", key), 1);
    assert_int_equal(strlen(key), 64);
    char want[2048];
    int n = snprintf(want, sizeof want,
                     "replica      %s\ndigest       %s\nops          %ld\naccounts     %ld\n"
                     "transfers    %ld (%ld pending open)\nconflicts    %ld\npublic key   %s\n",
                     replica, digest, ops, accounts, transfers, pending, conflicts, key);
    if (with_node) {
        /* no peers: nothing on the wire */
        n += snprintf(want + n, sizeof want - (size_t)n,
                      "peers        0 configured, 0 sessions ready\n"
                      "wire         0 bytes in, 0 bytes out\n");
    }
    /* every op here was made here: one origin, at the op count */
    snprintf(want + n, sizeof want - (size_t)n, "version vector\n  %-22s %ld\n", replica, ops);
    assert_int_equal(tally("%s status", target), 0);
    assert_string_equal(out, want);
}

/* Five ops, three accounts, two transfers of which one pending and open, no conflict: every
 * count differs, so a value printed on another count's line shows. */
static void make_distinct_counts(const char *target) {
    for (int a = 1; a <= 3; a++) {
        assert_int_equal(tally("%s account create %d --ledger 1", target, a), 0);
    }
    assert_int_equal(tally("%s transfer 100 --debit 1 --credit 2 --amount 9 --ledger 1 --code 1",
                           target), 0);
    assert_int_equal(tally("%s transfer 101 --debit 1 --credit 3 --amount 4 --ledger 1 --code 1 "
                           "--pending", target), 0);
}

static void status_prints_each_count_on_its_own_line(void **state) {
    (void)state;
    char dir[32], target[64];
    /* on a directory: no node, so no peers or wire lines */
    fresh_target(dir, target);
    make_distinct_counts(target);
    assert_status_lines(target, 5, 3, 2, 1, 0, false);
    remove_dir(dir);
    /* through a tallyd */
    fresh_target(dir, target);
    tallyd d;
    tallyd_start(&d, dir);
    snprintf(target, sizeof target, "--server 127.0.0.1:%d", d.control_port);
    make_distinct_counts(target);
    assert_status_lines(target, 5, 3, 2, 1, 0, true);
    tallyd_stop(&d);
    remove_dir(dir);
}

static void every_command_works_on_a_local_directory(void **state) {
    (void)state;
    char dir[] = "/tmp/tally-cli-XXXXXX";
    assert_non_null(mkdtemp(dir));
    assert_int_equal(tally("--data %s account create 1 --ledger 1", dir), 0);
    assert_output_has("OK");
    assert_int_equal(tally("--data %s account create 0xA --ledger 1 --code 7 "
                           "--flags debits_must_not_exceed_credits", dir), 0);
    assert_int_equal(tally("--data %s account create 0xA --ledger 1", dir), 1);
    assert_output_has("EXISTS_WITH_DIFFERENT_FIELDS");
    assert_int_equal(tally("--data %s transfer 100 --debit 1 --credit 0xA --amount 70 "
                           "--ledger 1 --code 1", dir), 0);
    assert_int_equal(tally("--data %s transfer 101 --debit 10 --credit 1 --amount 71 "
                           "--ledger 1 --code 1", dir), 1);
    assert_output_has("EXCEEDS_CREDITS");
    assert_int_equal(tally("--data %s transfer 102 --debit 10 --credit 1 --amount 30 --ledger 1 "
                           "--code 1 --pending --timeout-ms 60000", dir), 0);
    assert_int_equal(tally("--data %s transfer 103 --post 102 --amount 20", dir), 0);
    assert_int_equal(tally("--data %s balance 10", dir), 0);
    assert_output_has("account 0xa");
    /* 70 in; a pending of 30 reserved, 20 of it posted and 10 released: 50 spendable here */
    const char *rights = strstr(out, "rights here");
    assert_non_null(rights);
    assert_int_equal(atoi(rights + strlen("rights here")), 50);
    assert_int_equal(tally("--json --data %s balance 0xa", dir), 0);
    assert_output_has("\"credits_posted\":70");
    assert_output_has("\"debits_posted\":20");
    assert_int_equal(tally("--data %s transfer-info 102", dir), 0);
    assert_output_has("posted");
    assert_int_equal(tally("--data %s transfer 104 --debit 10 --credit 1 --amount 5 --ledger 1 "
                           "--code 1 --pending", dir), 0);
    assert_int_equal(tally("--data %s transfer 105 --void 104", dir), 0);
    assert_int_equal(tally("--data %s transfer-info 104", dir), 0);
    assert_output_has("voided");
    assert_int_equal(tally("--data %s transfer 106 --post 104", dir), 1);
    assert_output_has("PENDING_ALREADY_VOIDED");
    /* replica 99 has never been heard from here: its rights would be stranded */
    assert_int_equal(tally("--data %s grant 10 --to 99 --amount 5", dir), 1);
    assert_output_has("REPLICA_UNKNOWN");
    /* unless the caller says it knows better */
    assert_int_equal(tally("--data %s grant 10 --to 99 --amount 5 --to-unknown", dir), 0);
    assert_output_has("OK");
    assert_int_equal(tally("--data %s --json balance 10", dir), 0);
    assert_output_has("\"replica\":\"99\"");
    assert_int_equal(tally("--data %s grant 10 --to 99 --amount 5 --to-unknown --to-unknown",
                           dir), 2);
    assert_int_equal(tally("--data %s conflicts", dir), 0);
    assert_output_has("no conflicts");
    assert_int_equal(tally("--data %s status", dir), 0);
    assert_output_has("digest");
    assert_int_equal(tally("--data %s balance 999", dir), 1);
    assert_output_has("NOT_FOUND");
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
    assert_output_has("usage");
    assert_int_equal(tally("--data %s transfer --help", dir), 0);
    remove_dir(dir);
}

static void commands_go_to_a_tallyd_with_server(void **state) {
    (void)state;
    char dir[] = "/tmp/tally-cli-XXXXXX";
    assert_non_null(mkdtemp(dir));
    tallyd d;
    tallyd_start(&d, dir);
    int port = d.control_port;
    assert_int_equal(tally("--server 127.0.0.1:%d account create 1 --ledger 1", port), 0);
    assert_int_equal(tally("--server 127.0.0.1:%d account create 2 --ledger 1 "
                           "--flags debits_must_not_exceed_credits", port), 0);
    assert_int_equal(tally("--server 127.0.0.1:%d transfer 5 --debit 1 --credit 2 --amount 9 "
                           "--ledger 1 --code 1", port), 0);
    assert_int_equal(tally("--server 127.0.0.1:%d balance 2", port), 0);
    assert_output_has("rights here");
    assert_int_equal(tally("--server localhost:%d rights request 2 --amount 3", port), 1);
    assert_output_has("INSUFFICIENT_RIGHTS"); /* no peer holds any */
    assert_int_equal(tally("--json --server 127.0.0.1:%d status", port), 0);
    assert_output_has("\"ops\":3");
    tallyd_stop(&d);
    remove_dir(dir);
}

static void a_retried_create_that_finds_its_work_done_exits_0(void **state) {
    (void)state;
    char dir[32], t[64];
    fresh_target(dir, t);
    const char *again = "EXISTS: already exists with the same fields; nothing was applied again\n";
    assert_int_equal(tally("%s account create 1 --ledger 1", t), 0);
    assert_string_equal(out, "OK\n");
    assert_int_equal(tally("%s account create 1 --ledger 1", t), 0);
    assert_string_equal(out, again);
    assert_int_equal(tally("%s account create 1 --ledger 2", t), 1);
    assert_string_equal(out, "EXISTS_WITH_DIFFERENT_FIELDS\n");
    assert_int_equal(tally("%s account create 2 --ledger 1", t), 0);
    const char *pay = "transfer 9 --debit 1 --credit 2 --ledger 1 --code 1";
    assert_int_equal(tally("%s %s --amount 5 --pending", t, pay), 0);
    assert_int_equal(tally("%s %s --amount 5 --pending", t, pay), 0);
    assert_string_equal(out, again);
    assert_int_equal(tally("%s %s --amount 6 --pending", t, pay), 1);
    assert_string_equal(out, "EXISTS_WITH_DIFFERENT_FIELDS\n");
    /* a post retried after it went through */
    assert_int_equal(tally("%s transfer 10 --post 9", t), 0);
    assert_int_equal(tally("%s transfer 10 --post 9", t), 0);
    assert_string_equal(out, again);
    assert_int_equal(tally("%s --json transfer 10 --post 9", t), 0);
    assert_output_has("\"results\":[\"EXISTS\"]");
    remove_dir(dir);
}

static void transfer_info_names_the_pending_a_post_or_void_settles(void **state) {
    (void)state;
    char dir[32], t[64];
    fresh_target(dir, t);
    assert_int_equal(tally("%s account create 1 --ledger 1", t), 0);
    assert_int_equal(tally("%s account create 2 --ledger 1", t), 0);
    const char *pay = "--debit 1 --credit 2 --ledger 1 --code 1";
    assert_int_equal(tally("%s transfer 0x66 %s --amount 30 --pending", t, pay), 0);
    assert_int_equal(tally("%s transfer 0x67 --post 0x66 --amount 20", t), 0);
    assert_int_equal(tally("%s transfer 0x68 %s --amount 4 --pending", t, pay), 0);
    assert_int_equal(tally("%s transfer 0x69 --void 0x68", t), 0);
    assert_int_equal(tally("%s transfer 0x6a %s --amount 3", t, pay), 0);
    assert_int_equal(tally("%s transfer 0x6b %s --amount 2 --pending", t, pay), 0);
    assert_int_equal(tally("%s status", t), 0);
    char replica[32];
    assert_int_equal(sscanf(out, "replica %31s", replica), 1);
    struct {
        const char *id, *line;
    } want[] = {
        {"0x67", "transfer 0x67: 20 from 0x1 to 0x2, ledger 1, code 1, posts pending 0x66, "
                 "which is posted"},
        {"0x69", "transfer 0x69: 4 from 0x1 to 0x2, ledger 1, code 1, voids pending 0x68, "
                 "which is voided"},
        {"0x66", "transfer 0x66: 30 from 0x1 to 0x2, ledger 1, code 1, pending: posted"},
        {"0x6b", "transfer 0x6b: 2 from 0x1 to 0x2, ledger 1, code 1, pending: open"},
        {"0x6a", "transfer 0x6a: 3 from 0x1 to 0x2, ledger 1, code 1, posted"},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        char line[256];
        snprintf(line, sizeof line, "%s (created at replica %s)\n", want[i].line, replica);
        assert_int_equal(tally("%s transfer-info %s", t, want[i].id), 0);
        assert_string_equal(out, line);
    }
    assert_int_equal(tally("%s --json transfer-info 0x69", t), 0);
    assert_output_has("\"pending_id\":\"0x68\"");
    assert_output_has("\"pending_id_state\":\"voided\"");
    remove_dir(dir);
}

static void unknown_flags_and_repeated_options_are_usage_errors(void **state) {
    (void)state;
    char dir[32], t[64];
    fresh_target(dir, t);
    assert_int_equal(tally("%s account create 1 --ledger 1", t), 0);
    static const struct {
        const char *args, *message;
    } refused[] = {
        {"account create 2 --ledger 1 --flags bogus", "unknown flag \"bogus\""},
        {"account create 2 --ledger 1 --flags debits_must_not_exceed_credits,",
         "an empty entry"},
        {"account create 2 --ledger 1 --flags \"$(printf 'debits_must_not_exceed_credits\\377')\"",
         "not valid UTF-8"},
        {"account create 2 --ledger 1 --ledger 2", "--ledger is given twice"},
        {"account create 2 --ledger 1 --colour blue", "unknown option --colour"},
        {"account create 2 --ledger", "--ledger needs a value"},
        {"account create 2 3 --ledger 1", "unexpected argument \"3\""},
        {"transfer 9 --debit 1 --credit 2 --ledger 1 --code 1 --amount 1 --amount 1000",
         "--amount is given twice"},
        {"transfer 9 --debit 1 --credit 2 --ledger 1 --amount 1 --pending --pending",
         "--pending is given twice"},
        {"transfer 9 --post 5 --void 5", "give one of --pending, --post and --void"},
        {"grant 1 --to 5", "--amount is required"},
        {"balance", "ID is missing"},
        {"frobnicate", "unknown command \"frobnicate\""},
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        assert_int_equal(tally("%s %s", t, refused[i].args), 2);
        assert_output_has(refused[i].message);
    }
    /* none of them reached the ledger */
    assert_int_equal(tally("%s balance 2", t), 1);
    assert_output_has("NOT_FOUND");
    assert_int_equal(tally("%s transfer-info 9", t), 1);
    assert_output_has("NOT_FOUND");
    assert_int_equal(tally("%s --data /tmp status", t), 2);
    assert_output_has("--data is given twice");
    assert_int_equal(tally("--json --json %s status", t), 2);
    assert_output_has("--json is given twice");
    remove_dir(dir);
}

/* A server on a free loopback port that answers one connection with `length` bytes: a JSON
 * object padded to that length and a newline, or, if !line, that many bytes of 'x' without one.
 * Returns its port; *pid is the process serving. */
/* A socket listening on a free loopback port, which *port is set to. */
static int listen_on_loopback(int *port) {
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    assert_int_equal(bind(listener, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(listener, 1), 0);
    assert_int_equal(getsockname(listener, (struct sockaddr *)&sa, &len), 0);
    *port = ntohs(sa.sin_port);
    return listener;
}

static int fake_server(size_t length, bool line, pid_t *pid) {
    int port;
    int listener = listen_on_loopback(&port);
    *pid = fork();
    if (*pid == 0) {
        signal(SIGPIPE, SIG_IGN); /* the client may stop reading */
        int c = accept(listener, NULL, NULL);
        /* the request first: closing with it unread would reset the connection */
        char byte = 0;
        while (byte != '\n' && read(c, &byte, 1) == 1) {
        }
        const char *head = "{\"ok\":true,\"result\":\"OK\",\"pad\":\"", *tail = "\"}\n";
        static char chunk[1 << 16];
        memset(chunk, 'x', sizeof chunk);
        size_t sent = 0, body = line ? length - strlen(head) - strlen(tail) : length;
        bool ok = !line || write(c, head, strlen(head)) == (ssize_t)strlen(head);
        while (ok && sent < body) {
            size_t n = body - sent < sizeof chunk ? body - sent : sizeof chunk;
            ssize_t k = write(c, chunk, n);
            ok = k > 0;
            sent += ok ? (size_t)k : 0;
        }
        if (ok && line) {
            ok = write(c, tail, strlen(tail)) == (ssize_t)strlen(tail);
        }
        _exit(ok ? 0 : 1);
    }
    close(listener);
    return port;
}

static void a_reply_is_read_up_to_its_limit_and_no_further(void **state) {
    (void)state;
    pid_t pid;
    int status;
    /* a reply of exactly the limit, its newline included, is read */
    int port = fake_server(CONTROL_REPLY_BYTES_MAX, true, &pid);
    assert_int_equal(tally("--server 127.0.0.1:%d conflicts", port), 0);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    /* one byte more, and it is refused without reading on */
    port = fake_server(CONTROL_REPLY_BYTES_MAX + 1, false, &pid);
    assert_int_equal(tally("--server 127.0.0.1:%d conflicts", port), 3);
    assert_output_has("the reply is longer than 64 MiB");
    assert_int_equal(waitpid(pid, &status, 0), pid);
}

/* A server that takes the connection and the request, and never answers: the command gives up
 * after --timeout, says so, and exits 3, instead of waiting as long as the server keeps the
 * connection open (it used to wait for ever). */
static void a_server_that_never_answers_is_given_up_on(void **state) {
    (void)state;
    int port;
    int listener = listen_on_loopback(&port);
    pid_t pid = fork();
    if (pid == 0) {
        alarm(20); /* ends it whatever happens */
        int c = accept(listener, NULL, NULL);
        sleep(20); /* holds the connection open, silent */
        close(c);
        _exit(0);
    }
    close(listener);
    assert_int_equal(tally("--timeout 300 --server 127.0.0.1:%d status", port), 3);
    assert_output_has("no reply within 300 ms");
    kill(pid, SIGKILL);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_int_equal(tally("--timeout 0 --data /tmp status"), 2); /* a timeout is 1 ms or more */
    assert_int_equal(tally("--timeout 5 --timeout 5 --data /tmp status"), 2);
    assert_int_equal(tally("--timeout ' 5' --data /tmp status"), 2);
}

static void each_command_has_its_own_help_which_needs_no_server(void **state) {
    (void)state;
    /* a usage line of each command, and the start of what its help says it does */
    static const struct {
        const char *words, *line, *what;
    } cmds[] = {
        {"status", "  status\n", "Shows the replica"},
        {"account create", "  account create ID --ledger N", "Creates an account"},
        {"transfer", "  transfer ID --post PENDING_ID", "Moves an amount"},
        {"balance", "  balance ID\n", "Shows an account"},
        {"transfer-info", "  transfer-info ID\n", "Shows a transfer"},
        {"grant", "  grant ACCOUNT --to REPLICA --amount N [--to-unknown]\n", "Gives an amount"},
        {"rights request", "  rights request ACCOUNT --amount N", "Asks the peers"},
        {"conflicts", "  conflicts\n", "Lists what concurrent writes produced"},
        {"forks", "  forks\n", "Lists the replicas proven"},
        {"hold lift", "  hold lift\n", "Lifts the hold"},
        {"cluster init", "  cluster init NAME --out DIR", "Creates a cluster's authority"},
        {"replica admit", "  replica admit ID --public-key HEX", "Admits a replica"},
        {"certificate set", "  certificate set FILE\n", "Gives the replica its certificate"},
        {"peer add", "  peer add HOST:PORT", "Keeps a connection"},
        {"peer remove", "  peer remove HOST:PORT", "Closes the session"},
    };
    size_t n = sizeof cmds / sizeof cmds[0];
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(tally("%s --help", cmds[i].words), 0);
        assert_output_has(cmds[i].line);
        assert_output_has(cmds[i].what);
        for (size_t k = 0; k < n; k++) {
            if (k != i && strstr(out, cmds[k].line) != NULL) {
                fail_msg("%s --help shows %s's usage too: \"%s\"", cmds[i].words, cmds[k].words,
                         out);
            }
        }
    }
    /* --help anywhere after the command, with or without a target */
    assert_int_equal(tally("--json transfer 5 --amount 3 --help"), 0);
    assert_output_has("Moves an amount");
    assert_int_equal(tally("--data /nonexistent/tally grant 1 --help"), 0);
    assert_output_has("Gives an amount");
    /* a first word: each command it begins */
    assert_int_equal(tally("peer --help"), 0);
    assert_output_has("Keeps a connection");
    assert_output_has("Closes the session");
    assert_int_equal(tally("peer"), 2);
    assert_output_has("incomplete command \"peer\"");
    /* the whole usage lists every command, without their descriptions */
    assert_int_equal(tally("--help"), 0);
    for (size_t i = 0; i < n; i++) {
        assert_output_has(cmds[i].line);
    }
    assert_null(strstr(out, "Moves an amount"));
}

/* A directory copied, each copy written to, and the two histories met: `forks` shows the
 * proof and what the histories took beyond what the replica held, `status` counts it, and
 * the copy takes no more writes. */
static void a_forked_directory_shows_its_proof_and_takes_no_writes(void **state) {
    (void)state;
    char a[32], ta[64], b[48], cmd[128];
    fresh_target(a, ta);
    assert_int_equal(tally("%s forks", ta), 0);
    assert_output_has("no forks");
    assert_int_equal(tally("%s account create 1 --ledger 1", ta), 0);
    assert_int_equal(
        tally("%s account create 7 --ledger 1 --flags debits_must_not_exceed_credits", ta), 0);
    assert_int_equal(tally("%s transfer 70 --debit 1 --credit 7 --amount 50 --ledger 1", ta), 0);
    snprintf(b, sizeof b, "%s-copy", a);
    snprintf(cmd, sizeof cmd, "cp -a %s %s", a, b);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(tally("%s transfer 71 --debit 7 --credit 1 --amount 50 --ledger 1", ta), 0);
    /* the copy sees it is not where it was written, and holds its writes */
    assert_int_equal(tally("--data %s account create 3 --ledger 1", b), 1);
    assert_output_has("ORIGIN_HELD");
    assert_int_equal(tally("--data %s status", b), 0);
    assert_output_has("held         MOVED: its directory is not the one it was written in");
    assert_int_equal(tally("--data %s --json status", b), 0);
    assert_output_has("\"hold\":\"MOVED\"");
    /* an operator vouches for it, wrongly: the original still writes */
    assert_int_equal(tally("--data %s hold lift", b), 0);
    assert_output_has("OK: the hold (MOVED) is lifted");
    assert_int_equal(tally("--data %s hold lift", b), 0);
    assert_output_has("OK: nothing was held");
    assert_int_equal(tally("--data %s transfer 72 --debit 7 --credit 1 --amount 40 --ledger 1", b),
                     0);
    tally_options o;
    memset(&o, 0, sizeof o);
    tally_replica *ra = NULL, *rb = NULL;
    o.dir = a;
    assert_result(tally_open(&o, &ra), TALLY_OK);
    o.dir = b;
    assert_result(tally_open(&o, &rb), TALLY_OK);
    assert_result(apply_from(ra, rb), TALLY_OK); /* it keeps both histories */
    tally_close(ra);
    tally_close(rb);
    assert_int_equal(tally("--data %s forks", b), 0);
    assert_output_has("signed two histories: its ops 4..4 and 4..4 (this replica: it takes no "
                      "writes; start it as a new replica)");
    assert_output_has("'s 2 histories took 40 beyond what it held from account 0x7 (ledger 1; "
                      "at most 50)");
    assert_output_has("  statement  74616c6c792072756e207631"); /* "tally run v1" */
    assert_int_equal(tally("--data %s status", b), 0);
    assert_output_has("forks        1 (see: tally forks)");
    assert_int_equal(tally("--data %s account create 4 --ledger 1", b), 1);
    assert_output_has("ORIGIN_FORKED");
    assert_int_equal(tally("--data %s --json forks", b), 0);
    assert_output_has("\"self\":true");
    assert_int_equal(tally("%s forks", ta), 0); /* the original has not met the copy */
    assert_output_has("no forks");
    remove_dir(a);
    remove_dir(b);
}

/* The authority's two commands, which run here: an authority's files, written once; a
 * certificate that an admitted replica takes; and arguments that do not make sense refused. */
static void an_authority_is_made_and_admits_a_replica(void **state) {
    (void)state;
    char dir[] = "/tmp/tally-cli-authority-XXXXXX";
    assert_non_null(mkdtemp(dir));
    assert_int_equal(tally("cluster init blue --out %s/auth", dir), 0);
    assert_output_has("authority.key (keep it offline");
    char path[128];
    struct stat st;
    snprintf(path, sizeof path, "%s/auth/authority.key", dir);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    snprintf(path, sizeof path, "%s/auth/authority.pem", dir);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(tally("cluster init blue --out %s/auth", dir), 1); /* nothing overwritten */
    assert_int_equal(tally("--data %s cluster init blue --out %s/x", dir, dir), 2);

    FILE *f = fopen(path, "r");
    static char authority[8192];
    size_t n = fread(authority, 1, sizeof authority - 1, f);
    fclose(f);
    authority[n] = '\0';
    tally_options o = {
        .replica_id = 7, .authority = (const uint8_t *)authority, .authority_len = n};
    tally_replica *r;
    assert_result(tally_open(&o, &r), TALLY_OK);
    tally_admission a;
    assert_result(tally_admission_of(r, &a), TALLY_OK);
    char key[65];
    for (int i = 0; i < 32; i++) {
        snprintf(key + 2 * i, 3, "%02x", a.public_key[i]);
    }
    assert_int_equal(
        tally("replica admit 7 --public-key %s --authority %s/auth --out %s/7.pem", key, dir, dir),
        0);
    assert_output_has("OK: replica 7 is admitted");
    snprintf(path, sizeof path, "%s/7.pem", dir);
    f = fopen(path, "r");
    static char cert[8192];
    n = fread(cert, 1, sizeof cert - 1, f);
    fclose(f);
    assert_result(tally_set_certificate(r, (const uint8_t *)cert, n), TALLY_OK);
    tally_account acct = account(1, 1, 0);
    assert_result(tally_create_account(r, &acct), TALLY_OK);
    tally_close(r);
    /* to stdout without --out; refused: a bad id, key or time, a missing authority */
    assert_int_equal(
        tally("replica admit 8 --public-key %s --authority %s/auth --read-only", key, dir), 0);
    assert_output_has("-----BEGIN CERTIFICATE-----");
    assert_int_equal(tally("replica admit 0 --public-key %s --authority %s/auth", key, dir), 2);
    assert_int_equal(tally("replica admit 8 --public-key 12ab --authority %s/auth", dir), 2);
    assert_int_equal(
        tally("replica admit 8 --public-key %s --authority %s/auth --until soon", key, dir), 2);
    assert_int_equal(tally("replica admit 8 --public-key %s --authority %s/none", key, dir), 1);
    /* a durable replica started before it was admitted takes its certificate with no restart */
    char data[96];
    snprintf(data, sizeof data, "%s/data", dir);
    r = open_in(data, 9, authority);
    assert_result(tally_admission_of(r, &a), TALLY_OK);
    tally_close(r);
    for (int i = 0; i < 32; i++) {
        snprintf(key + 2 * i, 3, "%02x", a.public_key[i]);
    }
    assert_int_equal(tally("--data %s account create 5 --ledger 1", data), 1);
    assert_output_has("NOT_ADMITTED");
    assert_int_equal(tally("--data %s certificate set %s/7.pem", data, dir), 1); /* replica 7's */
    assert_int_equal(
        tally("replica admit 9 --public-key %s --authority %s/auth --out %s/9.pem", key, dir, dir),
        0);
    assert_int_equal(tally("--data %s certificate set %s/9.pem", data, dir), 0);
    assert_output_has("OK: admitted");
    assert_int_equal(tally("--data %s account create 5 --ledger 1", data), 0);
    char small_order[65];
    memset(small_order, '0', 64);
    small_order[0] = '0';
    small_order[1] = '1'; /* the identity point */
    small_order[64] = '\0';
    assert_int_equal(tally("replica admit 8 --public-key %s --authority %s/auth", small_order, dir),
                     1);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_command_works_on_a_local_directory),
        cmocka_unit_test(commands_go_to_a_tallyd_with_server),
        cmocka_unit_test(status_prints_each_count_on_its_own_line),
        cmocka_unit_test(a_retried_create_that_finds_its_work_done_exits_0),
        cmocka_unit_test(transfer_info_names_the_pending_a_post_or_void_settles),
        cmocka_unit_test(unknown_flags_and_repeated_options_are_usage_errors),
        cmocka_unit_test(a_reply_is_read_up_to_its_limit_and_no_further),
        cmocka_unit_test(a_server_that_never_answers_is_given_up_on),
        cmocka_unit_test(each_command_has_its_own_help_which_needs_no_server),
        cmocka_unit_test(a_forked_directory_shows_its_proof_and_takes_no_writes),
        cmocka_unit_test(an_authority_is_made_and_admits_a_replica),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
