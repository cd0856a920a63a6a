/*
 * test_tallyd.c — tallyd as a process: started by the test on free loopback ports, driven over
 * its control port, stopped with signals, killed with SIGKILL.
 */
#include "support.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "net/frame.h"
#include "net/session.h"

typedef struct server {
    pid_t pid;
    int log_fd; /* its stderr */
    int sync_port, control_port;
    int ctl; /* a control connection */
    char log[16384];
    size_t log_len;
} server;

/* Every server still running, so that a failed test does not leave any behind (a leftover would
 * hold ctest's output pipe open and hang the run). */
static pid_t running[16];

static void track(pid_t pid, bool on) {
    for (int i = 0; i < 16; i++) {
        if (on ? running[i] == 0 : running[i] == pid) {
            running[i] = on ? pid : 0;
            return;
        }
    }
}

static int kill_leftovers(void **state) {
    (void)state;
    for (int i = 0; i < 16; i++) {
        if (running[i] != 0) {
            kill(running[i], SIGKILL);
            waitpid(running[i], NULL, 0);
            running[i] = 0;
        }
    }
    return 0;
}

/* Reads the server's log until a line contains `want` (or it exits, or 5 s pass). */
static bool read_log_until(server *s, const char *want) {
    for (int waited = 0; waited < 5000; waited += 5) {
        char buf[1024];
        ssize_t n = read(s->log_fd, buf, sizeof buf);
        if (n > 0 && s->log_len + (size_t)n >= sizeof s->log - 1) {
            /* full: keep the newer half, so that what comes now is still seen */
            size_t keep = sizeof s->log / 2;
            memmove(s->log, s->log + s->log_len - keep, keep);
            s->log_len = keep;
        }
        if (n > 0 && s->log_len + (size_t)n < sizeof s->log - 1) {
            memcpy(s->log + s->log_len, buf, (size_t)n);
            s->log_len += (size_t)n;
            s->log[s->log_len] = '\0';
        }
        if (strstr(s->log, want) != NULL) {
            return true;
        }
        if (n == 0) {
            return false; /* it exited */
        }
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
    }
    return false;
}

/* Starts tallyd with the given arguments (NULL-terminated); returns its exit status if it
 * exits before it is ready, else -1 with s filled in. */
static int start(server *s, const char *const *args) {
    memset(s, 0, sizeof *s);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    s->pid = fork();
    assert_true(s->pid >= 0);
    if (s->pid == 0) {
        dup2(fds[1], 2);
        close(fds[0]);
        const char *argv[32] = {TALLYD_PATH};
        int n = 1;
        for (const char *const *a = args; *a != NULL && n < 31; a++) {
            argv[n++] = *a;
        }
        argv[n] = NULL;
        execv(TALLYD_PATH, (char *const *)argv);
        _exit(127);
    }
    close(fds[1]);
    track(s->pid, true);
    s->log_fd = fds[0];
    fcntl(s->log_fd, F_SETFL, O_NONBLOCK);
    if (!read_log_until(s, "ready: ")) {
        int status;
        waitpid(s->pid, &status, 0);
        track(s->pid, false);
        close(s->log_fd);
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
    }
    const char *ready = strstr(s->log, "ready: ");
    assert_int_equal(sscanf(ready, "ready: sync port %d, control port %d", &s->sync_port,
                            &s->control_port),
                     2);
    s->ctl = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s->control_port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(s->ctl, (struct sockaddr *)&sa, sizeof sa), 0);
    return -1;
}

/* Starts tallyd on dir, listening and controlled on free loopback ports, with the flags in
 * `extra` (NULL-terminated) after those. */
static int start_on(server *s, const char *dir, const char *const *extra) {
    const char *args[32] = {"--data", dir, "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0"};
    int n = 6;
    for (; *extra != NULL && n < 31; extra++) {
        args[n++] = *extra;
    }
    args[n] = NULL;
    return start(s, args);
}

