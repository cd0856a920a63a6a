#include "fuzz_common.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

static tally_transfer xfer(uint64_t id, uint64_t debit, uint64_t credit, uint64_t amount,
                           uint16_t flags) {
    tally_transfer t;
    memset(&t, 0, sizeof t);
    t.id = (tally_id){0, id};
    t.debit_account_id = (tally_id){0, debit};
    t.credit_account_id = (tally_id){0, credit};
    t.amount = amount;
    t.ledger = 1;
    t.code = 1;
    t.flags = flags;
    return t;
}

/* One fixed time: replicas of one id made by two processes (the corpus's, a target's) make
 * the same ops, so that they are one history and not a fork of it. */
static uint64_t fixed_clock(void *ctx) {
    (void)ctx;
    return UINT64_C(1700000000000);
}

tally_replica *fuzz_replica(uint64_t id) {
    tally_options o;
    memset(&o, 0, sizeof o);
    o.replica_id = id;
    o.clock_ms = fixed_clock;
    tally_replica *r;
    FUZZ_CHECK(tally_open(&o, &r) == TALLY_OK);
    return r;
}

void fuzz_sync(tally_replica *from, tally_replica *to) {
    uint8_t *summary, *delta;
    size_t summary_len, delta_len;
    FUZZ_CHECK(tally_summary(to, &summary, &summary_len) == TALLY_OK);
    FUZZ_CHECK(tally_delta(from, summary, summary_len, 0, &delta, &delta_len) == TALLY_OK);
    FUZZ_CHECK(tally_apply(to, delta, delta_len) == TALLY_OK);
    tally_free(summary);
    tally_free(delta);
}

tally_replica *fuzz_seeded_replica(void) {
    tally_replica *r[3] = {fuzz_replica(1), fuzz_replica(2), fuzz_replica(3)};
    static const uint16_t kinds[] = {0, 1, 1, 2, 2, 0};
    for (uint64_t a = 1; a <= 6; a++) {
        tally_account acc;
        memset(&acc, 0, sizeof acc);
        acc.id = (tally_id){0, a};
        acc.ledger = a == 6 ? 2 : 1;
        acc.code = 1;
        acc.flags = kinds[a - 1];
        FUZZ_CHECK(tally_create_account(r[0], &acc) == TALLY_OK);
    }
    tally_transfer t[] = {
        xfer(100, 1, 2, 500, 0),                        /* deposit: rights on 2 at replica 1 */
        xfer(101, 4, 1, 300, 0),                        /* liability 4: rights at replica 1 */
        xfer(102, 2, 3, 50, 0),                         /* between bounded accounts */
        xfer(103, 2, 3, 40, TALLY_TRANSFER_PENDING),    /* a pending, posted below */
        xfer(104, 2, 3, 30, TALLY_TRANSFER_PENDING),    /* a pending, voided below */
        xfer(105, 2, 4, 20, TALLY_TRANSFER_PENDING),    /* stays open */
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        FUZZ_CHECK(tally_create_transfer(r[0], &t[i]) == TALLY_OK);
    }
    tally_transfer post = xfer(106, 0, 0, 25, TALLY_TRANSFER_POST_PENDING);
    post.pending_id = (tally_id){0, 103};
    post.ledger = 0;
    post.code = 0;
    tally_transfer void_ = xfer(107, 0, 0, 0, TALLY_TRANSFER_VOID_PENDING);
    void_.pending_id = (tally_id){0, 104};
    void_.ledger = 0;
    void_.code = 0;
    FUZZ_CHECK(tally_create_transfer(r[0], &post) == TALLY_OK);
    FUZZ_CHECK(tally_create_transfer(r[0], &void_) == TALLY_OK);
    tally_grant_request g = {{0, 2}, 2, 100, 0, 0, TALLY_GRANT_TO_UNKNOWN};
    FUZZ_CHECK(tally_grant_with(r[0], &g) == TALLY_OK);
    fuzz_sync(r[0], r[1]);
    tally_transfer spend = xfer(200, 2, 3, 60, 0); /* replica 2 spends its granted rights */
    FUZZ_CHECK(tally_create_transfer(r[1], &spend) == TALLY_OK);
    fuzz_sync(r[0], r[2]);
    tally_transfer dup = xfer(300, 1, 3, 5, 0); /* the same id on two replicas: a conflict */
    FUZZ_CHECK(tally_create_transfer(r[1], &dup) == TALLY_OK);
    FUZZ_CHECK(tally_create_transfer(r[2], &dup) == TALLY_OK);
    fuzz_sync(r[1], r[2]);
    tally_transfer other = xfer(301, 1, 2, 7, 0);
    FUZZ_CHECK(tally_create_transfer(r[2], &other) == TALLY_OK);
    fuzz_sync(r[1], r[0]);
    fuzz_sync(r[2], r[0]);
    tally_close(r[1]);
    tally_close(r[2]);
    return r[0];
}

const char *fuzz_scratch_dir(void) {
    static char dir[64];
    if (dir[0] == '\0') {
        snprintf(dir, sizeof dir, "/tmp/tally-fuzz-%d", (int)getpid());
        mkdir(dir, 0755);
    }
    DIR *d = opendir(dir);
    FUZZ_CHECK(d != NULL);
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (e->d_name[0] != '.') {
            char path[256];
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            unlink(path);
        }
    }
    closedir(d);
    return dir;
}

void fuzz_write_file(const char *dir, const char *name, const uint8_t *data, size_t len) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    FUZZ_CHECK(f != NULL);
    FUZZ_CHECK(len == 0 || fwrite(data, 1, len, f) == len);
    FUZZ_CHECK(fclose(f) == 0);
}
