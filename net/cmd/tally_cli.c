/*
 * tally — the command-line tool for people.
 *
 *   tally [--server HOST:PORT [--timeout MS] | --data DIR] [--json] COMMAND [ARGS]
 *
 * Each command becomes one control request (net/cmd/control.c): sent to a tallyd over its control
 * port with --server, or run in this process on a local directory with --data (which must not
 * be open in a tallyd at the same time). Tables by default, the JSON reply with --json. Ids are
 * decimal or 0x-hex. An exchange with a server (connecting, sending, the whole reply) takes at
 * most --timeout ms (TIMEOUT_MS_DEFAULT), or the command says so and exits 3.
 *
 * The commands are one table, commands[]: each entry's words, argument, options and usage lines
 * serve the parser, `tally --help` and `tally COMMAND --help` alike, so they cannot drift apart.
 * Whatever cannot be passed on as meant (an unknown or repeated option, an unknown flag, bytes
 * that are not UTF-8) is refused before anything is sent.
 *
 * Exit status: 0 done (also EXISTS: a retry that found its account, transfer or peer already
 * there with the same fields); 1 refused (any other result or error: the operation did not
 * happen, or what was looked up does not exist); 2 bad usage; 3 the server or directory could
 * not be reached or opened.
 */
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "crdt/bytes.h"
#include "net/addr.h"
#include "net/cmd/control.h"
#include "tally.h"

/* --- reading the command line --------------------------------------------------------------- */

#define OPTIONS_MAX 10

/* A command's arguments as given: each option at most once. */
typedef struct args {
    const char *operand;             /* the one argument that is not an option, or NULL */
    const char *value[OPTIONS_MAX];  /* by the option's index in its command's list */
    bool toggled;                    /* the command's one option without a value was given */
} args;

typedef struct command command;
/* Builds the request (a new reference), or returns NULL after writing why into `why`. */
typedef json_t *(*request_fn)(const command *cmd, const args *a, char *why, size_t why_size);

struct command {
    const char *words;                      /* what names it: "status", "account create" */
    const char *lines;                      /* its usage lines, as the usage lists them */
    const char *what;                       /* what it does, in a sentence or two */
    const char *operand;                    /* its one plain argument ("ID"), or NULL */
    const char *const options[OPTIONS_MAX]; /* those that take a value, NULL-terminated */
    const char *const required[3];          /* options that must be given, NULL-terminated */
    const char *toggle;                     /* its one option without a value, or NULL */
    bool needs_server;                      /* about the network: only with --server */
    request_fn request;
    /* Runs here, with neither a server nor a directory (the cluster's authority), instead of
     * sending a request: the exit status. */
    int (*local)(const command *cmd, const args *a);
};

/* The value given for `option` (which must be one of cmd's), or NULL. */
static const char *value_of(const command *cmd, const args *a, const char *option) {
    for (int i = 0; cmd->options[i] != NULL; i++) {
        if (strcmp(cmd->options[i], option) == 0) {
            return a->value[i];
        }
    }
    return NULL;
}

/* Reads argv[from..] as cmd's arguments. An option that is not cmd's, one given twice, one
 * without its value, a second plain argument or a missing one is refused, naming it. */
static bool read_args(const command *cmd, int argc, char **argv, int from, args *a, char *why,
                      size_t why_size) {
    memset(a, 0, sizeof *a);
    for (int i = from; i < argc; i++) {
        const char *arg = argv[i];
        if (strncmp(arg, "--", 2) != 0) {
            if (cmd->operand == NULL || a->operand != NULL) {
                snprintf(why, why_size, "%s: unexpected argument \"%s\"", cmd->words, arg);
                return false;
            }
            a->operand = arg;
            continue;
        }
        if (cmd->toggle != NULL && strcmp(arg, cmd->toggle) == 0) {
            if (a->toggled) {
                snprintf(why, why_size, "%s: %s is given twice", cmd->words, arg);
                return false;
            }
            a->toggled = true;
            continue;
        }
        int k = 0;
        while (cmd->options[k] != NULL && strcmp(cmd->options[k], arg) != 0) {
            k++;
        }
        if (cmd->options[k] == NULL) {
            snprintf(why, why_size, "%s: unknown option %s", cmd->words, arg);
            return false;
        }
        if (a->value[k] != NULL) {
            snprintf(why, why_size, "%s: %s is given twice (it takes one value)", cmd->words,
                     arg);
            return false;
        }
        if (i + 1 >= argc || strncmp(argv[i + 1], "--", 2) == 0) {
            snprintf(why, why_size, "%s: %s needs a value", cmd->words, arg);
            return false;
        }
        a->value[k] = argv[++i];
    }
    if (cmd->operand != NULL && a->operand == NULL) {
        snprintf(why, why_size, "%s: %s is missing", cmd->words, cmd->operand);
        return false;
    }
    for (int k = 0; cmd->required[k] != NULL; k++) {
        if (value_of(cmd, a, cmd->required[k]) == NULL) {
            snprintf(why, why_size, "%s: %s is required", cmd->words, cmd->required[k]);
            return false;
        }
    }
    return true;
}