/* Sends a request, returns the reply (the caller json_decref's it). */
static json_t *ask(server *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static json_t *ask(server *s, const char *fmt, ...) {
    char line[4096];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    line[n++] = '\n';
    assert_int_equal(write(s->ctl, line, (size_t)n), n);
    static char reply[1 << 16];
    size_t got = 0;
    while (got < sizeof reply - 1) {
        ssize_t k = read(s->ctl, reply + got, 1);
        assert_true(k == 1);
        if (reply[got] == '\n') {
            break;
        }
        got++;
    }
    reply[got] = '\0';
    json_error_t err;
    json_t *j = json_loads(reply, 0, &err);
    assert_non_null(j);
    return j;
}

static const char *str(json_t *j, const char *key) {
    const char *v = json_string_value(json_object_get(j, key));
    return v != NULL ? v : "";
}

static int stop(server *s, int sig) {
    close(s->ctl);
    kill(s->pid, sig);
    int status;
    assert_int_equal(waitpid(s->pid, &status, 0), s->pid);
    track(s->pid, false);
    if (sig == SIGTERM) {
        read_log_until(s, "stopped");
    }
    close(s->log_fd);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static char *fresh_dir(void) {
    static char dirs[8][64];
    static int next;
    char *d = dirs[next++ % 8];
    snprintf(d, 64, "/tmp/tally-tallyd-XXXXXX");
    assert_non_null(mkdtemp(d));
    return d;
}

static void remove_dir(const char *d) {
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", d);
    assert_int_equal(system(cmd), 0);
}

static void the_control_port_runs_every_request(void **state) {
    (void)state;
    char *dir = fresh_dir();
    server s;
    const char *none[] = {NULL};
    assert_int_equal(start_on(&s, dir, none), -1);
    json_t *j = ask(&s, "{\"id\":1,\"op\":\"create_account\",\"account\":{\"id\":1,\"ledger\":1}}");
    assert_string_equal(str(j, "result"), "OK");
    assert_int_equal(json_integer_value(json_object_get(j, "id")), 1);
    json_decref(j);
    j = ask(&s, "{\"op\":\"create_account\",\"account\":{\"id\":\"0xA\",\"ledger\":1,"
                "\"flags\":[\"debits_must_not_exceed_credits\"]}}");
    assert_string_equal(str(j, "result"), "OK");
    json_decref(j);
    j = ask(&s, "{\"op\":\"create_transfers\",\"transfers\":[{\"id\":5,\"debit\":1,\"credit\":10,"
                "\"amount\":70,\"ledger\":1,\"code\":1},{\"id\":6,\"debit\":10,\"credit\":1,"
                "\"amount\":71,\"ledger\":1,\"code\":1}]}");
    json_t *results = json_object_get(j, "results");
    assert_string_equal(json_string_value(json_array_get(results, 0)), "OK");
    assert_string_equal(json_string_value(json_array_get(results, 1)), "EXCEEDS_CREDITS");
    json_decref(j);
    j = ask(&s, "{\"op\":\"account\",\"account\":10}");
    json_t *account = json_object_get(j, "account");
    assert_int_equal(json_integer_value(json_object_get(account, "credits_posted")), 70);
    assert_int_equal(json_integer_value(json_object_get(account, "rights_here")), 70);
    json_decref(j);
    j = ask(&s, "{\"op\":\"transfer\",\"transfer\":\"5\"}");
    assert_string_equal(str(json_object_get(j, "transfer"), "credit"), "0xa");
    json_decref(j);
    j = ask(&s, "{\"op\":\"grant\",\"account\":10,\"to\":99,\"amount\":20}");
    assert_string_equal(str(j, "result"), "REPLICA_UNKNOWN"); /* no op of 99 has come here */
    json_decref(j);
    j = ask(&s, "{\"op\":\"conflicts\"}");
    assert_int_equal(json_array_size(json_object_get(j, "conflicts")), 0);
    json_decref(j);
    j = ask(&s, "{\"op\":\"status\"}");
    assert_int_equal(json_integer_value(json_object_get(j, "ops")), 3);
    assert_int_equal(strlen(str(j, "digest")), 32);
    json_decref(j);
    /* bad requests: a JSON error with the result's name and a message, never silence */
    j = ask(&s, "this is not json");
    assert_string_equal(str(j, "error"), "EINVAL");
    json_decref(j);
    j = ask(&s, "{\"id\":\"x\",\"op\":\"launch\"}");
    assert_non_null(strstr(str(j, "message"), "unknown op"));
    assert_string_equal(str(j, "id"), "x");
    json_decref(j);
    j = ask(&s, "{\"op\":\"create_account\",\"account\":{\"id\":3,\"ledger\":1,\"colour\":1}}");
    assert_non_null(strstr(str(j, "message"), "colour"));
    json_decref(j);
    j = ask(&s, "{\"op\":\"create_account\",\"account\":{\"id\":0,\"ledger\":1}}");
    assert_string_equal(str(j, "result"), "ID_ZERO");
    json_decref(j);
    j = ask(&s, "{\"op\":\"account\",\"account\":\"0xZZ\"}");
    assert_string_equal(str(j, "error"), "EINVAL");
    json_decref(j);
    j = ask(&s, "{\"op\":\"account\",\"account\":12345}");
    assert_string_equal(str(j, "error"), "NOT_FOUND");
    json_decref(j);
    assert_int_equal(stop(&s, SIGTERM), 0);
    assert_non_null(strstr(s.log, "journal synced"));
    remove_dir(dir);
}

static void a_request_id_and_the_object_id_both_come_back(void **state) {
    (void)state;
    char *dir = fresh_dir();
    server s;
    const char *none[] = {NULL};
    assert_int_equal(start_on(&s, dir, none), -1);
    json_decref(ask(&s, "{\"op\":\"create_account\",\"account\":{\"id\":1,\"ledger\":1}}"));
    json_decref(ask(&s, "{\"op\":\"create_account\",\"account\":{\"id\":\"0x100\","
                        "\"ledger\":1}}"));
    json_decref(ask(&s, "{\"op\":\"create_transfers\",\"transfers\":[{\"id\":\"0x200\","
                        "\"debit\":1,\"credit\":\"0x100\",\"amount\":3,\"ledger\":1}]}"));
    json_t *j = ask(&s, "{\"op\":\"account\",\"account\":\"0x100\",\"id\":\"req-1\"}");
    assert_string_equal(str(j, "id"), "req-1");
    assert_string_equal(str(json_object_get(j, "account"), "id"), "0x100");
    json_decref(j);
    j = ask(&s, "{\"op\":\"transfer\",\"transfer\":\"0x200\",\"id\":{\"n\":2}}");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "id"), "n")), 2);
    assert_string_equal(str(json_object_get(j, "transfer"), "id"), "0x200");
    json_decref(j);
    /* without a request id, the reply's top level has none either */
    j = ask(&s, "{\"op\":\"account\",\"account\":\"0x100\"}");
    assert_null(json_object_get(j, "id"));
    assert_string_equal(str(json_object_get(j, "account"), "id"), "0x100");
    json_decref(j);
    assert_int_equal(stop(&s, SIGTERM), 0);
    remove_dir(dir);
}

/* Writes a config file for dir, listening on any port, with one more key (`extra`, JSON). */
static void write_config(const char *path, const char *dir, const char *extra) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "{\"data\": \"%s\", \"listen\": \"127.0.0.1:0\", %s}", dir, extra);
    fclose(f);
}

static void bad_flags_and_configs_are_refused_naming_what_is_wrong(void **state) {
    (void)state;
    char *dir = fresh_dir();
    server s;
    const char *no_data[] = {"--listen", "127.0.0.1:0", NULL};
    assert_int_equal(start(&s, no_data), 2);
    assert_non_null(strstr(s.log, "--data"));
    const char *bad_flag[] = {"--data", dir, "--listen", "127.0.0.1:0", "--frobnicate", "1", NULL};
    assert_int_equal(start(&s, bad_flag), 2);
    assert_non_null(strstr(s.log, "--frobnicate"));
    const char *bad_sync[] = {"--data", dir, "--listen", "127.0.0.1:0", "--sync", "sometimes",
                              NULL};
    assert_int_equal(start(&s, bad_sync), 2);
    char config[128];
    snprintf(config, sizeof config, "%s/tallyd.json", dir);
    write_config(config, dir, "\"colour\": \"blue\"");
    const char *bad_key[] = {"--config", config, NULL};
    assert_int_equal(start(&s, bad_key), 2);
    assert_non_null(strstr(s.log, "unknown key \"colour\""));
    write_config(config, dir, "\"anti_entropy_ms\": -3");
    assert_int_equal(start(&s, bad_key), 2);
    assert_non_null(strstr(s.log, "bad value for \"anti_entropy_ms\""));
    write_config(config, dir, "\"capacity_transfers\": \"lots\"");
    assert_int_equal(start(&s, bad_key), 2);
    assert_non_null(strstr(s.log, "bad value for \"capacity_transfers\""));
    const char *bad_capacity[] = {"--data", dir, "--listen", "127.0.0.1:0", "--capacity-accounts",
                                  "-5", NULL};
    assert_int_equal(start(&s, bad_capacity), 2);
    assert_non_null(strstr(s.log, "--capacity-accounts"));
    /* more than a replica can hold: it does not start, and says why */
    const char *too_big[] = {"--capacity-transfers", "100000000000", NULL};
    assert_int_equal(start_on(&s, dir, too_big), 1);
    assert_non_null(strstr(s.log, "cannot reserve room"));
    assert_non_null(strstr(s.log, "ETOOBIG"));
    const char *sized[] = {"--capacity-accounts", "100", "--capacity-transfers", "10000", NULL};
    assert_int_equal(start_on(&s, dir, sized), -1);
    assert_non_null(strstr(s.log, "reserved room for 100 accounts and 10000 transfers"));
    json_t *j0 = ask(&s, "{\"op\":\"create_account\",\"account\":{\"id\":7,\"ledger\":1}}");
    assert_string_equal(str(j0, "result"), "OK");
    json_decref(j0);
    assert_int_equal(stop(&s, SIGTERM), 0);
    write_config(config, dir, "\"control\": \"127.0.0.1:0\"");
    assert_int_equal(start(&s, bad_key), -1); /* a good config starts */
    assert_int_equal(stop(&s, SIGINT), 0);
    const char *bad_peer[] = {"--peer", "nowhere", NULL};
    assert_int_equal(start_on(&s, dir, bad_peer), 1);
    assert_non_null(strstr(s.log, "bad peer"));
    const char *bad_name[] = {"--peer", "no_such_host:7400", NULL};
    assert_int_equal(start_on(&s, dir, bad_name), 1);
    assert_non_null(strstr(s.log, "bad peer"));
    /* a peer by name is taken (looked up, and retried, after the start) */
    const char *named[] = {"--peer", "localhost:1", NULL};
    assert_int_equal(start_on(&s, dir, named), -1);
    json_t *j = ask(&s, "{\"op\":\"status\"}");
    json_t *peer = json_array_get(json_object_get(j, "peers"), 0);
    assert_string_equal(json_string_value(json_object_get(peer, "address")), "localhost:1");
    json_decref(j);
    assert_int_equal(stop(&s, SIGTERM), 0);
    remove_dir(dir);
}

