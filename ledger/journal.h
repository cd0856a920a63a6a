/*
 * ledger/journal.h — the write-ahead log of a durable replica.
 *
 * A journal is a directory of segment files, each a header and a sequence of frames; a frame is
 * one block of the op codec (codec.h), so the journal and the deltas share one encoding and one
 * checksum. docs/durability.md gives every byte.
 *
 *     dir/LOCK                        flock()ed while the journal is open
 *     dir/key                         the replica's private key (its seed), mode 0600
 *     dir/MARK                        where the directory is, and why its writes are held
 *     dir/journal-<16 hex digits>.tly segments, numbered from 1, in order
 *
 * Invariants:
 *   1. Each commit writes exactly one frame with one write(), so a torn write can only damage
 *      the last frame of the last segment.
 *   2. Opening cuts a damaged last frame off (a torn tail) and refuses, with TALLY_ECORRUPT, a
 *      damaged frame that valid frames follow, unless asked to repair.
 *   3. Under TALLY_SYNC_COMMIT, journal_commit returns only after fdatasync, and a new segment
 *      file is fsynced, with its directory, before a frame goes into it.
 *   4. After a failed write or sync the journal refuses everything with TALLY_EIO: a failed
 *      fsync may have dropped dirty pages the kernel then marks clean, so retrying it could
 *      report success for data that is gone (the "fsyncgate" lesson).
 *   5. Opening never drops a frame that may have been shared without first holding the
 *      replica's writes in dir/MARK (synced): a frame whose bytes were all written but do not
 *      check (bit rot, or a torn write the file system padded), one that does not replay, or
 *      any dropped by repair. Only a frame cut short by the end of the file, or zeros from a
 *      sector boundary on, is dropped freely: it was never acknowledged. A hold stays until
 * journal_lift.
 */
#ifndef TALLY_LEDGER_JOURNAL_H
#define TALLY_LEDGER_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crdt/crypto.h"
#include "ledger/codec.h"
#include "ledger/op.h"
#include "tally.h"

#define JOURNAL_SEGMENT_HEADER 32
#define JOURNAL_SEGMENT_BYTES_MAX (UINT64_C(64) << 20)

/* dir/MARK: the directory's identity (its inode and the mark file's own, and their birth times,
 * which a restore, a copy or a move to another file system changes: a file system may give a
 * new file the inode number of one just removed, never its birth time), the newest segment
 * written, and the hold. */
typedef struct journal_mark {
    uint64_t replica;
    uint64_t dir_ino, mark_ino;
    uint64_t dir_born, mark_born; /* birth times in ns (statx), 0 where the file system has none */
    uint64_t newest;       /* the newest segment this directory has had */
    uint64_t newest_bytes; /* its length when the mark was written: it only grows until opening */
    uint32_t hold;   /* tally_hold: why the replica's writes are held (0: they are not) */
    bool open;       /* a replica has it open without syncing (TALLY_SYNC_NONE) */
} journal_mark;

typedef struct journal {
    char *dir;
    int dir_fd, lock_fd, segment_fd;
    uint64_t replica_id;
    uint64_t segment;       /* the number of the segment being appended to */
    uint64_t segment_bytes; /* its size */
    uint64_t segment_max;   /* rotate past this size */
    tally_sync_mode mode;
    bool failed;            /* a write or sync failed: refuse everything */
    bytes frame;            /* the frame of the commit in progress */
    size_t frame_ops_len;   /* frame.len before the op being added (for a rollback) */
    block_enc enc;
    bool frame_open;
    uint64_t snapshot_segment, snapshot_offset; /* the snapshot opening loaded; 0: none */
    uint64_t replayed_frames;                   /* frames replayed by opening */
    uint32_t segment_version;                   /* of the segment last replayed */
    bool replay_clocks;                         /* its frames may hold CLOCK records (codec.h) */
    journal_mark mark; /* dir/MARK as it is on disk (once opening has written it) */
    bool mark_live;    /* opening is done: a new segment updates the mark */
    bool created;      /* opening found no segment, and made the first */
} journal;