/* --- building the request ------------------------------------------------------------------- */

/* Sets obj[key] to the value given for `option`, if it was: as a string, which the control
 * port reads (an id or number in decimal or 0x-hex) and range-checks. Every argument is
 * valid UTF-8 by then (main checks), so json_string fails only without memory. */
static void put_opt(json_t *obj, const command *cmd, const args *a, const char *option,
                    const char *key) {
    const char *v = value_of(cmd, a, option);
    if (v != NULL) {
        json_object_set_new(obj, key, json_string(v));
    }
}

/* The --flags list: names of account flags, comma-separated. An unknown or empty entry is
 * refused here, naming it, rather than sent: an account made without the flag meant would be
 * unbounded. */
static json_t *account_flags(const char *csv, char *why, size_t why_size) {
    json_t *list = json_array();
    for (const char *f = csv; list != NULL;) {
        size_t n = strcspn(f, ",");
        bool known = false;
        for (int k = 0; control_account_flags[k] != NULL && !known; k++) {
            known = strlen(control_account_flags[k]) == n &&
                    strncmp(control_account_flags[k], f, n) == 0;
        }
        if (!known) {
            snprintf(why, why_size,
                     "account create: --flags: %s \"%.*s\" (the flags are "
                     "debits_must_not_exceed_credits and credits_must_not_exceed_debits)",
                     n == 0 ? "an empty entry" : "unknown flag", (int)n, f);
            json_decref(list);
            return NULL;
        }
        json_array_append_new(list, json_stringn(f, n));
        if (f[n] == '\0') {
            break;
        }
        f += n + 1;
    }
    return list;
}

static json_t *op_only(const command *cmd, const args *a, char *why, size_t why_size) {
    (void)a, (void)why, (void)why_size;
    return json_pack("{s:s}", "op", cmd->words);
}

static json_t *lift_hold(const command *cmd, const args *a, char *why, size_t why_size) {
    (void)cmd, (void)a, (void)why, (void)why_size;
    return json_pack("{s:s}", "op", "lift_hold");
}

/* --- commands that run here: the cluster's authority ----------------------------------------- */

static int usage(const char *why);

/* Writes text to a new file (never over one), with mode. False after saying why. */
static bool write_new_file(const char *path, const char *text, mode_t mode) {
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    size_t n = strlen(text);
    bool ok = fd >= 0 && write(fd, text, n) == (ssize_t)n && fsync(fd) == 0;
    if (fd >= 0) {
        close(fd);
    }
    if (!ok) {
        fprintf(stderr, "tally: cannot write %s: %s\n", path, strerror(errno));
    }
    return ok;
}

/* A certificate or key file (control_read_key_file), or NULL after saying why. */
static char *read_small_file(const char *path, size_t *len) {
    char *text = control_read_key_file(path, len);
    if (text == NULL) {
        fprintf(stderr, "tally: cannot read %s: %s\n", path,
                errno == EFBIG     ? "longer than 16 KiB"
                : errno == ENODATA ? "empty"
                                   : strerror(errno));
    }
    return text;
}

static int cluster_init(const command *cmd, const args *a) {
    const char *dir = value_of(cmd, a, "--out");
    char *cert = NULL, *key = NULL;
    int rc = tally_authority_create(a->operand, &cert, &key);
    if (rc != TALLY_OK) {
        fprintf(stderr, "tally: cluster init: %s%s\n", tally_result_name(rc),
                rc == TALLY_EINVAL ? " (a cluster name is 1 to 64 bytes)" : "");
        return 1;
    }
    char cert_path[4096], key_path[4096];
    snprintf(cert_path, sizeof cert_path, "%s/authority.pem", dir);
    snprintf(key_path, sizeof key_path, "%s/authority.key", dir);
    bool ok = (mkdir(dir, 0700) == 0 || errno == EEXIST) && write_new_file(key_path, key, 0600) &&
              write_new_file(cert_path, cert, 0644);
    if (ok) {
        printf("OK: cluster %s: its authority's certificate is %s (give it to every replica:\n"
               "tallyd --authority), its private key %s (keep it offline: it admits replicas)\n",
               a->operand, cert_path, key_path);
    }
    tally_free(cert);
    tally_free(key);
    return ok ? 0 : 1;
}

/* A number in decimal or 0x-hex, with nothing around it. */
static bool number(const char *text, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 0);
    if (errno != 0 || end == text || *end != '\0' || text[0] == '-' || text[0] == '+' ||
        text[0] == ' ') {
        return false;
    }
    *out = v;
    return true;
}

static bool hex_key(const char *text, uint8_t out[32]) {
    if (strlen(text) != 64) {
        return false;
    }
    for (int i = 0; i < 32; i++) {
        unsigned v;
        if (sscanf(text + 2 * i, "%2x", &v) != 1 || !((text[2 * i] >= '0' && text[2 * i] <= '9') ||
                                                      (text[2 * i] >= 'a' && text[2 * i] <= 'f'))) {
            return false;
        }
        out[i] = (uint8_t)v;
    }
    return true;
}