static void a_second_tallyd_on_the_same_directory_refuses_to_start(void **state) {
    (void)state;
    char *dir = fresh_dir();
    server a, b;
    const char *none[] = {NULL};
    assert_int_equal(start_on(&a, dir, none), -1);
    assert_int_equal(start_on(&b, dir, none), 1);
    assert_non_null(strstr(b.log, "in use by another tallyd"));
    assert_int_equal(stop(&a, SIGTERM), 0);
    remove_dir(dir);
}

static bool digests_equal(server *s, int n) {
    char first[64] = "";
    for (int i = 0; i < n; i++) {
        json_t *j = ask(&s[i], "{\"op\":\"status\"}");
        bool same = i == 0 || strcmp(first, str(j, "digest")) == 0;
        if (i == 0) {
            snprintf(first, sizeof first, "%s", str(j, "digest"));
        }
        json_decref(j);
        if (!same) {
            return false;
        }
    }
    return true;
}

static bool wait_converged(server *s, int n) {
    for (int i = 0; i < 500; i++) {
        if (digests_equal(s, n)) {
            return true;
        }
        struct timespec ts = {0, 20000000};
        nanosleep(&ts, NULL);
    }
    return false;
}

/* Three servers, a load of transfers, one of them killed with SIGKILL in the middle and
 * restarted: nothing it acknowledged is lost, and all three converge. */
static void a_killed_server_restarts_with_everything_it_acknowledged(void **state) {
    (void)state;
    char *dirs[3] = {fresh_dir(), fresh_dir(), fresh_dir()};
    server s[3];
    const char *first[] = {"--anti-entropy-ms", "100", NULL};
    assert_int_equal(start_on(&s[0], dirs[0], first), -1);
    char peer0[32];
    snprintf(peer0, sizeof peer0, "127.0.0.1:%d", s[0].sync_port);
    for (int i = 1; i < 3; i++) {
        const char *to_peer0[] = {"--peer", peer0, "--anti-entropy-ms", "100", NULL};
        assert_int_equal(start_on(&s[i], dirs[i], to_peer0), -1);
    }
    json_decref(ask(&s[0], "{\"op\":\"create_account\",\"account\":{\"id\":1,\"ledger\":1}}"));
    json_decref(ask(&s[0], "{\"op\":\"create_account\",\"account\":{\"id\":2,\"ledger\":1}}"));
    assert_true(wait_converged(s, 3));
    /* a load on server 2 (index 1); each acknowledged transfer is remembered */
    int acknowledged = 0;
    for (int k = 0; k < 200; k++) {
        json_t *j = ask(&s[1], "{\"op\":\"create_transfers\",\"transfers\":[{\"id\":%d,"
                               "\"debit\":1,\"credit\":2,\"amount\":%d,\"ledger\":1,\"code\":1}]}",
                        1000 + k, 1 + k);
        if (strcmp(json_string_value(json_array_get(json_object_get(j, "results"), 0)), "OK") ==
            0) {
            acknowledged = k + 1;
        }
        json_decref(j);
    }
    assert_int_equal(acknowledged, 200);
    assert_int_equal(stop(&s[1], SIGKILL), 128 + SIGKILL);
    const char *again[] = {"--peer", peer0, "--anti-entropy-ms", "100", NULL};
    assert_int_equal(start_on(&s[1], dirs[1], again), -1);
    for (int k = 0; k < acknowledged; k++) {
        json_t *j = ask(&s[1], "{\"op\":\"transfer\",\"transfer\":%d}", 1000 + k);
        json_t *t = json_object_get(j, "transfer");
        assert_int_equal(json_integer_value(json_object_get(t, "amount")), 1 + k);
        json_decref(j);
    }
    assert_true(wait_converged(s, 3));
    for (int i = 0; i < 3; i++) {
        assert_int_equal(stop(&s[i], SIGTERM), 0);
        remove_dir(dirs[i]);
    }
}

/* A data directory whose replica has the id given, for a tallyd to open; in the cluster whose
 * authority's certificate is `authority` (NULL: none), and then *key is its public key. */
static char *dir_for(uint64_t replica_id, const char *authority, uint8_t key[32]) {
    char *dir = fresh_dir();
    tally_options o;
    memset(&o, 0, sizeof o);
    o.dir = dir;
    o.replica_id = replica_id;
    o.sync_mode = TALLY_SYNC_COMMIT;
    o.authority = (const uint8_t *)authority;
    o.authority_len = authority != NULL ? strlen(authority) : 0;
    tally_replica *r;
    assert_result(tally_open(&o, &r), TALLY_OK);
    tally_admission a;
    assert_result(tally_admission_of(r, &a), TALLY_OK);
    if (key != NULL) {
        memcpy(key, a.public_key, 32);
    }
    tally_close(r);
    return dir;
}

static char *dir_with_replica(uint64_t replica_id) {
    return dir_for(replica_id, NULL, NULL);
}

