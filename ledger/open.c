/*
 * ledger/open.c — opening a replica (in memory, or from its journal: a snapshot, then the frames
 * after it), snapshotting it, and closing it. The top of ledger/: it wires the journal to the
 * snapshot loader and to the replay of frames (sync.c), and nothing below calls into it but
 * ledger/renew.c, whose tally_open calls replica_open here.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>

#include "crdt/bytes.h"
#include "ledger/chain.h"
#include "ledger/journal.h"
#include "ledger/replica.h"
#include "ledger/snapshot.h"
#include "ledger/sync.h"

static int random_replica_id(uint64_t *out) {
    do {
        if (getrandom(out, sizeof *out, 0) != (ssize_t)sizeof *out) {
            return TALLY_EIO;
        }
    } while (*out == 0);
    return TALLY_OK;
}

static void say_error(const tally_options *opts, const char *message) {
    if (opts->error != NULL && opts->error_size > 0) {
        snprintf(opts->error, opts->error_size, "%s", message);
    }
}

static int hook_load(void *ctx, const uint8_t *buf, size_t len, uint64_t *segment,
                     uint64_t *offset) {
    return snapshot_load(ctx, buf, len, segment, offset);
}

static void hook_reset(void *ctx) {
    tally_replica *r = ctx;
    replica_free_tables(r);
    replica_free_admission(r);
    chain_own_free(r);
    r->id = 0;
    r->self = NONE;
    expiry_clock_start(r);
}

/* Opens the journal in opts->dir and loads it into r: a snapshot, then the frames after it. */
static int replica_open_journal(tally_replica *r, const tally_options *opts) {
    r->journal = calloc(1, sizeof *r->journal);
    if (r->journal == NULL) {
        return TALLY_ENOMEM;
    }
    uint64_t id = opts->replica_id;
    journal_hooks hooks = {hook_load, hook_reset, replica_replay_frame, r};
    r->replaying = true;
    int rc = journal_open(r->journal, opts->dir, opts->sync_mode,
                          (opts->flags & TALLY_OPEN_REPAIR) != 0, &id, &hooks, opts->error,
                          opts->error_size);
    r->replaying = false;
    if (rc == TALLY_OK && r->id == 0) {
        rc = replica_set_id(r, id); /* a journal with no ops yet */
    } else if (rc == TALLY_OK && r->id != id) {
        rc = TALLY_ECORRUPT;
        if (opts->error != NULL && opts->error_size > 0) {
            snprintf(opts->error, opts->error_size,
                     "%s: the snapshot and the journal belong to different replicas", opts->dir);
        }
    }
    return rc;
}

/* A new replica's key: a fresh one. A fuzzing build derives it from the id instead, so that
 * runs in a corpus made by one process verify in another, and a fuzzed journal needs no key
 * file beside it. */
static int new_key(uint64_t id, uint8_t seed[CRYPTO_SEED]) {
#ifdef TALLY_FUZZING
    memset(seed, 0, CRYPTO_SEED);
    put_u64le(seed, id);
    seed[CRYPTO_SEED - 1] = 0xf2;
    return TALLY_OK;
#else
    (void)id;
    return crypto_seed_random(seed) ? TALLY_OK : TALLY_EIO;
#endif
}

/* The key a durable replica signs with: dir/key, or a new one when the directory has none
 * yet. A journal whose own runs were signed with a key that is not there (lost, or from
 * another replica) cannot go on as that replica: what it signs next would not chain. */
static int durable_key(tally_replica *r, const tally_options *opts) {
    uint8_t seed[CRYPTO_SEED];
    bool found;
    int rc = journal_read_key(r->journal, seed, &found);
    if (rc == TALLY_OK && !found) {
#ifndef TALLY_FUZZING
        if (r->origins.at[r->self].keyed) {
            rc = TALLY_ECORRUPT;
        }
#endif
        if (rc == TALLY_OK) {
            rc = new_key(r->id, seed);
        }
        if (rc == TALLY_OK) {
            rc = journal_write_key(r->journal, seed);
        }
    }
    if (rc == TALLY_OK && !crypto_set_signer(&r->crypto, seed)) {
        rc = TALLY_ENOMEM;
    }
    if (rc == TALLY_OK) {
        rc = chain_own_key(r);
    }
    if (rc == TALLY_ECORRUPT && opts->error != NULL && opts->error_size > 0) {
        snprintf(opts->error, opts->error_size,
                 "%s: the key file is %s the key this replica signed its history with", opts->dir,
                 found ? "not" : "missing:");
    }
    memset(seed, 0, sizeof seed);
    return rc;
}

