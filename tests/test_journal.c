/*
 * test_journal.c — durable replicas: what is acknowledged survives a close, a torn tail, a
 * flipped bit, a failed write; the directory lock; and a replica restored from an old backup.
 */
#include "support.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ledger/chain.h"
#include "ledger/codec.h"
#include "ledger/journal.h"
#include "ledger/replica.h"

#define DEBITS_BOUND TALLY_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS

typedef struct fixture {
    char dir[128];
    char error[256];
    tally_options opts;
} fixture;

static void run(const char *fmt, const char *a, const char *b) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, fmt, a, b);
    assert_int_equal(system(cmd), 0);
}

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/tally-journal-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    f->opts.dir = f->dir;
    f->opts.sync_mode = TALLY_SYNC_COMMIT;
    f->opts.error = f->error;
    f->opts.error_size = sizeof f->error;
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    run("rm -rf %s%s", f->dir, "");
    free(f);
    return 0;
}

static tally_replica *open_ok(fixture *f) {
    tally_replica *r = NULL;
    int rc = tally_open(&f->opts, &r);
    if (rc != TALLY_OK) {
        print_error("tally_open: %s: %s\n", tally_result_name(rc), f->error);
    }
    assert_result(rc, TALLY_OK);
    assert_true(replica_check(r));
    return r;
}

static void seed_accounts(tally_replica *r) {
    tally_account bank = account(1, 1, 0), a = account(2, 1, DEBITS_BOUND);
    tally_account b = account(3, 1, DEBITS_BOUND);
    assert_result(tally_create_account(r, &bank), TALLY_OK);
    assert_result(tally_create_account(r, &a), TALLY_OK);
    assert_result(tally_create_account(r, &b), TALLY_OK);
}

/* The path of segment n of f's journal. */
static void segment_path(const fixture *f, uint64_t n, char *out, size_t size) {
    snprintf(out, size, "%s/journal-%016llx.tly", f->dir, (unsigned long long)n);
}

static long file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

/* --- what survives ------------------------------------------------------------------------- */

static void a_reopened_replica_has_everything_it_acknowledged(void **state) {
    fixture *f = *state;
    f->opts.replica_id = 0;
    tally_replica *r = open_ok(f);
    uint64_t id = tally_replica_id(r);
    assert_int_not_equal(id, 0);
    seed_accounts(r);
    for (uint64_t i = 0; i < 50; i++) {
        tally_transfer t = transfer(100 + i, 1, 2 + i % 2, 10);
        assert_result(tally_create_transfer(r, &t), TALLY_OK);
    }
    tally_transfer p = transfer(200, 2, 3, 5);
    p.flags = TALLY_TRANSFER_PENDING;
    p.timeout_ms = 3600000;
    assert_result(tally_create_transfer(r, &p), TALLY_OK);
    assert_result(grant_to(r, tid(2), 77, 3), TALLY_OK);
    uint8_t before[16], after[16];
    digest_of(r, before);
    tally_close(r);
    r = open_ok(f);
    assert_int_equal(tally_replica_id(r), id); /* the id persists */
    digest_of(r, after);
    assert_memory_equal(before, after, 16);
    /* a reopened replica goes on writing where it stopped */
    tally_transfer post = finish(201, 200, TALLY_TRANSFER_POST_PENDING, 0);
    assert_result(tally_create_transfer(r, &post), TALLY_OK);
    digest_of(r, before);
    tally_close(r);
    r = open_ok(f);
    digest_of(r, after);
    assert_memory_equal(before, after, 16);
    tally_close(r);
}

static void ops_from_peers_are_journalled_too(void **state) {
    fixture *f = *state;
    f->opts.replica_id = 5;
    tally_replica *peer = replica_new(6, NULL);
    seed_accounts(peer);
    tally_transfer t = transfer(300, 1, 2, 40);
    assert_result(tally_create_transfer(peer, &t), TALLY_OK);
    tally_replica *r = open_ok(f);
    sync_pair(peer, r);
    tally_close(r);
    r = open_ok(f);
    assert_converged(peer, r);
    tally_close(r);
    tally_close(peer);
}

static void a_directory_is_open_in_one_replica_at_a_time(void **state) {
    fixture *f = *state;
    tally_replica *r = open_ok(f), *second = (tally_replica *)f;
    assert_result(tally_open(&f->opts, &second), TALLY_ELOCKED);
    assert_null(second);
    assert_non_null(strstr(f->error, f->dir));
    tally_close(r);
    r = open_ok(f); /* closing unlocks */
    tally_close(r);
}

static void a_replica_id_must_match_the_directory(void **state) {
    fixture *f = *state;
    f->opts.replica_id = 11;
    tally_close(open_ok(f));
    f->opts.replica_id = 12;
    tally_replica *r = (tally_replica *)f;
    assert_result(tally_open(&f->opts, &r), TALLY_EINVAL);
    assert_null(r);
    assert_non_null(strstr(f->error, "replica 11"));
    f->opts.replica_id = 0;
    r = open_ok(f);
    assert_int_equal(tally_replica_id(r), 11);
    tally_close(r);
}

static void bad_options_are_refused(void **state) {
    fixture *f = *state;
    tally_replica *r;
    f->opts.flags = 1u << 7;
    assert_result(tally_open(&f->opts, &r), TALLY_EINVAL);
    f->opts.flags = 0;
    f->opts.dir = "/proc/version/no";
    assert_result(tally_open(&f->opts, &r), TALLY_EIO);
    assert_true(strlen(f->error) > 0);
}

/* --- torn tails and bit rot ---------------------------------------------------------------- */

enum { FRAMES = 12 };

/* A journal of FRAMES commits; digests[k] is the state after the first k (k = 0: empty). */
static void write_frames(fixture *f, uint8_t digests[FRAMES + 1][16], long ends[FRAMES + 1]) {
    char path[192];
    segment_path(f, 1, path, sizeof path);
    tally_replica *r = open_ok(f);
    digest_of(r, digests[0]);
    ends[0] = file_size(path);
    tally_account bank = account(1, 1, 0);
    assert_result(tally_create_account(r, &bank), TALLY_OK);
    digest_of(r, digests[1]);
    ends[1] = file_size(path);
    for (int k = 2; k <= FRAMES; k++) {
        tally_account a = account((uint64_t)k, 1, DEBITS_BOUND);
        assert_result(tally_create_account(r, &a), TALLY_OK);
        digest_of(r, digests[k]);
        ends[k] = file_size(path);
    }
    tally_close(r);
}

/* Reads segment 1 of f's journal into buf; returns its length. */
static size_t read_segment(const fixture *f, uint8_t *buf, size_t size) {
    char path[192];
    segment_path(f, 1, path, sizeof path);
    FILE *in = fopen(path, "rb");
    assert_non_null(in);
    size_t len = fread(buf, 1, size, in);
    fclose(in);
    return len;
}

/* Copies file `name` from one directory to another. */
static void copy_file(const char *from, const char *to, const char *name) {
    char path[256];
    uint8_t buf[4096];
    snprintf(path, sizeof path, "%s/%s", from, name);
    FILE *in = fopen(path, "rb");
    assert_non_null(in);
    size_t n = fread(buf, 1, sizeof buf, in);
    fclose(in);
    snprintf(path, sizeof path, "%s/%s", to, name);
    FILE *out = fopen(path, "wb");
    assert_non_null(out);
    assert_int_equal(fwrite(buf, 1, n, out), n);
    fclose(out);
}

/* Writes dir/MARK in place (keeping its inode), as the format says: not held, closed, newest
 * segment 1 of a length it does not know (0). */
static void reset_mark(const fixture *f, uint64_t replica) {
    char path[192];
    snprintf(path, sizeof path, "%s/MARK", f->dir);
    struct stat dst, mst;
    assert_int_equal(stat(f->dir, &dst), 0);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(fstat(fd, &mst), 0);
    uint8_t b[64] = {'T', 'L', 'Y', 'M'};
    put_u32le(b + 4, 1);
    put_u64le(b + 8, replica);
    put_u64le(b + 16, (uint64_t)dst.st_ino);
    put_u64le(b + 24, (uint64_t)mst.st_ino);
    put_u64le(b + 32, 1);
    put_u64le(b + 56, XXH3_64bits(b, 56));
    assert_int_equal(write(fd, b, 64), 64);
    close(fd);
}

/* Where open_image builds its directories: in memory (/dev/shm) where there is one, since the
 * bit-flip test builds one per bit of a journal, and each opening syncs the directory's mark
 * (a disk takes milliseconds a sync); else beside f's directory. */
static void copy_dir(const fixture *f, char *out, size_t size) {
    struct stat st;
    const char *base = strrchr(f->dir, '/');
    if (stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && access("/dev/shm", W_OK) == 0) {
        snprintf(out, size, "/dev/shm%.100s-copy", base);
    } else {
        snprintf(out, size, "%.100s-copy", f->dir);
    }
}

/* Opens a directory whose journal is the image given; returns the result, in *frames how many
 * commits survived (-1 if the state is none of the prefixes), and in *held the replica's hold.
 * The directory is one the image's replica made and closed, its segment then overwritten: so
 * its mark is in order, and a hold comes only from what opening finds in the image. It is made
 * once a test (remove_copy ends it) and used again, its mark reset for each image. */
static int open_image(fixture *f, const uint8_t *image, size_t len,
                      const uint8_t digests[FRAMES + 1][16], int *frames, uint32_t flags,
                      tally_hold *held) {
    fixture copy = *f;
    copy_dir(f, copy.dir, sizeof copy.dir);
    copy.opts.dir = copy.dir;
    copy.opts.sync_mode = TALLY_SYNC_NONE;
    copy.opts.replica_id = get_u64le(image + 8); /* the segment header names it */
    tally_replica *r = NULL;
    char path[192];
    snprintf(path, sizeof path, "%s/MARK", copy.dir);
    if (access(path, F_OK) != 0) {
        assert_result(tally_open(&copy.opts, &r), TALLY_OK);
        tally_close(r);
        copy_file(f->dir, copy.dir, "key"); /* the image's replica signs with it */
    }
    reset_mark(&copy, copy.opts.replica_id); /* as if the image were all it had written */
    segment_path(&copy, 1, path, sizeof path);
    FILE *out = fopen(path, "wb");
    assert_non_null(out);
    assert_int_equal(fwrite(image, 1, len, out), len);
    fclose(out);
    copy.opts.flags = flags;
    r = NULL;
    int rc = tally_open(&copy.opts, &r);
    *frames = -1;
    *held = TALLY_HOLD_NONE;
    if (rc == TALLY_OK) {
        assert_true(replica_check(r));
        *held = tally_held(r);
        uint8_t d[16];
        digest_of(r, d);
        for (int k = 0; k <= FRAMES; k++) {
            if (memcmp(d, digests[k], 16) == 0) {
                *frames = k;
            }
        }
        /* held, it takes no write across a reopen; lifted, it goes on working */
        tally_account extra = account(999, 1, 0);
        if (*held != TALLY_HOLD_NONE) {
            assert_result(tally_create_account(r, &extra), TALLY_ORIGIN_HELD);
            tally_close(r);
            copy.opts.flags = 0;
            assert_result(tally_open(&copy.opts, &r), TALLY_OK);
            assert_int_equal(tally_held(r), *held);
            assert_result(tally_lift_hold(r), TALLY_OK);
        }
        assert_result(tally_create_account(r, &extra), TALLY_OK);
        digest_of(r, d);
        tally_close(r);
        r = NULL;
        copy.opts.flags = 0;
        assert_result(tally_open(&copy.opts, &r), TALLY_OK);
        assert_int_equal(tally_held(r), TALLY_HOLD_NONE);
        uint8_t again[16];
        digest_of(r, again);
        assert_memory_equal(d, again, 16);
        tally_close(r);
    }
    return rc;
}

static void remove_copy(fixture *f) {
    char dir[128];
    copy_dir(f, dir, sizeof dir);
    run("rm -rf %s%s", dir, "");
}

static void a_torn_tail_loses_only_the_last_write(void **state) {
    fixture *f = *state;
    uint8_t digests[FRAMES + 1][16];
    long ends[FRAMES + 1];
    write_frames(f, digests, ends);
    uint8_t buf[4096];
    size_t len = read_segment(f, buf, sizeof buf);
    assert_int_equal((long)len, ends[FRAMES]);
    /* cut the segment at every byte of its last three frames: what is cut off was never
     * acknowledged, so never shared, and nothing is held */
    for (long size = ends[FRAMES - 3]; size <= ends[FRAMES]; size++) {
        int frames;
        tally_hold held;
        assert_result(
            open_image(f, buf, (size_t)size, (const uint8_t(*)[16])digests, &frames, 0, &held),
            TALLY_OK);
        assert_int_equal(held, TALLY_HOLD_NONE);
        int whole = 0;
        while (whole < FRAMES && ends[whole + 1] <= size) {
            whole++;
        }
        assert_int_equal(frames, whole); /* every whole frame, and nothing of the cut one */
    }
    remove_copy(f);
}

