/*
 * fuzz_journal.c — opening a durable replica whose journal segment holds any bytes.
 *
 * The harness writes a valid 32-byte segment header (replica 1, segment 1) and the input after
 * it as frames; the first input byte chooses TALLY_OPEN_REPAIR (bit 0) and the segment's
 * version (bit 1: version 2, whose frames may hold CLOCK records; else 1). Properties: open
 * returns TALLY_OK or TALLY_ECORRUPT; if TALLY_OK, every invariant holds, the replica accepts
 * a write (unless the journal shows it behind its own history, or forked), and reopening gives the
 * same digest (the torn tail really was cut). This build accepts any checksum, so frames reach the
 * decoder and the validation of replayed ops.
 */
#include "fuzz_common.h"
#include "ledger/codec.h"
#include "ledger/replica.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > (1u << 20)) {
        return 0;
    }
    const char *dir = fuzz_scratch_dir();
    uint8_t *segment = malloc(32 + size - 1);
    FUZZ_CHECK(segment != NULL);
    memcpy(segment, "TLYJ", 4);
    put_u32le(segment + 4, (data[0] & 2) ? 2 : 1);
    put_u64le(segment + 8, 1);
    put_u64le(segment + 16, 1);
    put_u64le(segment + 24, XXH3_64bits(segment, 24));
    memcpy(segment + 32, data + 1, size - 1);
    fuzz_write_file(dir, "journal-0000000000000001.tly", segment, 32 + size - 1);
    free(segment);
    tally_options o;
    memset(&o, 0, sizeof o);
    o.dir = dir;
    o.flags = (data[0] & 1) ? TALLY_OPEN_REPAIR : 0;
    char error[256];
    o.error = error;
    o.error_size = sizeof error;
    tally_replica *r = NULL;
    int rc = tally_open(&o, &r);
    FUZZ_CHECK(rc == TALLY_OK || rc == TALLY_ECORRUPT);
    if (rc != TALLY_OK) {
        FUZZ_CHECK(r == NULL && error[0] != '\0');
        return 0;
    }
    FUZZ_CHECK(replica_check(r));
    tally_account a;
    memset(&a, 0, sizeof a);
    a.id = (tally_id){7, 7};
    a.ledger = 1;
    rc = tally_create_account(r, &a);
    if (rc == TALLY_ORIGIN_HELD) {
        /* it dropped a frame that may have been shared: held until a peer, or this, lifts it */
        FUZZ_CHECK(tally_held(r) != TALLY_HOLD_NONE && tally_lift_hold(r) == TALLY_OK);
        rc = tally_create_account(r, &a);
    }
    /* a journal may say the replica is behind its own history (a run of its own it holds only
     * part of) or forked: it then refuses writes, by design (docs/design.md, section 4) */
    FUZZ_CHECK(rc == TALLY_OK || rc == TALLY_EXISTS || rc == TALLY_EXISTS_WITH_DIFFERENT_FIELDS ||
               rc == TALLY_ORIGIN_BEHIND || rc == TALLY_ORIGIN_FORKED);
    uint8_t before[16], after[16];
    FUZZ_CHECK(tally_digest(r, before) == TALLY_OK);
    tally_close(r);
    FUZZ_CHECK(tally_open(&o, &r) == TALLY_OK);
    FUZZ_CHECK(tally_digest(r, after) == TALLY_OK);
    FUZZ_CHECK(memcmp(before, after, 16) == 0);
    tally_close(r);
    return 0;
}
