/*
 * ledger/journal.c — see journal.h for the layout and invariants.
 *
 * Segment header (32 bytes, little-endian):
 *     0  4  magic "TLYJ"
 *     4  4  format version (1)
 *     8  8  replica id
 *     16 8  segment number
 *     24 8  XXH3-64 of bytes 0..23
 * then frames: codec blocks, back to back.
 *
 * Snapshots are dir/snapshot-<segment>-<offset>.tly (16 hex digits each): the state as of that
 * journal position (snapshot.c). Opening loads the newest that loads and replays from there.
 */
#define _GNU_SOURCE
#include "ledger/journal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crdt/array.h"

static const uint8_t segment_magic[4] = {'T', 'L', 'Y', 'J'};
/* Version 2 frames may hold CLOCK records (ledger/codec.c); a version 3 segment's directory has
 * a MARK. Older segments are still read, and never appended to. */
#define JOURNAL_VERSION 3
#define SEGMENTS_MAX (UINT32_C(1) << 20)

static int say(char *error, size_t size, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int say(char *error, size_t size, int rc, const char *fmt, ...) {
    if (error != NULL && size > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(error, size, fmt, ap);
        va_end(ap);
    }
    return rc;
}

/* mkdir -p: makes path and whichever of its parents are missing (0755). path is a writable
 * copy, restored before returning. 0, or -1 with errno from the step that failed. */
static int make_dirs(char *path) {
    if (path[0] == '\0') {
        errno = ENOENT;
        return -1;
    }
    for (char *p = path + 1;; p++) {
        bool end = *p == '\0';
        if (end || *p == '/') {
            *p = '\0';
            int rc = mkdir(path, 0755) == 0 || errno == EEXIST ? 0 : -1;
            int saved = errno;
            *p = end ? '\0' : '/';
            if (rc != 0) {
                errno = saved;
                return -1;
            }
            if (end) {
                return 0;
            }
        }
    }
}

static void segment_name(char *out, size_t size, uint64_t n) {
    snprintf(out, size, "journal-%016" PRIx64 ".tly", n);
}

static bool parse_segment_name(const char *name, uint64_t *n) {
    unsigned long long v;
    char tail;
    if (strlen(name) != 28 || sscanf(name, "journal-%16llx.tl%c", &v, &tail) != 2 || tail != 'y' ||
        v == 0) {
        return false;
    }
    *n = v;
    return true;
}

static void snapshot_name(char *out, size_t size, uint64_t segment, uint64_t offset) {
    snprintf(out, size, "snapshot-%016" PRIx64 "-%016" PRIx64 ".tly", segment, offset);
}

typedef struct position {
    uint64_t segment, offset;
} position;

static bool parse_snapshot_name(const char *name, position *p) {
    unsigned long long seg, off;
    char tail;
    if (strlen(name) != 46 || sscanf(name, "snapshot-%16llx-%16llx.tl%c", &seg, &off, &tail) != 3 ||
        tail != 'y' || seg == 0) {
        return false;
    }
    p->segment = seg;
    p->offset = off;
    return true;
}

static bool write_all(int fd, const uint8_t *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            return false;
        }
        p += w;
        n -= (size_t)w;
    }
    return true;
}

static void header_encode(uint8_t h[JOURNAL_SEGMENT_HEADER], uint64_t replica, uint64_t segment) {
    memcpy(h, segment_magic, 4);
    put_u32le(h + 4, JOURNAL_VERSION);
    put_u64le(h + 8, replica);
    put_u64le(h + 16, segment);
    put_u64le(h + 24, XXH3_64bits(h, 24));
}

static bool header_valid(const uint8_t *h, uint64_t segment, uint64_t *replica, uint32_t *version) {
    *version = get_u32le(h + 4);
    if (memcmp(h, segment_magic, 4) != 0 || *version < 1 || *version > JOURNAL_VERSION ||
        get_u64le(h + 16) != segment || !CHECKSUM_OK(get_u64le(h + 24), XXH3_64bits(h, 24)) ||
        get_u64le(h + 8) == 0) {
        return false;
    }
    *replica = get_u64le(h + 8);
    return true;
}

/* --- the replica's key ---------------------------------------------------------------------- */

#define KEY_FILE_BYTES 48
static const char key_name[] = "key";
static const uint8_t key_magic[4] = {'T', 'L', 'Y', 'K'};

/* Reads a small file of the directory whose `size` bytes are magic, version (u32), fields and
 * XXH3-64 of all before it. *found false: there is none. TALLY_ECORRUPT: one that does not
 * check. */
static int small_file_read(journal *j, const char *name, const uint8_t magic[4],
                           uint32_t version, uint8_t *b, size_t size, bool *found) {
    *found = false;
    int fd = openat(j->dir_fd, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return errno == ENOENT ? TALLY_OK : TALLY_EIO;
    }
    ssize_t n = read(fd, b, size + 1); /* b has room for one byte more: a longer file */
    close(fd);
    *found = true;
    if (n != (ssize_t)size || memcmp(b, magic, 4) != 0 || get_u32le(b + 4) != version ||
        !CHECKSUM_OK(get_u64le(b + size - 8), XXH3_64bits(b, size - 8))) {
        return TALLY_ECORRUPT;
    }
    return TALLY_OK;
}