static void every_flipped_bit_is_detected_or_falls_in_the_tail(void **state) {
    fixture *f = *state;
    uint8_t digests[FRAMES + 1][16];
    long ends[FRAMES + 1];
    write_frames(f, digests, ends);
    uint8_t buf[4096];
    size_t len = read_segment(f, buf, sizeof buf);
    assert_int_equal((long)len, ends[FRAMES]);
    int detected = 0, tail = 0, unheld = 0;
    for (size_t bit = 0; bit < len * 8; bit++) {
        buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        int frames;
        tally_hold held;
        int rc = open_image(f, buf, len, (const uint8_t(*)[16])digests, &frames, 0, &held);
        buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        if (rc == TALLY_ECORRUPT) {
            detected++;
            continue;
        }
        /* never applied: the only state a flip may leave is the journal minus its last frame */
        assert_result(rc, TALLY_OK);
        assert_true((long)(bit / 8) >= ends[FRAMES - 1]);
        assert_int_equal(frames, FRAMES - 1);
        tail++;
        /* and the frame it drops was whole, so perhaps shared: the replica is held, unless the
         * flip made the frame's length run past the end of the file, which a torn write does */
        if (held != TALLY_HOLD_DAMAGED) {
            assert_int_equal(held, TALLY_HOLD_NONE);
            assert_true((long)(bit / 8) < ends[FRAMES - 1] + 4);
            unheld++;
        }
    }
    assert_true(detected > 0 && tail > 0 && unheld < tail / 10);
    assert_int_equal(detected + tail, (int)len * 8);
    remove_copy(f);
}

static void a_corrupt_frame_in_the_middle_is_refused_unless_repaired(void **state) {
    fixture *f = *state;
    uint8_t digests[FRAMES + 1][16];
    long ends[FRAMES + 1];
    write_frames(f, digests, ends);
    char path[192];
    segment_path(f, 1, path, sizeof path);
    int fd = open(path, O_RDWR);
    uint8_t byte;
    long at = ends[5] + 20; /* inside frame 6 */
    assert_int_equal(pread(fd, &byte, 1, at), 1);
    byte ^= 0x40;
    assert_int_equal(pwrite(fd, &byte, 1, at), 1);
    close(fd);
    tally_replica *r = (tally_replica *)f;
    assert_result(tally_open(&f->opts, &r), TALLY_ECORRUPT);
    assert_null(r);
    char offset[32];
    snprintf(offset, sizeof offset, "offset %ld", ends[5]);
    assert_non_null(strstr(f->error, offset)); /* names the file and the offset */
    assert_non_null(strstr(f->error, "journal-0000000000000001.tly"));
    assert_int_equal(file_size(path), ends[FRAMES]); /* nothing was cut */
    uint8_t buf[4096];
    size_t len = read_segment(f, buf, sizeof buf);
    int frames;
    tally_hold held;
    assert_result(
        open_image(f, buf, len, (const uint8_t(*)[16])digests, &frames, TALLY_OPEN_REPAIR, &held),
        TALLY_OK);
    assert_int_equal(frames, 5);                /* the valid prefix */
    assert_int_equal(held, TALLY_HOLD_DAMAGED); /* what it dropped had been acknowledged */
    remove_copy(f);
}

/* --- segments, failures, lost state -------------------------------------------------------- */

/* Opens f's replica with small segments, and writes the seeded accounts and `transfers`
 * transfers across many of them. */
static tally_replica *open_rotating(fixture *f, uint64_t transfers) {
    tally_replica *r = open_ok(f);
    r->journal->segment_max = 600;
    seed_accounts(r);
    for (uint64_t i = 0; i < transfers; i++) {
        tally_transfer t = transfer(1000 + i, 1, 2, 1);
        assert_result(tally_create_transfer(r, &t), TALLY_OK);
    }
    return r;
}

static void a_long_journal_rotates_segments_and_replays_them_all(void **state) {
    fixture *f = *state;
    tally_replica *r = open_rotating(f, 200);
    uint64_t segments = r->journal->segment;
    assert_true(segments > 5);
    uint8_t before[16], after[16];
    digest_of(r, before);
    tally_close(r);
    r = open_ok(f);
    digest_of(r, after);
    assert_memory_equal(before, after, 16);
    assert_int_equal(r->journal->segment, segments);
    tally_close(r);
    /* a missing segment in the middle is corruption */
    char path[192];
    segment_path(f, 3, path, sizeof path);
    assert_int_equal(unlink(path), 0);
    assert_result(tally_open(&f->opts, &r), TALLY_ECORRUPT);
    assert_non_null(strstr(f->error, "segment 3 is missing"));
}

static void after_a_failed_write_the_replica_refuses_writes(void **state) {
    fixture *f = *state;
    tally_replica *r = open_ok(f);
    seed_accounts(r);
    /* the disk goes away under the journal */
    close(r->journal->segment_fd);
    r->journal->segment_fd = open("/dev/full", O_WRONLY);
    tally_transfer t = transfer(400, 1, 2, 5);
    assert_result(tally_create_transfer(r, &t), TALLY_EIO);
    close(r->journal->segment_fd);
    r->journal->segment_fd = open("/dev/null", O_WRONLY); /* it "works" again: too late */
    t.id = tid(401);
    assert_result(tally_create_transfer(r, &t), TALLY_EIO);
    tally_account a = account(50, 1, 0);
    assert_result(tally_create_account(r, &a), TALLY_EIO);
    assert_result(grant_to(r, tid(2), 9, 1), TALLY_EIO);
    uint8_t *summary, *delta = (uint8_t *)f;
    size_t summary_len, delta_len;
    tally_replica *peer = replica_new(9, NULL);
    assert_result(tally_summary(peer, &summary, &summary_len), TALLY_OK);
    assert_result(tally_delta(r, summary, summary_len, 0, &delta, &delta_len), TALLY_EIO);
    assert_null(delta); /* nothing that may not be on disk leaves */
    tally_free(summary);
    tally_close(peer);
    tally_close(r);
    /* what was acknowledged before is there */
    r = open_ok(f);
    tally_account got;
    assert_result(tally_lookup_account(r, tid(3), &got), TALLY_OK);
    tally_transfer lost;
    assert_result(tally_lookup_transfer(r, tid(400), &lost), TALLY_NOT_FOUND);
    tally_close(r);
}

/* Reads peer's summary as a sync would (tally_delta), and drops the delta. */
static void read_summary_of(tally_replica *peer, tally_replica *r) {
    uint8_t *summary, *delta;
    size_t summary_len, delta_len;
    assert_result(tally_summary(peer, &summary, &summary_len), TALLY_OK);
    assert_result(tally_delta(r, summary, summary_len, 0, &delta, &delta_len), TALLY_OK);
    tally_free(summary);
    tally_free(delta);
}

static void a_replica_restored_from_an_old_backup_waits_for_its_own_ops(void **state) {
    fixture *f = *state;
    f->opts.replica_id = 21;
    tally_replica *r = open_ok(f);
    seed_accounts(r);
    tally_close(r);
    char backup[192];
    snprintf(backup, sizeof backup, "%s.backup", f->dir);
    run("cp -r %s %s", f->dir, backup);
    r = open_ok(f);
    assert_int_equal(tally_held(r), TALLY_HOLD_NONE);
    tally_transfer t = transfer(500, 1, 2, 70);
    assert_result(tally_create_transfer(r, &t), TALLY_OK);
    tally_replica *peer = replica_new(22, NULL);
    sync_pair(r, peer); /* the peer saw op 4 of replica 21 */
    tally_close(r);
    /* the disk is lost; the backup comes back, and is opened with nobody in reach */
    run("rm -rf %s%s", f->dir, "");
    run("mv %s %s", backup, f->dir);
    r = open_ok(f);
    assert_int_equal(tally_seen(r, 21), 3);
    assert_int_equal(tally_held(r), TALLY_HOLD_MOVED);
    /* a new op now would reuse seq 4 for something else: refused at once */
    tally_transfer other = transfer(501, 1, 3, 1);
    assert_result(tally_create_transfer(r, &other), TALLY_ORIGIN_HELD);
    /* it sends none of its own ops, so no peer can learn its head from it */
    tally_replica *newcomer = replica_new(23, NULL);
    sync_pair(r, newcomer);
    assert_int_equal(tally_seen(newcomer, 21), 0);
    read_summary_of(newcomer, r); /* one that knows nothing of it confirms nothing */
    assert_int_equal(tally_held(r), TALLY_HOLD_MOVED);
    /* nor does its own summary echoed back, as a peer that wanted it to write would: a held
     * replica's summary withholds its head */
    read_summary_of(r, r);
    assert_int_equal(tally_held(r), TALLY_HOLD_MOVED);
    /* the peer brings op 4 back, and answers the challenge about it; that confirmation was for
     * that opening: across a restart it is still held until a peer answers the new one */
    sync_pair(peer, r);
    assert_int_equal(tally_seen(r, 21), 4);
    tally_close(r);
    r = open_ok(f);
    assert_int_equal(tally_held(r), TALLY_HOLD_MOVED);
    assert_result(tally_create_transfer(r, &other), TALLY_ORIGIN_HELD);
    read_summary_of(peer, r); /* a summary that names its head is no answer */
    assert_int_equal(tally_held(r), TALLY_HOLD_MOVED);
    sync_pair(peer, r); /* the peer held its history up to where it now stands, and answers */
    assert_int_equal(tally_held(r), TALLY_HOLD_NONE);
    assert_result(tally_create_transfer(r, &other), TALLY_OK);
    tally_transfer back;
    assert_result(tally_lookup_transfer(r, tid(500), &back), TALLY_OK);
    assert_int_equal(back.amount, 70);
    tally_close(r);
    r = open_ok(f); /* lifted for good */
    assert_int_equal(tally_held(r), TALLY_HOLD_NONE);
    sync_pair(r, newcomer); /* and its ops go out again */
    assert_int_equal(tally_seen(newcomer, 21), 5);
    tally_close(r);
    tally_close(newcomer);
    tally_close(peer);
}

/* Flips one bit of byte `at` of file `name` in f's directory. */
static void flip_in(const fixture *f, const char *name, long at) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", f->dir, name);
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    uint8_t byte;
    assert_int_equal(pread(fd, &byte, 1, at), 1);
    byte ^= 0x10;
    assert_int_equal(pwrite(fd, &byte, 1, at), 1);
    close(fd);
}

/* Opens f's replica and asserts its hold; a hold also refuses a write. */
static tally_replica *open_held(fixture *f, tally_hold hold) {
    tally_replica *r = open_ok(f);
    assert_int_equal(tally_held(r), hold);
    if (hold != TALLY_HOLD_NONE) {
        tally_account a = account(77, 1, 0);
        assert_result(tally_create_account(r, &a), TALLY_ORIGIN_HELD);
    }
    return r;
}

/* Each sign that a directory may not hold all it wrote holds its writes, durably, until lifted;
 * a plain reopen holds nothing. */
static void every_sign_of_lost_writes_holds_the_replica(void **state) {
    fixture *f = *state;
    f->opts.replica_id = 31;
    tally_replica *r = open_rotating(f, 60);
    uint64_t newest = r->journal->segment;
    assert_true(newest > 3);
    tally_close(r);
    r = open_held(f, TALLY_HOLD_NONE);
    tally_close(r);
    /* the option, which stays across a reopen without it */
    f->opts.flags = TALLY_OPEN_RESTORED;
    r = open_held(f, TALLY_HOLD_RESTORED);
    tally_close(r);
    f->opts.flags = 0;
    r = open_held(f, TALLY_HOLD_RESTORED);
    assert_result(tally_lift_hold(r), TALLY_OK);
    tally_close(r);
    r = open_held(f, TALLY_HOLD_NONE);
    tally_close(r);
    /* the newest segment lost: what is left opens, held */
    char path[192];
    segment_path(f, newest, path, sizeof path);
    assert_int_equal(unlink(path), 0);
    r = open_held(f, TALLY_HOLD_MISSING);
    assert_true(tally_seen(r, 31) < 63);
    assert_result(tally_lift_hold(r), TALLY_OK);
    tally_close(r);
    /* the mark damaged, or gone */
    flip_in(f, "MARK", 20);
    r = open_held(f, TALLY_HOLD_DAMAGED);
    assert_result(tally_lift_hold(r), TALLY_OK);
    tally_close(r);
    run("rm %s/MARK%s", f->dir, "");
    r = open_held(f, TALLY_HOLD_DAMAGED);
    assert_result(tally_lift_hold(r), TALLY_OK);
    tally_close(r);
    r = open_held(f, TALLY_HOLD_NONE);
    tally_close(r);
}

