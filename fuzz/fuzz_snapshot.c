/*
 * fuzz_snapshot.c — opening a durable replica from a snapshot holding any bytes.
 *
 * The harness writes a snapshot header naming journal position (1, 32) and the op count the
 * input's first 8 bytes give, the rest of the input as its body, and an empty segment 1. Properties: open returns TALLY_OK or TALLY_ECORRUPT (a snapshot that
 * does not load makes opening fall back to the journal, here empty); whatever it loaded can be
 * read without a crash, an endless loop or an out-of-bounds access: digest, lookups, rights,
 * conflicts, summary and delta. A snapshot's meaning is vouched for by its checksum, which this
 * build does not check, so the harness does not expect invariants of what it loads.
 */
#include "fuzz_common.h"
#include "ledger/codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 8 || size > (1u << 20)) {
        return 0;
    }
    /* the input: the header's op count (8 bytes), then the body */
    uint64_t ops = get_u64le(data);
    data += 8;
    size -= 8;
    const char *dir = fuzz_scratch_dir();
    uint8_t header[32];
    memcpy(header, "TLYJ", 4);
    put_u32le(header + 4, 1);
    put_u64le(header + 8, 1);
    put_u64le(header + 16, 1);
    put_u64le(header + 24, XXH3_64bits(header, 24));
    fuzz_write_file(dir, "journal-0000000000000001.tly", header, sizeof header);
    uint8_t *snap = calloc(1, 48 + size + 8);
    FUZZ_CHECK(snap != NULL);
    memcpy(snap, "TLYC", 4);
    put_u32le(snap + 4, 1);
    put_u64le(snap + 8, 1);
    put_u64le(snap + 16, 1);
    put_u64le(snap + 24, 32);
    put_u64le(snap + 32, ops);
    memcpy(snap + 48, data, size);
    put_u64le(snap + 48 + size, XXH3_64bits(snap, 48 + size));
    fuzz_write_file(dir, "snapshot-0000000000000001-0000000000000020.tly", snap, 48 + size + 8);
    free(snap);
    tally_options o;
    memset(&o, 0, sizeof o);
    o.dir = dir;
    tally_replica *r = NULL;
    int rc = tally_open(&o, &r);
    FUZZ_CHECK(rc == TALLY_OK || rc == TALLY_ECORRUPT);
    if (rc != TALLY_OK) {
        return 0;
    }
    uint8_t digest[16];
    FUZZ_CHECK(tally_digest(r, digest) == TALLY_OK);
    for (uint64_t id = 0; id < 8; id++) {
        tally_balance b;
        tally_transfer t;
        tally_account a;
        tally_rights_entry holders[4];
        size_t n;
        (void)tally_lookup_balance(r, (tally_id){0, id}, &b);
        (void)tally_lookup_transfer(r, (tally_id){0, id}, &t);
        (void)tally_lookup_account(r, (tally_id){0, id}, &a);
        (void)tally_rights_holders(r, (tally_id){0, id}, holders, 4, &n);
    }
    tally_conflict c[4];
    size_t n;
    FUZZ_CHECK(tally_conflicts(r, 0, c, 4, &n) == TALLY_OK);
    uint8_t *summary, *delta;
    size_t summary_len, delta_len;
    tally_replica *empty = fuzz_replica(88);
    FUZZ_CHECK(tally_summary(empty, &summary, &summary_len) == TALLY_OK);
    FUZZ_CHECK(tally_delta(r, summary, summary_len, 0, &delta, &delta_len) == TALLY_OK);
    tally_free(summary);
    tally_free(delta);
    tally_close(empty);
    tally_close(r);
    return 0;
}