/* This replica's ops that no signed run holds (a journal from before 0.3, or a commit whose
 * record was torn off): signed now, before any can be sent. */
static int seal_opened(tally_replica *r) {
    int rc = chain_seal(r);
    return rc == TALLY_OK && r->journal != NULL ? journal_commit(r->journal) : rc;
}

static int snapshot_to(void *ctx, int fd, uint64_t segment, uint64_t offset) {
    return snapshot_write(ctx, fd, segment, offset);
}

/* With a pending of this replica's still due, a CLOCK record of its own of the steady clock
 * as it stands (ledger/expiry.c, invariant 3). */
static int journal_clock(tally_replica *r) {
    if (r->journal->failed || expiry_next(r) == NONE) {
        return TALLY_OK;
    }
    int rc = expiry_clock_journal(r);
    return rc == TALLY_OK ? journal_commit(r->journal) : rc;
}

/* The same at this moment: the time up to now then counts after a restart even if the wall
 * clock has stepped back by then. */
static int journal_clock_now(tally_replica *r) {
    (void)expiry_clock_read(r);
    return journal_clock(r);
}

int tally_snapshot(tally_replica *r) {
    if (r == NULL || r->journal == NULL) {
        return TALLY_EINVAL;
    }
    int rc = journal_clock_now(r);
    return rc == TALLY_OK ? journal_snapshot(r->journal, snapshot_to, r) : rc;
}

int replica_open(const tally_options *opts, tally_replica **out) {
    if (out != NULL) {
        *out = NULL;
    }
    if (opts == NULL || out == NULL ||
        (opts->sync_mode != TALLY_SYNC_NONE && opts->sync_mode != TALLY_SYNC_COMMIT) ||
        (opts->flags & ~(uint32_t)(TALLY_OPEN_REPAIR | TALLY_OPEN_RESTORED)) != 0) {
        return TALLY_EINVAL;
    }
    if (opts->error != NULL && opts->error_size > 0) {
        opts->error[0] = '\0';
    }
    tally_replica *r = calloc(1, sizeof *r);
    if (r == NULL) {
        return TALLY_ENOMEM;
    }
    replica_init(r, opts->clock_ms, opts->clock_ctx);
    expiry_clock_start(r); /* before the journal's pendings are replayed */
    r->learned = calloc(1, sizeof *r->learned);
    int rc = r->learned == NULL || !crypto_init(&r->crypto) ? TALLY_ENOMEM : TALLY_OK;
    _Static_assert(CRYPTO_SEED == sizeof r->learned->nonce, "a nonce is drawn as a seed is");
    if (rc == TALLY_OK) {
        rc = new_key(0, r->learned->nonce); /* the challenge of a hold (chain.h): fresh each time */
    }
    if (rc == TALLY_OK && opts->dir != NULL) {
        rc = replica_open_journal(r, opts);
        if (rc == TALLY_OK) {
            rc = durable_key(r, opts);
        }
        if (rc == TALLY_OK && !r->steady_journaled) {
            /* pendings from before 0.2: the clock their deadlines were set by, before it
             * moves on (ledger/expiry.c, invariant 6) */
            rc = journal_clock(r);
        }
        (void)expiry_clock_read(r); /* the clock moves on from the journal's last record */
    } else if (rc == TALLY_OK) {
        uint64_t id = opts->replica_id;
        uint8_t seed[CRYPTO_SEED];
        rc = id == 0 ? random_replica_id(&id) : TALLY_OK;
        if (rc == TALLY_OK) {
            rc = replica_set_id(r, id);
        }
        if (rc == TALLY_OK) {
            rc = new_key(id, seed);
        }
        if (rc == TALLY_OK) {
            rc = crypto_set_signer(&r->crypto, seed) ? chain_own_key(r) : TALLY_ENOMEM;
        }
        memset(seed, 0, sizeof seed);
    }
    bool restored = (opts->flags & TALLY_OPEN_RESTORED) != 0;
    if (rc == TALLY_OK && r->journal != NULL) {
        rc = restored ? journal_hold(r->journal, TALLY_HOLD_RESTORED) : TALLY_OK;
        r->hold = r->journal->mark.hold; /* the first reason stays */
    } else if (rc == TALLY_OK && restored) {
        r->hold = TALLY_HOLD_RESTORED;
    }
    if (rc == TALLY_OK) {
        rc = replica_open_admission(r, opts);
    }
    if (rc == TALLY_OK) {
        rc = seal_opened(r);
    }
    if (rc != TALLY_OK) {
        if (rc == TALLY_ENOMEM || rc == TALLY_EIO) {
            if (opts->error != NULL && opts->error_size > 0 && opts->error[0] == '\0') {
                say_error(opts, tally_strerror(rc));
            }
        }
        if (r->journal != NULL) {
            journal_close(r->journal); /* as it is: a journal that did not open gets no record */
            free(r->journal);
            r->journal = NULL;
        }
        tally_close(r);
        return rc;
    }
    replica_debug_check(r);
    *out = r;
    return TALLY_OK;
}