static int replica_admit(const command *cmd, const args *a) {
    uint64_t id = 0, until = 0;
    uint8_t key[32];
    const char *until_text = value_of(cmd, a, "--until");
    if (!number(a->operand, &id) || id == 0) {
        return usage("replica admit: ID is a replica id (tally status shows it)");
    }
    if (!hex_key(value_of(cmd, a, "--public-key"), key)) {
        return usage("replica admit: --public-key is 64 lowercase hex digits (tally status "
                     "shows it)");
    }
    if (until_text != NULL && (!number(until_text, &until) || until == 0)) {
        return usage("replica admit: --until is a time in seconds since 1970");
    }
    char cert_path[4096], key_path[4096];
    const char *dir = value_of(cmd, a, "--authority");
    snprintf(cert_path, sizeof cert_path, "%s/authority.pem", dir);
    snprintf(key_path, sizeof key_path, "%s/authority.key", dir);
    size_t cert_len = 0, key_len = 0;
    char *cert = read_small_file(cert_path, &cert_len);
    char *auth_key = cert != NULL ? read_small_file(key_path, &key_len) : NULL;
    char *pem = NULL;
    int rc = auth_key == NULL ? TALLY_EIO
                              : tally_certificate_issue((const uint8_t *)cert, cert_len,
                                                        (const uint8_t *)auth_key, key_len, id, key,
                                                        until, !a->toggled, &pem);
    free(cert);
    if (auth_key != NULL) {
        memset(auth_key, 0, key_len);
    }
    free(auth_key);
    if (rc != TALLY_OK) {
        if (rc != TALLY_EIO) {
            fprintf(stderr,
                    "tally: replica admit: %s (is %s a cluster init's, and the key a "
                    "valid one?)\n",
                    tally_result_name(rc), dir);
        }
        return 1;
    }
    const char *out = value_of(cmd, a, "--out");
    bool ok = out == NULL ? fputs(pem, stdout) >= 0 : write_new_file(out, pem, 0644);
    if (ok && out != NULL) {
        printf("OK: replica %" PRIu64 " is admitted: its certificate is %s (tallyd "
               "--certificate)\n",
               id, out);
    }
    tally_free(pem);
    return ok ? 0 : 1;
}

static json_t *set_certificate(const command *cmd, const args *a, char *why, size_t why_size) {
    (void)cmd;
    size_t len;
    char *pem = read_small_file(a->operand, &len);
    if (pem == NULL) {
        snprintf(why, why_size, "certificate set: cannot read %s", a->operand);
        return NULL;
    }
    json_t *j = json_pack("{s:s, s:s}", "op", "set_certificate", "certificate", pem);
    free(pem);
    return j;
}

static json_t *create_account(const command *cmd, const args *a, char *why, size_t why_size) {
    json_t *flags = NULL;
    const char *csv = value_of(cmd, a, "--flags");
    if (csv != NULL && (flags = account_flags(csv, why, why_size)) == NULL) {
        return NULL;
    }
    json_t *acct = json_pack("{s:s}", "id", a->operand);
    put_opt(acct, cmd, a, "--ledger", "ledger");
    put_opt(acct, cmd, a, "--code", "code");
    put_opt(acct, cmd, a, "--user-data", "user_data");
    if (flags != NULL) {
        json_object_set_new(acct, "flags", flags);
    }
    return json_pack("{s:s, s:o}", "op", "create_account", "account", acct);
}

static json_t *create_transfer(const command *cmd, const args *a, char *why, size_t why_size) {
    const char *post = value_of(cmd, a, "--post"), *void_ = value_of(cmd, a, "--void");
    if ((post != NULL && void_ != NULL) || ((post != NULL || void_ != NULL) && a->toggled)) {
        snprintf(why, why_size, "transfer: give one of --pending, --post and --void");
        return NULL;
    }
    json_t *t = json_pack("{s:s}", "id", a->operand);
    put_opt(t, cmd, a, "--debit", "debit");
    put_opt(t, cmd, a, "--credit", "credit");
    put_opt(t, cmd, a, "--amount", "amount");
    put_opt(t, cmd, a, "--ledger", "ledger");
    put_opt(t, cmd, a, "--code", "code");
    put_opt(t, cmd, a, "--user-data", "user_data");
    put_opt(t, cmd, a, "--timeout-ms", "timeout_ms");
    put_opt(t, cmd, a, post != NULL ? "--post" : "--void", "pending_id");
    const char *flag = post != NULL    ? "post_pending"
                       : void_ != NULL ? "void_pending"
                       : a->toggled    ? "pending"
                                       : NULL;
    if (flag != NULL) {
        json_object_set_new(t, "flags", json_pack("[s]", flag));
    }
    return json_pack("{s:s, s:[o]}", "op", "create_transfers", "transfers", t);
}