/* A replica that does not sync, stopped without closing, may have lost what it wrote last and
 * shared; one that syncs every commit lost nothing acknowledged. */
static void a_crash_holds_a_replica_only_if_it_did_not_sync(void **state) {
    fixture *f = *state;
    for (int mode = TALLY_SYNC_NONE; mode <= TALLY_SYNC_COMMIT; mode++) {
        f->opts.sync_mode = (tally_sync_mode)mode;
        pid_t child = fork();
        assert_true(child >= 0);
        if (child == 0) {
            tally_replica *r = NULL;
            if (tally_open(&f->opts, &r) != TALLY_OK) {
                _exit(1);
            }
            tally_account a = account(5 + (uint64_t)mode, 1, 0);
            _exit(tally_create_account(r, &a) == TALLY_OK ? 0 : 1); /* no close */
        }
        int status;
        assert_int_equal(waitpid(child, &status, 0), child);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        tally_replica *r =
            open_held(f, mode == TALLY_SYNC_NONE ? TALLY_HOLD_UNCLEAN : TALLY_HOLD_NONE);
        assert_result(tally_lift_hold(r), TALLY_OK);
        tally_close(r);
        r = open_held(f, TALLY_HOLD_NONE); /* closed cleanly this time */
        tally_close(r);
    }
}

/* A summary is anybody's claim: one that says a peer holds this replica's ops far beyond its
 * head holds nothing (it took every write until a restart before). Only its own signed runs,
 * brought back, put a replica behind itself. */
static void a_bogus_summary_does_not_stop_a_replica_writing(void **state) {
    fixture *f = *state;
    f->opts.replica_id = 41;
    tally_replica *r = open_ok(f), *liar = replica_new(42, NULL);
    seed_accounts(r);
    sync_pair(r, liar);
    uint8_t *summary, *delta;
    size_t summary_len, delta_len;
    assert_result(tally_summary(liar, &summary, &summary_len), TALLY_OK);
    bool found = false;
    for (size_t at = 12; at + 64 <= summary_len - 8; at += 64) {
        if (get_u64le(summary + at) == 41) {
            put_u64le(summary + at + 8, UINT64_C(1) << 63); /* (41, 2^63) */
            found = true;
        }
    }
    assert_true(found);
    put_u64le(summary + summary_len - 8, XXH3_64bits(summary, summary_len - 8));
    assert_result(tally_delta(r, summary, summary_len, 0, &delta, &delta_len), TALLY_OK);
    tally_free(summary);
    tally_free(delta);
    tally_transfer t = transfer(600, 1, 2, 1);
    assert_result(tally_create_transfer(r, &t), TALLY_OK);
    assert_int_equal(tally_held(r), TALLY_HOLD_NONE);
    tally_close(liar);
    tally_close(r);
}

/* --- an adversary's findings on holds ------------------------------------------------------ */

/* A file's bytes (the caller frees them). */
static uint8_t *slurp(const char *path, size_t *len) {
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)n + 1);
    assert_int_equal(fread(b, 1, (size_t)n, fp), (size_t)n);
    fclose(fp);
    *len = (size_t)n;
    return b;
}

/* Rewrites a file in place (same inode): bytes b[0..n) then `zeros` zero bytes. */
static void rewrite(const char *path, const uint8_t *b, size_t n, size_t zeros) {
    int fd = open(path, O_WRONLY | O_TRUNC);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, b, n), (ssize_t)n);
    if (zeros > 0) {
        uint8_t *z = calloc(1, zeros);
        assert_int_equal(write(fd, z, zeros), (ssize_t)zeros);
        free(z);
    }
    close(fd);
}

/* A replica whose write call's last page never landed (the file's size covers the frame, its
 * later blocks read as zeros) had its call interrupted before it returned: nothing of it was
 * shared, and nothing is held. */
static void a_frame_whose_last_page_did_not_land_holds_nothing(void **state) {
    fixture *f = *state;
    f->opts.replica_id = 45;
    tally_replica *r = open_ok(f);
    seed_accounts(r);
    tally_close(r);
    char path[192];
    segment_path(f, 1, path, sizeof path);
    uint64_t before = (uint64_t)file_size(path);
    pid_t child = fork(); /* writes one large call, and dies without closing */
    assert_true(child >= 0);
    if (child == 0) {
        tally_replica *c = NULL;
        size_t n = 1000;
        tally_transfer *ts = calloc(n, sizeof *ts);
        int *results = calloc(n, sizeof *results);
        for (size_t i = 0; ts != NULL && results != NULL && i < n; i++) {
            ts[i] = transfer(10000 + i, 1, 2, 1);
        }
        _exit(ts != NULL && results != NULL && tally_open(&f->opts, &c) == TALLY_OK &&
                      tally_create_transfers(c, ts, n, results) == TALLY_OK
                  ? 0
                  : 1);
    }
    int status;
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    uint64_t after = (uint64_t)file_size(path);
    uint64_t page = (before / 4096 + 1) * 4096;
    print_message("the frame runs from %llu to %llu; zeros from %llu\n", (unsigned long long)before,
                  (unsigned long long)after, (unsigned long long)page);
    assert_true(page < after);
    size_t len;
    uint8_t *b = slurp(path, &len);
    rewrite(path, b, page, len - page);
    free(b);
    r = open_ok(f);
    print_message("held: %s; seen %llu\n", tally_hold_name(tally_held(r)),
                  (unsigned long long)tally_seen(r, 45));
    assert_int_equal(tally_held(r), TALLY_HOLD_NONE);
    tally_close(r);
}

/* A held replica signs nothing at opening: a write call's ops over two frames, all shared,
 * the second frame (with every SIGN record of the call) rotted. Signing the ops left unsigned
 * made a new run overlapping the one its peer holds: it proved itself forked. */
static void a_held_replica_signs_no_new_run_when_it_opens(void **state) {
    fixture *f = *state;
    f->opts.replica_id = 51;
    tally_replica *r = open_ok(f);
    seed_accounts(r);
    /* one write call of more than a frame holds: its ops span two frames, and every SIGN record
     * of the call is in the second */
    size_t n = 400000;
    tally_transfer *ts = calloc(n, sizeof *ts);
    int *results = calloc(n, sizeof *results);
    for (size_t i = 0; i < n; i++) {
        ts[i] = transfer(10000 + i, 1, 2, 1);
    }
    assert_result(tally_create_transfers(r, ts, n, results), TALLY_OK);
    for (size_t i = 0; i < n; i++) {
        assert_result(results[i], TALLY_OK);
    }
    free(ts);
    free(results);
    uint64_t seq = tally_seen(r, 51);
    uint64_t frames_end = r->journal->segment_bytes;
    tally_replica *peer = replica_new(52, NULL);
    sync_pair(r, peer); /* acknowledged, synced, and shared */
    assert_int_equal(tally_seen(peer, 51), seq);
    tally_close(r);
    /* the last frame rots: one bit in its payload, near its end */
    char path[192];
    segment_path(f, 1, path, sizeof path);
    int fd = open(path, O_RDWR);
    uint8_t byte;
    assert_int_equal(pread(fd, &byte, 1, (off_t)frames_end - 50), 1);
    byte ^= 1;
    assert_int_equal(pwrite(fd, &byte, 1, (off_t)frames_end - 50), 1);
    close(fd);
    r = open_ok(f);
    assert_int_equal(tally_held(r), TALLY_HOLD_DAMAGED);
    uint64_t kept = tally_seen(r, 51);
    const origin_rec *self = &r->origins.at[r->self];
    uint64_t signed_to = self->runs.count ? self->runs.at[self->runs.count - 1].last : 0;
    print_message("kept %llu of %llu ops; its runs end at %llu\n", (unsigned long long)kept,
                  (unsigned long long)seq, (unsigned long long)signed_to);
    /* the peer brings back what was lost; the replica must not have forked itself */
    int rc = apply_from(peer, r);
    size_t forks = 0;
    assert_result(tally_forks(r, 0, NULL, 0, &forks), TALLY_OK);
    print_message("apply of the peer's delta: %s; forks here: %zu; seen %llu\n",
                  tally_result_name(rc), forks, (unsigned long long)tally_seen(r, 51));
    assert_int_equal(forks, 0);
    assert_int_equal(signed_to <= 3 || signed_to % CHAIN_RUN_OPS_MAX == 3, true);
    assert_result(rc, TALLY_OK);
    tally_close(peer);
    tally_close(r);
}

/* The summary a held replica sends carries its challenge where its head would be. */
static void challenge_of(tally_replica *r, uint8_t nonce[CRYPTO_HASH]) {
    uint8_t *summary;
    size_t len;
    assert_result(tally_summary(r, &summary, &len), TALLY_OK);
    bool found = false;
    for (size_t at = 12; at + 64 <= len - 8; at += 64) {
        if (get_u64le(summary + at) == tally_replica_id(r)) {
            assert_int_equal(get_u64le(summary + at + 24), 2); /* hidden */
            memcpy(nonce, summary + at + 32, CRYPTO_HASH);
            found = true;
        }
    }
    assert_true(found);
    tally_free(summary);
}

/* Applies to r a delta that holds only the confirmation c. */
static int apply_record(tally_replica *r, const op *c) {
    bytes d = {0};
    records_delta(c, 1, &d);
    int rc = tally_apply(r, d.at, d.len);
    bytes_free(&d);
    return rc;
}

/* Applies to r a delta that holds only a confirmation of origin at last, signed by nobody. */
static int apply_confirmation(tally_replica *r, uint64_t origin, uint64_t last,
                              const uint8_t answer[CRYPTO_HASH]) {
    static const uint8_t sig[CRYPTO_SIG] = {0};
    op c;
    op_clear(&c);
    c.kind = OP_CONFIRM;
    c.origin = origin;
    c.u.confirm.last = last;
    c.u.confirm.answer = answer;
    c.u.confirm.by = 99;
    c.u.confirm.sig = sig;
    return apply_record(r, &c);
}

/* What lifted a hold before it was a challenge: every summary a replica sent before the backup
 * it is restored from names the head it is back at, and anyone who kept one could replay it.
 * Now only an answer to this opening's challenge, which takes the head run's ops to make,
 * confirms it: not an old summary, not its head's hash, not an answer to another opening's
 * challenge, not its own original (a copy asking is a clone), not a peer that lacks the run. */