int journal_read_key(journal *j, uint8_t seed[CRYPTO_SEED], bool *found) {
    uint8_t b[KEY_FILE_BYTES + 1];
    int rc = small_file_read(j, key_name, key_magic, 1, b, KEY_FILE_BYTES, found);
    if (rc == TALLY_OK && *found) {
        memcpy(seed, b + 8, CRYPTO_SEED);
    }
    *found = *found && rc == TALLY_OK;
    return rc;
}

int journal_write_key(journal *j, const uint8_t seed[CRYPTO_SEED]) {
    static const char tmp[] = "key.tmp";
    uint8_t b[KEY_FILE_BYTES];
    memcpy(b, key_magic, 4);
    put_u32le(b + 4, 1);
    memcpy(b + 8, seed, CRYPTO_SEED);
    put_u64le(b + 40, XXH3_64bits(b, 40));
    int fd = openat(j->dir_fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        return TALLY_EIO;
    }
    /* synced whatever the sync mode: every op this replica signs depends on it */
    bool ok = write_all(fd, b, sizeof b) && fsync(fd) == 0;
    close(fd);
    if (!ok || renameat(j->dir_fd, tmp, j->dir_fd, key_name) != 0 || fsync(j->dir_fd) != 0) {
        (void)unlinkat(j->dir_fd, tmp, 0);
        return TALLY_EIO;
    }
    return TALLY_OK;
}

/* --- the directory's mark ------------------------------------------------------------------ */

#define MARK_BYTES 80
#define MARK_V1_BYTES 64
static const char mark_name[] = "MARK";
static const uint8_t mark_magic[4] = {'T', 'L', 'Y', 'M'};
#define MARK_VERSION 2 /* 1: without birth times */
#define MARK_OPEN 1u

/* The birth time in ns of `name` in the directory dirfd (of dirfd itself when name is ""), or 0
 * when its file system keeps none. */
static uint64_t birth_ns(int dirfd, const char *name) {
    struct statx x;
    if (statx(dirfd, name, name[0] == '\0' ? AT_EMPTY_PATH : 0, STATX_BTIME, &x) != 0 ||
        !(x.stx_mask & STATX_BTIME)) {
        return 0;
    }
    return (uint64_t)x.stx_btime.tv_sec * UINT64_C(1000000000) + x.stx_btime.tv_nsec;
}

/* dir/MARK (little-endian): magic "TLYM", version (4), replica id, the directory's inode, the
 * mark file's own inode, the newest segment, the hold (4), flags (4: MARK_OPEN), how long the
 * newest segment was when the mark was written (8; it only grows until opening cuts it), the
 * directory's and the mark file's birth times (8 each, ns; 0: none), XXH3-64 of the bytes
 * before. A version 1 mark (64 bytes, no birth times) is read as having none. *found false:
 * there is none. TALLY_ECORRUPT: one that does not check. */
static int mark_read(journal *j, journal_mark *m, bool *found) {
    memset(m, 0, sizeof *m);
    uint8_t b[MARK_BYTES + 1];
    int rc = small_file_read(j, mark_name, mark_magic, MARK_VERSION, b, MARK_BYTES, found);
    bool v1 = false;
    if (rc == TALLY_ECORRUPT) {
        v1 = small_file_read(j, mark_name, mark_magic, 1, b, MARK_V1_BYTES, found) == TALLY_OK;
        rc = v1 ? TALLY_OK : rc;
    }
    if (rc != TALLY_OK || !*found) {
        return rc;
    }
    if (get_u32le(b + 40) > TALLY_HOLD_RENEWED || (get_u32le(b + 44) & ~MARK_OPEN) != 0) {
        return TALLY_ECORRUPT;
    }
    m->replica = get_u64le(b + 8);
    m->dir_ino = get_u64le(b + 16);
    m->mark_ino = get_u64le(b + 24);
    m->newest = get_u64le(b + 32);
    m->newest_bytes = get_u64le(b + 48);
    m->hold = get_u32le(b + 40);
    m->open = (get_u32le(b + 44) & MARK_OPEN) != 0;
    m->dir_born = v1 ? 0 : get_u64le(b + 56);
    m->mark_born = v1 ? 0 : get_u64le(b + 64);
    return TALLY_OK;
}

/* Writes j->mark atomically, with the inodes it lands in: a temporary file, renamed (a rename
 * keeps the inode). Synced when the journal syncs, and always when it holds the writes or says
 * the directory is open unsynced: each must outlive a crash whatever the sync mode. */
