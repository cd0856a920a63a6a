/*
 * net/cmd/config.c — see config.h. The settings, each defined once in `defs` below; the keys
 * and flags are listed in docs/operations.md.
 */
#include "net/cmd/config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

typedef enum { KIND_STRING, KIND_PEER, KIND_SYNC, KIND_COUNT, KIND_RESTORED } setting_kind;

typedef struct setting_def {
    const char *key, *flag;
    setting_kind kind;
    size_t offset;     /* of the field in settings (KIND_STRING: char *; KIND_COUNT: uint64_t;
                          KIND_RESTORED: restored_mode) */
    uint64_t min, max; /* KIND_COUNT */
} setting_def;

#define AT(field) offsetof(settings, field)

static const setting_def defs[] = {
    {"data", "--data", KIND_STRING, AT(data), 0, 0},
    {"listen", "--listen", KIND_STRING, AT(listen), 0, 0},
    {"control", "--control", KIND_STRING, AT(control), 0, 0},
    {"cluster", "--cluster", KIND_STRING, AT(cluster), 0, 0},
    {"authority", "--authority", KIND_STRING, AT(authority), 0, 0},
    {"certificate", "--certificate", KIND_STRING, AT(certificate), 0, 0},
    {"peers", "--peer", KIND_PEER, AT(peers), 0, 0},
    {"sync", "--sync", KIND_SYNC, AT(sync), 0, 0},
    {"restored", "--restored", KIND_RESTORED, AT(restored), 0, 0},
    {"anti_entropy_ms", "--anti-entropy-ms", KIND_COUNT, AT(anti_entropy_ms), 1, 3600000},
    {"rights_reserve", "--rights-reserve", KIND_COUNT, AT(rights_reserve), 0, UINT64_MAX},
    {"capacity_accounts", "--capacity-accounts", KIND_COUNT, AT(capacity_accounts), 0, UINT64_MAX},
    {"capacity_transfers", "--capacity-transfers", KIND_COUNT, AT(capacity_transfers), 0,
     UINT64_MAX},
};
#define DEFS_COUNT (sizeof defs / sizeof defs[0])

void config_init(settings *s) {
    memset(s, 0, sizeof *s);
    s->sync = TALLY_SYNC_COMMIT;
}

static const setting_def *def_by_key(const char *key) {
    for (size_t i = 0; i < DEFS_COUNT; i++) {
        if (strcmp(defs[i].key, key) == 0) {
            return &defs[i];
        }
    }
    return NULL;
}

static const setting_def *def_by_flag(const char *flag) {
    for (size_t i = 0; i < DEFS_COUNT; i++) {
        if (strcmp(defs[i].flag, flag) == 0) {
            return &defs[i];
        }
    }
    return NULL;
}

/* A text value of a setting that is not a count. False: the value is bad (or no memory). */
static bool set_text(settings *s, const setting_def *d, const char *v) {
    if (d->kind == KIND_SYNC) {
        if (strcmp(v, "commit") != 0 && strcmp(v, "none") != 0) {
            return false;
        }
        s->sync = strcmp(v, "commit") == 0 ? TALLY_SYNC_COMMIT : TALLY_SYNC_NONE;
        return true;
    }
    if (d->kind == KIND_RESTORED) {
        static const char *const modes[] = {
            [RESTORED_NO] = "no", [RESTORED_YES] = "yes", [RESTORED_NEW] = "new"};
        for (size_t i = 0; i < sizeof modes / sizeof *modes; i++) {
            if (strcmp(v, modes[i]) == 0) {
                s->restored = (restored_mode)i;
                return true;
            }
        }
        return false;
    }
    if (v[0] == '\0' || (d->kind == KIND_PEER && s->n_peers == PEERS_MAX)) {
        return false;
    }
    char *copy = strdup(v);
    if (copy == NULL) {
        return false;
    }
    if (d->kind == KIND_PEER) {
        s->peers[s->n_peers++] = copy;
    } else {
        char **field = (char **)((char *)s + d->offset);
        free(*field);
        *field = copy;
    }
    return true;
}

static bool set_count(settings *s, const setting_def *d, uint64_t v) {
    if (v < d->min || v > d->max) {
        return false;
    }
    *(uint64_t *)((char *)s + d->offset) = v;
    return true;
}

/* A decimal count with nothing around it. */
static bool parse_count(const char *text, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || text[0] < '0' || text[0] > '9') {
        return false;
    }
    *out = v;
    return true;
}