static void a_hold_is_lifted_only_by_an_answer_to_its_challenge(void **state) {
    fixture *f = *state;
    f->opts.replica_id = 31;
    tally_replica *r = open_ok(f);
    seed_accounts(r);
    tally_replica *peer = replica_new(32, NULL), *early = replica_new(35, NULL);
    sync_pair(r, peer);
    sync_pair(r, early); /* it holds the history up to the backup's head, and nothing later */
    uint8_t *old;
    size_t old_len;
    assert_result(tally_summary(r, &old, &old_len), TALLY_OK); /* an attacker keeps it */
    const origin_rec *self = &r->origins.at[r->self];
    uint64_t head = self->runs.at[chain_head(self)].last;
    uint8_t head_hash[CRYPTO_HASH];
    memcpy(head_hash, self->runs.at[chain_head(self)].hash, CRYPTO_HASH);
    tally_close(r);
    char backup[192], copy[192];
    snprintf(backup, sizeof backup, "%s.backup", f->dir);
    snprintf(copy, sizeof copy, "%s.copy", f->dir);
    run("cp -r %s %s", f->dir, backup);
    run("cp -r %s %s", f->dir, copy);
    r = open_ok(f);
    tally_transfer t = transfer(600, 1, 2, 5);
    assert_result(tally_create_transfer(r, &t), TALLY_OK);
    sync_pair(r, peer); /* the peer has op 4, which the backup lacks */
    tally_close(r);
    run("rm -rf %s%s", f->dir, "");
    run("mv %s %s", backup, f->dir);
    r = open_ok(f);
    assert_int_equal(tally_held(r), TALLY_HOLD_MOVED);

    /* the old summary, replayed: it names exactly the head the backup is at */
    uint8_t *delta;
    size_t delta_len;
    assert_result(tally_delta(r, old, old_len, 0, &delta, &delta_len), TALLY_OK);
    tally_free(delta);
    assert_int_equal(tally_held(r), TALLY_HOLD_MOVED);
    /* answers anyone who kept a summary could make: the head's hash, zeros */
    uint8_t zeros[CRYPTO_HASH] = {0};
    assert_result(apply_confirmation(r, 31, head, head_hash), TALLY_OK);
    assert_result(apply_confirmation(r, 31, head, zeros), TALLY_OK);
    assert_int_equal(tally_held(r), TALLY_HOLD_MOVED);
    /* its own summary echoed: a replica does not answer about itself */
    assert_result(apply_from(r, r), TALLY_OK);
    assert_int_equal(tally_held(r), TALLY_HOLD_MOVED);

    /* a right answer to one opening's challenge, kept and replayed at the next opening, which
     * has a challenge of its own */
    uint8_t nonce[CRYPTO_HASH], now[CRYPTO_HASH];
    chain_confirmation answer;
    challenge_of(r, nonce);
    tally_close(r);
    r = open_ok(f);
    challenge_of(r, now);
    assert_memory_not_equal(nonce, now, CRYPTO_HASH);
    op rec;
    assert_result(chain_confirm_op(early, 31, nonce, &answer, &rec), TALLY_OK);
    assert_int_equal(rec.u.confirm.last, head);
    assert_result(apply_record(r, &rec), TALLY_OK);
    assert_int_equal(tally_held(r), TALLY_HOLD_MOVED);
    /* a replica that has no run of it has nothing to answer with */
    tally_replica *bystander = replica_new(33, NULL);
    assert_result(chain_confirm_op(bystander, 31, now, &answer, &rec), TALLY_NOT_FOUND);
    assert_result(apply_from(bystander, r), TALLY_OK);
    assert_int_equal(tally_held(r), TALLY_HOLD_MOVED);
    /* a copy of the directory asks the original, which does not answer for its own id */
    tally_options o = f->opts;
    o.dir = copy;
    tally_replica *clone;
    assert_result(tally_open(&o, &clone), TALLY_OK);
    assert_int_equal(tally_held(clone), TALLY_HOLD_MOVED);
    assert_result(apply_from(r, clone), TALLY_OK);
    assert_int_equal(tally_held(clone), TALLY_HOLD_MOVED);
    tally_close(clone);
    run("rm -rf %s%s", copy, "");

    /* the peer, which holds its history up to op 4, brings op 4 back and answers */
    assert_result(apply_from(peer, r), TALLY_OK);
    assert_int_equal(tally_seen(r, 31), head + 1);
    assert_int_equal(tally_held(r), TALLY_HOLD_NONE);
    tally_transfer next = transfer(601, 1, 3, 1);
    assert_result(tally_create_transfer(r, &next), TALLY_OK);
    sync_pair(r, peer); /* no fork: seq head + 2 is new to the peer too */
    assert_int_equal(tally_seen(peer, 31), head + 2);
    tally_close(r);
    tally_free(old);
    tally_close(bystander);
    tally_close(early);
    tally_close(peer);
}

/* A restored directory that should not wait for a peer starts as a new replica in one call:
 * everything it held comes along (its own runs too, the unshared one included), the new
 * replica writes at once, and the old files are kept aside, held for good. */
static void a_restored_directory_starts_as_a_new_replica(void **state) {
    fixture *f = *state;
    f->opts.replica_id = 41;
    tally_replica *r = open_ok(f);
    seed_accounts(r);
    tally_replica *peer = replica_new(42, NULL);
    tally_account p = account(90, 1, 0);
    assert_result(tally_create_account(peer, &p), TALLY_OK);
    sync_pair(peer, r);
    sync_pair(r, peer);
    tally_transfer unshared = transfer(700, 1, 2, 9); /* no peer has it */
    assert_result(tally_create_transfer(r, &unshared), TALLY_OK);
    tally_close(r);
    char copy[192];
    snprintf(copy, sizeof copy, "%s.copy", f->dir);
    run("cp -r %s %s", f->dir, copy);
    run("rm -rf %s%s", f->dir, "");
    run("mv %s %s", copy, f->dir); /* restored: held */
    r = open_ok(f);
    assert_int_equal(tally_held(r), TALLY_HOLD_MOVED);
    uint8_t before[16];
    digest_of(r, before);
    tally_close(r);

    /* the new id must be new; and a replica in memory has no directory to start from */
    f->opts.flags = TALLY_OPEN_AS_NEW;
    tally_replica *bad = (tally_replica *)f;
    assert_result(tally_open(&f->opts, &bad), TALLY_EINVAL);
    assert_null(bad);
    assert_non_null(strstr(f->error, "holds replica 41 already"));
    tally_options mem = {.replica_id = 5, .flags = TALLY_OPEN_AS_NEW};
    assert_result(tally_open(&mem, &bad), TALLY_EINVAL);

    f->opts.replica_id = 43;
    r = open_ok(f);
    assert_int_equal(tally_replica_id(r), 43);
    assert_int_equal(tally_held(r), TALLY_HOLD_NONE);
    uint8_t after[16];
    digest_of(r, after);
    assert_memory_equal(before, after, 16); /* every op and proof came along */
    assert_int_equal(tally_seen(r, 41), 4);
    tally_transfer got;
    assert_result(tally_lookup_transfer(r, tid(700), &got), TALLY_OK);
    tally_transfer next = transfer(701, 1, 3, 4);
    assert_result(tally_create_transfer(r, &next), TALLY_OK); /* at once, as replica 43 */
    assert_int_equal(tally_seen(r, 43), 1);
    /* the peer gets the old replica's unshared op from the new one, signed by the old key */
    sync_pair(r, peer);
    assert_int_equal(tally_seen(peer, 41), 4);
    assert_converged(r, peer);
    tally_close(r);
    f->opts.flags = 0;
    r = open_ok(f); /* the directory is replica 43's now */
    assert_int_equal(tally_replica_id(r), 43);
    tally_close(r);

    /* the old files, aside and held: a peer's answer does not lift that, an operator can */
    char kept[192];
    snprintf(kept, sizeof kept, "%s.replica-41", f->dir);
    tally_options o = f->opts;
    o.dir = kept;
    o.replica_id = 0;
    tally_replica *old;
    assert_result(tally_open(&o, &old), TALLY_OK);
    assert_int_equal(tally_replica_id(old), 41);
    assert_int_equal(tally_held(old), TALLY_HOLD_RENEWED);
    assert_result(apply_from(peer, old), TALLY_OK);
    assert_int_equal(tally_held(old), TALLY_HOLD_RENEWED);
    tally_transfer late = transfer(702, 1, 3, 1);
    assert_result(tally_create_transfer(old, &late), TALLY_ORIGIN_HELD);
    tally_close(old);
    /* started as new a second time: replica 43's files are kept under their own name */
    tally_options again = f->opts;
    again.replica_id = 45;
    again.flags = TALLY_OPEN_AS_NEW;
    assert_result(tally_open(&again, &r), TALLY_OK);
    assert_int_equal(tally_replica_id(r), 45);
    assert_int_equal(tally_seen(r, 43), 1);
    tally_close(r);
    char kept2[192];
    snprintf(kept2, sizeof kept2, "%s.replica-43", f->dir);
    assert_int_equal(access(kept2, F_OK), 0);
    run("rm -rf %s %s", kept, kept2);
    tally_close(peer);
}

/* Mutated summaries from a peer never stop a replica writing, nor hold it. */
static void random_summaries_neither_stop_nor_confirm(void **state) {
    fixture *f = *state;
    f->opts.replica_id = 61;
    tally_replica *r = open_ok(f);
    seed_accounts(r);
    tally_replica *peer = replica_new(62, NULL);
    sync_pair(r, peer);
    tally_account x = account(700, 1, 0);
    assert_result(tally_create_account(peer, &x), TALLY_OK);
    sync_pair(peer, r);
    uint8_t *base;
    size_t base_len;
    assert_result(tally_summary(peer, &base, &base_len), TALLY_OK);
    uint64_t rng = 7;
    uint64_t id = 800;
    for (int it = 0; it < 3000; it++) {
        uint8_t *s = malloc(base_len);
        memcpy(s, base, base_len);
        int edits = 1 + (int)(test_rand(&rng) % 4);
        for (int e = 0; e < edits; e++) {
            size_t at = 12 + (size_t)(test_rand(&rng) % (base_len - 20));
            switch (test_rand(&rng) % 4) {
            case 0:
                s[at] ^= (uint8_t)(1u << (test_rand(&rng) % 8));
                break;
            case 1:
                put_u64le(s + 12 + 64 * (test_rand(&rng) % 2) + 8,
                          test_rand(&rng) >> (test_rand(&rng) % 64));
                break;
            case 2:
                put_u64le(s + 12 + 64 * (test_rand(&rng) % 2) + 24, test_rand(&rng) % 4);
                break;
            default:
                put_u64le(s + 12 + 64 * (test_rand(&rng) % 2) + 16, test_rand(&rng) % 8);
                break;
            }
        }
        put_u64le(s + base_len - 8, XXH3_64bits(s, base_len - 8));
        uint8_t *delta;
        size_t delta_len;
        int rc = tally_delta(r, s, base_len, 0, &delta, &delta_len);
        assert_true(rc == TALLY_OK || rc == TALLY_ECORRUPT);
        tally_free(delta);
        free(s);
        tally_account a = account(id++, 1, 0);
        assert_result(tally_create_account(r, &a), TALLY_OK);
        assert_int_equal(tally_held(r), TALLY_HOLD_NONE);
    }
    assert_true(replica_check(r));
    tally_free(base);
    tally_close(peer);
    tally_close(r);
}

#define KILL_ROUNDS 100
static void a_hold_outlives_a_kill_during_opening(void **state) {
    fixture *f = *state;
    f->opts.replica_id = 71;
    tally_replica *r = open_ok(f);
    seed_accounts(r);
    for (int i = 0; i < 2000; i++) {
        tally_transfer t = transfer(1000 + (uint64_t)i, 1, 2, 1);
        assert_result(tally_create_transfer(r, &t), TALLY_OK);
    }
    uint64_t end = r->journal->segment_bytes;
    tally_close(r);
    char path[192];
    segment_path(f, 1, path, sizeof path);
    size_t len;
    uint8_t *seg = slurp(path, &len);
    assert_int_equal(len, end);
    seg[end - 5] ^= 1; /* the last frame rots */
    rewrite(path, seg, len, 0);
    reset_mark(f, 71);
    r = open_ok(f);
    assert_int_equal(tally_held(r), TALLY_HOLD_DAMAGED); /* the setting is sound */
    tally_close(r);
    struct timespec seed;
    clock_gettime(CLOCK_MONOTONIC, &seed);
    uint64_t rng = (uint64_t)seed.tv_nsec;
    int killed_mid = 0;
    for (int it = 0; it < KILL_ROUNDS; it++) {
        rewrite(path, seg, len, 0);
        reset_mark(f, 71);
        pid_t child = fork();
        assert_true(child >= 0);
        if (child == 0) {
            tally_replica *c = NULL;
            _exit(tally_open(&f->opts, &c) == TALLY_OK ? 0 : 1);
        }
        struct timespec ts = {0, (long)(test_rand(&rng) % 30000000)};
        nanosleep(&ts, NULL);
        kill(child, SIGKILL);
        int status;
        assert_int_equal(waitpid(child, &status, 0), child);
        killed_mid += WIFSIGNALED(status);
        tally_replica *probe = NULL;
        int rc = tally_open(&f->opts, &probe);
        if (rc != TALLY_OK) {
            print_error("reopen: %s %s\n", tally_result_name(rc), f->error);
        }
        assert_result(rc, TALLY_OK);
        if (tally_held(probe) != TALLY_HOLD_DAMAGED) {
            print_message("round %d: child %s %d; probe held %d\n", it,
                          WIFSIGNALED(status) ? "killed" : "exited",
                          WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status),
                          (int)tally_held(probe));
            tally_close(probe);
            run("ls -li %s; od -A d -t x1 %s/MARK", f->dir, f->dir);
            fail();
        }
        tally_close(probe);
    }
    free(seg);
    print_message("killed mid-open %d times of %d\n", killed_mid, KILL_ROUNDS);
}

/* The only segment lost, the mark and key kept: opening made segment 1 again, and took it for
 * the newest the mark names. */