static int mark_write(journal *j) {
    static const char tmp[] = "MARK.tmp";
    struct stat dir_st, st;
    int fd = openat(j->dir_fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || fstat(fd, &st) != 0 || fstat(j->dir_fd, &dir_st) != 0) {
        if (fd >= 0) {
            close(fd);
        }
        return TALLY_EIO;
    }
    j->mark.dir_ino = (uint64_t)dir_st.st_ino;
    j->mark.mark_ino = (uint64_t)st.st_ino;
    j->mark.dir_born = birth_ns(j->dir_fd, "");
    j->mark.mark_born = birth_ns(fd, "");
    uint8_t b[MARK_BYTES] = {0};
    memcpy(b, mark_magic, 4);
    put_u32le(b + 4, MARK_VERSION);
    put_u64le(b + 8, j->mark.replica);
    put_u64le(b + 16, j->mark.dir_ino);
    put_u64le(b + 24, j->mark.mark_ino);
    put_u64le(b + 32, j->mark.newest);
    put_u64le(b + 48, j->mark.newest_bytes);
    put_u32le(b + 40, j->mark.hold);
    put_u32le(b + 44, j->mark.open ? MARK_OPEN : 0);
    put_u64le(b + 56, j->mark.dir_born);
    put_u64le(b + 64, j->mark.mark_born);
    put_u64le(b + 72, XXH3_64bits(b, 72));
    bool sync = j->mode == TALLY_SYNC_COMMIT || j->mark.hold != 0 || j->mark.open;
    bool ok = write_all(fd, b, sizeof b) && (!sync || fsync(fd) == 0);
    close(fd);
    if (!ok || renameat(j->dir_fd, tmp, j->dir_fd, mark_name) != 0 ||
        (sync && fsync(j->dir_fd) != 0)) {
        (void)unlinkat(j->dir_fd, tmp, 0);
        return TALLY_EIO;
    }
    return TALLY_OK;
}

int journal_hold(journal *j, uint32_t reason) {
    if (j->mark.hold != 0 && reason != TALLY_HOLD_RENEWED) {
        return TALLY_OK;
    }
    j->mark.hold = reason;
    return mark_write(j);
}

int journal_lift(journal *j) {
    if (j->mark.hold == 0) {
        return TALLY_OK;
    }
    uint32_t was = j->mark.hold;
    j->mark.hold = 0;
    int rc = mark_write(j);
    if (rc != TALLY_OK) {
        j->mark.hold = was;
    }
    return rc;
}

/* Whether two birth times may be one file's: equal, or one of them unknown. */
static bool same_birth(uint64_t a, uint64_t b) {
    return a == 0 || b == 0 || a == b;
}

/* After replay: checks the directory against the mark read before it (found: there was one;
 * rc: how reading it went), sets the hold, and writes the mark as it now stands. A directory
 * with no segment before this opening (j->created) is new, and has nothing to hold. */
static int mark_settle(journal *j, int rc, bool found) {
    struct stat dir_st, st;
    if (rc == TALLY_EIO || fstat(j->dir_fd, &dir_st) != 0) {
        return TALLY_EIO;
    }
    uint32_t hold = 0;
    if (rc == TALLY_ECORRUPT) {
        hold = TALLY_HOLD_DAMAGED; /* the mark does not check */
    } else if (!found) {
        /* a journal written since marks exist always has one: it was lost */
        hold = !j->created && j->segment_version >= 3 ? TALLY_HOLD_DAMAGED : 0;
    } else if (fstatat(j->dir_fd, mark_name, &st, 0) != 0) {
        return TALLY_EIO;
    } else if ((uint64_t)dir_st.st_ino != j->mark.dir_ino ||
               (uint64_t)st.st_ino != j->mark.mark_ino || j->mark.replica != j->replica_id ||
               !same_birth(j->mark.dir_born, birth_ns(j->dir_fd, "")) ||
               !same_birth(j->mark.mark_born, birth_ns(j->dir_fd, mark_name))) {
        hold = TALLY_HOLD_MOVED;
    } else if (j->mark.newest > j->segment || (j->created && j->mark.newest != 0) ||
               (j->mark.newest == j->segment && j->mark.newest_bytes > j->segment_bytes)) {
        /* a segment lost, or the newest shorter than it was: an older copy put back */
        hold = TALLY_HOLD_MISSING;
    } else if (j->mark.open) {
        hold = TALLY_HOLD_UNCLEAN;
    }
    if (rc == TALLY_ECORRUPT || !found) {
        uint32_t kept = j->mark.hold; /* a hold set while replaying */
        memset(&j->mark, 0, sizeof j->mark);
        j->mark.hold = kept;
    }
    if (j->mark.hold == 0) {
        j->mark.hold = hold;
    }
    j->mark.replica = j->replica_id;
    j->mark.newest = j->segment;
    j->mark.newest_bytes = j->segment_bytes;
    j->mark.open = j->mode != TALLY_SYNC_COMMIT;
    j->mark_live = true;
    return mark_write(j);
}

/* Creates segment n holding only its header, durable under TALLY_SYNC_COMMIT. It gets its name
 * only once its header is written (and synced): a crash part way leaves at most segment.tmp,
 * which nothing reads, never a segment without a header. */
static int segment_create(journal *j, uint64_t n) {
    static const char tmp[] = "segment.tmp";
    char name[64];
    segment_name(name, sizeof name, n);
    int fd = openat(j->dir_fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        return TALLY_EIO;
    }
    uint8_t h[JOURNAL_SEGMENT_HEADER];
    header_encode(h, j->replica_id, n);
    if (!write_all(fd, h, sizeof h) || (j->mode == TALLY_SYNC_COMMIT && fsync(fd) != 0) ||
        renameat(j->dir_fd, tmp, j->dir_fd, name) != 0 ||
        (j->mode == TALLY_SYNC_COMMIT && fsync(j->dir_fd) != 0)) {
        close(fd);
        (void)unlinkat(j->dir_fd, tmp, 0);
        return TALLY_EIO;
    }
    if (j->segment_fd >= 0) {
        close(j->segment_fd);
    }
    j->segment_fd = fd;
    j->segment = n;
    j->segment_bytes = JOURNAL_SEGMENT_HEADER;
    if (j->mark_live && n > j->mark.newest) {
        j->mark.newest = n;
        j->mark.newest_bytes = j->segment_bytes;
        return mark_write(j); /* so that losing this segment will be noticed */
    }
    return TALLY_OK;
}