/* No JSON number in j, at any depth, is past 2^53 - 1, where JSON readers start to round. */
static void assert_every_number_exact_in_javascript(json_t *j) {
    const char *key;
    json_t *v;
    size_t i;
    if (json_is_integer(j)) {
        /* no reply has a negative number; cmocka's ranges are unsigned */
        assert_in_range(json_integer_value(j), 0, (UINT64_C(1) << 53) - 1);
    } else if (json_is_object(j)) {
        json_object_foreach(j, key, v) {
            assert_every_number_exact_in_javascript(v);
        }
    } else if (json_is_array(j)) {
        json_array_foreach(j, i, v) {
            assert_every_number_exact_in_javascript(v);
        }
    }
}

/* ask(), and the reply holds no number a JavaScript client would round. */
#define ask_exact(s, ...) exact_reply(ask(s, __VA_ARGS__))
static json_t *exact_reply(json_t *j) {
    assert_every_number_exact_in_javascript(j);
    return j;
}

/* The holder entry of `replica` in an account reply, or NULL. */
static json_t *holder(json_t *reply, const char *replica) {
    size_t i;
    json_t *h;
    json_array_foreach(json_object_get(json_object_get(reply, "account"), "holders"), i, h) {
        if (strcmp(str(h, "replica"), replica) == 0) {
            return h;
        }
    }
    return NULL;
}

/* Replica ids near 2^64 and just past 2^53, and an amount of 2^60, through every reply that
 * carries them: each comes back as a string with every digit, and every id is read from a
 * JSON number, a decimal string or a hex string alike. */
static void ids_and_amounts_past_2_to_the_53_come_back_exactly(void **state) {
    (void)state;
    const char *a_id = "18446744073709551557", *b_id = "9007199254740993"; /* 2^64-59, 2^53+1 */
    char *dirs[2] = {dir_with_replica(UINT64_MAX - 58), dir_with_replica((UINT64_C(1) << 53) + 1)};
    server s[2];
    const char *fast[] = {"--anti-entropy-ms", "100", NULL};
    for (int i = 0; i < 2; i++) {
        assert_int_equal(start_on(&s[i], dirs[i], fast), -1);
        /* while they are apart: the same accounts, and transfer 7 made differently on each */
        for (int a = 1; a <= 2; a++) {
            json_decref(ask(&s[i], "{\"op\":\"create_account\",\"account\":{\"id\":%d,"
                                   "\"ledger\":1}}", a));
        }
        json_t *j = ask(&s[i], "{\"op\":\"create_transfers\",\"transfers\":[{\"id\":7,"
                               "\"debit\":1,\"credit\":2,\"amount\":%d,\"ledger\":1}]}", i + 1);
        assert_string_equal(json_string_value(json_array_get(json_object_get(j, "results"), 0)),
                            "OK");
        json_decref(j);
    }
    json_t *j = ask(&s[0], "{\"op\":\"create_account\",\"account\":{\"id\":\"0xA\",\"ledger\":1,"
                           "\"flags\":[\"debits_must_not_exceed_credits\"]}}");
    assert_string_equal(str(j, "result"), "OK");
    json_decref(j);
    j = ask(&s[0], "{\"op\":\"create_transfers\",\"transfers\":[{\"id\":8,\"debit\":1,"
                   "\"credit\":\"0xA\",\"amount\":\"1152921504606846976\",\"ledger\":1}]}");
    assert_string_equal(json_string_value(json_array_get(json_object_get(j, "results"), 0)), "OK");
    json_decref(j);
    j = ask(&s[1], "{\"op\":\"add_peer\",\"address\":\"127.0.0.1:%d\"}", s[0].sync_port);
    assert_string_equal(str(j, "result"), "OK");
    json_decref(j);
    assert_true(wait_converged(s, 2));

    j = ask_exact(&s[0], "{\"op\":\"status\"}");
    assert_string_equal(str(j, "replica_id"), a_id);
    assert_non_null(json_object_get(json_object_get(j, "version_vector"), a_id));
    assert_non_null(json_object_get(json_object_get(j, "version_vector"), b_id));
    json_decref(j);
    bool ready = false;
    for (int tries = 0; tries < 250 && !ready; tries++) {
        j = ask_exact(&s[1], "{\"op\":\"status\"}");
        json_t *peer = json_array_get(json_object_get(j, "peers"), 0);
        ready = strcmp(str(peer, "state"), "ready") == 0;
        if (ready) {
            assert_string_equal(str(peer, "replica"), a_id);
        }
        json_decref(j);
        struct timespec ts = {0, 20000000};
        nanosleep(&ts, NULL);
    }
    assert_true(ready);

    /* grants to replica b, named as a string, a JSON number and in hex */
    const char *to[] = {"\"9007199254740993\"", "9007199254740993", "\"0x20000000000001\""};
    for (int k = 0; k < 3; k++) {
        j = ask_exact(&s[0], "{\"op\":\"grant\",\"account\":\"0xA\",\"to\":%s,\"amount\":%d}",
                      to[k], 1 << k);
        assert_string_equal(str(j, "result"), "OK");
        json_decref(j);
    }
    j = ask_exact(&s[0], "{\"op\":\"account\",\"account\":\"0xA\"}");
    assert_string_equal(str(json_object_get(j, "account"), "credits_posted"),
                        "1152921504606846976");
    assert_non_null(holder(j, b_id));
    assert_int_equal(json_integer_value(json_object_get(holder(j, b_id), "rights")), 7);
    assert_non_null(holder(j, a_id));
    assert_string_equal(str(holder(j, a_id), "rights"), "1152921504606846969");
    json_decref(j);
    j = ask_exact(&s[0], "{\"op\":\"transfer\",\"transfer\":8}");
    assert_string_equal(str(json_object_get(j, "transfer"), "origin"), a_id);
    assert_string_equal(str(json_object_get(j, "transfer"), "amount"), "1152921504606846976");
    json_decref(j);

    /* transfer 7's conflict names both replicas, each with every digit */
    j = ask_exact(&s[0], "{\"op\":\"conflicts\"}");
    size_t i;
    json_t *c;
    bool found = false;
    json_array_foreach(json_object_get(j, "conflicts"), i, c) {
        if (strcmp(str(c, "id"), "0x7") == 0) {
            const char *winner = json_string_value(json_array_get(json_object_get(c, "winner"), 0));
            const char *other = json_string_value(json_array_get(json_object_get(c, "other"), 0));
            assert_non_null(winner);
            assert_non_null(other);
            assert_true((strcmp(winner, a_id) == 0 && strcmp(other, b_id) == 0) ||
                        (strcmp(winner, b_id) == 0 && strcmp(other, a_id) == 0));
            found = true;
        }
    }
    assert_true(found);
    json_decref(j);
    for (int k = 0; k < 2; k++) {
        assert_int_equal(stop(&s[k], SIGTERM), 0);
        remove_dir(dirs[k]);
    }
}