#define TALLY_HOLD_MAP(XX)                                                                         \
    XX(NONE, "its writes are not held")                                                            \
    XX(RESTORED, "it was opened as restored from a backup")                                        \
    XX(MOVED, "its directory is not the one it was written in (restored, copied or moved)")        \
    XX(DAMAGED,                                                                                    \
       "opening dropped journal frames that may have been shared, or its mark is damaged "         \
       "or missing")                                                                               \
    XX(MISSING, "a journal segment it had written is missing")                                     \
    XX(UNCLEAN, "it stopped without closing while it did not sync: what it wrote last may be "     \
                "lost")                                                                            \
    XX(RENEWED, "its data was started as a new replica: this copy of the old one is kept to read")

#define HOLD_COUNT_(name, reason) +1
_Static_assert(0 TALLY_HOLD_MAP(HOLD_COUNT_) == TALLY_HOLD_RENEWED + 1, "a name for every hold");
#undef HOLD_COUNT_

tally_hold tally_held(const tally_replica *r) {
    return r != NULL && replica_held(r) ? (tally_hold)r->hold : TALLY_HOLD_NONE;
}

const char *tally_hold_name(int hold) {
#define HOLD_NAME_(name, reason) #name,
    static const char *const names[] = {TALLY_HOLD_MAP(HOLD_NAME_)};
#undef HOLD_NAME_
    return hold >= 0 && hold < (int)(sizeof names / sizeof *names) ? names[hold] : "UNKNOWN";
}

const char *tally_hold_reason(int hold) {
#define HOLD_REASON_(name, reason) reason,
    static const char *const reasons[] = {TALLY_HOLD_MAP(HOLD_REASON_)};
#undef HOLD_REASON_
    return hold >= 0 && hold < (int)(sizeof reasons / sizeof *reasons) ? reasons[hold]
                                                                       : "unknown hold";
}

int tally_lift_hold(tally_replica *r) {
    return r == NULL ? TALLY_EINVAL : replica_commit(r, chain_lift_hold(r));
}

void tally_close(tally_replica *r) {
    if (r == NULL) {
        return;
    }
    if (r->journal != NULL) {
        (void)journal_clock_now(r); /* nobody to tell if it fails: the record helps, no more */
        journal_close(r->journal);
        free(r->journal);
    }
    free(r->learned);
    replica_free_admission(r);
    chain_own_free(r);
    crypto_free(&r->crypto);
    replica_free_tables(r);
    idmap_free(&r->account_map);
    idmap_free(&r->transfer_map);
    idmap_free(&r->origin_map);
    free(r);
}