static int compare_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Newest first. */
static int compare_position_desc(const void *a, const void *b) {
    const position *x = a, *y = b;
    if (x->segment != y->segment) {
        return x->segment > y->segment ? -1 : 1;
    }
    return x->offset > y->offset ? -1 : x->offset < y->offset;
}

/* What the directory holds: the segment numbers, sorted, and the snapshots, newest first. */
typedef struct dir_listing {
    ARRAY(uint64_t) segments;
    ARRAY(position) snapshots;
} dir_listing;

static void dir_listing_free(dir_listing *l) {
    ARRAY_FREE(l->segments);
    ARRAY_FREE(l->snapshots);
}

static int dir_list(journal *j, dir_listing *l) {
    memset(l, 0, sizeof *l);
    int fd = dup(j->dir_fd);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (d == NULL) {
        if (fd >= 0) {
            close(fd);
        }
        return TALLY_EIO;
    }
    rewinddir(d);
    int rc = TALLY_OK;
    for (struct dirent *e; rc == TALLY_OK && (e = readdir(d)) != NULL;) {
        uint64_t n;
        position p;
        if (parse_segment_name(e->d_name, &n)) {
            rc = ARRAY_RESERVE_MAX(l->segments, 1, SEGMENTS_MAX) ? TALLY_OK : TALLY_ENOMEM;
            if (rc == TALLY_OK) {
                l->segments.at[l->segments.count++] = n;
            }
        } else if (parse_snapshot_name(e->d_name, &p)) {
            rc = ARRAY_RESERVE_MAX(l->snapshots, 1, SEGMENTS_MAX) ? TALLY_OK : TALLY_ENOMEM;
            if (rc == TALLY_OK) {
                l->snapshots.at[l->snapshots.count++] = p;
            }
        }
    }
    closedir(d);
    if (l->segments.count > 1) {
        qsort(l->segments.at, l->segments.count, sizeof *l->segments.at, compare_u64);
    }
    if (l->snapshots.count > 1) {
        qsort(l->snapshots.at, l->snapshots.count, sizeof *l->snapshots.at, compare_position_desc);
    }
    return rc;
}

/* Maps a whole file for reading (populated up front: far fewer page faults than touching it a
 * page at a time). Release it with unmap_file. */
static int map_file(int dir_fd, const char *name, uint8_t **buf, size_t *len) {
    *buf = NULL;
    *len = 0;
    int fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        if (fd >= 0) {
            close(fd);
        }
        return TALLY_EIO;
    }
    if (st.st_size == 0) {
        close(fd);
        return TALLY_OK;
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) {
        return errno == ENOMEM ? TALLY_ENOMEM : TALLY_EIO;
    }
    *buf = p;
    *len = (size_t)st.st_size;
    return TALLY_OK;
}

static void unmap_file(uint8_t *buf, size_t len) {
    if (buf != NULL) {
        munmap(buf, len);
    }
}

/* Whether a whole, checksummed frame starts anywhere in buf[from, len). */
static bool valid_frame_after(const uint8_t *buf, size_t len, size_t from) {
    block_dec d;
    block_dec_init(&d);
    bool ok = false;
    for (size_t at = from; at + CODEC_BLOCK_HEADER <= len && !ok; at++) {
        size_t block_len;
        ok = block_dec_begin(&d, buf + at, len - at, &block_len) == TALLY_OK;
    }
    block_dec_free(&d);
    return ok;
}

/* Whether the bytes of the last segment after its last valid frame (buf[from, len)) are what
 * a torn write leaves: less than a frame header, a header whose frame runs past the end of the
 * file, or a frame whose bytes are zeros from a sector boundary on (the blocks of the write that
 * did not land, which the file system gives as zeros: a disk writes a 512-byte sector whole or
 * not at all, and a frame ends in a signature, not in zeros). Anything else, a frame whose
 * bytes are all there but do not check, may be one that was synced and shared, and rotted. */
#define SECTOR_BYTES 512
static bool cut_short(const uint8_t *buf, size_t len, size_t from) {
    if (len - from < CODEC_BLOCK_HEADER ||
        get_u32le(buf + from) > len - from - CODEC_BLOCK_HEADER) {
        return true;
    }
    size_t zeros = len; /* where the zeros at the end begin */
    while (zeros > from && buf[zeros - 1] == 0) {
        zeros--;
    }
    size_t boundary = (zeros + SECTOR_BYTES - 1) / SECTOR_BYTES * SECTOR_BYTES;
    return zeros == from || boundary < len;
}

/* Cuts segment n down to `size` bytes, and deletes every segment after it. */
static int truncate_at(journal *j, const uint64_t *segments, size_t count, size_t index,
                       uint64_t size) {
    char name[64];
    segment_name(name, sizeof name, segments[index]);
    int fd = openat(j->dir_fd, name, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || ftruncate(fd, (off_t)size) != 0 ||
        (j->mode == TALLY_SYNC_COMMIT && fsync(fd) != 0)) {
        if (fd >= 0) {
            close(fd);
        }
        return TALLY_EIO;
    }
    close(fd);
    for (size_t k = index + 1; k < count; k++) {
        segment_name(name, sizeof name, segments[k]);
        if (unlinkat(j->dir_fd, name, 0) != 0) {
            return TALLY_EIO;
        }
    }
    if (j->mode == TALLY_SYNC_COMMIT && fsync(j->dir_fd) != 0) {
        return TALLY_EIO;
    }
    return TALLY_OK;
}

