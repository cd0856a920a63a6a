/*
 * net/cmd/config.h — tallyd's settings, from flags or from a JSON config file.
 *
 * 1. An unknown key, a value of the wrong kind or out of range, or a duplicate key is refused,
 *    and the message names the key; nothing is half-applied silently.
 * 2. Every string in the settings is owned by them: config_free releases all of it.
 */
#ifndef TALLY_NET_CONFIG_H
#define TALLY_NET_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tally.h"

#define PEERS_MAX 64

typedef struct settings {
    char *data, *listen, *control, *cluster;
    char *peers[PEERS_MAX];
    int n_peers;
    tally_sync_mode sync;
    uint32_t anti_entropy_ms;
    uint64_t rights_reserve;
    uint64_t capacity_accounts, capacity_transfers; /* tally_reserve at start; 0: grow */
} settings;

/* "commit" or "none". */
bool config_set_sync(settings *s, const char *v);
/* Applies a JSON config text (source names it in messages). False with why filled in. */
bool config_parse(settings *s, const char *text, size_t len, const char *source, char *why,
                  size_t why_size);
/* Reads and applies a config file. False with why filled in. */
bool config_load_file(settings *s, const char *path, char *why, size_t why_size);
void config_free(settings *s);

#endif