static json_t *lookup(const command *cmd, const args *a, char *why, size_t why_size) {
    (void)why, (void)why_size;
    const char *what = strcmp(cmd->words, "balance") == 0 ? "account" : "transfer";
    return json_pack("{s:s, s:s}", "op", what, what, a->operand);
}

static json_t *grant(const command *cmd, const args *a, char *why, size_t why_size) {
    (void)why, (void)why_size;
    json_t *r = json_pack("{s:s, s:s}", "op", "grant", "account", a->operand);
    put_opt(r, cmd, a, "--to", "to");
    put_opt(r, cmd, a, "--amount", "amount");
    if (a->toggled) {
        json_object_set_new(r, "to_unknown", json_true());
    }
    return r;
}

static json_t *request_rights(const command *cmd, const args *a, char *why, size_t why_size) {
    (void)why, (void)why_size;
    json_t *r = json_pack("{s:s, s:s}", "op", "request_rights", "account", a->operand);
    put_opt(r, cmd, a, "--amount", "amount");
    return r;
}

static json_t *peer(const command *cmd, const args *a, char *why, size_t why_size) {
    (void)why, (void)why_size;
    return json_pack("{s:s, s:s}", "op", strcmp(cmd->words, "peer add") == 0 ? "add_peer"
                                                                              : "remove_peer",
                     "address", a->operand);
}

static const command commands[] = {
    {.words = "status",
     .lines = "  status\n",
     .what = "Shows the replica: its id, digest and counts, its peers and bytes on the wire (with\n"
             "--server), and its version vector.",
     .request = op_only},
    {.words = "account create",
     .lines = "  account create ID --ledger N [--code N] [--user-data N] [--flags FLAG[,FLAG]]\n"
              "      FLAG: debits_must_not_exceed_credits, credits_must_not_exceed_debits\n",
     .what = "Creates an account. With a FLAG it is bounded (its debits may not exceed its\n"
             "credits, or the reverse) and the right to spend it is split among the replicas;\n"
             "without one it is unbounded, like an issuer's.",
     .operand = "ID",
     .options = {"--ledger", "--code", "--user-data", "--flags"},
     .required = {"--ledger"},
     .request = create_account},
    {.words = "transfer",
     .lines = "  transfer ID --debit ID --credit ID --amount N --ledger N [--code N]\n"
              "      [--user-data N] [--pending [--timeout-ms N]]\n"
              "  transfer ID --post PENDING_ID [--amount N]  |  transfer ID --void PENDING_ID\n",
     .what = "Moves an amount from the debit account to the credit account: at once, or\n"
             "pending (reserved until posted, voided or timed out). --post settles a pending\n"
             "transfer made here, in full or in part (--amount); --void releases it.",
     .operand = "ID",
     .options = {"--debit", "--credit", "--amount", "--ledger", "--code", "--user-data",
                 "--timeout-ms", "--post", "--void"},
     .toggle = "--pending",
     .request = create_transfer},
    {.words = "balance",
     .lines = "  balance ID\n",
     .what = "Shows an account: its fields, its posted and pending sums, the rights this replica\n"
             "holds on it, and which replicas hold the rest.",
     .operand = "ID",
     .request = lookup},
    {.words = "transfer-info",
     .lines = "  transfer-info ID\n",
     .what = "Shows a transfer: its fields, the replica that made it, and where it stands (a\n"
             "pending one's state, or the pending a post or void settles and that one's state).",
     .operand = "ID",
     .request = lookup},
    {.words = "grant",
     .lines = "  grant ACCOUNT --to REPLICA --amount N [--to-unknown]\n",
     .what = "Gives an amount of this replica's rights on a bounded account to another replica,\n"
             "which must have been heard from here (or be a connected peer), unless\n"
             "--to-unknown says you know it exists: rights given to an id nobody holds are lost.",
     .operand = "ACCOUNT",
     .options = {"--to", "--amount"},
     .required = {"--to", "--amount"},
     .toggle = "--to-unknown",
     .request = grant},
    {.words = "rights request",
     .lines = "  rights request ACCOUNT --amount N        (with --server)\n",
     .what = "Asks the peers holding rights on a bounded account for an amount of them, and waits\n"
             "until they have arrived or no reachable holder has more to spare.",
     .operand = "ACCOUNT",
     .options = {"--amount"},
     .required = {"--amount"},
     .needs_server = true,
     .request = request_rights},
    {.words = "conflicts",
     .lines = "  conflicts\n",
     .what = "Lists what concurrent writes produced: an account or transfer id made differently\n"
             "on two replicas, with the op lookups show (the winner) and the other, which stays.",
     .request = op_only},
    {.words = "forks",
     .lines = "  forks\n",
     .what = "Lists the replicas proven to have signed two histories (a directory restored from a\n"
             "backup or copied), each with its proof: two overlapping statements it signed, and\n"
             "its key. Such a replica is given no rights, and takes no writes itself.",
     .request = op_only},
    {.words = "hold lift",
     .lines = "  hold lift\n",
     .what = "Lifts the hold on a replica's writes (status shows it: a directory restored, copied\n"
             "or damaged). You vouch that no other copy of this replica has written since the\n"
             "state it holds: if one has, the two histories are a fork. Without it, a peer that\n"
             "holds this replica's history up to where it stands lifts the hold when they sync.",
     .request = lift_hold},
    {.words = "cluster init",
     .lines = "  cluster init NAME --out DIR              (runs here)\n",
     .what = "Creates a cluster's authority, which admits replicas: DIR/authority.pem, its\n"
             "certificate (give it to every replica: tallyd --authority), and DIR/authority.key,\n"
             "its private key (keep it offline and secret).",
     .operand = "NAME",
     .options = {"--out"},
     .required = {"--out"},
     .local = cluster_init},
    {.words = "replica admit",
     .lines = "  replica admit ID --public-key HEX --authority DIR [--until SECONDS]\n"
              "      [--read-only] [--out FILE]           (runs here)\n",
     .what = "Admits a replica to the cluster: a certificate binding its id to its public key\n"
             "(tally status shows both), signed with the authority in DIR, valid until --until\n"
             "(seconds since 1970; default: never), letting it write unless --read-only. Give\n"
             "it to the replica: tallyd --certificate FILE.",
     .operand = "ID",
     .options = {"--public-key", "--authority", "--until", "--out"},
     .required = {"--public-key", "--authority"},
     .toggle = "--read-only",
     .local = replica_admit},
    {.words = "certificate set",
     .lines = "  certificate set FILE\n",
     .what = "Gives the replica its certificate from its cluster's authority (tally replica\n"
             "admit), kept in its directory: a replica started before it was admitted writes\n"
             "from now on, with no restart.",
     .operand = "FILE",
     .request = set_certificate},
    {.words = "peer add",
     .lines = "  peer add HOST:PORT                       (with --server)\n",
     .what = "Keeps a connection to a peer's sync port, reconnecting until the peer is removed.",
     .operand = "HOST:PORT",
     .needs_server = true,
     .request = peer},
    {.words = "peer remove",
     .lines = "  peer remove HOST:PORT                    (with --server)\n",
     .what = "Closes the session with a peer and stops reconnecting to it.",
     .operand = "HOST:PORT",
     .needs_server = true,
     .request = peer},
};

