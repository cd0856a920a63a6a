/*
 * net/cmd/control.c — see control.h.
 */
#include "net/cmd/control.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

typedef struct pending {
    struct pending *next;
    control *c;
    json_t *id; /* the request's id (a reference), or NULL */
    control_reply_fn reply;
    void *ctx;
} pending;

struct control {
    tally_replica *r;
    tally_node *node;
    pending *pending;
};

control *control_new(tally_replica *r, tally_node *node) {
    control *c = calloc(1, sizeof *c);
    if (c != NULL) {
        c->r = r;
        c->node = node;
    }
    return c;
}

void control_free(control *c) {
    if (c == NULL) {
        return;
    }
    /* the node's stop runs every pending rights callback first: none is left here to free */
    while (c->pending != NULL) {
        pending *p = c->pending;
        c->pending = p->next;
        p->c = NULL; /* orphaned: the callback, if it still comes, only frees it */
    }
    free(c);
}

void control_forget(control *c, void *ctx) {
    for (pending *p = c->pending; p != NULL; p = p->next) {
        if (p->ctx == ctx) {
            p->reply = NULL; /* the connection went away: the answer goes nowhere */
        }
    }
}

const char *const control_account_flags[] = {"debits_must_not_exceed_credits",
                                              "credits_must_not_exceed_debits", NULL};
const char *const control_transfer_flags[] = {"pending", "post_pending", "void_pending",
                                              "bounds_named", NULL};

/* --- values ---------------------------------------------------------------------------------- */

static bool parse_u128(const char *s, tally_id *out) {
    out->hi = out->lo = 0;
    if (s == NULL || *s == '\0') {
        return false;
    }
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        s += 2;
        size_t n = strlen(s);
        if (n == 0 || n > 32) {
            return false;
        }
        for (; *s != '\0'; s++) {
            int d = *s >= '0' && *s <= '9'   ? *s - '0'
                    : *s >= 'a' && *s <= 'f' ? *s - 'a' + 10
                    : *s >= 'A' && *s <= 'F' ? *s - 'A' + 10
                                             : -1;
            if (d < 0) {
                return false;
            }
            out->hi = out->hi << 4 | out->lo >> 60;
            out->lo = out->lo << 4 | (uint64_t)d;
        }
        return true;
    }
    for (; *s != '\0'; s++) {
        if (*s < '0' || *s > '9') {
            return false;
        }
        /* (hi, lo) * 10 + d, refusing overflow past 128 bits */
        unsigned d = (unsigned)(*s - '0');
        uint64_t lo_hi = out->lo >> 32, lo_lo = out->lo & 0xffffffffu;
        uint64_t t_lo = lo_lo * 10 + d;
        uint64_t t_mid = lo_hi * 10 + (t_lo >> 32);
        uint64_t new_lo = (t_mid << 32) | (t_lo & 0xffffffffu);
        uint64_t carry = t_mid >> 32;
        if (out->hi > (UINT64_MAX - carry) / 10) {
            return false;
        }
        out->hi = out->hi * 10 + carry;
        out->lo = new_lo;
    }
    return true;
}

static bool get_id(json_t *v, tally_id *out) {
    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        out->hi = 0;
        out->lo = (uint64_t)json_integer_value(v);
        return true;
    }
    return json_is_string(v) && parse_u128(json_string_value(v), out);
}

static bool get_u64(json_t *v, uint64_t *out, uint64_t max) {
    tally_id id;
    if (!get_id(v, &id) || id.hi != 0 || id.lo > max) {
        return false;
    }
    *out = id.lo;
    return true;
}

static json_t *id_json(tally_id id) {
    char buf[40];
    if (id.hi == 0) {
        snprintf(buf, sizeof buf, "0x%" PRIx64, id.lo);
    } else {
        snprintf(buf, sizeof buf, "0x%" PRIx64 "%016" PRIx64, id.hi, id.lo);
    }
    return json_string(buf);
}

/* v as a decimal string. Replica ids always go out so: they are random 64-bit numbers, and a
 * JSON number above 2^53 does not survive JavaScript's JSON.parse. */
static json_t *decimal_json(uint64_t v) {
    char buf[24];
    snprintf(buf, sizeof buf, "%" PRIu64, v);
    return json_string(buf);
}

/* An amount or a count: a JSON number while every JSON reader holds it exactly (up to
 * 2^53 - 1, JavaScript's Number.MAX_SAFE_INTEGER), a decimal string above. */
