/*
 * fuzz_delta.c — tally_delta for any peer summary.
 *
 * Properties: the result is TALLY_OK or TALLY_ECORRUPT; a delta it returns is well formed and
 * honours max_bytes (unless it holds a single run, proof or answer, which is never split); applied
 * to a replica that has everything the source has, it is accepted and changes nothing. The first
 * input byte picks max_bytes.
 */
#include "fuzz_common.h"
#include "ledger/codec.h"
#include "ledger/replica.h"

static tally_replica *source, *mirror;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    source = fuzz_seeded_replica();
    mirror = fuzz_replica(77);
    fuzz_sync(source, mirror);
    return 0;
}

/* How many things a delta holds that are never split: runs (each ends with its SIGN record),
 * proofs of forks and answers to a challenge. */
static int runs_in(const uint8_t *delta, size_t len) {
    int runs = 0;
    block_dec dec;
    block_dec_init(&dec);
    for (size_t at = 8, block_len; at < len; at += block_len) {
        FUZZ_CHECK(block_dec_begin(&dec, delta + at, len - at, &block_len) == TALLY_OK);
        while (dec.remaining > 0) {
            op o;
            FUZZ_CHECK(block_dec_op(&dec, &o) == TALLY_OK);
            runs += o.kind == OP_SIGN || o.kind == OP_FORK || o.kind == OP_CONFIRM;
        }
    }
    block_dec_free(&dec);
    return runs;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    size_t max_bytes = size > 0 ? (size_t)data[0] * 8 : 0;
    const uint8_t *summary = size > 0 ? data + 1 : data;
    size_t summary_len = size > 0 ? size - 1 : 0;
    uint8_t *delta = NULL;
    size_t len = 0;
    int rc = tally_delta(source, summary, summary_len, max_bytes, &delta, &len);
    FUZZ_CHECK(rc == TALLY_OK || rc == TALLY_ECORRUPT);
    if (rc != TALLY_OK) {
        FUZZ_CHECK(delta == NULL && len == 0);
        return 0;
    }
    uint8_t before[16], after[16];
    FUZZ_CHECK(tally_digest(mirror, before) == TALLY_OK);
    FUZZ_CHECK(tally_apply(mirror, delta, len) == TALLY_OK);
    FUZZ_CHECK(tally_digest(mirror, after) == TALLY_OK);
    FUZZ_CHECK(memcmp(before, after, 16) == 0);
    /* within the limit, or a single run (or proof, or answer) alone */
    FUZZ_CHECK(max_bytes == 0 || len <= max_bytes || runs_in(delta, len) == 1);
    tally_free(delta);
    return 0;
}
