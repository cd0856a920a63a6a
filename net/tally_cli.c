/*
 * tally — the command-line tool for people.
 *
 *   tally [--server HOST:PORT | --data DIR] [--json] COMMAND [ARGS]
 *
 * Each command becomes one control request (net/control.c): sent to a tallyd over its control
 * port with --server, or run in this process on a local directory with --data (which must not
 * be open in a tallyd at the same time). Tables by default, the JSON reply with --json. Ids are
 * decimal or 0x-hex.
 *
 * Exit status: 0 done (also EXISTS: a retry that found its account, transfer or peer already
 * there with the same fields); 1 refused (any other result or error: the operation did not
 * happen, or what was looked up does not exist); 2 bad usage; 3 the server or directory could
 * not be reached or opened.
 */
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>

#include "net/control.h"
#include "tally.h"

static const char *usage_text =
    "usage: tally [--server HOST:PORT | --data DIR] [--json] COMMAND [ARGS]\n"
    "commands:\n"
    "  status\n"
    "  account create ID --ledger N [--code N] [--user-data N] [--flags FLAG[,FLAG]]\n"
    "      FLAG: debits_must_not_exceed_credits, credits_must_not_exceed_debits\n"
    "  transfer ID --debit ID --credit ID --amount N --ledger N [--code N] [--user-data N]\n"
    "      [--pending [--timeout-ms N]] | transfer ID --post PENDING_ID [--amount N]\n"
    "      | transfer ID --void PENDING_ID\n"
    "  balance ID\n"
    "  transfer-info ID\n"
    "  grant ACCOUNT --to REPLICA --amount N\n"
    "  rights request ACCOUNT --amount N        (with --server)\n"
    "  conflicts\n"
    "  peer add HOST:PORT | peer remove HOST:PORT  (with --server)\n"
    "ids are decimal or 0x-hex. Exit status: 0 done (or EXISTS: done before, same fields),\n"
    "1 refused or not found, 2 bad usage, 3 server or directory unreachable.\n"
    "`tally COMMAND --help` describes a command.\n";

static int usage(const char *why) {
    if (why != NULL) {
        fprintf(stderr, "tally: %s\n", why);
    }
    fputs(usage_text, why != NULL ? stderr : stdout);
    return 2;
}

/* --- building the request ------------------------------------------------------------------- */

/* A JSON value for an id or number given on the command line: kept as a string, which the
 * control port parses (decimal or 0x-hex) and range-checks. */
static json_t *arg_value(const char *v) { return json_string(v); }

typedef struct opts {
    const char *names[16];
    const char *values[16];
    int n;
    bool pending;
} opts;

/* Parses --name value pairs (and the bare --pending) from argv[from..]. */
static bool parse_opts(int argc, char **argv, int from, const char *const *allowed, opts *o,
                       const char **bad) {
    memset(o, 0, sizeof *o);
    for (int i = from; i < argc; i++) {
        if (strcmp(argv[i], "--pending") == 0) {
            o->pending = true;
            continue;
        }
        bool ok = false;
        for (const char *const *a = allowed; *a != NULL && !ok; a++) {
            ok = strcmp(*a, argv[i]) == 0;
        }
        if (!ok || i + 1 >= argc || o->n == 16) {
            *bad = argv[i];
            return false;
        }
        o->names[o->n] = argv[i] + 2;
        o->values[o->n++] = argv[++i];
    }
    return true;
}

static const char *opt(const opts *o, const char *name) {
    for (int i = 0; i < o->n; i++) {
        if (strcmp(o->names[i], name) == 0) {
            return o->values[i];
        }
    }
    return NULL;
}

static void put_opt(json_t *obj, const opts *o, const char *name, const char *key) {
    const char *v = opt(o, name);
    if (v != NULL) {
        json_object_set_new(obj, key, arg_value(v));
    }
}

static json_t *flag_list(const char *csv) {
    json_t *list = json_array();
    char buf[256];
    snprintf(buf, sizeof buf, "%s", csv);
    for (char *save = NULL, *f = strtok_r(buf, ",", &save); f != NULL;
         f = strtok_r(NULL, ",", &save)) {
        json_array_append_new(list, json_string(f));
    }
    return list;
}