typedef struct replay_state {
    uint64_t fresh_id; /* the id of a new journal */
    const journal_hooks *hooks;
    bool repair;
    char *error;
    size_t error_size;
    /* A frame whose ops did not all validate may have applied some of them before failing; the
     * replay then starts over and stops in front of it, so that a frame counts whole or not at
     * all (segment 0: no such frame). */
    position stop;
    bool restart;
} replay_state;

/* Replays one segment's frames from offset start. *end: where the valid frames end.
 * *damaged: they end before the file does. */
static int segment_replay(journal *j, replay_state *s, const uint8_t *buf, size_t len,
                          uint64_t number, uint64_t start, uint64_t *end, bool *damaged,
                          const char *name) {
    uint64_t replica;
    uint32_t version = 0;
    *end = 0;
    *damaged = false;
    if (len < JOURNAL_SEGMENT_HEADER || !header_valid(buf, number, &replica, &version) ||
        (j->replica_id != 0 && replica != j->replica_id)) {
        return say(s->error, s->error_size, TALLY_ECORRUPT,
                   "%s/%s: the segment header is missing, damaged or names another replica",
                   j->dir, name);
    }
    if (start > len) {
        return say(s->error, s->error_size, TALLY_ECORRUPT,
                   "%s/%s: the segment is shorter (%zu bytes) than the snapshot that covers "
                   "it says (%" PRIu64 ")",
                   j->dir, name, len, start);
    }
    j->replica_id = replica;
    j->replay_clocks = version >= 2;
    j->segment_version = version;
    size_t at = (size_t)start;
    while (at < len) {
        if (s->stop.segment == number && s->stop.offset == at) {
            *damaged = true;
            break;
        }
        block_dec d;
        block_dec_init(&d);
        size_t block_len;
        int rc = block_dec_begin(&d, buf + at, len - at, &block_len);
        block_dec_free(&d);
        if (rc == TALLY_OK) {
            rc = s->hooks->replay(s->hooks->ctx, buf + at, block_len);
            if (rc == TALLY_ENOMEM) {
                return rc;
            }
            if (rc != TALLY_OK) {
                s->stop.segment = number;
                s->stop.offset = at;
                s->restart = true;
                return TALLY_OK;
            }
            j->replayed_frames++;
        }
        if (rc != TALLY_OK) {
            *damaged = true;
            break;
        }
        at += block_len;
    }
    *end = at;
    return TALLY_OK;
}

/* Loads the newest snapshot that loads; *from is where replay starts (segment 0: nothing
 * loaded, replay everything). */
static int snapshot_choose(journal *j, replay_state *s, const position *snapshots, size_t n,
                           position *from) {
    from->segment = from->offset = 0;
    for (size_t i = 0; i < n; i++) {
        char name[64];
        snapshot_name(name, sizeof name, snapshots[i].segment, snapshots[i].offset);
        uint8_t *buf;
        size_t len;
        int rc = map_file(j->dir_fd, name, &buf, &len);
        if (rc == TALLY_ENOMEM) {
            return rc;
        }
        position at = {0, 0};
        if (rc == TALLY_OK) {
            rc = s->hooks->load(s->hooks->ctx, buf, len, &at.segment, &at.offset);
            unmap_file(buf, len);
        }
        if (rc == TALLY_OK && at.segment == snapshots[i].segment &&
            at.offset == snapshots[i].offset) {
            *from = at;
            j->snapshot_segment = at.segment;
            j->snapshot_offset = at.offset;
            return TALLY_OK;
        }
        if (rc == TALLY_ENOMEM) {
            return rc;
        }
        s->hooks->reset(s->hooks->ctx); /* a damaged snapshot: try an older one */
    }
    return TALLY_OK;
}

/* Replays segments[first..] (the first from offset `start`); cuts a torn tail; sets where
 * appending goes on. *count may shrink when segments are dropped. */
