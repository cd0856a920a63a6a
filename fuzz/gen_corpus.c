/*
 * gen_corpus.c — writes the seed corpora of the fuzz targets from valid states:
 *   fuzz/corpus/fuzz_apply/     deltas of a seeded replica, whole and cut by max_bytes
 *   fuzz/corpus/fuzz_delta/     a max_bytes byte, then summaries (empty, partial, complete)
 *   fuzz/corpus/fuzz_journal/   a repair byte, then the frames of a real journal
 *   fuzz/corpus/fuzz_snapshot/  a real snapshot's op count and body
 *   fuzz/corpus/fuzz_sim/       choices for the simulator, from a PRNG, in memory and durable
 *   fuzz/corpus/fuzz_session/   what a real peer says: HELLO, SUMMARY, DELTA, PING, rights
 * Usage: gen_corpus OUTDIR. Built with the fuzz targets (make fuzz-corpus).
 */
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz_common.h"
#include "ledger/codec.h"
#include "net/frame.h"
#include "net/session.h"

static const char *out_root;

static void emit(const char *target, const char *name, const uint8_t *data, size_t len) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/%s", out_root, target);
    mkdir(dir, 0755);
    fuzz_write_file(dir, name, data, len);
}

static void emit_prefixed(const char *target, const char *name, uint8_t first,
                          const uint8_t *data, size_t len) {
    uint8_t *buf = malloc(len + 1);
    buf[0] = first;
    memcpy(buf + 1, data, len);
    emit(target, name, buf, len + 1);
    free(buf);
}