/* Returns the request, or NULL after printing why (exit 2). */
static json_t *build(int argc, char **argv, int at, bool *needs_server) {
    const char *cmd = argv[at];
    const char *bad = NULL;
    opts o;
    bool help = at + 1 < argc && strcmp(argv[at + 1], "--help") == 0;
    if (strcmp(cmd, "status") == 0 || strcmp(cmd, "conflicts") == 0) {
        if (help || at + 1 != argc) {
            usage(help ? NULL : "this command takes no arguments");
            return NULL;
        }
        return json_pack("{s:s}", "op", cmd);
    }
    if (strcmp(cmd, "account") == 0 && at + 2 < argc && strcmp(argv[at + 1], "create") == 0 &&
        strcmp(argv[at + 2], "--help") != 0) {
        static const char *const allowed[] = {"--ledger", "--code", "--user-data", "--flags",
                                              NULL};
        if (!parse_opts(argc, argv, at + 3, allowed, &o, &bad) || opt(&o, "ledger") == NULL) {
            usage(bad != NULL ? "bad option for account create" : "--ledger is required");
            return NULL;
        }
        json_t *a = json_pack("{s:o}", "id", arg_value(argv[at + 2]));
        put_opt(a, &o, "ledger", "ledger");
        put_opt(a, &o, "code", "code");
        put_opt(a, &o, "user-data", "user_data");
        if (opt(&o, "flags") != NULL) {
            json_object_set_new(a, "flags", flag_list(opt(&o, "flags")));
        }
        return json_pack("{s:s, s:o}", "op", "create_account", "account", a);
    }
    if (strcmp(cmd, "transfer") == 0 && at + 1 < argc && !help) {
        static const char *const allowed[] = {"--debit", "--credit",    "--amount",
                                              "--ledger", "--code",     "--user-data",
                                              "--post",  "--void",      "--timeout-ms", NULL};
        if (!parse_opts(argc, argv, at + 2, allowed, &o, &bad)) {
            usage("bad option for transfer");
            return NULL;
        }
        json_t *t = json_pack("{s:o}", "id", arg_value(argv[at + 1]));
        put_opt(t, &o, "debit", "debit");
        put_opt(t, &o, "credit", "credit");
        put_opt(t, &o, "amount", "amount");
        put_opt(t, &o, "ledger", "ledger");
        put_opt(t, &o, "code", "code");
        put_opt(t, &o, "user-data", "user_data");
        put_opt(t, &o, "timeout-ms", "timeout_ms");
        const char *post = opt(&o, "post"), *void_ = opt(&o, "void");
        if (post != NULL || void_ != NULL) {
            json_object_set_new(t, "pending_id", arg_value(post != NULL ? post : void_));
            json_object_set_new(t, "flags", flag_list(post != NULL ? "post_pending"
                                                                   : "void_pending"));
        } else if (o.pending) {
            json_object_set_new(t, "flags", flag_list("pending"));
        }
        return json_pack("{s:s, s:[o]}", "op", "create_transfers", "transfers", t);
    }
    if ((strcmp(cmd, "balance") == 0 || strcmp(cmd, "transfer-info") == 0) && at + 2 == argc &&
        !help) {
        bool acct = cmd[0] == 'b';
        return json_pack("{s:s, s:o}", "op", acct ? "account" : "transfer",
                         acct ? "account" : "transfer", arg_value(argv[at + 1]));
    }
    if (strcmp(cmd, "grant") == 0 && at + 1 < argc && !help) {
        static const char *const allowed[] = {"--to", "--amount", NULL};
        if (!parse_opts(argc, argv, at + 2, allowed, &o, &bad) || opt(&o, "to") == NULL ||
            opt(&o, "amount") == NULL) {
            usage("grant needs --to and --amount");
            return NULL;
        }
        json_t *r = json_pack("{s:s, s:o}", "op", "grant", "account", arg_value(argv[at + 1]));
        put_opt(r, &o, "to", "to");
        put_opt(r, &o, "amount", "amount");
        return r;
    }
    if (strcmp(cmd, "rights") == 0 && at + 2 < argc && strcmp(argv[at + 1], "request") == 0 &&
        strcmp(argv[at + 2], "--help") != 0) {
        static const char *const allowed[] = {"--amount", NULL};
        if (!parse_opts(argc, argv, at + 3, allowed, &o, &bad) || opt(&o, "amount") == NULL) {
            usage("rights request needs --amount");
            return NULL;
        }
        *needs_server = true;
        json_t *r = json_pack("{s:s, s:o}", "op", "request_rights", "account",
                              arg_value(argv[at + 2]));
        put_opt(r, &o, "amount", "amount");
        return r;
    }
    if (strcmp(cmd, "peer") == 0 && at + 3 == argc &&
        (strcmp(argv[at + 1], "add") == 0 || strcmp(argv[at + 1], "remove") == 0)) {
        *needs_server = true;
        return json_pack("{s:s, s:s}", "op", argv[at + 1][0] == 'a' ? "add_peer" : "remove_peer",
                         "address", argv[at + 2]);
    }
    usage(help ? NULL : "unknown command or missing arguments");
    return NULL;
}