/* The result of the first transfer in a create_transfers reply. */
static const char *first_result(json_t *j) {
    return json_string_value(json_array_get(json_object_get(j, "results"), 0));
}

/* Whether server s has a ready session with replica `id` (a decimal string). */
static bool ready_with(server *s, const char *id) {
    json_t *j = ask(s, "{\"op\":\"status\"}");
    bool ready = false;
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(j, "peers"), i, p) {
        ready |= strcmp(str(p, "replica"), id) == 0 && strcmp(str(p, "state"), "ready") == 0;
    }
    json_decref(j);
    return ready;
}

/* Issue 12, items 5 and 7 through the control port: a wallet opened bounded on one server and
 * unbounded on another while apart stays the bounded wallet for writes by id; the other
 * incarnation is listed with its balance and reached by naming its bounds; and a grant goes
 * to a replica heard from, a peer on the line, or one the caller vouches for. */
static void the_control_port_names_incarnations_and_grants_only_to_known_replicas(void **state) {
    (void)state;
    char *dirs[3] = {fresh_dir(), fresh_dir(), fresh_dir()};
    server s[3];
    const char *fast[] = {"--anti-entropy-ms", "100", NULL};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(start_on(&s[i], dirs[i], fast), -1);
    }
    for (int i = 0; i < 2; i++) {
        json_decref(ask(&s[i], "{\"op\":\"create_account\",\"account\":{\"id\":1,\"ledger\":1}}"));
    }
    json_t *j = ask(&s[0], "{\"op\":\"create_account\",\"account\":{\"id\":\"0x77\",\"ledger\":1,"
                           "\"flags\":[\"debits_must_not_exceed_credits\"]}}");
    assert_string_equal(str(j, "result"), "OK");
    json_decref(j);
    j = ask(&s[1], "{\"op\":\"create_account\",\"account\":{\"id\":\"0x77\",\"ledger\":1}}");
    assert_string_equal(str(j, "result"), "OK");
    json_decref(j);
    j = ask(&s[0], "{\"op\":\"create_transfers\",\"transfers\":[{\"id\":60,\"debit\":1,"
                   "\"credit\":\"0x77\",\"amount\":100,\"ledger\":1}]}");
    assert_string_equal(first_result(j), "OK");
    json_decref(j);
    j = ask(&s[1], "{\"op\":\"create_transfers\",\"transfers\":[{\"id\":61,\"debit\":1,"
                   "\"credit\":\"0x77\",\"amount\":7,\"ledger\":1}]}");
    assert_string_equal(first_result(j), "OK");
    json_decref(j);
    for (int i = 1; i < 3; i++) {
        j = ask(&s[i], "{\"op\":\"add_peer\",\"address\":\"127.0.0.1:%d\"}", s[0].sync_port);
        assert_string_equal(str(j, "result"), "OK");
        json_decref(j);
    }
    assert_true(wait_converged(s, 3));
    /* the other incarnation, listed with what it holds */
    j = ask(&s[0], "{\"op\":\"conflicts\"}");
    json_t *c = json_array_get(json_object_get(j, "conflicts"), 0);
    assert_string_equal(str(c, "kind"), "account");
    assert_int_equal(json_integer_value(json_object_get(c, "ledger")), 1);
    assert_int_equal(json_array_size(json_object_get(c, "flags")), 0);
    assert_int_equal(json_integer_value(json_object_get(c, "credits_posted")), 7);
    json_decref(j);
    /* a debit of a million from "0x77" by id: the bounded wallet refuses it on either server */
    for (int i = 0; i < 2; i++) {
        j = ask(&s[i], "{\"op\":\"create_transfers\",\"transfers\":[{\"id\":%d,"
                       "\"debit\":\"0x77\",\"credit\":1,\"amount\":1000000,\"ledger\":1}]}",
                62 + i);
        assert_string_equal(first_result(j), "EXCEEDS_CREDITS");
        json_decref(j);
    }
    /* the unbounded incarnation's 7, reached by naming its bounds */
    j = ask(&s[1], "{\"op\":\"create_transfers\",\"transfers\":[{\"id\":64,\"debit\":\"0x77\","
                   "\"credit\":1,\"amount\":7,\"ledger\":1,\"debit_bound\":[],"
                   "\"credit_bound\":[]}]}");
    assert_string_equal(first_result(j), "OK");
    json_decref(j);
    j = ask(&s[1], "{\"op\":\"transfer\",\"transfer\":64}");
    assert_int_equal(json_array_size(json_object_get(json_object_get(j, "transfer"), "debit_bound")),
                     0);
    json_decref(j);
    /* grants: server 2 has written nothing, but is a peer on the line; 12345 is nobody */
    j = ask(&s[2], "{\"op\":\"status\"}");
    char third[32];
    snprintf(third, sizeof third, "%s", str(j, "replica_id"));
    json_decref(j);
    bool ready = false;
    for (int tries = 0; tries < 250 && !(ready = ready_with(&s[0], third)); tries++) {
        struct timespec ts = {0, 20000000};
        nanosleep(&ts, NULL);
    }
    assert_true(ready);
    j = ask(&s[0], "{\"op\":\"grant\",\"account\":\"0x77\",\"to\":\"%s\",\"amount\":10}", third);
    assert_string_equal(str(j, "result"), "OK");
    json_decref(j);
    j = ask(&s[0], "{\"op\":\"grant\",\"account\":\"0x77\",\"to\":12345,\"amount\":10}");
    assert_string_equal(str(j, "result"), "REPLICA_UNKNOWN");
    json_decref(j);
    j = ask(&s[0], "{\"op\":\"grant\",\"account\":\"0x77\",\"to\":12345,\"amount\":10,"
                   "\"to_unknown\":true}");
    assert_string_equal(str(j, "result"), "OK");
    json_decref(j);
    j = ask(&s[0], "{\"op\":\"grant\",\"account\":\"0x77\",\"to\":12345,\"amount\":10,"
                   "\"to_unknown\":1}");
    assert_false(json_is_true(json_object_get(j, "ok")));
    json_decref(j);
    j = ask(&s[0], "{\"op\":\"grant\",\"account\":1,\"to\":12345,\"amount\":1,"
                   "\"to_unknown\":true}");
    assert_string_equal(str(j, "result"), "ACCOUNT_UNBOUNDED");
    json_decref(j);
    assert_true(wait_converged(s, 3));
    for (int k = 0; k < 3; k++) {
        assert_int_equal(stop(&s[k], SIGTERM), 0);
        remove_dir(dirs[k]);
    }
}

/* Issue 12, item 14: a pending with a 300 ms timeout on a tallyd that receives nothing more is
 * voided on time by the server itself, its reservation back, not at the next write. */