#define JSON_EXACT_INTEGER_MAX ((UINT64_C(1) << 53) - 1)
static json_t *u64_json(uint64_t v) {
    return v <= JSON_EXACT_INTEGER_MAX ? json_integer((json_int_t)v) : decimal_json(v);
}

/* An op's dot: [origin, seq], the origin a replica id. */
/* Bytes as lowercase hex (a digest, a key, a statement, a signature). */
static json_t *hex_json(const uint8_t *p, size_t n) {
    char hex[2 * TALLY_STATEMENT_BYTES + 1];
    assert(n <= TALLY_STATEMENT_BYTES);
    for (size_t i = 0; i < n; i++) {
        snprintf(hex + 2 * i, 3, "%02x", p[i]);
    }
    hex[2 * n] = 0;
    return json_string(hex);
}

static json_t *dot_json(tally_dot d) {
    return json_pack("[o,o]", decimal_json(d.origin), u64_json(d.seq));
}

/* --- requests -------------------------------------------------------------------------------- */

typedef struct req {
    json_t *body;
    const char *bad_key; /* the first field that was missing or wrong */
    char message[200];
} req;

/* Checks that obj has only the keys listed (NULL-terminated). */
static bool only_keys(req *q, json_t *obj, const char *const *keys) {
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        bool known = false;
        for (const char *const *k = keys; *k != NULL && !known; k++) {
            known = strcmp(*k, key) == 0;
        }
        if (!known) {
            snprintf(q->message, sizeof q->message, "unknown field \"%s\"", key);
            return false;
        }
    }
    return true;
}

static bool field_id(req *q, json_t *obj, const char *key, tally_id *out, bool required) {
    json_t *v = json_object_get(obj, key);
    out->hi = out->lo = 0;
    if (v == NULL && !required) {
        return true;
    }
    if (v == NULL || !get_id(v, out)) {
        snprintf(q->message, sizeof q->message, "\"%s\" must be an id (decimal or 0x hex)", key);
        return false;
    }
    return true;
}

static bool field_u64(req *q, json_t *obj, const char *key, uint64_t *out, uint64_t max,
                      bool required) {
    json_t *v = json_object_get(obj, key);
    *out = 0;
    if (v == NULL && !required) {
        return true;
    }
    if (v == NULL || !get_u64(v, out, max)) {
        snprintf(q->message, sizeof q->message, "\"%s\" must be a whole number up to %" PRIu64,
                 key, max);
        return false;
    }
    return true;
}

/* obj[key]: a list of flag names from `names` (or a number), into *out; absent is 0. */
static bool parse_flag_names(req *q, json_t *obj, const char *key, const char *const *names,
                             uint16_t *out) {
    json_t *v = json_object_get(obj, key);
    *out = 0;
    if (v == NULL) {
        return true;
    }
    if (json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) <= 0xffff) {
        *out = (uint16_t)json_integer_value(v);
        return true;
    }
    if (!json_is_array(v)) {
        snprintf(q->message, sizeof q->message, "\"%s\" must be a list of names", key);
        return false;
    }
    size_t i;
    json_t *name;
    json_array_foreach(v, i, name) {
        int bit = -1;
        for (int k = 0; names[k] != NULL && json_is_string(name); k++) {
            if (strcmp(names[k], json_string_value(name)) == 0) {
                bit = k;
            }
        }
        if (bit < 0) {
            snprintf(q->message, sizeof q->message, "unknown flag in \"%s\"", key);
            return false;
        }
        *out |= (uint16_t)(1u << bit);
    }
    return true;
}

static bool parse_flags(req *q, json_t *obj, bool transfer, uint16_t *out) {
    return parse_flag_names(q, obj, "flags",
                            transfer ? control_transfer_flags : control_account_flags, out);
}

/* A transfer's "debit_bound" and "credit_bound" (account flag names; [] for unbounded) name
 * the incarnations it writes to: either one sets TALLY_TRANSFER_BOUNDS_NAMED. */
static bool parse_bounds(req *q, json_t *obj, tally_transfer *t) {
    if (!parse_flag_names(q, obj, "debit_bound", control_account_flags, &t->debit_bound) ||
        !parse_flag_names(q, obj, "credit_bound", control_account_flags, &t->credit_bound)) {
        return false;
    }
    if (json_object_get(obj, "debit_bound") != NULL ||
        json_object_get(obj, "credit_bound") != NULL) {
        t->flags |= TALLY_TRANSFER_BOUNDS_NAMED;
    }
    return true;
}