static void losing_the_only_segment_holds_the_replica(void **state) {
    fixture *f = *state;
    f->opts.replica_id = 81;
    tally_replica *r = open_ok(f);
    seed_accounts(r);
    tally_replica *peer = replica_new(82, NULL);
    sync_pair(r, peer); /* ops 1..3 of 81 shared */
    assert_int_equal(r->journal->segment, 1);
    tally_close(r);
    char path[192];
    segment_path(f, 1, path, sizeof path);
    assert_int_equal(unlink(path), 0); /* the newest (and only) segment is lost */
    r = open_ok(f);
    print_message("reopened: id %llu, seen %llu, held %s\n",
                  (unsigned long long)tally_replica_id(r), (unsigned long long)tally_seen(r, 81),
                  tally_hold_name(tally_held(r)));
    tally_account a = account(99, 1, 0);
    int rc = tally_create_account(r, &a);
    for (uint64_t k = 100; rc == TALLY_OK && k < 103; k++) {
        tally_account b = account(k, 1, 0);
        assert_result(tally_create_account(r, &b), TALLY_OK); /* seqs 2..4 */
    }
    if (rc == TALLY_OK) {
        rc = apply_from(r, peer); /* seq 1 of 81 signed twice */
        size_t forks = 0;
        assert_result(tally_forks(peer, 0, NULL, 0, &forks), TALLY_OK);
        print_message("the peer applies its delta: %s; forks proven at the peer: %zu\n",
                      tally_result_name(rc), forks);
        rc = TALLY_OK;
    }
    assert_result(rc, TALLY_ORIGIN_HELD);
    tally_close(peer);
    tally_close(r);
}

/* An older copy of the segments put back over the live ones, the live mark left (so every
 * inode is as it was): the newest segment is shorter than the mark saw it at the last close. */
static void segments_restored_in_place_hold_the_replica(void **state) {
    fixture *f = *state;
    f->opts.replica_id = 91;
    tally_replica *r = open_ok(f);
    seed_accounts(r);
    tally_close(r);
    char path[192], backup[256];
    segment_path(f, 1, path, sizeof path);
    snprintf(backup, sizeof backup, "%s.segment", f->dir);
    run("cp %s %s", path, backup);
    r = open_ok(f);
    tally_transfer t = transfer(500, 1, 2, 70);
    assert_result(tally_create_transfer(r, &t), TALLY_OK); /* op 4, then shared */
    tally_close(r);
    run("cp %s %s", backup, path); /* cp writes into the existing file: the same inode */
    r = open_held(f, TALLY_HOLD_MISSING);
    assert_int_equal(tally_seen(r, 91), 3);
    tally_close(r);
    run("rm %s%s", backup, "");
}

/* --- the clock across restarts ------------------------------------------------------------ */

static uint64_t stamp_of(tally_replica *r, uint64_t id) {
    return r->transfers.at[idmap_get(&r->transfer_map, tid(id))].hlc;
}

static uint64_t expire_now(tally_replica *r) {
    uint64_t voided = 0;
    assert_result(tally_expire(r, &voided), TALLY_OK);
    return voided;
}

/* Asserts that r's first pending to time out does so exactly `ms` from now on `clock`. */
static void assert_due_after(tally_replica *r, test_clock *clock, uint64_t ms) {
    clock->now_ms += ms - 1;
    assert_int_equal(expire_now(r), 0);
    clock->now_ms += 1;
    assert_int_equal(expire_now(r), 1);
}

static tally_transfer pending_of(uint64_t id, uint64_t amount, uint32_t timeout_ms) {
    tally_transfer t = transfer(id, 2, 3, amount);
    t.flags = TALLY_TRANSFER_PENDING;
    t.timeout_ms = timeout_ms;
    return t;
}

/* Opens f's replica on `clock`, with the accounts of seed_accounts and 100 moved from 1 to 2 by
 * transfer `id`. */
static tally_replica *open_funded(fixture *f, test_clock *clock, uint64_t id) {
    f->opts.clock_ms = test_clock_ms;
    f->opts.clock_ctx = clock;
    tally_replica *r = open_ok(f);
    seed_accounts(r);
    tally_transfer t = transfer(id, 1, 2, 100);
    assert_result(tally_create_transfer(r, &t), TALLY_OK);
    return r;
}

/* A pending keeps its deadline across a restart; after the wall clock jumped to the year
 * 2500 for one write, every later write, before and after a restart, with or without a
 * snapshot, is stamped after it, and a pending stamped in 2500 expires its timeout after it
 * was made, the time the replica was closed included, not in 2500. */
static void the_clock_and_timeouts_survive_a_glitch_and_a_restart(void **state) {
    fixture *f = *state;
    test_clock clock = {1700000000000u};
    tally_replica *r = open_funded(f, &clock, 600);
    tally_transfer t = pending_of(601, 10, 1000);
    assert_result(tally_create_transfer(r, &t), TALLY_OK);
    tally_close(r);
    clock.now_ms += 400;
    r = open_ok(f);
    clock.now_ms += 599;
    assert_int_equal(expire_now(r), 0);
    clock.now_ms += 1;
    assert_int_equal(expire_now(r), 1); /* 1000 ms after it was made, across the restart */
    clock.now_ms = UINT64_C(16725225600000); /* 2500-01-01 */
    t = transfer(602, 1, 2, 1);
    assert_result(tally_create_transfer(r, &t), TALLY_OK);
    clock.now_ms = 1700000100000u;
    t = pending_of(603, 10, 1000);
    assert_result(tally_create_transfer(r, &t), TALLY_OK);
    uint64_t last = stamp_of(r, 603);
    assert_true(last > stamp_of(r, 602));
    tally_close(r);
    uint64_t closed = 0; /* since the pending of the round before was made */
    for (int with_snapshot = 0; with_snapshot < 2; with_snapshot++) {
        r = open_ok(f);
        if (with_snapshot) {
            assert_result(tally_snapshot(r), TALLY_OK);
            tally_close(r);
            r = open_ok(f);
            assert_true(r->journal->snapshot_segment != 0);
        }
        uint64_t id = 604 + 2 * (uint64_t)with_snapshot;
        t = transfer(id, 1, 2, 1);
        assert_result(tally_create_transfer(r, &t), TALLY_OK);
        assert_true(stamp_of(r, id) > last);
        clock.now_ms += 999 - closed;
        assert_int_equal(expire_now(r), 0);
        clock.now_ms += 1;
        assert_int_equal(expire_now(r), 1); /* the pending stamped in 2500 */
        t = pending_of(id + 1, 10, 1000); /* stamped in 2500 too, for the next round */
        assert_result(tally_create_transfer(r, &t), TALLY_OK);
        last = stamp_of(r, id + 1);
        tally_close(r);
        clock.now_ms += 5;
        closed = 5;
    }
}

/* Opens f's replica again after the wall clock moved `step` ms, with a snapshot taken and
 * loaded on the way when asked; answers how many pendings the reopened replica voids. */
static uint64_t reopen_and_expire(fixture *f, tally_replica **r, test_clock *clock, uint64_t step,
                                  bool with_snapshot) {
    tally_close(*r);
    clock->now_ms += step;
    *r = open_ok(f);
    if (with_snapshot) {
        assert_result(tally_snapshot(*r), TALLY_OK);
        tally_close(*r);
        *r = open_ok(f);
        assert_true((*r)->journal->snapshot_segment != 0);
    }
    return expire_now(*r);
}

/* The HLC runs ahead of the wall clock, as it does beside a peer whose clock is 59 minutes
 * fast: a replica restarted more often than a pending's timeout still voids it once the timeout
 * has passed in all (the time it was closed counts), with or without a snapshot at each
 * restart. Each reopen used to grant the whole timeout again. */
static void restarts_more_often_than_a_timeout_do_not_keep_a_pending_open(void **state) {
    fixture *f = *state;
    for (int with_snapshot = 0; with_snapshot < 2; with_snapshot++) {
        test_clock clock = {1700000000000u}, fast = {clock.now_ms + 59 * 60 * 1000};
        f->opts.clock_ms = test_clock_ms;
        f->opts.clock_ctx = &clock;
        /* a peer of its own each time: one id with another key is another replica, refused */
        tally_replica *r = open_ok(f), *peer = replica_new(22 + (uint64_t)with_snapshot, &fast);
        if (!with_snapshot) {
            seed_accounts(r);
            tally_transfer t = transfer(700, 1, 2, 100);
            assert_result(tally_create_transfer(r, &t), TALLY_OK);
        }
        tally_account far = account(70 + (uint64_t)with_snapshot, 1, 0);
        assert_result(tally_create_account(peer, &far), TALLY_OK);
        sync_pair(peer, r); /* r's clock is now 59 minutes ahead of its wall clock */
        tally_transfer t = pending_of(701 + (uint64_t)with_snapshot, 10, 1000);
        assert_result(tally_create_transfer(r, &t), TALLY_OK);
        assert_true(HLC_MS(stamp_of(r, t.id.lo)) > clock.now_ms + 58 * 60 * 1000);
        uint64_t elapsed = 0, voided = 0;
        while (voided == 0 && elapsed < 10000) {
            voided = reopen_and_expire(f, &r, &clock, 300, with_snapshot);
            elapsed += 300;
            assert_int_equal(voided, elapsed >= 1000);
        }
        assert_int_equal(elapsed, 1200);
        tally_close(r);
        tally_close(peer);
    }
}

/* A pending made while the wall clock read the year 2500, which then came back: restarts
 * more often than its timeout count the time since the clock came back, and void it once that
 * reaches the timeout. */
static void a_pending_made_in_a_glitch_expires_across_restarts(void **state) {
    fixture *f = *state;
    test_clock clock = {1700000000000u};
    tally_replica *r = open_funded(f, &clock, 710);
    uint64_t now = clock.now_ms;
    clock.now_ms = UINT64_C(16725225600000); /* 2500-01-01 */
    tally_transfer t = pending_of(711, 10, 1000);
    assert_result(tally_create_transfer(r, &t), TALLY_OK);
    clock.now_ms = now;
    assert_int_equal(expire_now(r), 0);
    uint64_t elapsed = 0, voided = 0;
    while (voided == 0 && elapsed < 10000) {
        voided = reopen_and_expire(f, &r, &clock, 300, elapsed % 600 != 0);
        elapsed += 300;
        assert_int_equal(voided, elapsed >= 1000);
    }
    assert_int_equal(elapsed, 1200);
    tally_close(r);
}

/* A data directory whose parents do not exist yet is made whole; one that cannot be made
 * says why. */
static void open_makes_missing_parents_and_says_why_it_cannot(void **state) {
    fixture *f = *state;
    char deep[256];
    snprintf(deep, sizeof deep, "%s/a/b/c", f->dir);
    f->opts.dir = deep;
    tally_replica *r = open_ok(f);
    seed_accounts(r);
    tally_close(r);
    run("touch %s/plain%s", f->dir, "");
    snprintf(deep, sizeof deep, "%s/plain/d", f->dir);
    r = (tally_replica *)f;
    assert_result(tally_open(&f->opts, &r), TALLY_EIO);
    assert_null(r);
    assert_non_null(strstr(f->error, deep));
    assert_non_null(strstr(f->error, "Not a directory"));
    f->opts.dir = f->dir;
}

/* --- snapshots ---------------------------------------------------------------------------- */

static void some_activity(tally_replica *r, uint64_t base, int n) {
    for (int i = 0; i < n; i++) {
        tally_transfer t = transfer(base + (uint64_t)i, 1, 2 + (uint64_t)i % 2, 3);
        assert_result(tally_create_transfer(r, &t), TALLY_OK);
    }
}

static int count_files(const fixture *f, const char *prefix) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "ls %s | grep -c '^%s' > %s.count", f->dir, prefix, f->dir);
    (void)system(cmd);
    snprintf(cmd, sizeof cmd, "%s.count", f->dir);
    FILE *in = fopen(cmd, "r");
    int n = -1;
    assert_int_equal(fscanf(in, "%d", &n), 1);
    fclose(in);
    unlink(cmd);
    return n;
}

static void a_snapshot_and_the_journal_after_it_give_the_same_state(void **state) {
    fixture *f = *state;
    test_clock clock = {1700000000000u};
    f->opts.clock_ms = test_clock_ms;
    f->opts.clock_ctx = &clock;
    tally_replica *r = open_ok(f);
    seed_accounts(r);
    some_activity(r, 100, 40);
    tally_transfer p = transfer(90, 1, 3, 5);
    p.flags = TALLY_TRANSFER_PENDING;
    p.timeout_ms = 1000;
    assert_result(tally_create_transfer(r, &p), TALLY_OK);
    assert_result(grant_to(r, tid(2), 44, 7), TALLY_OK);
    assert_result(tally_snapshot(r), TALLY_OK);
    some_activity(r, 200, 10); /* after the snapshot: replayed from the journal */
    uint8_t before[16], after[16];
    digest_of(r, before);
    tally_close(r);
    r = open_ok(f);
    digest_of(r, after);
    assert_memory_equal(before, after, 16);
    assert_int_equal(r->journal->snapshot_segment, 1); /* it was the snapshot that loaded */
    assert_int_equal(r->journal->replayed_frames, 10);
    /* the pending's timeout still runs on the reopened replica */
    clock.now_ms += 1000;
    uint64_t voided;
    assert_result(tally_expire(r, &voided), TALLY_OK);
    assert_int_equal(voided, 1);
    tally_close(r);
    assert_result(tally_snapshot(NULL), TALLY_EINVAL);
    tally_replica *mem = replica_new(3, NULL);
    assert_result(tally_snapshot(mem), TALLY_EINVAL);
    tally_close(mem);
}