/* Whether `words` name cmd, or begin its name ("peer" begins "peer add", not "peers"). */
static bool named_by(const command *cmd, const char *words) {
    size_t n = strlen(words);
    return strncmp(cmd->words, words, n) == 0 && (cmd->words[n] == '\0' || cmd->words[n] == ' ');
}

static bool names_a_command(const char *words) {
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (named_by(&commands[i], words)) {
            return true;
        }
    }
    return false;
}

/* Prints the usage: with words NULL, every command's lines; else the lines and the description
 * of each command that `words` name or begin ("peer": peer add and peer remove). */
static void print_usage(FILE *to, const char *words) {
    fputs("usage: tally [--server HOST:PORT [--timeout MS] | --data DIR] [--json] COMMAND [ARGS]\n",
          to);
    fputs(words == NULL ? "commands:\n" : "", to);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        const command *cmd = &commands[i];
        if (words == NULL || named_by(cmd, words)) {
            fputs(cmd->lines, to);
            for (const char *line = cmd->what; words != NULL && *line != '\0';) {
                size_t n = strcspn(line, "\n");
                fprintf(to, "    %.*s\n", (int)n, line);
                line += n + (line[n] == '\n');
            }
        }
    }
    fputs("ids are decimal or 0x-hex. Exit status: 0 done (or EXISTS: done before, same fields),\n"
          "1 refused or not found, 2 bad usage, 3 server or directory unreachable.\n"
          "`tally COMMAND --help` describes a command, and needs no server or directory.\n",
          to);
}

/* Says why on stderr, then the usage; the exit status of bad usage. */
static int usage(const char *why) {
    fprintf(stderr, "tally: %s\n", why);
    print_usage(stderr, NULL);
    return 2;
}

/* The command whose words start argv[at..], or NULL; *next is set to the index after them. */
static const command *find_command(int argc, char **argv, int at, int *next) {
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        const char *w = commands[i].words;
        int k = at;
        while (k < argc) {
            size_t n = strcspn(w, " ");
            if (strlen(argv[k]) != n || strncmp(argv[k], w, n) != 0) {
                break;
            }
            k++;
            w += n;
            if (*w == '\0') {
                *next = k;
                return &commands[i];
            }
            w++;
        }
    }
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

static uint64_t monotonic_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Waits until fd is ready for `events`, or the deadline passes (false). */
static bool wait_for(int fd, short events, uint64_t deadline) {
    for (;;) {
        uint64_t now = monotonic_ms();
        if (now >= deadline) {
            return false;
        }
        struct pollfd p = {.fd = fd, .events = events};
        int k = poll(&p, 1, (int)(deadline - now));
        if (k > 0) {
            return true;
        }
        if (k < 0 && errno != EINTR) {
            return false;
        }
    }
}