static bool parse_account(req *q, json_t *obj, tally_account *a) {
    static const char *const keys[] = {"id", "ledger", "code", "user_data", "flags", NULL};
    uint64_t ledger = 0, code = 0;
    memset(a, 0, sizeof *a);
    return json_is_object(obj) && only_keys(q, obj, keys) &&
           field_id(q, obj, "id", &a->id, true) &&
           field_u64(q, obj, "ledger", &ledger, UINT32_MAX, true) &&
           field_u64(q, obj, "code", &code, UINT16_MAX, false) &&
           field_u64(q, obj, "user_data", &a->user_data, UINT64_MAX, false) &&
           parse_flags(q, obj, false, &a->flags) && ((a->ledger = (uint32_t)ledger), true) &&
           ((a->code = (uint16_t)code), true);
}

static bool parse_transfer(req *q, json_t *obj, tally_transfer *t) {
    static const char *const keys[] = {"id",         "debit",       "credit",       "amount",
                                       "ledger",     "code",        "user_data",    "flags",
                                       "pending_id", "timeout_ms",  "debit_bound",  "credit_bound",
                                       NULL};
    uint64_t ledger = 0, code = 0, timeout = 0;
    memset(t, 0, sizeof *t);
    if (!json_is_object(obj)) {
        snprintf(q->message, sizeof q->message, "a transfer must be an object");
        return false;
    }
    bool ok = only_keys(q, obj, keys) && field_id(q, obj, "id", &t->id, true) &&
              field_id(q, obj, "debit", &t->debit_account_id, false) &&
              field_id(q, obj, "credit", &t->credit_account_id, false) &&
              field_u64(q, obj, "amount", &t->amount, UINT64_MAX, false) &&
              field_u64(q, obj, "ledger", &ledger, UINT32_MAX, false) &&
              field_u64(q, obj, "code", &code, UINT16_MAX, false) &&
              field_u64(q, obj, "user_data", &t->user_data, UINT64_MAX, false) &&
              parse_flags(q, obj, true, &t->flags) && parse_bounds(q, obj, t) &&
              field_id(q, obj, "pending_id", &t->pending_id, false) &&
              field_u64(q, obj, "timeout_ms", &timeout, UINT32_MAX, false);
    t->ledger = (uint32_t)ledger;
    t->code = (uint16_t)code;
    t->timeout_ms = (uint32_t)timeout;
    return ok;
}

/* The names of the flags set in `flags`, from `names` (control_account_flags or
 * control_transfer_flags). */
static json_t *flags_json(uint16_t flags, const char *const *names) {
    json_t *list = json_array();
    for (int k = 0; names[k] != NULL; k++) {
        if (flags & (1u << k)) {
            json_array_append_new(list, json_string(names[k]));
        }
    }
    return list;
}

static json_t *account_json(const tally_account *a) {
    json_t *flags = flags_json(a->flags, control_account_flags);
    return json_pack("{s:o, s:I, s:I, s:o, s:o}", "id", id_json(a->id), "ledger",
                     (json_int_t)a->ledger, "code", (json_int_t)a->code, "user_data",
                     u64_json(a->user_data), "flags", flags);
}

static json_t *transfer_json(const tally_replica *r, const tally_transfer *t) {
    json_t *flags = flags_json(t->flags, control_transfer_flags);
    uint64_t origin = 0;
    tally_pending_state st = TALLY_PENDING_NONE;
    tally_transfer_status(r, t->id, &origin, &st);
    static const char *const states[] = {"none", "open", "posted", "voided", "timed_out"};
    json_t *o = json_pack("{s:o, s:o, s:o, s:o, s:I, s:I, s:o, s:o, s:o, s:s}", "id",
                          id_json(t->id), "debit", id_json(t->debit_account_id), "credit",
                          id_json(t->credit_account_id), "amount", u64_json(t->amount), "ledger",
                          (json_int_t)t->ledger, "code", (json_int_t)t->code, "user_data",
                          u64_json(t->user_data), "flags", flags, "origin", decimal_json(origin),
                          "pending_state", states[st]);
    if (t->pending_id.hi != 0 || t->pending_id.lo != 0) {
        json_object_set_new(o, "pending_id", id_json(t->pending_id));
    }
    if (t->flags & (TALLY_TRANSFER_POST_PENDING | TALLY_TRANSFER_VOID_PENDING)) {
        /* a post or void is no pending itself ("none"): what a reader wants is the state of
         * the pending it settles */
        uint64_t pending_origin = 0;
        tally_pending_state pending_st = TALLY_PENDING_NONE;
        tally_transfer_status(r, t->pending_id, &pending_origin, &pending_st);
        json_object_set_new(o, "pending_id_state", json_string(states[pending_st]));
    }
    if (t->timeout_ms != 0) {
        json_object_set_new(o, "timeout_ms", json_integer(t->timeout_ms));
    }
    /* the incarnations written to: what tells them apart after conflicting opens */
    json_object_set_new(o, "debit_bound", flags_json(t->debit_bound, control_account_flags));
    json_object_set_new(o, "credit_bound", flags_json(t->credit_bound, control_account_flags));
    return o;
}