static void an_idle_tallyd_voids_a_pending_when_its_timeout_passes(void **state) {
    (void)state;
    char *dir = fresh_dir();
    server s;
    const char *none[] = {NULL};
    assert_int_equal(start_on(&s, dir, none), -1);
    json_decref(ask(&s, "{\"op\":\"create_account\",\"account\":{\"id\":1,\"ledger\":1}}"));
    json_decref(ask(&s, "{\"op\":\"create_account\",\"account\":{\"id\":2,\"ledger\":1,"
                        "\"flags\":[\"debits_must_not_exceed_credits\"]}}"));
    json_t *j = ask(&s, "{\"op\":\"create_transfers\",\"transfers\":[{\"id\":1,\"debit\":1,"
                        "\"credit\":2,\"amount\":100,\"ledger\":1},{\"id\":2,\"debit\":2,"
                        "\"credit\":1,\"amount\":70,\"ledger\":1,\"flags\":[\"pending\"],"
                        "\"timeout_ms\":300}]}");
    assert_string_equal(json_string_value(json_array_get(json_object_get(j, "results"), 1)), "OK");
    json_decref(j);
    struct timespec wait = {1, 500000000};
    nanosleep(&wait, NULL);
    j = ask(&s, "{\"op\":\"transfer\",\"transfer\":2}");
    assert_string_equal(str(json_object_get(j, "transfer"), "pending_state"), "timed_out");
    json_decref(j);
    j = ask(&s, "{\"op\":\"account\",\"account\":2}");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "account"),
                                                        "rights_here")),
                     100);
    json_decref(j);
    assert_int_equal(stop(&s, SIGTERM), 0);
    remove_dir(dir);
}

/* A number a status reply holds, as the control port gives it (a string past 2^53). */
static uint64_t status_u64(server *s, const char *key) {
    json_t *j = ask(s, "{\"op\":\"status\"}");
    json_t *v = json_object_get(j, key);
    uint64_t n = json_is_integer(v) ? (uint64_t)json_integer_value(v)
                                    : strtoull(json_string_value(v), NULL, 10);
    json_decref(j);
    return n;
}

/* The hold status shows, or "" when none. */
static void status_held(server *s, char *out, size_t size) {
    json_t *j = ask(s, "{\"op\":\"status\"}");
    snprintf(out, size, "%s", str(json_object_get(j, "held"), "hold"));
    json_decref(j);
}

/* One transfer of 1 from account 1 to 2 (ledger 1), by id: its result's name. */
static void transfer_result(server *s, int id, char *out, size_t size) {
    json_t *j = ask(s,
                    "{\"op\":\"create_transfers\",\"transfers\":[{\"id\":%d,\"debit\":1,"
                    "\"credit\":2,\"amount\":1,\"ledger\":1,\"code\":1}]}",
                    id);
    snprintf(out, size, "%s", json_string_value(json_array_get(json_object_get(j, "results"), 0)));
    json_decref(j);
}

static void copy_dir_to(const char *from, const char *to) {
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s && cp -r %s %s", to, from, to);
    assert_int_equal(system(cmd), 0);
}

/* A server's data directory restored from a backup that lacks what it wrote last: with no
 * peer in reach it refuses writes at once; with its peer in reach, the peer brings its ops
 * back and confirms it, and it writes with no fork; started with --restored new, it writes at
 * once as a new replica. A copy of its directory started on a second machine is held. Each
 * ends with the cluster converged and no fork. */
static void a_restored_or_copied_tallyd_never_signs_twice(void **state) {
    (void)state;
    char *hub_dir = fresh_dir(), *dir = fresh_dir(), *clone_dir = fresh_dir();
    char backup[96], kept[128], result[32], held[32];
    snprintf(backup, sizeof backup, "%s.backup", dir);
    server s[3];
    const char *hub_flags[] = {"--anti-entropy-ms", "100", NULL};
    assert_int_equal(start_on(&s[0], hub_dir, hub_flags), -1);
    char hub[32];
    snprintf(hub, sizeof hub, "127.0.0.1:%d", s[0].sync_port);
    const char *to_hub[] = {"--peer", hub, "--anti-entropy-ms", "100", NULL};
    const char *alone[] = {NULL};
    json_decref(ask(&s[0], "{\"op\":\"create_account\",\"account\":{\"id\":1,\"ledger\":1}}"));
    json_decref(ask(&s[0], "{\"op\":\"create_account\",\"account\":{\"id\":2,\"ledger\":1}}"));
    assert_int_equal(start_on(&s[1], dir, to_hub), -1);
    assert_true(wait_converged(s, 2));
    transfer_result(&s[1], 100, result, sizeof result);
    assert_string_equal(result, "OK");
    assert_true(wait_converged(s, 2));
    uint64_t id = status_u64(&s[1], "replica_id");
    assert_int_equal(stop(&s[1], SIGTERM), 0);
    copy_dir_to(dir, backup); /* last night's backup */
    assert_int_equal(start_on(&s[1], dir, to_hub), -1);
    transfer_result(&s[1], 101, result, sizeof result); /* after the backup, shared */
    assert_string_equal(result, "OK");
    assert_true(wait_converged(s, 2));
    assert_int_equal(stop(&s[1], SIGTERM), 0);

    /* restored, no peer in reach: held from the first write */
    copy_dir_to(backup, dir);
    assert_int_equal(start_on(&s[1], dir, alone), -1);
    assert_true(read_log_until(&s[1], "writes are held (MOVED)"));
    status_held(&s[1], held, sizeof held);
    assert_string_equal(held, "MOVED");
    transfer_result(&s[1], 102, result, sizeof result);
    assert_string_equal(result, "ORIGIN_HELD");
    assert_int_equal(stop(&s[1], SIGTERM), 0);

    /* restarted with its peer in reach: transfer 101 comes back, the peer answers, it writes */
    assert_int_equal(start_on(&s[1], dir, to_hub), -1);
    assert_true(read_log_until(&s[1], "a peer confirmed this replica's history"));
    transfer_result(&s[1], 103, result, sizeof result);
    assert_string_equal(result, "OK");
    assert_true(wait_converged(s, 2));
    assert_int_equal(status_u64(&s[0], "forks"), 0);

    /* its directory copied to a second machine while the original runs: held there, and the
     * hub, which sees both, does not confirm the copy */
    assert_int_equal(stop(&s[1], SIGTERM), 0);
    copy_dir_to(dir, clone_dir);
    assert_int_equal(start_on(&s[1], dir, to_hub), -1);
    transfer_result(&s[1], 105, result, sizeof result);
    assert_string_equal(result, "OK");
    assert_true(wait_converged(s, 2)); /* the original is connected to the hub */
    assert_int_equal(start_on(&s[2], clone_dir, to_hub), -1);
    assert_true(read_log_until(&s[2], "writes are held (MOVED)"));
    assert_true(read_log_until(&s[0], "is connected twice, once held"));
    transfer_result(&s[2], 104, result, sizeof result);
    assert_string_equal(result, "ORIGIN_HELD");
    assert_true(wait_converged(s, 3));
    status_held(&s[2], held, sizeof held);
    assert_string_equal(held, "MOVED");
    assert_int_equal(stop(&s[2], SIGTERM), 0);
    assert_int_equal(stop(&s[1], SIGTERM), 0);

    /* the backup again, started as a new replica: it writes at once, under a new id */
    copy_dir_to(backup, dir);
    const char *as_new[] = {"--peer", hub, "--anti-entropy-ms", "100", "--restored", "new", NULL};
    assert_int_equal(start_on(&s[1], dir, as_new), -1);
    assert_true(read_log_until(&s[1], "its data now runs as the new replica"));
    assert_true(status_u64(&s[1], "replica_id") != id);
    status_held(&s[1], held, sizeof held);
    assert_string_equal(held, "");
    transfer_result(&s[1], 106, result, sizeof result);
    assert_string_equal(result, "OK");
    assert_true(wait_converged(s, 2));
    assert_int_equal(status_u64(&s[0], "forks"), 0);
    assert_int_equal(status_u64(&s[1], "forks"), 0);
    json_t *t = ask(&s[0], "{\"op\":\"transfer\",\"transfer\":106}");
    assert_non_null(json_object_get(t, "transfer"));
    json_decref(t);
    assert_int_equal(stop(&s[1], SIGTERM), 0);
    assert_int_equal(stop(&s[0], SIGTERM), 0);
    snprintf(kept, sizeof kept, "%s.replica-%llu", dir, (unsigned long long)id);
    assert_int_equal(access(kept, F_OK), 0);
    remove_dir(kept);
    remove_dir(backup);
    remove_dir(clone_dir);
    remove_dir(dir);
    remove_dir(hub_dir);
}