/* A socket connected to ai by the deadline, non-blocking; -1 if not. */
static int connect_by(const struct addrinfo *ai, uint64_t deadline) {
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK, ai->ai_protocol);
    if (fd < 0) {
        return -1;
    }
    int error = 0;
    socklen_t len = sizeof error;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 ||
        (errno == EINPROGRESS && wait_for(fd, POLLOUT, deadline) &&
         getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len) == 0 && error == 0)) {
        return fd;
    }
    close(fd);
    return -1;
}

/* A connected, non-blocking socket to "host:port" (a name, an IPv4 literal or a bracketed IPv6
 * literal), trying each address the name has until the deadline; -1 after saying why. */
static int connect_to(const char *server, uint64_t deadline) {
    net_addr a;
    if (net_addr_parse(server, &a) != TALLY_OK || a.port == 0) {
        fprintf(stderr, "tally: bad server address \"%s\" (HOST:PORT)\n", server);
        return -1;
    }
    char port[8];
    snprintf(port, sizeof port, "%u", (unsigned)a.port);
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(a.host, port, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "tally: bad server address \"%s\": %s\n", server, gai_strerror(rc));
        return -1;
    }
    int fd = -1;
    for (const struct addrinfo *ai = res; ai != NULL && fd < 0; ai = ai->ai_next) {
        fd = connect_by(ai, deadline);
    }
    freeaddrinfo(res);
    if (fd < 0) {
        fprintf(stderr, "tally: cannot reach %s%s\n", server,
                monotonic_ms() >= deadline ? " within the timeout" : "");
    }
    return fd;
}

/* Writes all of buf by the deadline. */
static bool send_by(int fd, const char *buf, size_t n, uint64_t deadline) {
    while (n > 0) {
        ssize_t k = write(fd, buf, n);
        if (k > 0) {
            buf += k;
            n -= (size_t)k;
        } else if (k < 0 && errno != EAGAIN && errno != EINTR) {
            return false;
        } else if (k < 0 && errno == EAGAIN && !wait_for(fd, POLLOUT, deadline)) {
            return false;
        }
    }
    return true;
}

/* Sends the request line to the server and reads its reply line, of at most
 * CONTROL_REPLY_BYTES_MAX bytes with its newline (the most tallyd sends), all within
 * timeout_ms; NULL after saying why on stderr. */
