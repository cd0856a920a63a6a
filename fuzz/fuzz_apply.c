/*
 * fuzz_apply.c — tally_apply of any bytes, on a replica that already holds a state.
 *
 * Properties: no crash, leak or undefined behaviour; the result is TALLY_OK or TALLY_ECORRUPT
 * (or a limit); nothing applies that its origin did not sign: every op the replica holds after
 * it is the source's op of that dot, byte for byte (the fuzzer knows no key, and the source's
 * replicas sign only their own ops), and no proof of a fork is taken (none of them forked);
 * every invariant holds after it (replica_check: no account
 * below its bound, Σ rights = spendable, balances equal to their ops); if it returned TALLY_OK,
 * applying the same bytes again changes nothing; the replica stays usable (it can sync to a fresh
 * peer, which then has the same digest). This build accepts any checksum, so mutations reach the
 * decoder and validation.
 */
#include "fuzz_common.h"
#include "ledger/chain.h"
#include "ledger/replica.h"

static tally_replica *source;
static uint8_t *base_delta;
static size_t base_len;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    source = fuzz_seeded_replica();
    tally_replica *empty = fuzz_replica(99);
    uint8_t *summary;
    size_t summary_len;
    FUZZ_CHECK(tally_summary(empty, &summary, &summary_len) == TALLY_OK);
    /* half the source's history: the target starts from a real, partial state */
    FUZZ_CHECK(tally_delta(source, summary, summary_len, 400, &base_delta, &base_len) ==
               TALLY_OK);
    tally_free(summary);
    tally_close(empty);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    tally_replica *r = fuzz_replica(50);
    FUZZ_CHECK(tally_apply(r, base_delta, base_len) == TALLY_OK);
    int rc = tally_apply(r, data, size);
    FUZZ_CHECK(rc == TALLY_OK || rc == TALLY_ECORRUPT || rc == TALLY_ETOOBIG);
    FUZZ_CHECK(replica_check(r));
    FUZZ_CHECK(r->forks.count == 0); /* no one signed two histories: no proof can hold */
    for (uint32_t i = 0; i < r->origins.count; i++) {
        const origin_rec *o = &r->origins.at[i];
        uint32_t at_source = replica_origin_find(source, o->id);
        FUZZ_CHECK(o->seq == 0 || at_source != NONE);
        for (uint64_t s = 1; s <= o->seq; s++) {
            FUZZ_CHECK(s <= source->origins.at[at_source].seq);
            op mine, theirs;
            replica_op_at(r, o->position[s - 1], &mine);
            replica_op_at(source, source->origins.at[at_source].position[s - 1], &theirs);
            FUZZ_CHECK(chain_same_op(&mine, &theirs));
        }
    }
    if (rc == TALLY_OK) {
        uint8_t before[16], after[16];
        FUZZ_CHECK(tally_digest(r, before) == TALLY_OK);
        FUZZ_CHECK(tally_apply(r, data, size) == TALLY_OK);
        FUZZ_CHECK(tally_digest(r, after) == TALLY_OK);
        FUZZ_CHECK(memcmp(before, after, 16) == 0);
    }
    tally_replica *peer = fuzz_replica(51);
    fuzz_sync(r, peer);
    uint8_t a[16], b[16];
    FUZZ_CHECK(tally_digest(r, a) == TALLY_OK && tally_digest(peer, b) == TALLY_OK);
    FUZZ_CHECK(memcmp(a, b, 16) == 0);
    FUZZ_CHECK(replica_check(peer));
    tally_close(peer);
    tally_close(r);
    return 0;
}