static void snapshots_let_old_segments_go(void **state) {
    fixture *f = *state;
    tally_replica *r = open_ok(f);
    r->journal->segment_max = 700;
    seed_accounts(r);
    for (int round = 0; round < 4; round++) {
        some_activity(r, 1000 + 100 * (uint64_t)round, 30);
        assert_result(tally_snapshot(r), TALLY_OK);
    }
    some_activity(r, 5000, 5);
    assert_int_equal(count_files(f, "snapshot-"), 2); /* the two newest */
    char first[192];
    segment_path(f, 1, first, sizeof first);
    assert_int_equal(file_size(first), -1); /* segment 1 was only needed by older ones */
    uint8_t before[16], after[16];
    digest_of(r, before);
    tally_close(r);
    r = open_ok(f);
    digest_of(r, after);
    assert_memory_equal(before, after, 16);
    tally_close(r);
}

/* The one snapshot in f's directory: its path, and its bytes in buf (size returned). */
static long read_snapshot(const fixture *f, char path[256], uint8_t *buf, long cap) {
    char cmd[256];
    snprintf(cmd, sizeof cmd, "ls %s/snapshot-*", f->dir);
    FILE *ls = popen(cmd, "r");
    assert_non_null(fgets(path, 256, ls));
    pclose(ls);
    path[strcspn(path, "\n")] = 0;
    long size = file_size(path);
    assert_true(size > 0 && size <= cap);
    FILE *in = fopen(path, "rb");
    assert_int_equal(fread(buf, 1, (size_t)size, in), (size_t)size);
    fclose(in);
    return size;
}

static void write_file(const char *path, const uint8_t *buf, long size) {
    FILE *out = fopen(path, "wb");
    assert_int_equal(fwrite(buf, 1, (size_t)size, out), (size_t)size);
    fclose(out);
}

/* Writes a snapshot's bytes to path with its checksum made right, as anyone can. */
static void write_sealed(const char *path, uint8_t *buf, long size) {
    put_u64le(buf + size - 8, XXH3_64bits(buf, (size_t)size - 8));
    write_file(path, buf, size);
}

/* Opening f must find exactly the state whose digest is `want`, starting from the snapshot
 * that covers segment `snapshot_segment` (0: from the journal alone). */
static void opens_to(fixture *f, const uint8_t want[16], uint64_t snapshot_segment) {
    uint8_t got[16];
    tally_replica *r = open_ok(f);
    digest_of(r, got);
    assert_memory_equal(want, got, 16);
    assert_int_equal(r->journal->snapshot_segment, snapshot_segment);
    tally_close(r);
}

/* A closed replica in f: the accounts, `before` transfers, a snapshot, `after` transfers more
 * (ids from 100 and from 200); its digest in want. */
static void snapshot_between(fixture *f, int before, int after, uint8_t want[16]) {
    tally_replica *r = open_ok(f);
    seed_accounts(r);
    some_activity(r, 100, before);
    assert_result(tally_snapshot(r), TALLY_OK);
    some_activity(r, 200, after);
    digest_of(r, want);
    tally_close(r);
}

static void a_damaged_snapshot_falls_back_to_an_older_one_or_the_journal(void **state) {
    fixture *f = *state;
    uint8_t before[16];
    snapshot_between(f, 20, 20, before);
    char path[256];
    static uint8_t buf[1 << 20];
    long size = read_snapshot(f, path, buf, sizeof buf);
    /* flip bits all over the snapshot: each time, opening still finds the whole state */
    for (long bit = 0; bit < size * 8; bit += 37) {
        buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        write_file(path, buf, size);
        buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        opens_to(f, before, 0); /* it fell back to the journal */
    }
}

/* A transfer record keeps its seq in 32 bits, its origin in 16, its kind, state and expiry in
 * a few, and not its ledger (its accounts' is its own); the snapshot writes each in full. A
 * snapshot, checksum and all, whose values would not survive that is refused, never cut down
 * to fit: each case rewrites one field of one transfer, seals the file again, and opening
 * falls back to the journal. */
static void a_snapshot_transfer_that_does_not_fit_the_record_is_refused(void **state) {
    fixture *f = *state;
    uint8_t before[16];
    snapshot_between(f, 5, 0, before);
    char path[256];
    static uint8_t buf[1 << 20], copy[1 << 20];
    long size = read_snapshot(f, path, buf, sizeof buf);
    /* the record of transfer 102: its id, hi then lo, starts it */
    uint8_t id[16];
    put_u64le(id, tid(102).hi);
    put_u64le(id + 8, tid(102).lo);
    long at = -1;
    for (long i = 0; i + 16 <= size && at < 0; i++) {
        at = memcmp(buf + i, id, 16) == 0 ? i : -1;
    }
    assert_true(at > 0);
    static const struct {
        int offset, width; /* in the record (docs/durability.md) */
        uint64_t value;
    } cases[] = {
        {48, 4, 2},                        /* ledger: not its accounts' (1) */
        {32, 8, (uint64_t)UINT32_MAX + 1}, /* seq */
        {56, 4, 1u << 16},                 /* origin index */
        {80, 1, 9},                        /* kind */
        {81, 1, 5},                        /* state */
        {82, 1, 2},                        /* expired */
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        memcpy(copy, buf, (size_t)size);
        for (int b = 0; b < cases[k].width; b++) {
            copy[at + cases[k].offset + b] = (uint8_t)(cases[k].value >> (8 * b));
        }
        write_sealed(path, copy, size);
        opens_to(f, before, 0); /* it fell back to the journal */
    }
    /* and the snapshot as written, sealed the same way, loads */
    write_sealed(path, buf, size);
    opens_to(f, before, 1);
}

/* Opening f from its snapshot of transfers 100 to 119 (some_activity) gives a transfer map of
 * the size a map grown as it went would have, at or below the load limit, that finds each of
 * them and takes more. */
static void reopens_with_its_map_sized_to_its_transfers(fixture *f) {
    tally_replica *r = open_ok(f);
    assert_true((uint64_t)r->transfer_map.count * 2 <= (uint64_t)r->transfer_map.mask + 1);
    assert_int_equal(r->transfer_map.mask + 1, idmap_fit(r->transfer_map.count));
    for (uint64_t i = 0; i < 20; i++) {
        tally_transfer got;
        assert_result(tally_lookup_transfer(r, tid(100 + i), &got), TALLY_OK);
    }
    tally_transfer t = transfer(300, 1, 2, 3);
    assert_result(tally_create_transfer(r, &t), TALLY_OK);
    tally_close(r);
}

/* Earlier versions let the transfer map fill to 3/4 and wrote it so; today's limit is 1/2
 * (crdt/idmap.h). Such a snapshot still loads, to the same state, and its map grows to the
 * limit as it loads: here the map of a real snapshot is rewritten at half its capacity. */
static void a_snapshot_with_a_fuller_map_from_earlier_versions_loads(void **state) {
    fixture *f = *state;
    tally_replica *r = open_ok(f);
    seed_accounts(r);
    some_activity(r, 100, 20);
    assert_result(tally_snapshot(r), TALLY_OK);
    uint32_t capacity = r->transfer_map.mask + 1, count = r->transfer_map.count;
    assert_int_equal(capacity, 64);
    assert_true(count > capacity / 4 && count <= capacity / 8 * 3); /* 1/2 < load <= 3/4 at 32 */
    static uint8_t written[8 + 64 * 8], fuller[8 + 32 * 8];
    put_u32le(written, capacity);
    put_u32le(written + 4, count);
    idmap_slot half[32];
    memset(half, 0, sizeof half);
    for (uint32_t i = 0; i < capacity; i++) {
        idmap_slot sl = r->transfer_map.slots[i];
        put_u32le(written + 8 + 8 * i, sl.ref);
        put_u32le(written + 12 + 8 * i, sl.hash);
        if (sl.ref != 0) {
            uint32_t k = sl.hash & 31;
            while (half[k].ref != 0) {
                k = (k + 1) & 31;
            }
            half[k] = sl;
        }
    }
    put_u32le(fuller, capacity / 2);
    put_u32le(fuller + 4, count);
    for (uint32_t i = 0; i < 32; i++) {
        put_u32le(fuller + 8 + 8 * i, half[i].ref);
        put_u32le(fuller + 12 + 8 * i, half[i].hash);
    }
    uint8_t before[16];
    digest_of(r, before);
    tally_close(r);
    char path[256];
    static uint8_t buf[1 << 20], out[1 << 20];
    long size = read_snapshot(f, path, buf, sizeof buf);
    long at = -1;
    for (long i = 0; i + (long)sizeof written <= size && at < 0; i++) {
        at = memcmp(buf + i, written, sizeof written) == 0 ? i : -1;
    }
    assert_true(at > 0);
    long tail = size - 8 - at - (long)sizeof written;
    memcpy(out, buf, (size_t)at);
    memcpy(out + at, fuller, sizeof fuller);
    memcpy(out + at + sizeof fuller, buf + at + sizeof written, (size_t)tail);
    long n = at + (long)sizeof fuller + tail + 8;
    put_u64le(out + n - 8, XXH3_64bits(out, (size_t)n - 8));
    write_file(path, out, n);
    opens_to(f, before, 1); /* from the snapshot */
    reopens_with_its_map_sized_to_its_transfers(f);
}

/* A replica that reserved room for a million transfers holds a map of two million slots; its
 * snapshot keeps the map sized to the transfers it has, and loads to the same state. */
static void a_snapshot_of_a_reserved_replica_is_the_size_of_its_contents(void **state) {
    fixture *f = *state;
    tally_replica *r = open_ok(f);
    assert_result(tally_reserve(r, 10, 1000000), TALLY_OK);
    seed_accounts(r);
    some_activity(r, 100, 20);
    assert_int_equal(r->transfer_map.mask + 1, 1u << 21);
    assert_result(tally_snapshot(r), TALLY_OK);
    uint8_t before[16];
    digest_of(r, before);
    tally_close(r);
    char path[256];
    static uint8_t buf[1 << 20];
    long size = read_snapshot(f, path, buf, sizeof buf);
    assert_true(size < 8192); /* the reserved table alone would be 16 MiB */
    opens_to(f, before, 1);
    reopens_with_its_map_sized_to_its_transfers(f);
}

static void a_snapshot_that_cannot_load_without_its_segments_is_refused(void **state) {
    fixture *f = *state;
    tally_replica *r = open_ok(f);
    r->journal->segment_max = 600;
    seed_accounts(r);
    for (int round = 0; round < 3; round++) {
        some_activity(r, 1000 + 100 * (uint64_t)round, 30);
        assert_result(tally_snapshot(r), TALLY_OK);
    }
    tally_close(r);
    run("for s in %s/snapshot-*; do printf garbage > $s; done%s", f->dir, "");
    assert_result(tally_open(&f->opts, &r), TALLY_ECORRUPT);
    assert_non_null(strstr(f->error, "no snapshot that covers"));
}

/* --- fuzzing findings --------------------------------------------------------------------- */

/* fuzz_journal found it: a frame whose checksum holds but whose second op does not validate
 * left its first op applied while recovery cut the frame off, so the next write took a seq the
 * journal no longer had, and a reopen lost it. A frame now counts whole or not at all. */