/* --- running it ------------------------------------------------------------------------------ */

static char *reply_text;

static void keep_reply(void *ctx, const char *json) {
    (void)ctx;
    free(reply_text);
    reply_text = strdup(json);
}

static char *run_local(const char *dir, const char *line) {
    tally_options o;
    memset(&o, 0, sizeof o);
    o.dir = dir;
    o.sync_mode = TALLY_SYNC_COMMIT;
    char error[512] = "";
    o.error = error;
    o.error_size = sizeof error;
    tally_replica *r;
    int rc = tally_open(&o, &r);
    if (rc != TALLY_OK) {
        fprintf(stderr, "tally: cannot open %s: %s%s%s\n", dir, tally_result_name(rc),
                error[0] ? ": " : "", error);
        return NULL;
    }
    control *c = control_new(r, NULL);
    control_request(c, line, strlen(line), keep_reply, NULL);
    control_free(c);
    tally_close(r);
    return reply_text;
}

/* A connected socket to "host:port" (a name, an IPv4 literal or a bracketed IPv6 literal),
 * trying each address the name has; -1 after saying why on stderr. */
static int connect_to(const char *server) {
    const char *colon = strrchr(server, ':');
    char host[256];
    if (colon == NULL || colon == server || colon[1] == '\0' ||
        (size_t)(colon - server) >= sizeof host) {
        fprintf(stderr, "tally: bad server address \"%s\" (HOST:PORT)\n", server);
        return -1;
    }
    snprintf(host, sizeof host, "%.*s", (int)(colon - server), server);
    size_t n = strlen(host);
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
        memmove(host, host + 1, n - 2);
        host[n - 2] = '\0';
    }
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(host, colon + 1, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "tally: bad server address \"%s\": %s\n", server, gai_strerror(rc));
        return -1;
    }
    int fd = -1;
    for (const struct addrinfo *ai = res; ai != NULL && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0) {
        fprintf(stderr, "tally: cannot reach %s\n", server);
    }
    return fd;
}

static char *run_remote(const char *server, const char *line) {
    int fd = connect_to(server);
    if (fd < 0) {
        return NULL;
    }
    size_t n = strlen(line);
    bool ok = write(fd, line, n) == (ssize_t)n && write(fd, "\n", 1) == 1;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    while (ok && buf != NULL) {
        if (len + 1 == cap) {
            char *grown = realloc(buf, cap *= 2);
            if (grown == NULL) {
                break;
            }
            buf = grown;
        }
        ssize_t k = read(fd, buf + len, 1);
        if (k != 1) {
            ok = false;
            break;
        }
        if (buf[len] == '\n') {
            buf[len] = '\0';
            close(fd);
            return buf;
        }
        len++;
    }
    close(fd);
    free(buf);
    fprintf(stderr, "tally: %s closed the connection without a reply\n", server);
    return NULL;
}

/* --- showing the reply ----------------------------------------------------------------------- */