/* --- the ops --------------------------------------------------------------------------------- */

typedef json_t *(*op_fn)(control *c, req *q, int *rc);

char *control_read_key_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return NULL;
    }
    char *buf = malloc(CONTROL_KEY_FILE_MAX + 1);
    size_t n = buf != NULL ? fread(buf, 1, CONTROL_KEY_FILE_MAX + 1, f) : 0;
    int failed = buf == NULL                ? ENOMEM
                 : ferror(f)                ? EIO
                 : n == 0                   ? ENODATA
                 : n > CONTROL_KEY_FILE_MAX ? EFBIG
                                            : 0;
    fclose(f);
    if (failed != 0) {
        free(buf);
        errno = failed;
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

static json_t *result_json(int rc) { return json_pack("{s:s}", "result", tally_result_name(rc)); }

static json_t *op_status(control *c, req *q, int *rc) {
    (void)q;
    tally_stats st;
    *rc = tally_get_stats(c->r, &st);
    uint8_t d[16];
    tally_digest(c->r, d);
    size_t forks = 0;
    (void)tally_forks(c->r, 0, NULL, 0, &forks);
    json_t *o = json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "replica_id",
                          decimal_json(tally_replica_id(c->r)), "digest", hex_json(d, sizeof d),
                          "forks", u64_json(forks), "ops", u64_json(st.ops), "accounts",
                          u64_json(st.accounts), "transfers", u64_json(st.transfers), "pending",
                          u64_json(st.pending), "conflicts", u64_json(st.conflicts), "origins",
                          u64_json(st.origins), "refused_for_rights", u64_json(st.refused_rights));
    json_t *vv = json_object();
    size_t origins = 0;
    tally_version *versions = NULL;
    if (tally_version_vector(c->r, NULL, 0, &origins) == TALLY_OK && origins > 0 &&
        (versions = calloc(origins, sizeof *versions)) != NULL &&
        tally_version_vector(c->r, versions, origins, &origins) == TALLY_OK) {
        for (size_t i = 0; i < origins; i++) {
            char key[24];
            snprintf(key, sizeof key, "%" PRIu64, versions[i].replica_id);
            json_object_set_new(vv, key, u64_json(versions[i].seq));
        }
    }
    free(versions);
    json_object_set_new(o, "version_vector", vv);
    tally_admission adm;
    (void)tally_admission_of(c->r, &adm);
    json_object_set_new(o, "public_key", hex_json(adm.public_key, sizeof adm.public_key));
    if (adm.authority) {
        json_object_set_new(o, "admission",
                            json_pack("{s:s, s:b, s:b, s:o}", "cluster", adm.cluster, "admitted",
                                      adm.admitted, "may_write", adm.may_write, "not_after",
                                      u64_json(adm.not_after)));
    }
    tally_hold held = tally_held(c->r);
    if (held != TALLY_HOLD_NONE) {
        json_object_set_new(o, "held",
                            json_pack("{s:s, s:s}", "hold", tally_hold_name((int)held), "reason",
                                      tally_hold_reason((int)held)));
    }
    if (c->node != NULL) {
        tally_node_stats ns;
        tally_node_get_stats(c->node, &ns);
        tally_node_peer peers[64];
        size_t n_peers = 0;
        tally_node_peers(c->node, peers, 64, &n_peers);
        static const char *const states[] = {"down", "connecting", "handshake", "ready"};
        json_t *list = json_array();
        for (size_t i = 0; i < n_peers && i < 64; i++) {
            json_array_append_new(
                list, json_pack("{s:s, s:s, s:o, s:b}", "address", peers[i].address, "state",
                                states[peers[i].state], "replica",
                                decimal_json(peers[i].replica_id), "outgoing", peers[i].outgoing));
        }
        json_object_set_new(o, "peers", list);
        json_object_set_new(o, "node",
                            json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:i}", "peers",
                                      u64_json(ns.peers), "sessions", u64_json(ns.sessions),
                                      "sessions_ready", u64_json(ns.sessions_ready), "bytes_in",
                                      u64_json(ns.bytes_in), "bytes_out", u64_json(ns.bytes_out),
                                      "ops_in", u64_json(ns.ops_in), "ops_out",
                                      u64_json(ns.ops_out), "port", tally_node_port(c->node)));
    }
    return o;
}