/* What opening a journal calls back into (ctx is the replica):
 *   load    loads a snapshot into an empty replica and returns the journal position it
 *           reflects; anything but TALLY_OK and the journal calls reset and tries an older one;
 *   reset   empties the replica again;
 *   replay  applies one valid frame, in order; anything but TALLY_OK (other than
 *           TALLY_ENOMEM) stops the replay and counts as a corrupt frame. */
typedef struct journal_hooks {
    int (*load)(void *ctx, const uint8_t *buf, size_t len, uint64_t *segment, uint64_t *offset);
    void (*reset)(void *ctx);
    int (*replay)(void *ctx, const uint8_t *frame, size_t len);
    void *ctx;
} journal_hooks;

/* Opens (creating if need be) and locks the journal in dir, loads the newest snapshot that
 * loads, replays the frames after it, and cuts off a torn tail. Then reads dir/MARK and holds
 * the replica's writes (j->mark.hold) when the directory is not the one the mark was written
 * in, a segment the mark names is missing, a frame was dropped that may have been shared
 * (invariant 5), the mark is damaged, or missing beside a journal that should have one, or a
 * replica that did not sync had it open and did not close it. *replica_id: in, the id asked
 * for (0: any); out, the journal's (for a new journal, the one asked for or a new random one).
 * error: a sentence on failure. */
int journal_open(journal *j, const char *dir, tally_sync_mode mode, bool repair,
                 uint64_t *replica_id, const journal_hooks *hooks, char *error,
                 size_t error_size);
/* Writes a snapshot through write (given the file and the journal position it reflects),
 * atomically: a temporary file, synced, renamed, its directory synced. Then keeps the two
 * newest snapshots and deletes the segments that only older ones needed. */
int journal_snapshot(journal *j, int (*write)(void *ctx, int fd, uint64_t segment,
                                              uint64_t offset),
                     void *ctx);
/* Adds an op to the frame of the commit in progress. TALLY_ENOMEM, or TALLY_EIO after a
 * failure; nothing is written yet. */
int journal_add(journal *j, const op *o);
/* Takes back the op journal_add added last. */
void journal_unadd(journal *j);
/* Writes the frame in progress (if any) and, under TALLY_SYNC_COMMIT, syncs it. TALLY_EIO on
 * failure, after which the journal is failed for good. */
int journal_commit(journal *j);
/* The replica's private key, as its 32-byte seed, in dir/key (mode 0600). journal_read_key sets
 * *found false when there is no such file; TALLY_ECORRUPT for one that does not check.
 * journal_write_key writes it atomically and durably, whatever the sync mode. */
int journal_read_key(journal *j, uint8_t seed[CRYPTO_SEED], bool *found);
int journal_write_key(journal *j, const uint8_t seed[CRYPTO_SEED]);
/* Holds the replica's writes for `reason` (a tally_hold), durably, unless they are held
 * already (the first reason stays). TALLY_EIO when the mark cannot be written. */
int journal_hold(journal *j, uint32_t reason);
/* Lifts the hold, durably. */
int journal_lift(journal *j);
/* For starting a directory's data as a new replica (ledger/renew.c): journal_dir_temp makes
 * an empty directory beside dir, named dir.new-XXXXXX (its path into out); journal_dir_remove
 * removes such a directory and the files in it; journal_dir_swap puts with in dir's place and
 * dir at kept (which must not exist), in one step where the file system can (RENAME_EXCHANGE:
 * dir never missing), else in two, and syncs their parent. TALLY_EIO, TALLY_EINVAL (a path
 * too long). *swapped says whether dir's old files left it: if they did, with is never to be
 * removed (they may still be there, when the last step failed). */
int journal_dir_temp(const char *dir, char *out, size_t size);
void journal_dir_remove(const char *dir);
int journal_dir_swap(const char *dir, const char *with, const char *kept, bool *swapped);
/* Syncs whatever was written (closing), and closes and unlocks. */
void journal_close(journal *j);

#endif