static int segments_replay(journal *j, replay_state *s, const uint64_t *segments, size_t *count,
                           size_t first, uint64_t start) {
    int rc = TALLY_OK;
    for (size_t i = first; i < *count; i++) {
        char name[64];
        segment_name(name, sizeof name, segments[i]);
        uint8_t *buf;
        size_t len;
        rc = map_file(j->dir_fd, name, &buf, &len);
        if (rc != TALLY_OK) {
            return say(s->error, s->error_size, rc, "%s/%s: cannot read it", j->dir, name);
        }
        bool last = i + 1 == *count;
        if (last && i > first && len < JOURNAL_SEGMENT_HEADER) {
            /* A crash while the newest segment was being created: it holds nothing. */
            unmap_file(buf, len);
            *count = i;
            if (unlinkat(j->dir_fd, name, 0) != 0) {
                return say(s->error, s->error_size, TALLY_EIO, "%s/%s: cannot remove it",
                           j->dir, name);
            }
            return TALLY_OK;
        }
        uint64_t end;
        bool damaged;
        rc = segment_replay(j, s, buf, len, segments[i], i == first ? start : JOURNAL_SEGMENT_HEADER,
                            &end, &damaged, name);
        if (s->restart) {
            unmap_file(buf, len);
            return rc;
        }
        if (rc == TALLY_OK && damaged) {
            bool torn = last && !valid_frame_after(buf, len, end + 1);
            if (torn || s->repair) {
                /* invariant 5: held before anything that may have been shared is dropped */
                if (!torn || !cut_short(buf, len, end)) {
                    rc = journal_hold(j, TALLY_HOLD_DAMAGED);
                }
                if (rc == TALLY_OK) {
                    rc = truncate_at(j, segments, *count, i, end);
                }
                *count = i + 1;
                last = true;
            } else {
                rc = say(s->error, s->error_size, TALLY_ECORRUPT,
                         "%s/%s: corrupt frame at offset %" PRIu64
                         ", with valid data after it; open with TALLY_OPEN_REPAIR to keep "
                         "only what comes before it",
                         j->dir, name, end);
            }
        }
        unmap_file(buf, len);
        if (rc != TALLY_OK) {
            return rc;
        }
        j->segment = segments[i];
        j->segment_bytes = end;
        if (last) {
            break;
        }
    }
    return rc;
}

/* A last segment shorter than its header was cut at its creation by a crash (before 0.2
 * named it before writing it): it holds nothing, and goes. */
static int drop_unborn_segment(journal *j, dir_listing *l) {
    if (l->segments.count == 0) {
        return TALLY_OK;
    }
    char name[64];
    segment_name(name, sizeof name, l->segments.at[l->segments.count - 1]);
    struct stat st;
    if (fstatat(j->dir_fd, name, &st, 0) != 0) {
        return TALLY_EIO;
    }
    if (st.st_size >= JOURNAL_SEGMENT_HEADER) {
        return TALLY_OK;
    }
    if (unlinkat(j->dir_fd, name, 0) != 0 || fsync(j->dir_fd) != 0) {
        return TALLY_EIO;
    }
    l->segments.count--;
    return TALLY_OK;
}

static int journal_replay_once(journal *j, replay_state *s) {
    dir_listing l;
    int rc = dir_list(j, &l);
    if (rc == TALLY_OK) {
        rc = drop_unborn_segment(j, &l);
    }
    const uint64_t *segments = l.segments.at;
    const position *snapshots = l.snapshots.at;
    size_t count = l.segments.count, n_snapshots = l.snapshots.count;
    for (size_t i = 1; rc == TALLY_OK && i < count; i++) {
        if (segments[i] != segments[i - 1] + 1) {
            rc = say(s->error, s->error_size, TALLY_ECORRUPT,
                     "%s: journal segment %" PRIu64 " is missing", j->dir, segments[i - 1] + 1);
        }
    }
    position from = {0, 0};
    if (rc == TALLY_OK) {
        rc = snapshot_choose(j, s, snapshots, n_snapshots, &from);
    }
    size_t first = 0;
    if (rc == TALLY_OK && from.segment != 0) {
        while (first < count && segments[first] != from.segment) {
            first++;
        }
        if (first == count) {
            rc = say(s->error, s->error_size, TALLY_ECORRUPT,
                     "%s: segment %" PRIu64 ", where the snapshot ends, is missing", j->dir,
                     from.segment);
        }
    } else if (rc == TALLY_OK && count > 0 && segments[0] != 1) {
        rc = say(s->error, s->error_size, TALLY_ECORRUPT,
                 "%s: the journal starts at segment %" PRIu64
                 " and no snapshot that covers what came before it loads",
                 j->dir, segments[0]);
    }
    if (rc == TALLY_OK && count > 0) {
        rc = segments_replay(j, s, segments, &count, first,
                             from.segment != 0 ? from.offset : JOURNAL_SEGMENT_HEADER);
    }
    dir_listing_free(&l);
    if (s->restart) {
        return rc;
    }
    if (rc != TALLY_OK) {
        return rc == TALLY_ENOMEM || rc == TALLY_EIO
                   ? say(s->error, s->error_size, rc, "%s: %s", j->dir, tally_strerror(rc))
                   : rc;
    }
    if (count == 0) {
        j->replica_id = s->fresh_id;
        j->created = true;
        return segment_create(j, 1);
    }
    if (j->segment_version < JOURNAL_VERSION) {
        /* a reader of the older version must not meet frames it cannot read in its format */
        return segment_create(j, j->segment + 1) == TALLY_OK
                   ? TALLY_OK
                   : say(s->error, s->error_size, TALLY_EIO, "%s: cannot start a new segment",
                         j->dir);
    }
    char name[64];
    segment_name(name, sizeof name, j->segment);
    j->segment_fd = openat(j->dir_fd, name, O_WRONLY | O_APPEND | O_CLOEXEC);
    return j->segment_fd >= 0 ? TALLY_OK
                              : say(s->error, s->error_size, TALLY_EIO, "%s/%s: cannot open it",
                                    j->dir, name);
}

/* Replays; if a frame failed part way, empties the replica and replays again, stopping in
 * front of that frame. */