/* Writes text to path. */
static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    fclose(f);
}

/* A data directory for replica id of the cluster whose authority's certificate is
 * `authority`, and a certificate for it from that authority at cert_path. */
static char *dir_admitted(uint64_t id, const char *authority, const char *authority_key,
                          const char *cert_path) {
    uint8_t key[32];
    char *dir = dir_for(id, authority, key);
    char *pem;
    assert_result(tally_certificate_issue((const uint8_t *)authority, strlen(authority),
                                          (const uint8_t *)authority_key, strlen(authority_key),
                                          id, key, 0, 1, &pem),
                  TALLY_OK);
    write_text(cert_path, pem);
    tally_free(pem);
    return dir;
}

/* A cluster with an authority: a tallyd that is not admitted writes nothing and says how to
 * be admitted; given its certificate once, it writes; a forger with an admitted replica's id
 * and its own key gets nothing of its history applied by an admitted peer. */
static void tallyd_writes_only_as_its_authority_admits(void **state) {
    (void)state;
    char *authority, *authority_key;
    assert_result(tally_authority_create("blue", &authority, &authority_key), TALLY_OK);
    char *base = fresh_dir();
    char authority_path[128], cert0[128], cert1[128];
    snprintf(authority_path, sizeof authority_path, "%s/authority.pem", base);
    snprintf(cert0, sizeof cert0, "%s/0.pem", base);
    snprintf(cert1, sizeof cert1, "%s/1.pem", base);
    write_text(authority_path, authority);
    server s[3];
    /* not admitted yet: it says so, and refuses writes */
    char *dir0 = fresh_dir();
    const char *unadmitted[] = {"--authority", authority_path, NULL};
    assert_int_equal(start_on(&s[0], dir0, unadmitted), -1);
    assert_true(read_log_until(&s[0], "is not admitted to cluster blue"));
    char result[32];
    json_t *j = ask(&s[0], "{\"op\":\"create_account\",\"account\":{\"id\":1,\"ledger\":1}}");
    assert_string_equal(str(j, "result"), "NOT_ADMITTED");
    json_decref(j);
    j = ask(&s[0], "{\"op\":\"status\"}");
    json_t *adm = json_object_get(j, "admission");
    assert_string_equal(str(adm, "cluster"), "blue");
    assert_true(json_is_false(json_object_get(adm, "admitted")));
    uint8_t key[32];
    const char *hex = str(j, "public_key");
    assert_int_equal(strlen(hex), 64);
    for (int i = 0; i < 32; i++) {
        unsigned v;
        assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
        key[i] = (uint8_t)v;
    }
    uint64_t id0 = status_u64(&s[0], "replica_id");
    json_decref(j);
    assert_int_equal(stop(&s[0], SIGTERM), 0);
    char *pem;
    assert_result(tally_certificate_issue((const uint8_t *)authority, strlen(authority),
                                          (const uint8_t *)authority_key, strlen(authority_key),
                                          id0, key, 0, 1, &pem),
                  TALLY_OK);
    write_text(cert0, pem);
    tally_free(pem);
    /* given its certificate once (the authority is in its journal now), it writes */
    const char *admitted[] = {"--certificate", cert0, "--anti-entropy-ms", "100", NULL};
    assert_int_equal(start_on(&s[0], dir0, admitted), -1);
    assert_true(read_log_until(&s[0], "is admitted to cluster blue"));
    json_decref(ask(&s[0], "{\"op\":\"create_account\",\"account\":{\"id\":1,\"ledger\":1}}"));
    json_decref(ask(&s[0], "{\"op\":\"create_account\",\"account\":{\"id\":2,\"ledger\":1}}"));
    transfer_result(&s[0], 10, result, sizeof result);
    assert_string_equal(result, "OK");
    /* an admitted peer takes its history, certificate and all */
    char *dir1 = dir_admitted(11, authority, authority_key, cert1);
    char hub[32];
    snprintf(hub, sizeof hub, "127.0.0.1:%d", s[0].sync_port);
    const char *peer1[] = {"--certificate", cert1, "--peer", hub, "--anti-entropy-ms", "100", NULL};
    assert_int_equal(start_on(&s[1], dir1, peer1), -1);
    assert_true(wait_converged(s, 2));
    /* a replica nobody admitted, with an id of its own making, syncs with replica 1, which
     * takes none of its ops and keeps no place for its id (replica 0's id, forged under another
     * key, is refused the same way: test_admission.c) */
    uint64_t origins = status_u64(&s[1], "origins");
    char *forged_dir = dir_with_replica(666);
    tally_options fo;
    memset(&fo, 0, sizeof fo);
    fo.dir = forged_dir;
    fo.sync_mode = TALLY_SYNC_COMMIT;
    tally_replica *forger;
    assert_result(tally_open(&fo, &forger), TALLY_OK);
    tally_account stolen = account(666, 1, 0);
    assert_result(tally_create_account(forger, &stolen), TALLY_OK);
    tally_close(forger);
    char one[32];
    snprintf(one, sizeof one, "127.0.0.1:%d", s[1].sync_port);
    const char *forger_flags[] = {"--peer", one, "--cluster", "blue", "--anti-entropy-ms",
                                  "100",    NULL};
    assert_int_equal(start_on(&s[2], forged_dir, forger_flags), -1);
    assert_true(read_log_until(&s[1], "a delta that does not apply: NOT_ADMITTED"));
    j = ask(&s[1], "{\"op\":\"account\",\"account\":666}");
    assert_string_equal(str(j, "error"), "NOT_FOUND");
    json_decref(j);
    assert_int_equal(status_u64(&s[1], "origins"), origins);
    assert_true(wait_converged(s, 2)); /* the honest two agree */
    for (int i = 2; i >= 0; i--) {
        assert_int_equal(stop(&s[i], SIGTERM), 0);
    }
    remove_dir(forged_dir);
    remove_dir(dir1);
    remove_dir(dir0);
    remove_dir(base);
    tally_free(authority);
    tally_free(authority_key);
}