static void a_frame_that_fails_part_way_counts_not_at_all(void **state) {
    fixture *f = *state;
    op ops[2];
    memset(ops, 0, sizeof ops);
    ops[0].kind = OP_OPEN;
    ops[0].origin = 1;
    ops[0].seq = 1;
    ops[0].u.account = account(5, 1, 0);
    ops[1] = ops[0];
    ops[1].seq = 3; /* a gap */
    ops[1].u.account = account(6, 1, 0);
    bytes frame = {0};
    encode_block(ops, 2, &frame);
    uint8_t header[32];
    memcpy(header, "TLYJ", 4);
    put_u32le(header + 4, 1);
    put_u64le(header + 8, 1);
    put_u64le(header + 16, 1);
    put_u64le(header + 24, XXH3_64bits(header, 24));
    char path[192];
    segment_path(f, 1, path, sizeof path);
    FILE *out = fopen(path, "wb");
    assert_int_equal(fwrite(header, 1, 32, out), 32);
    assert_int_equal(fwrite(frame.at, 1, frame.len, out), frame.len);
    fclose(out);
    bytes_free(&frame);
    tally_replica *r = open_ok(f);
    assert_int_equal(tally_seen(r, 1), 0); /* nothing of the frame */
    /* which was whole, and so perhaps shared: the replica's writes are held */
    assert_int_equal(tally_held(r), TALLY_HOLD_DAMAGED);
    tally_account a = account(7, 1, 0);
    assert_result(tally_create_account(r, &a), TALLY_ORIGIN_HELD);
    assert_result(tally_lift_hold(r), TALLY_OK);
    assert_result(tally_create_account(r, &a), TALLY_OK);
    uint8_t before[16], after[16];
    digest_of(r, before);
    tally_close(r);
    r = open_ok(f);
    digest_of(r, after);
    assert_memory_equal(before, after, 16);
    tally_account got;
    assert_result(tally_lookup_account(r, tid(7), &got), TALLY_OK);
    tally_close(r);
}

/* A journal written before 0.2 (segment version 1) opens, and is never appended to: the next
 * frame, which may hold a CLOCK record that version cannot read, starts segment 2. */
static void a_version_1_segment_is_read_and_never_appended_to(void **state) {
    fixture *f = *state;
    test_clock clock = {1700000000000u};
    tally_replica *r = open_funded(f, &clock, 720);
    tally_close(r);
    char path[192];
    segment_path(f, 1, path, sizeof path);
    static uint8_t buf[1 << 16];
    size_t len = read_segment(f, buf, sizeof buf);
    put_u32le(buf + 4, 1);
    put_u64le(buf + 24, XXH3_64bits(buf, 24));
    write_file(path, buf, (long)len);
    r = open_ok(f);
    tally_transfer t = pending_of(721, 10, 1000);
    assert_result(tally_create_transfer(r, &t), TALLY_OK);
    tally_close(r);
    assert_int_equal(file_size(path), (long)len);
    char second[192];
    segment_path(f, 2, second, sizeof second);
    assert_true(file_size(second) > JOURNAL_SEGMENT_HEADER);
    clock.now_ms += 999;
    r = open_ok(f);
    assert_int_equal(expire_now(r), 0);
    clock.now_ms += 1;
    assert_int_equal(expire_now(r), 1);
    tally_close(r);
}

/* Rewrites f's newest snapshot as 0.1 wrote it: version 1, with no CLOCK record after the HLC
 * (a flag and two 8-byte fields), and no origin's key or runs. */
static void snapshot_to_version_1(fixture *f) {
    char path[256];
    static uint8_t buf[1 << 20];
    long size = read_snapshot(f, path, buf, sizeof buf);
    enum { HEADER = 48, HLC = 8, RECORD = 17, COUNTERS = 16, CHECKSUM = 8 };
    /* no second finishes (version 6), no authority and no certificates (version 5), then no
     * proofs of forks (version 4), at the end: four empty lists */
    for (int list = 0; list < 4; list++) {
        assert_int_equal(get_u32le(buf + size - CHECKSUM - 4), 0);
        memmove(buf + size - CHECKSUM - 4, buf + size - CHECKSUM, CHECKSUM);
        size -= 4;
    }
    /* no keys or runs after each origin's positions (version 3) */
    uint8_t *p = buf + HEADER + HLC + RECORD + COUNTERS;
    uint32_t origins = get_u32le(p);
    p += 4;
    for (uint32_t i = 0; i < origins; i++) {
        /* no branch fields (version 6): base 0, of itself, no parent, no branches */
        enum { BRANCH_FIELDS = 8 + 4 + 4 + 4 };
        memmove(p + 16, p + 16 + BRANCH_FIELDS, (size_t)(buf + size - (p + 16 + BRANCH_FIELDS)));
        size -= BRANCH_FIELDS;
        p += 16 + 4 * get_u64le(p + 8);
        size_t keyed = p[0], runs = get_u32le(p + 1 + 32 * keyed);
        size_t cut = 1 + 32 * keyed + 4 + runs * (4 + 32 + 64);
        memmove(p, p + cut, (size_t)(buf + size - (p + cut)));
        size -= (long)cut;
    }
    memmove(buf + HEADER + HLC, buf + HEADER + HLC + RECORD,
            (size_t)(size - HEADER - HLC - RECORD));
    size -= RECORD;
    put_u32le(buf + 4, 1);
    write_sealed(path, buf, size);
}

/* A snapshot written before 0.2 (version 1, with no clock in it) loads: the deadline of a
 * pending in it is estimated from its stamp, which here the wall clock agrees with. */
static void a_version_1_snapshot_loads_and_estimates_deadlines(void **state) {
    fixture *f = *state;
    test_clock clock = {1700000000000u};
    tally_replica *r = open_funded(f, &clock, 730);
    tally_transfer t = pending_of(731, 10, 1000);
    assert_result(tally_create_transfer(r, &t), TALLY_OK);
    assert_result(tally_snapshot(r), TALLY_OK);
    uint8_t want[16], got[16];
    digest_of(r, want);
    tally_close(r);
    snapshot_to_version_1(f);
    clock.now_ms += 300;
    r = open_ok(f);
    assert_int_not_equal(r->journal->snapshot_segment, 0);
    digest_of(r, got);
    assert_memory_equal(want, got, 16);
    assert_due_after(r, &clock, 700);
    tally_close(r);
}

/* A replica upgraded from 0.2 holds another replica's ops with no signature: it sends them on
 * only once their origin's signed runs have come and matched its copies, and refuses signed
 * runs that say otherwise (another key for the same id, other ops). */
static void ops_from_before_signing_are_sent_on_once_their_origin_signed_them(void **state) {
    fixture *f = *state;
    tally_replica *r = open_ok(f), *x = replica_new(30, NULL), *impostor = replica_new(30, NULL);
    tally_account a = account(300, 1, 0), b = account(301, 1, 0);
    assert_result(tally_create_account(x, &a), TALLY_OK);
    assert_result(tally_create_account(impostor, &b), TALLY_OK);
    sync_pair(x, r);
    assert_result(tally_snapshot(r), TALLY_OK);
    tally_close(r);
    snapshot_to_version_1(f); /* as 0.2 kept it: 30's op, and no run or key of 30's */
    r = open_ok(f);
    uint32_t at = replica_origin_find(r, 30);
    assert_int_equal(r->origins.at[at].runs.count, 0);
    assert_false(r->origins.at[at].keyed);
    tally_replica *fresh = replica_new(31, NULL);
    sync_pair(r, fresh);
    assert_int_equal(tally_seen(fresh, 30), 0); /* nothing it could vouch for */
    /* another key for 30, and another op as its seq 1: refused, and nothing kept of it */
    size_t len;
    uint8_t *summary, *d;
    assert_result(tally_summary(r, &summary, &len), TALLY_OK);
    size_t d_len;
    assert_result(tally_delta(impostor, summary, len, 0, &d, &d_len), TALLY_OK);
    tally_free(summary);
    assert_result(tally_apply(r, d, d_len), TALLY_ECORRUPT);
    tally_free(d);
    at = replica_origin_find(r, 30);
    assert_int_equal(r->origins.at[at].runs.count, 0);
    assert_false(r->origins.at[at].keyed);
    /* 30's own runs match what r holds: r takes them as 30's, and sends them on */
    sync_pair(x, r);
    assert_true(r->origins.at[at].keyed);
    sync_pair(r, fresh);
    assert_int_equal(tally_seen(fresh, 30), 1);
    tally_account got;
    assert_result(tally_lookup_account(fresh, tid(300), &got), TALLY_OK);
    tally_close(fresh);
    tally_close(impostor);
    tally_close(x);
    tally_close(r);
}

/* A deadline estimated when a snapshot written before 0.2 is loaded stays where it was put
 * across restarts, though the wall clock stepped back since (which puts the steady clock of
 * the CLOCK records written after it ahead of the wall clock). Each open used to estimate it
 * again against a fresh steady clock, then switch to the records' clock: it came out early. */
static void a_deadline_estimated_at_an_upgrade_stays_across_restarts(void **state) {
    fixture *f = *state;
    test_clock clock = {1700000000000u};
    uint64_t t0 = clock.now_ms;
    tally_replica *r = open_funded(f, &clock, 750);
    clock.now_ms = t0 + 50000; /* stamped 50 s ahead: all of its timeout is left at any open */
    tally_transfer t = pending_of(751, 10, 10000);
    assert_result(tally_create_transfer(r, &t), TALLY_OK);
    clock.now_ms = t0;
    assert_result(tally_snapshot(r), TALLY_OK);
    tally_close(r);
    snapshot_to_version_1(f);
    clock.now_ms = t0 + 2000;
    r = open_ok(f); /* due after 10 s of steady time from here */
    clock.now_ms = t0 - 3000;
    assert_int_equal(expire_now(r), 0);
    clock.now_ms = t0 + 1000; /* 4 s of the 10 counted */
    assert_int_equal(expire_now(r), 0);
    t = pending_of(752, 10, 100000);
    assert_result(tally_create_transfer(r, &t), TALLY_OK);
    tally_close(r);
    r = open_ok(f);
    assert_due_after(r, &clock, 6000);
    tally_close(r);
}

/* A pending of this replica's that a peer brings back after a restore keeps, across restarts,
 * the deadline it was given when it came back (estimated from its stamp). Replaying it used
 * to take the journal's last CLOCK record before it as the time it was made: it came out
 * early by the time between that record and the pending. */
static void a_pending_brought_back_by_a_peer_keeps_its_deadline(void **state) {
    fixture *f = *state;
    f->opts.replica_id = 21;
    test_clock clock = {1700000000000u};
    uint64_t t0 = clock.now_ms;
    tally_replica *r = open_funded(f, &clock, 740);
    tally_transfer t = pending_of(741, 10, 1); /* leaves a CLOCK record in the backup */
    assert_result(tally_create_transfer(r, &t), TALLY_OK);
    clock.now_ms += 1;
    assert_int_equal(expire_now(r), 1);
    tally_close(r);
    char backup[192];
    snprintf(backup, sizeof backup, "%s.backup", f->dir);
    run("cp -r %s %s", f->dir, backup);
    clock.now_ms = t0 + 101;
    r = open_ok(f);
    t = pending_of(742, 10, 10000); /* due at t0 + 10101 */
    assert_result(tally_create_transfer(r, &t), TALLY_OK);
    tally_replica *peer = replica_new(22, &clock);
    sync_pair(r, peer);
    tally_close(r);
    run("rm -rf %s%s", f->dir, "");
    run("mv %s %s", backup, f->dir);
    clock.now_ms = t0 + 5000;
    r = open_ok(f);
    /* a restored replica voids nothing until its head is confirmed: here by the peer that
     * brings its ops back and answers its challenge */
    sync_pair(peer, r);
    assert_int_equal(tally_held(r), TALLY_HOLD_NONE);
    assert_int_equal(expire_now(r), 0);
    assert_int_equal(reopen_and_expire(f, &r, &clock, 1000, false), 0);
    assert_int_equal(reopen_and_expire(f, &r, &clock, 4100, false), 0);
    assert_int_equal(reopen_and_expire(f, &r, &clock, 1, false), 1);
    tally_close(r);
    tally_close(peer);
}

/* Adds a CLOCK record to r's journal as no replica writes it: the steady clock at `steady`. */
static void journal_clock_record(tally_replica *r, uint64_t steady_ms) {
    op o;
    op_clear(&o);
    o.kind = OP_CLOCK;
    o.u.clock.steady_ms = steady_ms;
    o.u.clock.wall_ms = r->steady.wall_last;
    assert_result(journal_add(r->journal, &o), TALLY_OK);
    assert_result(journal_commit(r->journal), TALLY_OK);
}

/* However CLOCK records are made, replaying one is a move of the clock forward (by the
 * difference modulo 2^64), and a pending whose deadline it passes is due: a record 1 ms
 * behind the one before (a move of 2^64 - 1 ms), or three records each 2^62 ms ahead (round
 * the circle to behind where they started), void the pending at the first chance instead of
 * holding its money for good. An adversary found the second kept it open for 2^62 ms. */