static json_t *op_create_account(control *c, req *q, int *rc) {
    static const char *const keys[] = {"op", "id", "account", NULL};
    tally_account a;
    if (!only_keys(q, q->body, keys) || !parse_account(q, json_object_get(q->body, "account"), &a)) {
        *rc = TALLY_EINVAL;
        return NULL;
    }
    *rc = TALLY_OK;
    return result_json(tally_create_account(c->r, &a));
}

static json_t *op_create_transfers(control *c, req *q, int *rc) {
    static const char *const keys[] = {"op", "id", "transfers", NULL};
    json_t *list = json_object_get(q->body, "transfers");
    *rc = TALLY_EINVAL;
    if (!only_keys(q, q->body, keys)) {
        return NULL;
    }
    if (!json_is_array(list) || json_array_size(list) == 0 || json_array_size(list) > 100000) {
        snprintf(q->message, sizeof q->message, "\"transfers\" must be a list of 1 to 100000");
        return NULL;
    }
    size_t n = json_array_size(list);
    tally_transfer *t = calloc(n, sizeof *t);
    int *results = calloc(n, sizeof *results);
    json_t *out = NULL;
    if (t == NULL || results == NULL) {
        *rc = TALLY_ENOMEM;
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        if (!parse_transfer(q, json_array_get(list, i), &t[i])) {
            char at[sizeof q->message];
            snprintf(at, sizeof at, "%s", q->message);
            snprintf(q->message, sizeof q->message, "transfer %zu: %.170s", i, at);
            goto done;
        }
    }
    *rc = tally_create_transfers(c->r, t, n, results);
    if (*rc == TALLY_OK) {
        json_t *arr = json_array();
        for (size_t i = 0; i < n; i++) {
            json_array_append_new(arr, json_string(tally_result_name(results[i])));
        }
        out = json_pack("{s:o}", "results", arr);
    }
done:
    free(t);
    free(results);
    return out;
}

static json_t *op_lookup_account(control *c, req *q, int *rc) {
    static const char *const keys[] = {"op", "id", "account", NULL};
    tally_id id;
    if (!only_keys(q, q->body, keys) || !field_id(q, q->body, "account", &id, true)) {
        *rc = TALLY_EINVAL;
        return NULL;
    }
    tally_account a;
    tally_balance b;
    *rc = tally_lookup_account(c->r, id, &a);
    if (*rc != TALLY_OK) {
        return NULL;
    }
    int brc = tally_lookup_balance(c->r, id, &b);
    json_t *o = account_json(&a);
    json_object_set_new(o, "debits_posted", u64_json(b.debits_posted));
    json_object_set_new(o, "credits_posted", u64_json(b.credits_posted));
    json_object_set_new(o, "debits_pending", u64_json(b.debits_pending));
    json_object_set_new(o, "credits_pending", u64_json(b.credits_pending));
    json_object_set_new(o, "rights_here", u64_json(b.rights_here));
    if (brc == TALLY_OVERFLOW) {
        json_object_set_new(o, "overflow", json_true());
    }
    tally_rights_entry holders[16];
    size_t count = 0;
    tally_rights_holders(c->r, id, holders, 16, &count);
    json_t *hs = json_array();
    for (size_t i = 0; i < count && i < 16; i++) {
        json_array_append_new(hs, json_pack("{s:o, s:o}", "replica",
                                            decimal_json(holders[i].replica_id), "rights",
                                            u64_json(holders[i].amount)));
    }
    json_object_set_new(o, "holders", hs);
    return json_pack("{s:o}", "account", o);
}

static json_t *op_lookup_transfer(control *c, req *q, int *rc) {
    static const char *const keys[] = {"op", "id", "transfer", NULL};
    tally_id id;
    if (!only_keys(q, q->body, keys) || !field_id(q, q->body, "transfer", &id, true)) {
        *rc = TALLY_EINVAL;
        return NULL;
    }
    tally_transfer t;
    *rc = tally_lookup_transfer(c->r, id, &t);
    return *rc == TALLY_OK ? json_pack("{s:o}", "transfer", transfer_json(c->r, &t)) : NULL;
}