static char *run_remote(const char *server, const char *line, int timeout_ms) {
    uint64_t deadline = monotonic_ms() + (uint64_t)timeout_ms;
    int fd = connect_to(server, deadline);
    if (fd < 0) {
        return NULL;
    }
    char why[160] = "";
    bytes reply = {0};
    uint8_t *newline = NULL;
    if (!send_by(fd, line, strlen(line), deadline) || !send_by(fd, "\n", 1, deadline)) {
        snprintf(why, sizeof why, "the request was not taken within %d ms", timeout_ms);
    }
    while (why[0] == '\0' && newline == NULL) {
        size_t room = CONTROL_REPLY_BYTES_MAX - reply.len, chunk = 64 * 1024;
        if (room == 0) {
            snprintf(why, sizeof why,
                     "the reply is longer than %u MiB, the most a tallyd sends: not read",
                     CONTROL_REPLY_BYTES_MAX >> 20);
        } else if (!bytes_reserve(&reply, chunk < room ? chunk : room)) {
            snprintf(why, sizeof why, "out of memory");
        } else if (!wait_for(fd, POLLIN, deadline)) {
            snprintf(why, sizeof why, "no reply within %d ms", timeout_ms);
        } else {
            size_t want = reply.capacity - reply.len;
            ssize_t k = read(fd, reply.at + reply.len, want < room ? want : room);
            if (k == 0 || (k < 0 && errno != EAGAIN && errno != EINTR)) {
                snprintf(why, sizeof why, "the connection closed without a reply");
            } else if (k > 0) {
                newline = memchr(reply.at + reply.len, '\n', (size_t)k);
                reply.len += (size_t)k;
            }
        }
    }
    close(fd);
    if (newline == NULL) {
        fprintf(stderr, "tally: %s: %s\n", server, why);
        bytes_free(&reply);
        return NULL;
    }
    *newline = '\0';
    return (char *)reply.at; /* the caller frees it */
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
        if (strcmp(s_(j, "forks"), "0") != 0) {
            printf("forks        %s (see: tally forks)\n", s_(j, "forks"));
        }
        json_t *held = json_object_get(j, "held");
        if (held != NULL) {
            printf("held         %s: %s (see: tally help hold lift)\n", s_(held, "hold"),
                   s_(held, "reason"));
        }
        printf("public key   %s\n", s_(j, "public_key"));
        json_t *adm = json_object_get(j, "admission");
        if (adm != NULL && !json_is_true(json_object_get(adm, "admitted"))) {
            printf("admission    cluster %s: not admitted (see: tally help replica admit)\n",
                   s_(adm, "cluster"));
        } else if (adm != NULL) {
            printf("admission    cluster %s: admitted to %s until %s (seconds since 1970)\n",
                   s_(adm, "cluster"),
                   json_is_true(json_object_get(adm, "may_write")) ? "write" : "read",
                   s_(adm, "not_after"));
        }
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
            if (strcmp(s_(c, "kind"), "account") == 0) {
                /* the other incarnation, and what it holds: reachable by naming it */
                printf("         other: ledger %s, %s; credits %s, debits %s posted\n",
                       s_(c, "ledger"), json_array_size(json_object_get(c, "flags")) == 0
                                            ? "unbounded"
                                            : at_(json_object_get(c, "flags"), 0),
                       s_(c, "credits_posted"), s_(c, "debits_posted"));
            }
        }
    } else if (strcmp(op, "forks") == 0) {
        size_t i;
        json_t *f;
        if (json_array_size(json_object_get(j, "forks")) == 0) {
            printf("no forks\n");
        }
        json_array_foreach(json_object_get(j, "forks"), i, f) {
            json_t *st = json_object_get(f, "statements");
            json_t *a = json_array_get(st, 0), *b = json_array_get(st, 1);
            printf("replica %s signed two histories: its ops %s..%s and %s..%s%s\n",
                   s_(f, "replica"), s_(a, "first"), s_(a, "last"), s_(b, "first"), s_(b, "last"),
                   json_is_true(json_object_get(f, "self"))
                       ? " (this replica: it takes no writes; start it as a new replica)"
                       : "");
            printf("  key        %s\n", s_(f, "public_key"));
            for (size_t k = 0; k < 2; k++) {
                json_t *side = json_array_get(st, k);
                printf("  statement  %s\n  signature  %s\n", s_(side, "statement"),
                       s_(side, "signature"));
            }
        }
        json_array_foreach(json_object_get(j, "damage"), i, f) {
            printf("replica %s's %s histories took %s beyond what it held from account %s "
                   "(ledger %s; at most %s)\n",
                   s_(f, "replica"), s_(f, "histories"), s_(f, "taken"), s_(f, "account"),
                   s_(f, "ledger"), s_(f, "bound"));
        }
    } else if (strcmp(op, "set_certificate") == 0) {
        if (strcmp(s_(j, "result"), "OK") != 0) {
            printf("%s: the certificate is not this replica's from its authority\n",
                   s_(j, "result"));
        } else {
            printf("OK: admitted%s\n",
                   json_is_true(json_object_get(j, "may_write")) ? "" : ", to read only");
        }
    } else if (strcmp(op, "lift_hold") == 0) {
        if (strcmp(s_(j, "result"), "OK") != 0) {
            printf("%s\n", s_(j, "result"));
        } else {
            if (strcmp(s_(j, "was"), "NONE") == 0) {
                printf("OK: nothing was held\n");
            } else {
                printf("OK: the hold (%s) is lifted\n", s_(j, "was"));
            }
        }
    } else if (strcmp(op, "request_rights") == 0) {
        printf("%s: %s granted\n", s_(j, "result"), s_(j, "granted"));
    } else {
        print_result(op, s_(j, "result"));
    }
}

/* Whether s is valid UTF-8, as every JSON string must be (json_string refuses anything else;
 * it fails without memory too, which a command line of this size does not meet). */
static bool utf8_valid(const char *s) {
    json_t *j = json_string(s);
    json_decref(j);
    return j != NULL;
}

/* Where a command goes, and how its reply is shown: the options before the command. */
typedef struct target {
    const char *server, *dir;
    bool as_json;
    int timeout_ms; /* for the whole exchange with a server; 0: not given */
} target;

/* How long an exchange with a server may take in all (connecting, sending, the reply) unless
 * --timeout says otherwise, and the most it may say. */
#define TIMEOUT_MS_DEFAULT 30000
#define TIMEOUT_MS_MAX 3600000

/* Reads the options before the command into t; *at is then the command's first word. Returns
 * -1 to go on, or the exit status. */