static void a_clock_record_only_ever_moves_the_clock_forward(void **state) {
    fixture *f = *state;
    for (int round = 0; round < 2; round++) {
        test_clock clock = {1700000000000u};
        tally_replica *r = open_funded(f, &clock, 760 + 10 * (uint64_t)round);
        tally_transfer t = pending_of(761 + 10 * (uint64_t)round, 10, 1000);
        assert_result(tally_create_transfer(r, &t), TALLY_OK);
        uint64_t at = r->steady.now;
        for (int k = 0; k < (round == 0 ? 1 : 3); k++) {
            at = round == 0 ? at - 1 : at + (UINT64_C(1) << 62);
            journal_clock_record(r, at);
        }
        t = transfer(762 + 10 * (uint64_t)round, 1, 2, 1); /* the records are not a torn tail */
        assert_result(tally_create_transfer(r, &t), TALLY_OK);
        tally_close(r);
        r = open_ok(f);
        assert_int_equal(expire_now(r), 1);
        tally_close(r);
        run("rm -rf %s/*%s", f->dir, "");
    }
}

/* The steady clock runs more than 2^63 ms between two records (a wall clock flipping between
 * 0 and the end of 64 bits some 2^31 times: each flip counts 2^32 ms): the journal still opens,
 * the pending the run passed is due, and the one made after has all its timeout. An adversary
 * found the first record refused as "going back", and the frame after it cut as a torn tail. */
static void a_clock_that_ran_half_way_round_still_opens(void **state) {
    fixture *f = *state;
    test_clock clock = {1700000000000u};
    tally_replica *r = open_funded(f, &clock, 790);
    tally_transfer t = pending_of(791, 10, 1000);
    assert_result(tally_create_transfer(r, &t), TALLY_OK);
    uint64_t from = r->steady.now;
    r->steady.now += (UINT64_C(1) << 63) + (UINT64_C(1) << 33); /* as 2^31 + 2 flips would */
    expiry_clock_moved(r, from);
    uint64_t in_ms = 1;
    assert_result(tally_next_expiry(r, &in_ms), TALLY_OK);
    assert_int_equal(in_ms, 0);
    t = pending_of(792, 10, 1000);
    assert_result(tally_create_transfer(r, &t), TALLY_OK); /* voids 791 first */
    tally_close(r);
    r = open_ok(f);
    tally_pending_state st;
    uint64_t origin;
    assert_result(tally_transfer_status(r, tid(791), &origin, &st), TALLY_OK);
    assert_int_equal(st, TALLY_PENDING_TIMED_OUT);
    assert_due_after(r, &clock, 1000);
    tally_close(r);
}

/* Opens f, which must refuse its snapshot and read the journal instead. */
static tally_replica *open_from_the_journal(fixture *f) {
    tally_replica *r = open_ok(f);
    assert_int_equal(r->journal->snapshot_segment, 0);
    return r;
}

/* Rewrites the pending-timeouts section of f's newest snapshot: the entry of transfer record
 * `transfer` is dropped, or given `deadline` (UINT64_MAX: dropped); the checksum is made
 * right again, as anyone can. */
static void snapshot_set_timeout(fixture *f, uint32_t transfer, uint64_t deadline, uint64_t was) {
    char path[256];
    static uint8_t buf[1 << 20];
    long size = read_snapshot(f, path, buf, sizeof buf), at = -1;
    for (long i = 4; i + 12 <= size - 8; i++) {
        if (get_u64le(buf + i) == was && get_u32le(buf + i + 8) == transfer &&
            get_u32le(buf + i - 4) == 1) {
            at = i; /* a count of 1, then the entry */
        }
    }
    assert_true(at > 0);
    if (deadline == UINT64_MAX) {
        put_u32le(buf + at - 4, 0);
        memmove(buf + at, buf + at + 12, (size_t)(size - at - 12));
        size -= 12;
    } else {
        put_u64le(buf + at, deadline);
    }
    write_sealed(path, buf, size);
}

/* A snapshot's pending timeouts must be exactly one for each open pending of its own with a
 * timeout, each within its timeout ahead of the stored clock: one left out (the pending would
 * never time out), pushed out of reach, or put 2^63 ms behind (which reads as ahead) is
 * refused, and opening falls back to the journal, which gives the deadline it had. Found by
 * adversaries: all three used to load. */
static void a_snapshot_that_drops_or_defers_a_timeout_is_refused(void **state) {
    fixture *f = *state;
    for (int defer = 0; defer < 3; defer++) {
        test_clock clock = {1700000000000u};
        tally_replica *r = open_funded(f, &clock, 770 + 10 * (uint64_t)defer);
        tally_transfer t = pending_of(771 + 10 * (uint64_t)defer, 10, 1000);
        assert_result(tally_create_transfer(r, &t), TALLY_OK);
        expiry e = r->expiries.at[0];
        assert_result(tally_snapshot(r), TALLY_OK);
        tally_close(r);
        uint64_t moved[] = {UINT64_MAX, e.deadline_ms + 1001,
                            e.deadline_ms + 1 - (UINT64_C(1) << 63)};
        snapshot_set_timeout(f, e.transfer, moved[defer], e.deadline_ms);
        r = open_from_the_journal(f);
        assert_due_after(r, &clock, 1000);
        tally_close(r);
        run("rm -rf %s/*%s", f->dir, "");
    }
}

/* A crash between creating a segment's file and writing its header (test_crash met it under
 * load: a child killed while opening a fresh directory) leaves an empty or short last segment,
 * which holds nothing acknowledged: opening goes on without it, with what the segments before
 * it hold. It used to refuse the directory as corrupt. */
static void a_segment_cut_short_at_its_creation_is_let_go(void **state) {
    fixture *f = *state;
    for (int before = 0; before < 2; before++) {
        f->opts.replica_id = 31;
        uint8_t want[16] = {0}, got[16];
        if (before) {
            tally_replica *r = open_ok(f);
            seed_accounts(r);
            digest_of(r, want);
            tally_close(r);
        }
        char path[192];
        segment_path(f, before ? 2 : 1, path, sizeof path);
        static const uint8_t partial[7] = {'T', 'L', 'Y', 'J', 2, 0, 0};
        write_file(path, partial, before ? 0 : (long)sizeof partial);
        tally_replica *r = open_ok(f);
        if (before) {
            digest_of(r, got);
            assert_memory_equal(want, got, 16);
        }
        if (!before) {
            seed_accounts(r); /* and it takes writes */
        }
        tally_transfer t = transfer(800, 1, 2, 5);
        assert_result(tally_create_transfer(r, &t), TALLY_OK);
        tally_close(r);
        r = open_ok(f);
        tally_close(r);
        run("rm -rf %s/*%s", f->dir, "");
    }
}

/* Replaces, in f's newest snapshot, the one run of bytes `was` (of `len`) with `now`, and makes
 * the checksum right again, as anyone can. */
static void snapshot_rewrite(fixture *f, const uint8_t *was, const uint8_t *now, size_t len) {
    char path[256];
    static uint8_t buf[1 << 20];
    long size = read_snapshot(f, path, buf, sizeof buf), at = -1;
    for (long i = 0; i + (long)len <= size - 8; i++) {
        if (memcmp(buf + i, was, len) == 0) {
            assert_int_equal(at, -1); /* one such run only */
            at = i;
        }
    }
    assert_true(at >= 0);
    memcpy(buf + at, now, len);
    write_sealed(path, buf, size);
}

/* A snapshot is held to the invariants the journal's replay would have checked op by op: one
 * that gives this replica rights its history does not (10^9 on an account holding 100), or a
 * pending of amount 0 (whose expiry could then not be applied), is refused, and opening falls
 * back to the journal. An adversary found the first let the replica overdraw the account, the
 * second stop the process at the pending's expiry. */
static void a_snapshot_at_odds_with_its_history_is_refused(void **state) {
    fixture *f = *state;
    for (int round = 0; round < 2; round++) {
        test_clock clock = {1700000000000u};
        tally_replica *r = open_funded(f, &clock, 800 + 10 * (uint64_t)round);
        tally_transfer t = pending_of(801 + 10 * (uint64_t)round, 77, 1000);
        assert_result(tally_create_transfer(r, &t), TALLY_OK);
        uint8_t want[16], got[16];
        digest_of(r, want);
        assert_result(tally_snapshot(r), TALLY_OK);
        tally_close(r);
        uint8_t was[24], now[24];
        if (round == 0) { /* holder index 0 (this replica), rights 100 - 77 on account 2 */
            put_u32le(was, 0), put_u64le(was + 4, 0), put_u64le(was + 12, 23);
            memcpy(now, was, 20);
            put_u64le(now + 12, 1000000000);
        } else { /* the pending's id, then its amount */
            put_u64le(was, 0), put_u64le(was + 8, 801 + 10 * (uint64_t)round);
            put_u64le(was + 16, 77);
            memcpy(now, was, 24);
            put_u64le(now + 16, 0);
        }
        snapshot_rewrite(f, was, now, round == 0 ? 20 : 24);
        r = open_from_the_journal(f);
        digest_of(r, got);
        assert_memory_equal(want, got, 16);
        tally_transfer big = transfer(805 + 10 * (uint64_t)round, 2, 3, 1000000);
        assert_result(tally_create_transfer(r, &big), TALLY_EXCEEDS_CREDITS);
        assert_due_after(r, &clock, 1000);
        tally_close(r);
        run("rm -rf %s/*%s", f->dir, "");
    }
}

/* fuzz_snapshot found it: loading a snapshot with no accounts passed NULL to memset. */
static void a_snapshot_of_an_empty_replica_loads(void **state) {
    fixture *f = *state;
    tally_replica *r = open_ok(f);
    assert_result(tally_snapshot(r), TALLY_OK);
    tally_close(r);
    r = open_ok(f);
    assert_int_equal(r->journal->snapshot_segment, 1);
    tally_close(r);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void) {
    const struct CMUnitTest tests[] = {
        T(a_reopened_replica_has_everything_it_acknowledged),
        T(ops_from_peers_are_journalled_too),
        T(a_directory_is_open_in_one_replica_at_a_time),
        T(a_replica_id_must_match_the_directory),
        T(bad_options_are_refused),
        T(a_torn_tail_loses_only_the_last_write),
        T(every_flipped_bit_is_detected_or_falls_in_the_tail),
        T(a_corrupt_frame_in_the_middle_is_refused_unless_repaired),
        T(a_long_journal_rotates_segments_and_replays_them_all),
        T(after_a_failed_write_the_replica_refuses_writes),
        T(a_replica_restored_from_an_old_backup_waits_for_its_own_ops),
        T(every_sign_of_lost_writes_holds_the_replica),
        T(a_crash_holds_a_replica_only_if_it_did_not_sync),
        T(a_bogus_summary_does_not_stop_a_replica_writing),
        T(a_frame_whose_last_page_did_not_land_holds_nothing),
        T(a_held_replica_signs_no_new_run_when_it_opens),
        T(random_summaries_neither_stop_nor_confirm),
        T(a_hold_is_lifted_only_by_an_answer_to_its_challenge),
        T(a_restored_directory_starts_as_a_new_replica),
        T(a_hold_outlives_a_kill_during_opening),
        T(losing_the_only_segment_holds_the_replica),
        T(segments_restored_in_place_hold_the_replica),
        T(a_segment_cut_short_at_its_creation_is_let_go),
        T(the_clock_and_timeouts_survive_a_glitch_and_a_restart),
        T(restarts_more_often_than_a_timeout_do_not_keep_a_pending_open),
        T(a_version_1_segment_is_read_and_never_appended_to),
        T(a_version_1_snapshot_loads_and_estimates_deadlines),
        T(a_pending_made_in_a_glitch_expires_across_restarts),
        T(a_deadline_estimated_at_an_upgrade_stays_across_restarts),
        T(ops_from_before_signing_are_sent_on_once_their_origin_signed_them),
        T(a_pending_brought_back_by_a_peer_keeps_its_deadline),
        T(a_clock_record_only_ever_moves_the_clock_forward),
        T(a_clock_that_ran_half_way_round_still_opens),
        T(a_snapshot_that_drops_or_defers_a_timeout_is_refused),
        T(a_snapshot_at_odds_with_its_history_is_refused),
        T(open_makes_missing_parents_and_says_why_it_cannot),
        T(a_snapshot_and_the_journal_after_it_give_the_same_state),
        T(snapshots_let_old_segments_go),
        T(a_damaged_snapshot_falls_back_to_an_older_one_or_the_journal),
        T(a_snapshot_transfer_that_does_not_fit_the_record_is_refused),
        T(a_snapshot_with_a_fuller_map_from_earlier_versions_loads),
        T(a_snapshot_of_a_reserved_replica_is_the_size_of_its_contents),
        T(a_snapshot_that_cannot_load_without_its_segments_is_refused),
        T(a_frame_that_fails_part_way_counts_not_at_all),
        T(a_snapshot_of_an_empty_replica_loads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
