/*
 * net/cmd/config.c — see config.h. Keys: data, listen, control, cluster, sync, anti_entropy_ms,
 * rights_reserve, capacity_accounts, capacity_transfers, peers (docs/operations.md).
 */
#include "net/cmd/config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

bool config_set_sync(settings *s, const char *v) {
    if (strcmp(v, "commit") == 0) {
        s->sync = TALLY_SYNC_COMMIT;
    } else if (strcmp(v, "none") == 0) {
        s->sync = TALLY_SYNC_NONE;
    } else {
        return false;
    }
    return true;
}

/* Replaces a string setting. */
static bool set_string(char **field, const char *v) {
    char *copy = strdup(v);
    if (copy == NULL) {
        return false;
    }
    free(*field);
    *field = copy;
    return true;
}

/* The setting a key of a count (an integer from 0) names, or NULL. */
static uint64_t *count_field(settings *s, const char *key) {
    return strcmp(key, "rights_reserve") == 0       ? &s->rights_reserve
           : strcmp(key, "capacity_accounts") == 0  ? &s->capacity_accounts
           : strcmp(key, "capacity_transfers") == 0 ? &s->capacity_transfers
                                                    : NULL;
}

static bool apply(settings *s, const char *key, json_t *v, const char *source, char *why,
                  size_t why_size) {
    const char *str = json_string_value(v);
    static const char *const string_keys[] = {"data", "listen", "control", "cluster"};
    char **string_fields[] = {&s->data, &s->listen, &s->control, &s->cluster};
    for (int i = 0; i < 4; i++) {
        if (strcmp(key, string_keys[i]) == 0) {
            if (str != NULL && str[0] != '\0' && set_string(string_fields[i], str)) {
                return true;
            }
            snprintf(why, why_size, "%s: bad value for \"%s\"", source, key);
            return false;
        }
    }
    if (strcmp(key, "sync") == 0) {
        if (str != NULL && config_set_sync(s, str)) {
            return true;
        }
    } else if (strcmp(key, "anti_entropy_ms") == 0) {
        if (json_is_integer(v) && json_integer_value(v) > 0 &&
            json_integer_value(v) <= 3600000) {
            s->anti_entropy_ms = (uint32_t)json_integer_value(v);
            return true;
        }
    } else if (count_field(s, key) != NULL) {
        if (json_is_integer(v) && json_integer_value(v) >= 0) {
            *count_field(s, key) = (uint64_t)json_integer_value(v);
            return true;
        }
    } else if (strcmp(key, "peers") == 0) {
        size_t i;
        json_t *p;
        if (!json_is_array(v) || json_array_size(v) + (size_t)s->n_peers > PEERS_MAX) {
            snprintf(why, why_size, "%s: \"peers\" must be a list of at most %d addresses",
                     source, PEERS_MAX);
            return false;
        }
        json_array_foreach(v, i, p) {
            const char *addr = json_string_value(p);
            char *copy = addr != NULL ? strdup(addr) : NULL;
            if (copy == NULL) {
                snprintf(why, why_size, "%s: \"peers\" must be a list of \"host:port\" strings",
                         source);
                return false;
            }
            s->peers[s->n_peers++] = copy;
        }
        return true;
    } else {
        snprintf(why, why_size, "%s: unknown key \"%s\"", source, key);
        return false;
    }
    snprintf(why, why_size, "%s: bad value for \"%s\"", source, key);
    return false;
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
    for (int i = 0; i < s->n_peers; i++) {
        free(s->peers[i]);
    }
    memset(s, 0, sizeof *s);
}