static int read_target(int argc, char **argv, target *t, int *at) {
    char why[300];
    memset(t, 0, sizeof *t);
    for (*at = 1; *at < argc && strncmp(argv[*at], "--", 2) == 0; (*at)++) {
        const char *opt = argv[*at];
        if (strcmp(opt, "--help") == 0) {
            print_usage(stdout, NULL);
            return 0;
        }
        if (strcmp(opt, "--json") == 0) {
            if (t->as_json) {
                return usage("--json is given twice");
            }
            t->as_json = true;
            continue;
        }
        if (strcmp(opt, "--timeout") == 0) {
            const char *v = *at + 1 < argc ? argv[*at + 1] : "";
            char *end = NULL;
            long ms = v[0] >= '0' && v[0] <= '9' ? strtol(v, &end, 10) : 0; /* digits only */
            if (t->timeout_ms != 0 || end == NULL || *end != '\0' || ms < 1 ||
                ms > TIMEOUT_MS_MAX) {
                snprintf(why, sizeof why, "--timeout takes, once, a number of ms from 1 to %d",
                         TIMEOUT_MS_MAX);
                return usage(why);
            }
            t->timeout_ms = (int)ms;
            ++*at;
            continue;
        }
        const char **value = strcmp(opt, "--server") == 0 ? &t->server
                             : strcmp(opt, "--data") == 0 ? &t->dir
                                                          : NULL;
        snprintf(why, sizeof why, "%s %s", opt,
                 value == NULL     ? "is not an option"
                 : *at + 1 >= argc ? "needs a value"
                                   : "is given twice");
        if (value == NULL || *at + 1 >= argc || *value != NULL) {
            return usage(why);
        }
        *value = argv[++*at];
    }
    return *at < argc ? -1 : usage("no command");
}

/* Sends the request (taking it) where t says and reads the reply; NULL after saying why on
 * stderr. */
static json_t *exchange(const target *t, json_t *request) {
    char *line = json_dumps(request, JSON_COMPACT);
    json_decref(request);
    if (line == NULL) {
        fprintf(stderr, "tally: out of memory\n");
        return NULL;
    }
    int timeout_ms = t->timeout_ms != 0 ? t->timeout_ms : TIMEOUT_MS_DEFAULT;
    char *text =
        t->server != NULL ? run_remote(t->server, line, timeout_ms) : run_local(t->dir, line);
    free(line);
    if (text == NULL) {
        return NULL;
    }
    json_t *reply = json_loads(text, 0, NULL);
    if (reply == NULL) {
        fprintf(stderr, "tally: the reply is not JSON: %s\n", text);
    }
    free(text);
    return reply;
}

/* Shows the reply to op as t asks; the exit status: 0 when the command did what it asked (a
 * retry that found its transfer already there included), 1 when it was refused. */
static int report(const target *t, const char *op, json_t *reply) {
    bool ok = json_is_true(json_object_get(reply, "ok"));
    const char *result = json_string_value(json_object_get(reply, "result"));
    json_t *results = json_object_get(reply, "results");
    if (results != NULL) {
        result = json_string_value(json_array_get(results, 0));
    }
    bool done =
        ok && (result == NULL || strcmp(result, "OK") == 0 || strcmp(result, "EXISTS") == 0);
    if (t->as_json) {
        char *out = json_dumps(reply, JSON_COMPACT | JSON_SORT_KEYS);
        printf("%s\n", out);
        free(out);
    } else if (!ok) {
        fprintf(stderr, "tally: %s: %s\n", s_(reply, "error"), s_(reply, "message"));
    } else {
        numbers_to_text(reply);
        show(op, reply);
    }
    return done ? 0 : 1;
}

int main(int argc, char **argv) {
    target t;
    int at, status = read_target(argc, argv, &t, &at);
    if (status >= 0) {
        return status;
    }
    char why[300];
    int next = at;
    const command *cmd = find_command(argc, argv, at, &next);
    const char *words = cmd != NULL ? cmd->words : argv[at];
    for (int i = at; i < argc; i++) {
        /* help is about the command, not a ledger: it needs no server or directory */
        if (strcmp(argv[i], "--help") == 0 && names_a_command(words)) {
            print_usage(stdout, words);
            return 0;
        }
    }
    if (cmd == NULL) {
        snprintf(why, sizeof why, "%s \"%s\"",
                 names_a_command(argv[at]) ? "incomplete command" : "unknown command", argv[at]);
        return usage(why);
    }
    for (int i = at; i < argc; i++) {
        if (!utf8_valid(argv[i])) {
            snprintf(why, sizeof why, "argument %d is not valid UTF-8", i);
            return usage(why);
        }
    }
    if (cmd->local != NULL) {
        args la;
        why[0] = '\0';
        if (t.server != NULL || t.dir != NULL) {
            return usage("this command runs here: it takes neither --server nor --data");
        }
        if (!read_args(cmd, argc, argv, next, &la, why, sizeof why)) {
            return usage(why);
        }
        return cmd->local(cmd, &la);
    }
    if ((t.server == NULL) == (t.dir == NULL)) {
        return usage("give --server HOST:PORT or --data DIR");
    }
    if (cmd->needs_server && t.server == NULL) {
        return usage("this command is about the network: it needs --server");
    }
    args a;
    json_t *request = NULL;
    why[0] = '\0';
    if (!read_args(cmd, argc, argv, next, &a, why, sizeof why) ||
        (request = cmd->request(cmd, &a, why, sizeof why)) == NULL) {
        return usage(why[0] != '\0' ? why : "out of memory");
    }
    char op[32];
    snprintf(op, sizeof op, "%s", json_string_value(json_object_get(request, "op")));
    json_t *reply = exchange(&t, request);
    if (reply == NULL) {
        return 3;
    }
    status = report(&t, op, reply);
    json_decref(reply);
    return status;
}