/* Whether replica is a peer this node has a ready session with: one that exists for sure. */
static bool peer_on_the_line(const control *c, uint64_t replica) {
    tally_node_peer peers[64];
    size_t n = 0;
    if (c->node == NULL || tally_node_peers(c->node, peers, 64, &n) != TALLY_OK) {
        return false;
    }
    for (size_t i = 0; i < n && i < 64; i++) {
        if (peers[i].replica_id == replica && peers[i].state == TALLY_PEER_READY) {
            return true;
        }
    }
    return false;
}

static json_t *op_grant(control *c, req *q, int *rc) {
    static const char *const keys[] = {"op",     "id",    "account",    "to",
                                       "amount", "ledger", "bound",     "to_unknown",
                                       NULL};
    tally_grant_request g;
    memset(&g, 0, sizeof g);
    uint64_t ledger = 0;
    json_t *to_unknown = json_object_get(q->body, "to_unknown");
    *rc = TALLY_EINVAL;
    if (!only_keys(q, q->body, keys) || !field_id(q, q->body, "account", &g.account_id, true) ||
        !field_u64(q, q->body, "to", &g.to_replica, UINT64_MAX, true) ||
        !field_u64(q, q->body, "amount", &g.amount, UINT64_MAX, true) ||
        !field_u64(q, q->body, "ledger", &ledger, UINT32_MAX, false) ||
        !parse_flag_names(q, q->body, "bound", control_account_flags, &g.bound)) {
        return NULL;
    }
    if (to_unknown != NULL && !json_is_boolean(to_unknown)) {
        snprintf(q->message, sizeof q->message, "\"to_unknown\" must be true or false");
        return NULL;
    }
    g.ledger = (uint32_t)ledger;
    if (json_is_true(to_unknown) || peer_on_the_line(c, g.to_replica)) {
        g.flags = TALLY_GRANT_TO_UNKNOWN;
    }
    *rc = TALLY_OK;
    return result_json(tally_grant_with(c->r, &g));
}

static json_t *op_conflicts(control *c, req *q, int *rc) {
    static const char *const keys[] = {"op", "id", NULL};
    if (!only_keys(q, q->body, keys)) {
        *rc = TALLY_EINVAL;
        return NULL;
    }
    size_t n = 0;
    tally_conflicts(c->r, 0, NULL, 0, &n);
    tally_conflict *list = calloc(n + 1, sizeof *list);
    if (list == NULL) {
        *rc = TALLY_ENOMEM;
        return NULL;
    }
    *rc = tally_conflicts(c->r, 0, list, n, &n);
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        const tally_conflict *k = &list[i];
        json_t *o = json_pack("{s:s, s:o, s:o, s:o}", "kind",
                              k->kind == TALLY_CONFLICT_ACCOUNT ? "account" : "transfer", "id",
                              id_json(k->id), "winner", dot_json(k->winner), "other",
                              dot_json(k->other));
        if (k->kind == TALLY_CONFLICT_ACCOUNT) {
            /* the other OPEN's incarnation and what it holds, so its money can be found */
            json_object_set_new(o, "ledger", json_integer(k->ledger));
            json_object_set_new(o, "flags", flags_json(k->flags, control_account_flags));
            json_object_set_new(o, "debits_posted", u64_json(k->balance.debits_posted));
            json_object_set_new(o, "credits_posted", u64_json(k->balance.credits_posted));
            json_object_set_new(o, "debits_pending", u64_json(k->balance.debits_pending));
            json_object_set_new(o, "credits_pending", u64_json(k->balance.credits_pending));
            json_object_set_new(o, "rights_here", u64_json(k->balance.rights_here));
        }
        json_array_append_new(arr, o);
    }
    free(list);
    return json_pack("{s:o}", "conflicts", arr);
}