static int journal_replay(journal *j, replay_state *s) {
    for (;;) {
        s->restart = false;
        j->replayed_frames = 0;
        j->snapshot_segment = j->snapshot_offset = 0;
        int rc = journal_replay_once(j, s);
        if (!s->restart) {
            return rc;
        }
        s->hooks->reset(s->hooks->ctx);
        j->replica_id = 0;
        if (s->error != NULL && s->error_size > 0) {
            s->error[0] = '\0';
        }
    }
}

static int lock_dir(journal *j, char *error, size_t error_size) {
    j->lock_fd = openat(j->dir_fd, "LOCK", O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (j->lock_fd < 0) {
        return say(error, error_size, TALLY_EIO, "%s/LOCK: cannot open it", j->dir);
    }
    if (flock(j->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        return say(error, error_size, errno == EWOULDBLOCK ? TALLY_ELOCKED : TALLY_EIO,
                   "%s: the directory is open in another replica", j->dir);
    }
    return TALLY_OK;
}

int journal_open(journal *j, const char *dir, tally_sync_mode mode, bool repair,
                 uint64_t *replica_id, const journal_hooks *hooks, char *error,
                 size_t error_size) {
    memset(j, 0, sizeof *j);
    j->dir_fd = j->lock_fd = j->segment_fd = -1;
    j->mode = mode;
    j->segment_max = JOURNAL_SEGMENT_BYTES_MAX;
    block_enc_init(&j->enc);
    j->dir = strdup(dir);
    if (j->dir == NULL) {
        return TALLY_ENOMEM;
    }
    if (make_dirs(j->dir) != 0) {
        return say(error, error_size, TALLY_EIO, "%s: cannot create the directory: %s", dir,
                   strerror(errno));
    }
    j->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (j->dir_fd < 0) {
        return say(error, error_size, TALLY_EIO, "%s: cannot open the directory: %s", dir,
                   strerror(errno));
    }
    int rc = lock_dir(j, error, error_size);
    if (rc != TALLY_OK) {
        return rc;
    }
    /* a new journal takes the id asked for, or a fresh random one */
    uint64_t fresh_id = *replica_id;
    while (fresh_id == 0) {
        if (getrandom(&fresh_id, sizeof fresh_id, 0) != (ssize_t)sizeof fresh_id) {
            return say(error, error_size, TALLY_EIO, "cannot draw a random replica id");
        }
    }
    bool found;
    int marked = mark_read(j, &j->mark, &found);
    replay_state s = {fresh_id, hooks, repair, error, error_size, {0, 0}, false};
    rc = journal_replay(j, &s);
    if (rc == TALLY_OK) {
        rc = mark_settle(j, marked, found);
        if (rc != TALLY_OK) {
            rc = say(error, error_size, rc, "%s/%s: cannot write it", dir, mark_name);
        }
    }
    if (rc == TALLY_OK && *replica_id != 0 && *replica_id != j->replica_id) {
        rc = say(error, error_size, TALLY_EINVAL,
                 "%s: the journal belongs to replica %" PRIu64 ", not %" PRIu64, dir,
                 j->replica_id, *replica_id);
    }
    *replica_id = j->replica_id;
    return rc;
}

int journal_add(journal *j, const op *o) {
    if (j->failed) {
        return TALLY_EIO;
    }
    if (j->frame_open && block_enc_full(&j->enc, &j->frame, CODEC_BLOCK_PAYLOAD_MAX)) {
        /* A commit too big for one frame is written (and synced) a frame at a time, so
         * frames reach the disk in order. */
        int rc = journal_commit(j);
        if (rc != TALLY_OK) {
            return rc;
        }
    }
    if (!j->frame_open) {
        j->frame.len = 0;
        if (!block_enc_begin(&j->enc, &j->frame)) {
            return TALLY_ENOMEM;
        }
        j->frame_open = true;
    }
    j->frame_ops_len = j->frame.len;
    if (!block_enc_op(&j->enc, &j->frame, o)) {
        block_enc_rollback(&j->enc, &j->frame, j->frame_ops_len);
        return TALLY_ENOMEM;
    }
    return TALLY_OK;
}

void journal_unadd(journal *j) { block_enc_rollback(&j->enc, &j->frame, j->frame_ops_len); }

int journal_commit(journal *j) {
    if (j->failed) {
        return TALLY_EIO;
    }
    if (!j->frame_open) {
        return TALLY_OK;
    }
    j->frame_open = false;
    block_enc_end(&j->enc, &j->frame);
    if (j->frame.len == 0) {
        return TALLY_OK;
    }
    if (j->segment_bytes + j->frame.len > j->segment_max &&
        j->segment_bytes > JOURNAL_SEGMENT_HEADER) {
        if (segment_create(j, j->segment + 1) != TALLY_OK) {
            j->failed = true;
            return TALLY_EIO;
        }
    }
    if (!write_all(j->segment_fd, j->frame.at, j->frame.len) ||
        (j->mode == TALLY_SYNC_COMMIT && fdatasync(j->segment_fd) != 0)) {
        j->failed = true;
        return TALLY_EIO;
    }
    j->segment_bytes += j->frame.len;
    j->frame.len = 0;
    return TALLY_OK;
}

/* Keeps the two newest snapshots; deletes older ones and the segments before the older kept
 * one's (nothing that opening could need any more). */
static int compact(journal *j) {
    dir_listing l;
    int rc = dir_list(j, &l);
    const uint64_t *segments = l.segments.at;
    const position *snapshots = l.snapshots.at;
    size_t count = l.segments.count, n_snapshots = l.snapshots.count;
    if (rc == TALLY_OK && n_snapshots > 2) {
        uint64_t keep_from = snapshots[1].segment;
        for (size_t i = 2; i < n_snapshots && rc == TALLY_OK; i++) {
            char name[64];
            snapshot_name(name, sizeof name, snapshots[i].segment, snapshots[i].offset);
            rc = unlinkat(j->dir_fd, name, 0) == 0 ? TALLY_OK : TALLY_EIO;
        }
        for (size_t i = 0; i < count && segments[i] < keep_from && rc == TALLY_OK; i++) {
            char name[64];
            segment_name(name, sizeof name, segments[i]);
            rc = unlinkat(j->dir_fd, name, 0) == 0 ? TALLY_OK : TALLY_EIO;
        }
    }
    dir_listing_free(&l);
    return rc;
}

int journal_snapshot(journal *j, int (*write)(void *ctx, int fd, uint64_t segment,
                                              uint64_t offset),
                     void *ctx) {
    if (j->failed) {
        return TALLY_EIO;
    }
    if (j->frame_open && j->enc.ops > 0) {
        return TALLY_EINVAL; /* only between commits */
    }
    static const char tmp[] = "snapshot.tmp";
    int fd = openat(j->dir_fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        return TALLY_EIO;
    }
    int rc = write(ctx, fd, j->segment, j->segment_bytes);
    if (rc == TALLY_OK && j->mode == TALLY_SYNC_COMMIT && fsync(fd) != 0) {
        rc = TALLY_EIO;
    }
    close(fd);
    char name[64];
    snapshot_name(name, sizeof name, j->segment, j->segment_bytes);
    if (rc == TALLY_OK && (renameat(j->dir_fd, tmp, j->dir_fd, name) != 0 ||
                           (j->mode == TALLY_SYNC_COMMIT && fsync(j->dir_fd) != 0))) {
        rc = TALLY_EIO;
    }
    if (rc != TALLY_OK) {
        (void)unlinkat(j->dir_fd, tmp, 0);
        return rc;
    }
    return compact(j);
}

void journal_close(journal *j) {
    bool synced = j->segment_fd >= 0 && !j->failed && fdatasync(j->segment_fd) == 0;
    if (synced && j->mark_live && (j->mark.open || j->mark.newest_bytes != j->segment_bytes)) {
        j->mark.open = false; /* closed cleanly: what it wrote is all there */
        j->mark.newest_bytes = j->segment_bytes;
        (void)mark_write(j);
    }
    if (j->segment_fd >= 0) {
        close(j->segment_fd);
    }
    if (j->lock_fd >= 0) {
        close(j->lock_fd); /* releases the flock */
    }
    if (j->dir_fd >= 0) {
        close(j->dir_fd);
    }
    bytes_free(&j->frame);
    block_enc_free(&j->enc);
    free(j->dir);
    memset(j, 0, sizeof *j);
    j->dir_fd = j->lock_fd = j->segment_fd = -1;
}

/* --- a directory's data started as a new replica (ledger/renew.c) ---------------------------- */

/* Syncs the directory that holds path, so that a rename in it is durable. */
static int sync_parent(const char *path) {
    char parent[PATH_MAX];
    const char *slash = strrchr(path, '/');
    size_t n = slash == NULL ? 0 : slash == path ? 1 : (size_t)(slash - path);
    if (n >= sizeof parent) {
        return TALLY_EIO;
    }
    memcpy(parent, n == 0 ? "." : path, n == 0 ? 1 : n);
    parent[n == 0 ? 1 : n] = '\0';
    int fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc = fd >= 0 && fsync(fd) == 0 ? TALLY_OK : TALLY_EIO;
    if (fd >= 0) {
        close(fd);
    }
    return rc;
}

int journal_dir_temp(const char *dir, char *out, size_t size) {
    if ((size_t)snprintf(out, size, "%s.new-XXXXXX", dir) >= size) {
        return TALLY_EINVAL;
    }
    return mkdtemp(out) != NULL ? TALLY_OK : TALLY_EIO;
}

void journal_dir_remove(const char *dir) {
    DIR *d = opendir(dir);
    if (d != NULL) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
                (void)unlinkat(dirfd(d), e->d_name, 0);
            }
        }
        closedir(d);
    }
    (void)rmdir(dir);
}

int journal_dir_swap(const char *dir, const char *with, const char *kept, bool *swapped) {
    *swapped = false;
    /* One step where the file system has it: dir is at no moment missing. */
    if (renameat2(AT_FDCWD, with, AT_FDCWD, dir, RENAME_EXCHANGE) == 0) {
        *swapped = true; /* the old files are at `with` until the next rename */
        return rename(with, kept) == 0 ? sync_parent(dir) : TALLY_EIO;
    }
    if (errno != EINVAL && errno != ENOSYS) {
        return TALLY_EIO;
    }
    if (rename(dir, kept) != 0) {
        return TALLY_EIO;
    }
    if (rename(with, dir) != 0) {
        return rename(kept, dir) == 0 ? TALLY_EIO : (*swapped = true, TALLY_EIO);
    }
    *swapped = true;
    return sync_parent(dir);
}