/* Says what a setting takes; source is the file, or NULL for a flag. Returns false. */
static bool bad_value(const setting_def *d, const char *name, const char *source, char *why,
                      size_t why_size) {
    char takes[80];
    if (d->kind == KIND_COUNT) {
        snprintf(takes, sizeof takes, "a whole number, %llu to %llu", (unsigned long long)d->min,
                 (unsigned long long)d->max);
    } else if (d->kind == KIND_SYNC) {
        snprintf(takes, sizeof takes, "\"commit\" or \"none\"");
    } else if (d->kind == KIND_RESTORED) {
        snprintf(takes, sizeof takes, source != NULL ? "true, false or \"new\"" : "yes, no or new");
    } else if (d->kind == KIND_PEER) {
        snprintf(takes, sizeof takes, "at most %d \"host:port\" strings in all", PEERS_MAX);
    } else {
        snprintf(takes, sizeof takes, "a string that is not empty");
    }
    snprintf(why, why_size, "%s%sbad value for %s (%s)", source != NULL ? source : "",
             source != NULL ? ": " : "", name, takes);
    return false;
}

bool config_flag(settings *s, const char *flag, const char *value, char *why, size_t why_size) {
    if (strcmp(flag, "--config") == 0) {
        return config_load_file(s, value, why, why_size);
    }
    const setting_def *d = def_by_flag(flag);
    if (d == NULL) {
        snprintf(why, why_size, "unknown option %s", flag);
        return false;
    }
    uint64_t n;
    bool ok = d->kind == KIND_COUNT ? parse_count(value, &n) && set_count(s, d, n)
                                    : set_text(s, d, value);
    return ok || bad_value(d, flag, NULL, why, why_size);
}

static bool apply(settings *s, const char *key, json_t *v, const char *source, char *why,
                  size_t why_size) {
    const setting_def *d = def_by_key(key);
    if (d == NULL) {
        snprintf(why, why_size, "%s: unknown key \"%s\"", source, key);
        return false;
    }
    char name[64];
    snprintf(name, sizeof name, "\"%s\"", key);
    bool ok;
    if (d->kind == KIND_COUNT) {
        ok = json_is_integer(v) && json_integer_value(v) >= 0 &&
             set_count(s, d, (uint64_t)json_integer_value(v));
    } else if (d->kind == KIND_PEER) {
        size_t i;
        json_t *p;
        ok = json_is_array(v);
        json_array_foreach(v, i, p) {
            ok = ok && json_is_string(p) && set_text(s, d, json_string_value(p));
        }
    } else if (d->kind == KIND_RESTORED) {
        ok = json_is_boolean(v) ? set_text(s, d, json_is_true(v) ? "yes" : "no")
                                : json_is_string(v) && strcmp(json_string_value(v), "new") == 0 &&
                                      set_text(s, d, "new");
    } else {
        ok = json_is_string(v) && set_text(s, d, json_string_value(v));
    }
    return ok || bad_value(d, name, source, why, why_size);
}

static bool apply_root(settings *s, json_t *root, const json_error_t *err, const char *source,
                       char *why, size_t why_size) {
    if (root == NULL || !json_is_object(root)) {
        snprintf(why, why_size, "%s: not a JSON object: %s (line %d)", source,
                 root == NULL ? err->text : "", root == NULL ? err->line : 0);
        json_decref(root);
        return false;
    }
    const char *key;
    json_t *v;
    bool ok = true;
    json_object_foreach(root, key, v) {
        if (ok && !apply(s, key, v, source, why, why_size)) {
            ok = false;
        }
    }
    json_decref(root);
    return ok;
}

bool config_parse(settings *s, const char *text, size_t len, const char *source, char *why,
                  size_t why_size) {
    json_error_t err;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
    return apply_root(s, root, &err, source, why, why_size);
}

bool config_load_file(settings *s, const char *path, char *why, size_t why_size) {
    json_error_t err;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
    return apply_root(s, root, &err, path, why, why_size);
}

void config_free(settings *s) {
    free(s->data);
    free(s->listen);
    free(s->control);
    free(s->cluster);
    free(s->authority);
    free(s->certificate);
    for (int i = 0; i < s->n_peers; i++) {
        free(s->peers[i]);
    }
    memset(s, 0, sizeof *s);
}