/* Each proof of a fork held here, whole: anyone can check it with the key (docs/design.md). */
static json_t *op_forks(control *c, req *q, int *rc) {
    static const char *const keys[] = {"op", "id", NULL};
    if (!only_keys(q, q->body, keys)) {
        *rc = TALLY_EINVAL;
        return NULL;
    }
    size_t n = 0;
    tally_forks(c->r, 0, NULL, 0, &n);
    tally_fork *list = calloc(n + 1, sizeof *list);
    if (list == NULL) {
        *rc = TALLY_ENOMEM;
        return NULL;
    }
    *rc = tally_forks(c->r, 0, list, n, &n);
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        const tally_fork *f = &list[i];
        json_t *sides = json_array();
        for (int k = 0; k < 2; k++) {
            json_array_append_new(
                sides, json_pack("{s:o, s:o, s:o, s:o}", "first", u64_json(f->first[k]), "last",
                                 u64_json(f->last[k]), "statement",
                                 hex_json(f->statement[k], TALLY_STATEMENT_BYTES), "signature",
                                 hex_json(f->signature[k], sizeof f->signature[k])));
        }
        json_array_append_new(
            arr, json_pack("{s:o, s:b, s:o, s:o}", "replica", decimal_json(f->replica_id), "self",
                           f->replica_id == tally_replica_id(c->r), "public_key",
                           hex_json(f->public_key, sizeof f->public_key), "statements", sides));
    }
    free(list);
    /* what each forked replica's histories took beyond what it held, and the bound */
    size_t m = 0;
    tally_fork_damage(c->r, 0, NULL, 0, &m);
    tally_damage *d = calloc(m + 1, sizeof *d);
    json_t *damage = json_array();
    if (d != NULL && tally_fork_damage(c->r, 0, d, m, &m) == TALLY_OK) {
        for (size_t i = 0; i < m; i++) {
            json_array_append_new(
                damage, json_pack("{s:o, s:o, s:I, s:o, s:I, s:o, s:o}", "replica",
                                  decimal_json(d[i].replica_id), "account",
                                  id_json(d[i].account_id), "ledger", (json_int_t)d[i].ledger,
                                  "flags", flags_json(d[i].flags, control_account_flags),
                                  "histories", (json_int_t)d[i].histories, "taken",
                                  u64_json(d[i].taken), "bound", u64_json(d[i].bound)));
        }
    }
    free(d);
    return json_pack("{s:o, s:o}", "forks", arr, "damage", damage);
}

/* An operator's word that no other copy of this replica wrote: lifts the hold on its writes
 * (a node logs it, with the hold it lifted). */
static json_t *op_lift_hold(control *c, req *q, int *rc) {
    static const char *const keys[] = {"op", "id", NULL};
    if (!only_keys(q, q->body, keys)) {
        *rc = TALLY_EINVAL;
        return NULL;
    }
    tally_hold was = tally_held(c->r);
    *rc = TALLY_OK;
    int lifted = c->node != NULL ? tally_node_lift_hold(c->node) : tally_lift_hold(c->r);
    return json_pack("{s:s, s:s}", "result", tally_result_name(lifted), "was",
                     tally_hold_name((int)was));
}

/* Gives the replica its certificate from its cluster's authority (PEM), kept durably: a replica
 * that was started before it was admitted writes from now on. */
static json_t *op_set_certificate(control *c, req *q, int *rc) {
    static const char *const keys[] = {"op", "id", "certificate", NULL};
    const char *pem = json_string_value(json_object_get(q->body, "certificate"));
    if (!only_keys(q, q->body, keys) || pem == NULL) {
        if (q->message[0] == '\0') {
            snprintf(q->message, sizeof q->message,
                     "\"certificate\" must be the certificate, PEM, as a string");
        }
        *rc = TALLY_EINVAL;
        return NULL;
    }
    *rc = TALLY_OK;
    int set = tally_set_certificate(c->r, (const uint8_t *)pem, strlen(pem));
    tally_admission a;
    (void)tally_admission_of(c->r, &a);
    return json_pack("{s:s, s:b, s:b}", "result", tally_result_name(set), "admitted", a.admitted,
                     "may_write", a.may_write);
}

static json_t *op_peer(control *c, req *q, int *rc, bool add) {
    static const char *const keys[] = {"op", "id", "address", NULL};
    const char *addr = json_string_value(json_object_get(q->body, "address"));
    if (!only_keys(q, q->body, keys) || addr == NULL) {
        if (q->message[0] == '\0') {
            snprintf(q->message, sizeof q->message, "\"address\" must be \"host:port\"");
        }
        *rc = TALLY_EINVAL;
        return NULL;
    }
    if (c->node == NULL) {
        snprintf(q->message, sizeof q->message, "no network here");
        *rc = TALLY_EINVAL;
        return NULL;
    }
    *rc = TALLY_OK;
    return result_json(add ? tally_node_add_peer(c->node, addr)
                           : tally_node_remove_peer(c->node, addr));
}

static json_t *op_add_peer(control *c, req *q, int *rc) { return op_peer(c, q, rc, true); }
static json_t *op_remove_peer(control *c, req *q, int *rc) { return op_peer(c, q, rc, false); }

/* --- replies --------------------------------------------------------------------------------- */

static void send_reply(control_reply_fn reply, void *ctx, json_t *id, json_t *body) {
    if (id != NULL) {
        json_object_set(body, "id", id);
    }
    char *text = json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS);
    reply(ctx, text != NULL ? text : "{\"ok\":false,\"error\":\"ENOMEM\"}");
    free(text);
}