/* A forger as a program of its own: it connects to a tallyd's sync port, says it is `id`, and
 * sends a summary and a delta of `forger`'s (made for a peer that has nothing), then reads
 * until the tallyd closes the connection. */
static void push_as(int port, uint64_t id, const char *cluster, tally_replica *forger) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    uint8_t hello[11 + 64];
    size_t n = strlen(cluster);
    put_u16le(hello, SESSION_PROTOCOL_VERSION);
    put_u64le(hello + 2, id);
    hello[10] = (uint8_t)n;
    memcpy(hello + 11, cluster, n);
    tally_replica *empty = replica_new(id + 1, NULL);
    uint8_t *summary, *nothing, *delta;
    size_t summary_len, nothing_len, delta_len;
    assert_result(tally_summary(forger, &summary, &summary_len), TALLY_OK);
    assert_result(tally_summary(empty, &nothing, &nothing_len), TALLY_OK);
    assert_result(tally_delta(forger, nothing, nothing_len, 0, &delta, &delta_len), TALLY_OK);
    bytes out = {0};
    assert_true(frame_put(&out, FRAME_HELLO, hello, 11 + n));
    assert_true(frame_put(&out, FRAME_SUMMARY, summary, summary_len));
    assert_true(frame_put(&out, FRAME_DELTA, delta, delta_len));
    assert_int_equal(write(fd, out.at, out.len), (ssize_t)out.len);
    char buf[4096];
    while (read(fd, buf, sizeof buf) > 0) {
    }
    close(fd);
    bytes_free(&out);
    tally_free(summary);
    tally_free(nothing);
    tally_free(delta);
    tally_close(empty);
}

/* Forgery against tallyd, without an authority: a program that takes a running replica's id,
 * with a key of its own, and pushes a transfer as that replica to its peer. The peer refuses
 * it (the id's key is known there), nothing of it is anywhere, and the two stay converged. */
static void a_forger_on_the_wire_gets_nothing_applied(void **state) {
    (void)state;
    char *dirs[2] = {fresh_dir(), fresh_dir()};
    server s[2];
    const char *flags0[] = {"--anti-entropy-ms", "100", NULL};
    assert_int_equal(start_on(&s[0], dirs[0], flags0), -1);
    char hub[32];
    snprintf(hub, sizeof hub, "127.0.0.1:%d", s[0].sync_port);
    const char *flags1[] = {"--peer", hub, "--anti-entropy-ms", "100", NULL};
    assert_int_equal(start_on(&s[1], dirs[1], flags1), -1);
    json_decref(ask(&s[0], "{\"op\":\"create_account\",\"account\":{\"id\":1,\"ledger\":1}}"));
    json_decref(ask(&s[0], "{\"op\":\"create_account\",\"account\":{\"id\":2,\"ledger\":1}}"));
    assert_true(wait_converged(s, 2));
    uint64_t victim = status_u64(&s[0], "replica_id");
    tally_replica *forger = replica_new(victim, NULL);
    tally_account one = account(1, 1, 0), two = account(2, 1, 0);
    assert_result(tally_create_account(forger, &one), TALLY_OK);
    assert_result(tally_create_account(forger, &two), TALLY_OK);
    tally_transfer theft = transfer(666, 1, 2, 1000);
    assert_result(tally_create_transfer(forger, &theft), TALLY_OK);
    push_as(s[1].sync_port, victim, "tally", forger);
    assert_true(read_log_until(&s[1], "a delta that does not apply: ECORRUPT"));
    json_t *j = ask(&s[1], "{\"op\":\"transfer\",\"transfer\":666}");
    assert_string_equal(str(j, "error"), "NOT_FOUND");
    json_decref(j);
    /* nor to the victim itself */
    push_as(s[0].sync_port, victim + 1, "tally", forger);
    j = ask(&s[0], "{\"op\":\"transfer\",\"transfer\":666}");
    assert_string_equal(str(j, "error"), "NOT_FOUND");
    json_decref(j);
    assert_true(wait_converged(s, 2));
    tally_close(forger);
    for (int i = 1; i >= 0; i--) {
        assert_int_equal(stop(&s[i], SIGTERM), 0);
        remove_dir(dirs[i]);
    }
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(the_control_port_runs_every_request, kill_leftovers),
        cmocka_unit_test_teardown(a_request_id_and_the_object_id_both_come_back, kill_leftovers),
        cmocka_unit_test_teardown(bad_flags_and_configs_are_refused_naming_what_is_wrong,
                                  kill_leftovers),
        cmocka_unit_test_teardown(a_second_tallyd_on_the_same_directory_refuses_to_start,
                                  kill_leftovers),
        cmocka_unit_test_teardown(a_killed_server_restarts_with_everything_it_acknowledged,
                                  kill_leftovers),
        cmocka_unit_test_teardown(ids_and_amounts_past_2_to_the_53_come_back_exactly,
                                  kill_leftovers),
        cmocka_unit_test_teardown(
            the_control_port_names_incarnations_and_grants_only_to_known_replicas, kill_leftovers),
        cmocka_unit_test_teardown(an_idle_tallyd_voids_a_pending_when_its_timeout_passes,
                                  kill_leftovers),
        cmocka_unit_test_teardown(a_restored_or_copied_tallyd_never_signs_twice, kill_leftovers),
        cmocka_unit_test_teardown(tallyd_writes_only_as_its_authority_admits, kill_leftovers),
        cmocka_unit_test_teardown(a_forger_on_the_wire_gets_nothing_applied, kill_leftovers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