static json_t *integer_text(const json_t *v) {
    char text[24];
    snprintf(text, sizeof text, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    return json_string(text);
}

/* Turns every number in j into its decimal text, in place, so that show() prints strings only
 * and each one lives as long as the reply does: a line may print any number of values, and no
 * buffer of the printer's own can run out or be reused under it. */
static void numbers_to_text(json_t *j) {
    if (json_is_object(j)) {
        for (void *it = json_object_iter(j); it != NULL; it = json_object_iter_next(j, it)) {
            json_t *v = json_object_iter_value(it);
            if (json_is_integer(v)) {
                json_object_iter_set_new(j, it, integer_text(v));
            } else {
                numbers_to_text(v);
            }
        }
    } else if (json_is_array(j)) {
        for (size_t i = 0; i < json_array_size(j); i++) {
            json_t *v = json_array_get(j, i);
            if (json_is_integer(v)) {
                json_array_set_new(j, i, integer_text(v));
            } else {
                numbers_to_text(v);
            }
        }
    }
}

/* The text of j's field k (after numbers_to_text), owned by j; "-" if it has none. */
static const char *s_(json_t *j, const char *k) {
    const char *v = json_string_value(json_object_get(j, k));
    return v != NULL ? v : "-";
}

/* The text of the array j's element i (after numbers_to_text), owned by j; "-" if none. */
static const char *at_(json_t *j, size_t i) {
    const char *v = json_string_value(json_array_get(j, i));
    return v != NULL ? v : "-";
}

/* Whether a transfer's "flags" list names flag. */
static bool has_flag(json_t *transfer, const char *flag) {
    size_t i;
    json_t *f;
    json_array_foreach(json_object_get(transfer, "flags"), i, f) {
        if (json_is_string(f) && strcmp(json_string_value(f), flag) == 0) {
            return true;
        }
    }
    return false;
}

/* A result on a line of its own. EXISTS is a retry that found its work done (the same fields:
 * nothing done twice), so it says that in words, and the command counts it as done. */
static void print_result(const char *op, const char *result) {
    if (strcmp(result, "EXISTS") != 0) {
        printf("%s\n", result);
    } else if (strcmp(op, "add_peer") == 0) {
        printf("EXISTS: already a peer\n");
    } else {
        printf("EXISTS: already exists with the same fields; nothing was applied again\n");
    }
}

static void show(const char *op, json_t *j) {
    if (strcmp(op, "status") == 0) {
        printf("replica      %s\ndigest       %s\nops          %s\naccounts     %s\n"
               "transfers    %s (%s pending open)\nconflicts    %s\n",
               s_(j, "replica_id"), s_(j, "digest"), s_(j, "ops"), s_(j, "accounts"),
               s_(j, "transfers"), s_(j, "pending"), s_(j, "conflicts"));
        json_t *node = json_object_get(j, "node");
        if (node != NULL) {
            printf("peers        %s configured, %s sessions ready\nwire         %s bytes in, "
                   "%s bytes out\n",
                   s_(node, "peers"), s_(node, "sessions_ready"), s_(node, "bytes_in"),
                   s_(node, "bytes_out"));
        }
        size_t i;
        json_t *p;
        json_array_foreach(json_object_get(j, "peers"), i, p) {
            printf("peer         %-30s %-10s replica %s\n", s_(p, "address"), s_(p, "state"),
                   s_(p, "replica"));
        }
        printf("version vector\n");
        const char *origin;
        json_t *seq;
        json_object_foreach(json_object_get(j, "version_vector"), origin, seq) {
            printf("  %-22s %s\n", origin, json_is_string(seq) ? json_string_value(seq) : "-");
        }
    } else if (strcmp(op, "account") == 0) {
        j = json_object_get(j, "account");
        printf("account %s   ledger %s   code %s\n", s_(j, "id"), s_(j, "ledger"), s_(j, "code"));
        printf("  %-16s %20s   %-16s %20s\n", "debits posted", s_(j, "debits_posted"),
               "credits posted", s_(j, "credits_posted"));
        printf("  %-16s %20s   %-16s %20s\n", "debits pending", s_(j, "debits_pending"),
               "credits pending", s_(j, "credits_pending"));
        printf("  %-16s %20s\n", "rights here", s_(j, "rights_here"));
        size_t i;
        json_t *h;
        json_array_foreach(json_object_get(j, "holders"), i, h) {
            printf("  holder %-22s %20s\n", s_(h, "replica"), s_(h, "rights"));
        }
    } else if (strcmp(op, "transfer") == 0) {
        j = json_object_get(j, "transfer");
        printf("transfer %s: %s from %s to %s, ledger %s, code %s, ", s_(j, "id"), s_(j, "amount"),
               s_(j, "debit"), s_(j, "credit"), s_(j, "ledger"), s_(j, "code"));
        if (has_flag(j, "post_pending") || has_flag(j, "void_pending")) {
            printf("%s pending %s, which is %s", has_flag(j, "post_pending") ? "posts" : "voids",
                   s_(j, "pending_id"), s_(j, "pending_id_state"));
        } else if (has_flag(j, "pending")) {
            printf("pending: %s", s_(j, "pending_state"));
        } else {
            printf("posted");
        }
        printf(" (created at replica %s)\n", s_(j, "origin"));
    } else if (strcmp(op, "create_transfers") == 0) {
        print_result(op, at_(json_object_get(j, "results"), 0));
    } else if (strcmp(op, "conflicts") == 0) {
        size_t i;
        json_t *c;
        if (json_array_size(json_object_get(j, "conflicts")) == 0) {
            printf("no conflicts\n");
        }
        json_array_foreach(json_object_get(j, "conflicts"), i, c) {
            json_t *winner = json_object_get(c, "winner"), *other = json_object_get(c, "other");
            printf("%-8s %-36s winner replica %s op %s, other replica %s op %s\n", s_(c, "kind"),
                   s_(c, "id"), at_(winner, 0), at_(winner, 1), at_(other, 0), at_(other, 1));
        }
    } else if (strcmp(op, "request_rights") == 0) {
        printf("%s: %s granted\n", s_(j, "result"), s_(j, "granted"));
    } else {
        print_result(op, s_(j, "result"));
    }
}

int main(int argc, char **argv) {
    const char *server = NULL, *dir = NULL;
    bool as_json = false;
    int at = 1;
    for (; at < argc && strncmp(argv[at], "--", 2) == 0; at++) {
        if (strcmp(argv[at], "--help") == 0) {
            usage(NULL);
            return 0;
        } else if (strcmp(argv[at], "--json") == 0) {
            as_json = true;
        } else if (strcmp(argv[at], "--server") == 0 && at + 1 < argc) {
            server = argv[++at];
        } else if (strcmp(argv[at], "--data") == 0 && at + 1 < argc) {
            dir = argv[++at];
        } else {
            return usage("unknown option");
        }
    }
    if (at >= argc) {
        return usage("no command");
    }
    if ((server == NULL) == (dir == NULL)) {
        return usage("give --server HOST:PORT or --data DIR");
    }
    bool needs_server = false;
    json_t *request = build(argc, argv, at, &needs_server);
    if (request == NULL) {
        bool help = at + 1 < argc && (strcmp(argv[argc - 1], "--help") == 0);
        return help ? 0 : 2;
    }
    if (needs_server && server == NULL) {
        json_decref(request);
        return usage("this command is about the network: it needs --server");
    }
    const char *op = json_string_value(json_object_get(request, "op"));
    char opname[32];
    snprintf(opname, sizeof opname, "%s", op);
    char *line = json_dumps(request, JSON_COMPACT);
    json_decref(request);
    char *text = server != NULL ? run_remote(server, line) : run_local(dir, line);
    free(line);
    if (text == NULL) {
        return 3;
    }
    json_t *reply = json_loads(text, 0, NULL);
    if (reply == NULL) {
        fprintf(stderr, "tally: the reply is not JSON: %s\n", text);
        free(text);
        return 3;
    }
    free(text);
    bool ok = json_is_true(json_object_get(reply, "ok"));
    const char *result = json_string_value(json_object_get(reply, "result"));
    json_t *results = json_object_get(reply, "results");
    if (results != NULL) {
        result = json_string_value(json_array_get(results, 0));
    }
    bool done = ok && (result == NULL || strcmp(result, "OK") == 0 ||
                       strcmp(result, "EXISTS") == 0);
    if (as_json) {
        char *out = json_dumps(reply, JSON_COMPACT | JSON_SORT_KEYS);
        printf("%s\n", out);
        free(out);
    } else if (!ok) {
        fprintf(stderr, "tally: %s: %s\n", s_(reply, "error"), s_(reply, "message"));
    } else {
        numbers_to_text(reply);
        show(opname, reply);
    }
    json_decref(reply);
    return done ? 0 : 1;
}