static void reply_error(control_reply_fn reply, void *ctx, json_t *id, int rc, const char *msg) {
    json_t *body = json_pack("{s:b, s:s, s:s}", "ok", 0, "error", tally_result_name(rc),
                             "message", msg != NULL && msg[0] != '\0' ? msg : tally_strerror(rc));
    send_reply(reply, ctx, id, body);
    json_decref(body);
}

static void on_rights(void *ctx, int result, uint64_t granted) {
    pending *p = ctx;
    if (p->c != NULL) {
        for (pending **pp = &p->c->pending; *pp != NULL; pp = &(*pp)->next) {
            if (*pp == p) {
                *pp = p->next;
                break;
            }
        }
    }
    if (p->reply != NULL) {
        json_t *body = json_pack("{s:b, s:s, s:o}", "ok", 1, "result", tally_result_name(result),
                                 "granted", u64_json(granted));
        send_reply(p->reply, p->ctx, p->id, body);
        json_decref(body);
    }
    json_decref(p->id);
    free(p);
}

static void op_request_rights(control *c, req *q, json_t *id, control_reply_fn reply, void *ctx) {
    static const char *const keys[] = {"op", "id", "account", "amount", NULL};
    tally_id account;
    uint64_t amount;
    if (!only_keys(q, q->body, keys) || !field_id(q, q->body, "account", &account, true) ||
        !field_u64(q, q->body, "amount", &amount, UINT64_MAX, true)) {
        reply_error(reply, ctx, id, TALLY_EINVAL, q->message);
        return;
    }
    if (c->node == NULL) {
        reply_error(reply, ctx, id, TALLY_EINVAL, "no network here: rights come from peers");
        return;
    }
    pending *p = calloc(1, sizeof *p);
    if (p == NULL) {
        reply_error(reply, ctx, id, TALLY_ENOMEM, NULL);
        return;
    }
    p->c = c;
    p->id = json_incref(id);
    p->reply = reply;
    p->ctx = ctx;
    int rc = tally_node_request_rights(c->node, account, amount, on_rights, p);
    if (rc != TALLY_OK) {
        json_decref(p->id);
        free(p);
        reply_error(reply, ctx, id, rc, NULL);
        return;
    }
    p->next = c->pending;
    c->pending = p;
}

void control_request(control *c, const char *line, size_t len, control_reply_fn reply,
                     void *ctx) {
    json_error_t jerr;
    req q;
    memset(&q, 0, sizeof q);
    q.body = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
    if (q.body == NULL || !json_is_object(q.body)) {
        char msg[240];
        snprintf(msg, sizeof msg, "not a JSON object: %s", q.body == NULL ? jerr.text : "");
        reply_error(reply, ctx, NULL, TALLY_EINVAL, msg);
        json_decref(q.body);
        return;
    }
    json_t *id = json_object_get(q.body, "id");
    const char *op = json_string_value(json_object_get(q.body, "op"));
    static const struct {
        const char *name;
        op_fn fn;
    } ops[] = {
        {"status", op_status},
        {"create_account", op_create_account},
        {"create_transfers", op_create_transfers},
        {"account", op_lookup_account},
        {"transfer", op_lookup_transfer},
        {"grant", op_grant},
        {"conflicts", op_conflicts},
        {"forks", op_forks},
        {"lift_hold", op_lift_hold},
        {"set_certificate", op_set_certificate},
        {"add_peer", op_add_peer},
        {"remove_peer", op_remove_peer},
    };
    if (op != NULL && strcmp(op, "request_rights") == 0) {
        op_request_rights(c, &q, id, reply, ctx);
        json_decref(q.body);
        return;
    }
    for (size_t i = 0; op != NULL && i < sizeof ops / sizeof ops[0]; i++) {
        if (strcmp(ops[i].name, op) == 0) {
            int rc = TALLY_OK;
            json_t *body = ops[i].fn(c, &q, &rc);
            if (body == NULL) {
                reply_error(reply, ctx, id, rc, q.message);
            } else {
                json_object_set_new(body, "ok", json_true());
                send_reply(reply, ctx, id, body);
                json_decref(body);
            }
            json_decref(q.body);
            return;
        }
    }
    char msg[160];
    snprintf(msg, sizeof msg, "unknown op \"%s\"", op != NULL ? op : "(none)");
    reply_error(reply, ctx, id, TALLY_EINVAL, msg);
    json_decref(q.body);
}
