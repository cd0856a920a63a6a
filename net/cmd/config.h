/*
 * net/cmd/config.h — tallyd's settings, from flags or from a JSON config file.
 *
 * 1. Each setting is defined once (config.c): its config key, its flag, its kind and its
 *    range. A flag and a config key of the same setting accept exactly the same values.
 * 2. An unknown key or flag, a value of the wrong kind or out of range, or a duplicate key is
 *    refused, and the message names the key or flag; nothing is half-applied silently.
 * 3. Every string in the settings is owned by them: config_free releases all of it.
 */
#ifndef TALLY_NET_CONFIG_H
#define TALLY_NET_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tally.h"

#define PEERS_MAX 64

/* What tallyd does about a data directory that may have been restored from a backup. */
typedef enum restored_mode {
    RESTORED_NO = 0,  /* nothing: its own signs decide (tally_held) */
    RESTORED_YES = 1, /* hold its writes until a peer confirms it (TALLY_OPEN_RESTORED) */
    RESTORED_NEW = 2, /* if its writes are held, or it is proven forked, start its data as a new
                         replica (TALLY_OPEN_AS_NEW) instead of waiting */
} restored_mode;

typedef struct settings {
    char *data, *listen, *control, *cluster;
    char *authority, *certificate; /* files: the cluster authority's certificate, this replica's */
    char *peers[PEERS_MAX];
    int n_peers;
    tally_sync_mode sync;
    restored_mode restored;
    uint64_t anti_entropy_ms; /* 0: the node's default */
    uint64_t rights_reserve;
    uint64_t capacity_accounts, capacity_transfers; /* tally_reserve at start; 0: grow */
} settings;

/* The settings before any flag or file: sync commit, the rest unset. */
void config_init(settings *s);
/* Applies one flag and its value ("--anti-entropy-ms", "100"; "--config", a file's path).
 * False with why filled in. */
bool config_flag(settings *s, const char *flag, const char *value, char *why, size_t why_size);
/* Applies a JSON config text (source names it in messages). False with why filled in. */
bool config_parse(settings *s, const char *text, size_t len, const char *source, char *why,
                  size_t why_size);
/* Reads and applies a config file. False with why filled in. */
bool config_load_file(settings *s, const char *path, char *why, size_t why_size);
void config_free(settings *s);

#endif
