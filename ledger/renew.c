/*
 * ledger/renew.c — starting what a directory holds as a new replica (TALLY_OPEN_AS_NEW).
 *
 * A replica that may not write as itself (restored from a backup and not confirmed, copied,
 * proven forked) can still hand on all it holds: its peers' signed runs, its own, and the
 * proofs of forks it keeps. A new replica, with a new id and key, takes them as it would from a
 * peer (every run verified again), in a directory of its own beside the old one; then the two
 * directories change places, and the old one is kept, held, under a name that says whose it
 * was. The old replica's id is not reused: its history stays its own, carried by the new
 * replica as another origin's, and nothing signs as it again.
 *
 * tally_open is here, above ledger/open.c's replica_open: without the flag it is just that.
 *
 * In a cluster with an authority, the new replica belongs to it too, and is not admitted
 * until the authority gives it a certificate for its new id and key (tally_set_certificate).
 *
 * What does not move: ops of the old replica's own that no signed run holds (only a journal
 * that lost a frame has such), which no peer can have either; a run of a peer's that applied
 * here only in part (peers send it again whole). Rights the old replica held stay its own, as
 * after a disk loss, and so do its open pendings: only their origin posts or voids them, so
 * what they reserve stays reserved until the old id is retired.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ledger/journal.h"
#include "ledger/replica.h"
#include "ledger/sync.h"

/* The most one copying step moves: a delta of this size at a time keeps memory flat. */
#define RENEW_DELTA_BYTES (64u << 20)

/* Gives fresh everything old holds that it can send: the deltas a peer with fresh's summary
 * would get, with old's own runs in them although it is held (the hold is on its writes, and
 * it writes nothing here). */
static int copy_all(tally_replica *old, tally_replica *fresh) {
    old->hold = 0; /* in memory only: the mark keeps it */
    int rc = TALLY_OK;
    for (bool done = false; !done && rc == TALLY_OK;) {
        uint8_t *summary = NULL, *delta = NULL;
        size_t summary_len, delta_len = 0;
        vclock peer;
        vclock_init(&peer);
        rc = tally_summary(fresh, &summary, &summary_len);
        if (rc == TALLY_OK) {
            rc = sync_summary_decode(old, summary, summary_len, &peer, NULL);
        }
        if (rc == TALLY_OK) {
            rc = sync_delta(old, &peer, NULL, RENEW_DELTA_BYTES, &delta, &delta_len, NULL);
        }
        done = rc == TALLY_OK && delta_len <= 8;
        if (rc == TALLY_OK && !done) {
            rc = tally_apply(fresh, delta, delta_len);
        }
        free(delta);
        free(summary);
        vclock_free(&peer);
    }
    return rc;
}

/* A name for the old directory that nothing has: dir.replica-ID, or dir.replica-ID-N. */
static int kept_name(const char *dir, uint64_t id, char *out, size_t size) {
    for (unsigned n = 0; n < 1000; n++) {
        int len = n == 0
                      ? snprintf(out, size, "%s.replica-%llu", dir, (unsigned long long)id)
                      : snprintf(out, size, "%s.replica-%llu-%u", dir, (unsigned long long)id, n);
        if (len < 0 || (size_t)len >= size) {
            return TALLY_EINVAL;
        }
        if (access(out, F_OK) != 0) {
            return TALLY_OK;
        }
    }
    return TALLY_EIO;
}

/* Holds the old replica's files, kept at `kept`, for good (TALLY_HOLD_RENEWED): they are
 * not to write by mistake. Best effort: the swap is done, and unheld they could only go on
 * writing as the old id, which the new replica never signs as. */
static void hold_kept(const tally_options *opts, const char *kept) {
    tally_options k = *opts;
    k.dir = kept;
    k.flags &= TALLY_OPEN_REPAIR;
    k.replica_id = 0;
    k.certificate = NULL;
    k.authority = NULL;
    k.error = NULL;
    tally_replica *r = NULL;
    if (replica_open(&k, &r) == TALLY_OK) {
        (void)journal_hold(r->journal, TALLY_HOLD_RENEWED);
        tally_close(r);
    }
}

static int open_as_new(const tally_options *opts, tally_replica **out) {
    /* dir without the slashes it may end with: the new and the kept directories go beside it */
    char dir[4096];
    size_t len = strlen(opts->dir);
    while (len > 1 && opts->dir[len - 1] == '/') {
        len--;
    }
    if (len >= sizeof dir || (len == 1 && opts->dir[0] == '/')) {
        return TALLY_EINVAL;
    }
    memcpy(dir, opts->dir, len);
    dir[len] = '\0';
    tally_options o = *opts;
    o.dir = dir;
    o.flags &= ~(uint32_t)(TALLY_OPEN_AS_NEW | TALLY_OPEN_RESTORED);
    o.replica_id = 0;
    tally_replica *old = NULL, *fresh = NULL;
    int rc = replica_open(&o, &old);
    if (rc != TALLY_OK) {
        return rc;
    }
    uint64_t old_id = old->id, new_id = 0;
    if (opts->replica_id == old_id) {
        tally_close(old);
        if (opts->error != NULL && opts->error_size > 0) {
            snprintf(opts->error, opts->error_size,
                     "%s holds replica %llu already: a new replica needs another id", dir,
                     (unsigned long long)old_id);
        }
        return TALLY_EINVAL;
    }
    char temp[4096], kept[4096];
    bool swapped = false;
    rc = kept_name(dir, old_id, kept, sizeof kept);
    if (rc == TALLY_OK) {
        rc = journal_dir_temp(dir, temp, sizeof temp);
    }
    if (rc == TALLY_OK) {
        tally_options n = o;
        n.dir = temp;
        n.replica_id = opts->replica_id;
        n.flags = 0;
        /* the same cluster, a new member: the old one's authority, and no certificate yet (the
         * old one's names the old id) */
        n.certificate = NULL;
        n.certificate_len = 0;
        if (old->admission != NULL) {
            n.authority = old->admission->der;
            n.authority_len = old->admission->len;
        }
        rc = replica_open(&n, &fresh);
        if (rc == TALLY_OK) {
            new_id = fresh->id;
            rc = copy_all(old, fresh);
        }
        tally_close(fresh);
        tally_close(old);
        old = NULL;
        if (rc == TALLY_OK) {
            rc = journal_dir_swap(dir, temp, kept, &swapped);
        }
        if (!swapped) {
            journal_dir_remove(temp); /* only the new replica's files, never the old one's */
        }
    }
    tally_close(old);
    if (rc != TALLY_OK) {
        if (opts->error != NULL && opts->error_size > 0 && opts->error[0] == '\0') {
            snprintf(opts->error, opts->error_size,
                     "%s could not be started as a new replica: %s%s%s", dir, tally_strerror(rc),
                     swapped ? "; its old files are at " : "", swapped ? temp : "");
        }
        return rc;
    }
    hold_kept(&o, kept);
    o.replica_id = new_id;
    o.certificate = NULL; /* the authority has yet to give the new replica one */
    o.certificate_len = 0;
    o.authority = NULL; /* it has it */
    o.authority_len = 0;
    return replica_open(&o, out);
}

int tally_open(const tally_options *opts, tally_replica **out) {
    if (opts == NULL || (opts->flags & TALLY_OPEN_AS_NEW) == 0) {
        return replica_open(opts, out);
    }
    if (out != NULL) {
        *out = NULL;
    }
    if (out == NULL || opts->dir == NULL) {
        return TALLY_EINVAL;
    }
    if (opts->error != NULL && opts->error_size > 0) {
        opts->error[0] = '\0';
    }
    return open_as_new(opts, out);
}