static uint8_t *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    FUZZ_CHECK(f != NULL);
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc(*len + 1);
    FUZZ_CHECK(fread(buf, 1, *len, f) == *len);
    fclose(f);
    return buf;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: gen_corpus OUTDIR\n");
        return 2;
    }
    out_root = argv[1];
    mkdir(out_root, 0755);
    tally_replica *source = fuzz_seeded_replica();
    tally_replica *empty = fuzz_replica(99), *partial = fuzz_replica(98);
    uint8_t *summary, *delta;
    size_t summary_len, delta_len;
    /* deltas, whole and cut */
    FUZZ_CHECK(tally_summary(empty, &summary, &summary_len) == TALLY_OK);
    static const size_t limits[] = {0, 100, 400, 1000};
    for (size_t k = 0; k < sizeof limits / sizeof limits[0]; k++) {
        FUZZ_CHECK(tally_delta(source, summary, summary_len, limits[k], &delta, &delta_len) ==
                   TALLY_OK);
        char name[32];
        snprintf(name, sizeof name, "delta-%zu", limits[k]);
        emit("fuzz_apply", name, delta, delta_len);
        if (k == 2) {
            FUZZ_CHECK(tally_apply(partial, delta, delta_len) == TALLY_OK);
        }
        tally_free(delta);
    }
    /* a fork's record whose statements do not verify (the fuzzer knows no key to make one
     * that does: fuzz_apply checks that no proof is ever taken) */
    {
        uint8_t side[2][CODEC_FORK_SIDE];
        memset(side, 0x5a, sizeof side);
        op f;
        op_clear(&f);
        f.kind = OP_FORK;
        f.origin = 1;
        f.u.fork.first[0] = 1;
        f.u.fork.last[0] = 2;
        f.u.fork.first[1] = 2;
        f.u.fork.last[1] = 3;
        f.u.fork.side[0] = side[0];
        f.u.fork.side[1] = side[1];
        bytes d = {0};
        FUZZ_CHECK(bytes_reserve(&d, 8));
        memcpy(d.at, "TLYD\3\0\0\0", 8);
        d.len = 8;
        block_enc e;
        block_enc_init(&e);
        FUZZ_CHECK(block_enc_begin(&e, &d) && block_enc_op(&e, &d, &f));
        block_enc_end(&e, &d);
        block_enc_free(&e);
        emit("fuzz_apply", "fork-proof", d.at, d.len);
        bytes_free(&d);
    }
    /* summaries */
    emit_prefixed("fuzz_delta", "summary-empty", 0, summary, summary_len);
    tally_free(summary);
    FUZZ_CHECK(tally_summary(partial, &summary, &summary_len) == TALLY_OK);
    emit_prefixed("fuzz_delta", "summary-partial", 20, summary, summary_len);
    tally_free(summary);
    FUZZ_CHECK(tally_summary(source, &summary, &summary_len) == TALLY_OK);
    emit_prefixed("fuzz_delta", "summary-full", 0, summary, summary_len);
    tally_free(summary);
    /* a real journal and a real snapshot */
    const char *dir = fuzz_scratch_dir();
    tally_options o;
    memset(&o, 0, sizeof o);
    o.dir = dir;
    o.replica_id = 1;
    tally_replica *durable;
    FUZZ_CHECK(tally_open(&o, &durable) == TALLY_OK);
    fuzz_sync(source, durable);
    tally_account extra;
    memset(&extra, 0, sizeof extra);
    extra.id = (tally_id){0, 9};
    extra.ledger = 1;
    FUZZ_CHECK(tally_create_account(durable, &extra) == TALLY_OK);
    char path[512];
    snprintf(path, sizeof path, "%s/journal-0000000000000001.tly", dir);
    size_t len;
    uint8_t *segment = read_all(path, &len);
    emit_prefixed("fuzz_journal", "journal", 0, segment + 32, len - 32);
    emit_prefixed("fuzz_journal", "journal-repair", 1, segment + 32, len - 32);
    free(segment);
    FUZZ_CHECK(tally_snapshot(durable) == TALLY_OK);
    DIR *d = opendir(dir);
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (strncmp(e->d_name, "snapshot-", 9) == 0) {
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            uint8_t *snap = read_all(path, &len);
            /* the op count from the header, then the body */
            memmove(snap + 40, snap + 32, 8);
            emit("fuzz_snapshot", "snapshot", snap + 40, len - 40 - 8);
            free(snap);
        }
    }
    closedir(d);
    tally_close(durable);
    fuzz_scratch_dir();
    /* a peer's side of a session: a chunk-size byte, then real frames */
    {
        bytes talk = {0};
        uint8_t first = 7;
        FUZZ_CHECK(bytes_reserve(&talk, 1));
        talk.at[0] = first;
        talk.len = 1;
        uint8_t hello[15] = {SESSION_PROTOCOL_VERSION & 0xff, SESSION_PROTOCOL_VERSION >> 8,
                             2, 0, 0, 0, 0, 0, 0, 0, 4, 't', 'e', 's', 't'};
        FUZZ_CHECK(frame_put(&talk, FRAME_HELLO, hello, sizeof hello));
        tally_replica *peer = fuzz_replica(2);
        FUZZ_CHECK(tally_summary(peer, &summary, &summary_len) == TALLY_OK);
        FUZZ_CHECK(frame_put(&talk, FRAME_SUMMARY, summary, summary_len));
        FUZZ_CHECK(tally_delta(source, summary, summary_len, 0, &delta, &delta_len) == TALLY_OK);
        FUZZ_CHECK(frame_put(&talk, FRAME_DELTA, delta, delta_len));
        tally_free(summary);
        tally_free(delta);
        uint8_t ping[8] = {1, 2, 3, 4, 5, 6, 7, 8};
        FUZZ_CHECK(frame_put(&talk, FRAME_PING, ping, sizeof ping));
        uint8_t ask[32] = {9};
        put_u64le(ask + 16, 2); /* account 2 */
        put_u64le(ask + 24, 10);
        FUZZ_CHECK(frame_put(&talk, FRAME_RIGHTS_ASK, ask, sizeof ask));
        uint8_t answer[RIGHTS_ANSWER_BYTES] = {9};
        put_u64le(answer + 9, 10); /* granted */
        put_u64le(answer + 17, 4); /* by the holder's op 4 */
        FUZZ_CHECK(frame_put(&talk, FRAME_RIGHTS_ANSWER, answer, sizeof answer));
        emit("fuzz_session", "conversation", talk.at, talk.len);
        bytes_free(&talk);
        tally_close(peer);
    }
    /* the simulator: a first byte (replicas, durable), then pseudo-random choices */
    uint64_t state = 12345;
    for (int k = 0; k < 4; k++) {
        uint8_t sim_input[4096];
        sim_input[0] = (uint8_t)(k | (k >= 2 ? 0x80 : 0));
        for (size_t i = 1; i < sizeof sim_input; i++) {
            state = state * 6364136223846793005u + 1442695040888963407u;
            sim_input[i] = (uint8_t)(state >> 56);
        }
        char name[32];
        snprintf(name, sizeof name, "choices-%d", k);
        emit("fuzz_sim", name, sim_input, sizeof sim_input);
    }
    tally_close(source);
    tally_close(empty);
    tally_close(partial);
    return 0;
}
