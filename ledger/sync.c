/*
 * ledger/sync.c — the transport-agnostic sync core: summary, delta, apply, digest.
 *
 * A summary is this replica's version vector, with each origin's head and flags:
 *
 *     offset size     field
 *     0      4        magic "TLYS"
 *     4      1        format version (SYNC_VERSION)
 *     5      3        zero
 *     8      4        count (little-endian; <= REPLICA_ORIGINS_MAX)
 *     12     64*count (origin, seq, head's last seq, flags, head's hash), little-endian, origins
 *                     strictly increasing, none 0 (docs/design.md, "Summary")
 *     ...    8        XXH3-64 of every byte before it
 *
 * A delta is an 8-byte header ("TLYD", SYNC_VERSION, three zero bytes) and zero or more blocks
 * (codec.h). The ops in it are the sender's journal order restricted to what the summary
 * lacked, a linear extension of causality: every prefix of a delta leaves the receiver causally
 * closed, which is why a delta cut short by max_bytes, or cut anywhere by the network, is still
 * safe to apply as far as it goes. Blocks are as large as the format allows (4 MiB): each
 * block names every account it uses once in full, so fewer, larger blocks send fewer names and
 * the receiver looks fewer up (a 4 MiB delta as four 1 MiB blocks took 27.5 bytes a transfer
 * in the benchmark, as one block 24.0). A delta cut by max_bytes is one block.
 *
 * 1. tally_apply skips an op whose seq is at or below what it has from that origin, and stops
 *    with TALLY_ECORRUPT at a gap, a bad block, or an op that does not validate (for example
 *    one that spends rights its origin does not hold here). Ops before that stay applied.
 * 2. tally_delta never splits an op and always sends at least one op the peer lacks.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "crdt/id.h"
#include "ledger/branch.h"
#include "ledger/chain.h"
#include "ledger/codec.h"
#include "ledger/replica.h"
#include "ledger/journal.h"
#include "ledger/sync.h"

static const uint8_t summary_magic[4] = {'T', 'L', 'Y', 'S'};
static const uint8_t delta_magic[4] = {'T', 'L', 'Y', 'D'};
#define SYNC_VERSION 3 /* 1: before signed runs (0.2); 2: before forks' proofs */
#define DELTA_HEADER 8
/* Ops decoded ahead of applying, so their hash-table lookups overlap. */
#define APPLY_AHEAD 16

/* --- summary ------------------------------------------------------------------------------- */

#define SUMMARY_HEADER 12
#define SUMMARY_ENTRY (32 + CRYPTO_HASH)
/* An entry's flags: the summary's sender holds proof that the origin forked its history; the
 * entry is the sender's own, held (tally_held): it withholds its head and carries, in the
 * head hash's place, the challenge a peer answers to confirm it (chain.h). */
#define SUMMARY_FORKED 1u
#define SUMMARY_HIDDEN 2u
_Static_assert(sizeof((sync_challenge *)0)->nonce == CRYPTO_HASH, "a challenge fills a head hash");

int replica_version_vector(const tally_replica *r, vclock *out) {
    vclock_init(out);
    for (uint32_t i = 0; i < r->origins.count; i++) {
        const origin_rec *o = &r->origins.at[i];
        if (o->seq > o->base && !vclock_set(out, o->id, o->seq)) {
            vclock_free(out);
            return TALLY_ENOMEM;
        }
    }
    return TALLY_OK;
}

int tally_version_vector(const tally_replica *r, tally_version *out, size_t cap, size_t *count) {
    if (count != NULL) {
        *count = 0;
    }
    if (r == NULL || count == NULL || (out == NULL && cap > 0)) {
        return TALLY_EINVAL;
    }
    vclock v;
    int rc = replica_version_vector(r, &v);
    if (rc == TALLY_OK) {
        size_t n = 0; /* replicas only: a branch is this replica's name for one's history */
        for (uint32_t i = 0; i < v.count; i++) {
            uint32_t o = replica_origin_find(r, v.entries[i].origin);
            if (origin_is_branch(&r->origins.at[o])) {
                continue;
            }
            if (n < cap) {
                out[n].replica_id = v.entries[i].origin;
                out[n].seq = v.entries[i].seq;
            }
            n++;
        }
        *count = n;
        vclock_free(&v);
    }
    return rc;
}

int tally_summary(const tally_replica *r, uint8_t **buf, size_t *len) {
    if (buf != NULL) {
        *buf = NULL;
    }
    if (len != NULL) {
        *len = 0;
    }
    if (r == NULL || buf == NULL || len == NULL) {
        return TALLY_EINVAL;
    }
    /* origins in increasing id order: the version vector has them so */
    vclock v;
    int rc = replica_version_vector(r, &v);
    size_t n = SUMMARY_HEADER + SUMMARY_ENTRY * (size_t)v.count + 8;
    uint8_t *p = rc == TALLY_OK ? calloc(1, n) : NULL;
    if (p == NULL) {
        vclock_free(&v);
        return TALLY_ENOMEM;
    }
    memcpy(p, summary_magic, 4);
    p[4] = SYNC_VERSION;
    put_u32le(p + 8, v.count);
    for (uint32_t i = 0; i < v.count; i++) {
        uint8_t *e = p + SUMMARY_HEADER + SUMMARY_ENTRY * (size_t)i;
        const origin_rec *o = &r->origins.at[replica_origin_find(r, v.entries[i].origin)];
        uint32_t head = chain_head(o);
        bool hidden = o == &r->origins.at[r->self] && replica_held(r);
        put_u64le(e, o->id);
        /* held, it names no op it has not signed: the peer sends what follows its last run */
        put_u64le(e + 8, hidden && head != NONE ? o->runs.at[head].last : o->seq);
        if (hidden) {
            memcpy(e + 32, r->learned->nonce, CRYPTO_HASH);
        } else if (head != NONE) {
            put_u64le(e + 16, o->runs.at[head].last);
            memcpy(e + 32, o->runs.at[head].hash, CRYPTO_HASH);
        }
        put_u64le(e + 24, (o->forked ? SUMMARY_FORKED : 0) | (hidden ? SUMMARY_HIDDEN : 0));
    }
    put_u64le(p + n - 8, XXH3_64bits(p, n - 8));
    vclock_free(&v);
    *buf = p;
    *len = n;
    return TALLY_OK;
}

/* What a peer that says it has origin o up to seq, with head (last, hash), has of the runs
 * here: up to seq when its head is one of them, or lies past them all (it is ahead); none of
 * them when its head lies among them and is not one: its history and this one part somewhere
 * before, and every run is sent so that it meets the parting (chain.c) and keeps both
 * (branch.h). A peer with ops but no head (from before signing) is sent every run, to check
 * them against its ops. */
static uint64_t peer_has(const origin_rec *o, uint64_t seq, uint64_t last,
                         const uint8_t hash[CRYPTO_HASH]) {
    if (last == 0) {
        return o->runs.count > 0 ? o->base : seq;
    }
    uint32_t k = chain_run_at(o, last);
    if (k == o->runs.count ||
        (o->runs.at[k].last == last && memcmp(o->runs.at[k].hash, hash, CRYPTO_HASH) == 0)) {
        return seq;
    }
    return o->base;
}

/* A peer's head (last, hash) of origins[real], found in one of its branches here: what the
 * peer has is that branch up to there, and all of each history the branch continues. Adds
 * those to out and returns true; false when no branch holds it. */
static bool peer_branch(const tally_replica *r, uint32_t real, uint64_t last,
                        const uint8_t hash[CRYPTO_HASH], vclock *out, bool *no_memory) {
    uint32_t i, k;
    if (!branch_find_run(r, real, last, hash, &i, &k) || i == real) {
        return false;
    }
    const origin_rec *b = &r->origins.at[i];
    *no_memory = !vclock_set(out, b->id, last);
    for (uint32_t a = b->parent; a != NONE && !*no_memory; a = r->origins.at[a].parent) {
        const origin_rec *up = &r->origins.at[a];
        *no_memory = up->seq > vclock_get(out, up->id) && !vclock_set(out, up->id, up->seq);
    }
    return true;
}

int sync_summary_decode(const tally_replica *r, const uint8_t *buf, size_t len, vclock *out,
                        sync_challenge *challenge) {
    vclock_init(out);
    if (challenge != NULL) {
        challenge->origin = 0;
    }
    if (buf == NULL || len < SUMMARY_HEADER + 8 || memcmp(buf, summary_magic, 4) != 0 ||
        buf[4] != SYNC_VERSION || buf[5] != 0 || buf[6] != 0 || buf[7] != 0) {
        return TALLY_ECORRUPT;
    }
    uint32_t count = get_u32le(buf + 8);
    if (count > REPLICA_ORIGINS_MAX || len != SUMMARY_HEADER + SUMMARY_ENTRY * (size_t)count + 8 ||
        !CHECKSUM_OK(get_u64le(buf + len - 8), XXH3_64bits(buf, len - 8))) {
        return TALLY_ECORRUPT;
    }
    if (!array_reserve((void **)&out->entries, &out->capacity, 0, count + 1, sizeof *out->entries,
                       REPLICA_ORIGINS_MAX + 1)) {
        return TALLY_ENOMEM;
    }
    /* heads found in branches here: added once the summary's own entries are in */
    vclock found;
    vclock_init(&found);
    bool no_memory = false;
    for (uint32_t i = 0; i < count; i++) {
        const uint8_t *e = buf + SUMMARY_HEADER + SUMMARY_ENTRY * (size_t)i;
        uint64_t origin = get_u64le(e), seq = get_u64le(e + 8), last = get_u64le(e + 16);
        uint64_t flags = get_u64le(e + 24);
        if (origin == 0 || seq == 0 || last > seq ||
            (flags & ~(uint64_t)(SUMMARY_FORKED | SUMMARY_HIDDEN)) != 0 ||
            ((flags & SUMMARY_HIDDEN) != 0 && last != 0) ||
            (i > 0 && origin <= out->entries[i - 1].origin)) {
            vclock_free(&found);
            vclock_free(out);
            return TALLY_ECORRUPT;
        }
        if ((flags & SUMMARY_HIDDEN) != 0 && challenge != NULL && challenge->origin == 0) {
            challenge->origin = origin; /* the first: a summary is one replica's, held or not */
            memcpy(challenge->nonce, e + 32, CRYPTO_HASH);
        }
        uint32_t here = replica_origin_find(r, origin);
        if (here != NONE && (flags & SUMMARY_HIDDEN) == 0) {
            const origin_rec *o = &r->origins.at[here];
            /* a head in one of o's branches: the peer has all of o before them */
            bool branched = o->branches > 0 && last > 0 &&
                            peer_branch(r, here, last, e + 32, &found, &no_memory);
            seq = branched ? o->seq : peer_has(o, seq, last, e + 32);
        }
        if (seq > 0 || (flags & SUMMARY_FORKED) != 0) {
            out->entries[out->count] = (vclock_entry){
                .origin = origin, .seq = seq, .flags = flags & SUMMARY_FORKED ? VCLOCK_FORKED : 0};
            out->count++;
        }
    }
    for (uint32_t i = 0; i < found.count && !no_memory; i++) {
        no_memory = found.entries[i].seq > vclock_get(out, found.entries[i].origin) &&
                    !vclock_set(out, found.entries[i].origin, found.entries[i].seq);
    }
    vclock_free(&found);
    if (no_memory) {
        vclock_free(out);
        return TALLY_ENOMEM;
    }
    return TALLY_OK;
}

/* --- delta --------------------------------------------------------------------------------- */

/* The origin (origins[] index) and seq of the op at a journal position. */
static void log_dot(const tally_replica *r, uint32_t position, uint32_t *origin, uint64_t *seq) {
    const log_entry *j = &r->log.at[position];
    switch (j->kind) {
    case OP_OPEN:
        *origin = r->opens.at[j->index].origin;
        *seq = r->opens.at[j->index].seq;
        break;
    case OP_GRANT:
        *origin = r->grants.at[j->index].origin;
        *seq = r->grants.at[j->index].seq;
        break;
    default:
        *origin = r->transfers.at[j->index].origin;
        *seq = r->transfers.at[j->index].seq;
        break;
    }
}

/* A run goes out whole, at the journal position of its last op: where its SIGN record would
 * be, and after every op that its ops depend on. For each origin, has[] is set to what the
 * peer has and next[] to the first run it lacks (the one holding its seq + 1: a run the peer
 * applied part of goes out again whole). Returns the journal position of the first run end
 * to send. Only runs whose ops are all here go out. */
static uint32_t delta_start(const tally_replica *r, const vclock *peer, uint64_t *has,
                            uint32_t *next) {
    uint32_t start = r->log.count;
    for (uint32_t i = 0; i < r->origins.count; i++) {
        const origin_rec *o = &r->origins.at[i];
        has[i] = vclock_get(peer, o->id);
        next[i] = chain_run_at(o, has[i] + 1);
        if (next[i] < o->runs.count && o->runs.at[next[i]].last <= o->seq &&
            origin_position(o, o->runs.at[next[i]].last) < start) {
            start = origin_position(o, o->runs.at[next[i]].last);
        }
    }
    return start;
}

/* Appends run k of origins[origin], its ops and its SIGN record, to the block; before its first
 * run, the origin's admission certificate, if it is here. */
static bool emit_run(const tally_replica *r, block_enc *enc, bytes *out, uint32_t origin,
                     uint32_t k) {
    const origin_rec *o = &r->origins.at[origin];
    if (chain_run_first(o, k) == 1 && r->origins.at[o->of].cert != NULL) {
        /* what a replica with an authority needs to take the run (chain.h): before any first
         * run, a branch's too (its history parts at the very start: its replica's own entry
         * may hold no run at all) */
        op admit;
        chain_admit_op(r, o->of, &admit);
        if (!block_enc_op(enc, out, &admit)) {
            return false;
        }
    }
    for (uint64_t s = chain_run_first(o, k); s <= o->runs.at[k].last; s++) {
        op x;
        replica_op_at(r, origin_position(o, s), &x);
        if (!block_enc_op(enc, out, &x)) {
            return false;
        }
    }
    op sign;
    chain_sign_op(r, origin, k, &sign);
    return block_enc_op(enc, out, &sign);
}

/* Whether the block begun last holds more than a block may. */
static bool block_over(const block_enc *enc, const bytes *out) {
    return block_enc_payload(enc, out) > CODEC_BLOCK_PAYLOAD_MAX || enc->ops > CODEC_BLOCK_OPS_MAX;
}

/* Appends to out the runs the peer lacks, each whole, in blocks, stopping before the run that
 * would take out past max_bytes (0: no limit) unless it is the first. has[] (by origin index)
 * is filled with what the peer has, and ends as what the delta brings it to. */
static int delta_ops(const tally_replica *r, const vclock *peer, size_t max_bytes, uint64_t *has,
                     uint32_t *next, bytes *out, bool *complete) {
    block_enc enc;
    block_enc_init(&enc);
    int rc = TALLY_OK;
    bool open = false, any = false, held = false;
    *complete = false;
    uint32_t pos = delta_start(r, peer, has, next);
    for (; pos < r->log.count; pos++) {
        uint32_t i;
        uint64_t seq;
        log_dot(r, pos, &i, &seq);
        const origin_rec *o = &r->origins.at[i];
        if (next[i] >= o->runs.count || o->runs.at[next[i]].last != seq) {
            continue; /* not the end of a run to send */
        }
        if (o->of == r->self && replica_held(r)) {
            held = true; /* none of its own while held (tally_held): the rest waits behind */
            break;
        }
        uint32_t k = next[i]++;
        if (!open && !block_enc_begin(&enc, out)) {
            rc = TALLY_ENOMEM;
            break;
        }
        open = true;
        block_mark mark = block_enc_mark(&enc, out);
        bool emitted = emit_run(r, &enc, out, i, k);
        if (emitted && mark.ops > 0 && block_over(&enc, out)) {
            /* a run never spans blocks: this one starts the next (it fits an empty one) */
            emitted = block_enc_rewind(&enc, out, &mark);
            block_enc_end(&enc, out);
            emitted = emitted && block_enc_begin(&enc, out);
            mark = block_enc_mark(&enc, out);
            emitted = emitted && emit_run(r, &enc, out, i, k);
        }
        if (!emitted || (max_bytes != 0 && any && out->len > max_bytes)) {
            if (!block_enc_rewind(&enc, out, &mark) || !emitted) {
                rc = TALLY_ENOMEM;
            }
            break;
        }
        any = true;
        has[i] = seq;
    }
    *complete = rc == TALLY_OK && (pos == r->log.count || held);
    if (open) {
        block_enc_end(&enc, out);
    }
    block_enc_free(&enc);
    return rc;
}

/* Appends, in a block after the runs, the proofs of the forks here that the peer holds none of
 * (its summary says which it holds), as many as fit in max_bytes (0: no limit) and a block, or
 * one if the delta holds nothing else. Each goes after the runs that bring its origin's key.
 * covered (may be NULL) is marked with each one sent. */
static int delta_forks(const tally_replica *r, const vclock *peer, size_t max_bytes, bytes *out,
                       vclock *covered) {
    block_enc enc;
    block_enc_init(&enc);
    bool open = false;
    int rc = TALLY_OK;
    for (uint32_t k = 0; k < r->forks.count && rc == TALLY_OK; k++) {
        uint64_t origin = r->origins.at[r->forks.at[k].origin].id;
        if (vclock_flags(peer, origin) & VCLOCK_FORKED) {
            continue;
        }
        if (!open && !block_enc_begin(&enc, out)) {
            rc = TALLY_ENOMEM;
            break;
        }
        open = true;
        block_mark mark = block_enc_mark(&enc, out);
        op rec;
        chain_fork_op(r, &r->forks.at[k], &rec);
        bool first = out->len == DELTA_HEADER + CODEC_BLOCK_HEADER;
        bool encoded = block_enc_op(&enc, out, &rec);
        if (!encoded ||
            (!first && ((max_bytes != 0 && out->len > max_bytes) || block_over(&enc, out)))) {
            rc = block_enc_rewind(&enc, out, &mark) && encoded ? TALLY_OK : TALLY_ENOMEM;
            break;
        }
        if (covered != NULL && !vclock_add_flags(covered, origin, VCLOCK_FORKED)) {
            rc = TALLY_ENOMEM;
        }
    }
    if (open) {
        block_enc_end(&enc, out);
    }
    block_enc_free(&enc);
    return rc;
}

/* What the peer has once it applies the delta: per origin, the larger of has[] and its own. */
static int delta_covered(const tally_replica *r, const vclock *peer, const uint64_t *has,
                         vclock *covered) {
    vclock_init(covered);
    for (uint32_t i = 0; i < r->origins.count; i++) {
        uint64_t theirs = vclock_get(peer, r->origins.at[i].id);
        if (!vclock_set(covered, r->origins.at[i].id, has[i] > theirs ? has[i] : theirs)) {
            vclock_free(covered);
            return TALLY_ENOMEM;
        }
    }
    if (!vclock_merge(covered, peer)) {
        vclock_free(covered);
        return TALLY_ENOMEM;
    }
    return TALLY_OK;
}

/* Appends, in a block of its own, the answer to a held peer's challenge, if there is one to
 * give (chain_confirm_op), and clears the challenge; unless the delta holds something already
 * and the answer would take it past max_bytes (0: no limit): then the next delta answers. */
static int delta_confirm(const tally_replica *r, sync_challenge *challenge, size_t max_bytes,
                         bytes *out) {
    chain_confirmation answer;
    op rec;
    int rc = chain_confirm_op(r, challenge->origin, challenge->nonce, &answer, &rec);
    if (rc != TALLY_OK) {
        challenge->origin = rc == TALLY_NOT_FOUND ? 0 : challenge->origin;
        return rc == TALLY_NOT_FOUND ? TALLY_OK : rc;
    }
    size_t before = out->len;
    block_enc enc;
    block_enc_init(&enc);
    rc = block_enc_begin(&enc, out) && block_enc_op(&enc, out, &rec) ? TALLY_OK : TALLY_ENOMEM;
    block_enc_end(&enc, out);
    block_enc_free(&enc);
    if (rc == TALLY_OK && max_bytes != 0 && out->len > max_bytes && before > DELTA_HEADER) {
        out->len = before; /* it goes alone, next */
    } else if (rc == TALLY_OK) {
        challenge->origin = 0;
    }
    return rc;
}

int sync_delta(const tally_replica *r, const vclock *peer, sync_challenge *challenge,
               size_t max_bytes, uint8_t **buf, size_t *len, vclock *covered) {
    *buf = NULL;
    *len = 0;
    uint64_t *has = malloc(((size_t)r->origins.count + 1) * sizeof *has);
    uint32_t *next = malloc(((size_t)r->origins.count + 1) * sizeof *next);
    bytes out = {0};
    bool complete = false;
    int rc =
        has != NULL && next != NULL && bytes_reserve(&out, DELTA_HEADER) ? TALLY_OK : TALLY_ENOMEM;
    if (rc == TALLY_OK) {
        memcpy(out.at, delta_magic, 4);
        out.at[4] = SYNC_VERSION;
        out.at[5] = out.at[6] = out.at[7] = 0;
        out.len = DELTA_HEADER;
        rc = delta_ops(r, peer, max_bytes, has, next, &out, &complete);
    }
    if (rc == TALLY_OK && covered != NULL) {
        rc = delta_covered(r, peer, has, covered);
    }
    if (rc == TALLY_OK && complete && r->forks.count > 0) {
        rc = delta_forks(r, peer, max_bytes, &out, covered);
    }
    if (rc == TALLY_OK && complete && challenge != NULL && challenge->origin != 0) {
        rc = delta_confirm(r, challenge, max_bytes, &out); /* after the runs with its head */
    }
    if (rc == TALLY_OK) {
        *buf = out.at;
        *len = out.len;
        out.at = NULL;
    }
    bytes_free(&out);
    free(next);
    free(has);
    return rc;
}

int tally_delta(const tally_replica *r, const uint8_t *peer_summary, size_t peer_len,
                size_t max_bytes, uint8_t **buf, size_t *len) {
    if (buf != NULL) {
        *buf = NULL;
    }
    if (len != NULL) {
        *len = 0;
    }
    if (r == NULL || buf == NULL || len == NULL || (peer_summary == NULL && peer_len > 0)) {
        return TALLY_EINVAL;
    }
    if (r->journal != NULL && r->journal->failed) {
        return TALLY_EIO; /* ops in memory may not be on disk: none may leave */
    }
    vclock peer;
    sync_challenge challenge;
    int rc = sync_summary_decode(r, peer_summary, peer_len, &peer, &challenge);
    if (rc == TALLY_OK) {
        rc = sync_delta(r, &peer, &challenge, max_bytes, buf, len, NULL);
    }
    vclock_free(&peer);
    return rc;
}

/* The history here (the origin, or one of its branches) that holds the run a SIGN record
 * names, by its signature; NONE when none does. */
static uint32_t run_holder(const tally_replica *r, const op *s) {
    uint32_t real = replica_origin_find(r, s->origin);
    if (real == NONE || r->origins.at[real].branches == 0) {
        return real;
    }
    for (uint32_t i = branch_next(r, real, NONE); i != NONE; i = branch_next(r, real, i)) {
        const origin_rec *o = &r->origins.at[i];
        uint32_t k = chain_run_at(o, s->u.sign.first);
        if (k < o->runs.count && o->runs.at[k].last == s->u.sign.last &&
            memcmp(o->runs.at[k].sig, s->u.sign.sig, CRYPTO_SIG) == 0) {
            return i;
        }
    }
    return NONE;
}

int sync_delta_covers(const tally_replica *r, const uint8_t *delta, size_t len, vclock *covered) {
    if (len < DELTA_HEADER) {
        return TALLY_ECORRUPT;
    }
    size_t at = DELTA_HEADER;
    int rc = TALLY_OK;
    block_dec dec;
    block_dec_init(&dec);
    while (at < len && rc == TALLY_OK) {
        size_t block_len;
        rc = block_dec_begin(&dec, delta + at, len - at, &block_len);
        while (rc == TALLY_OK && dec.remaining > 0) {
            op o;
            rc = block_dec_op(&dec, &o);
            uint64_t id = o.origin, seq = o.seq;
            if (rc == TALLY_OK && o.kind == OP_SIGN) {
                /* a forked origin's run: the peer has it in the history it is in here */
                uint32_t holder = run_holder(r, &o);
                bool branch = holder != NONE && origin_is_branch(&r->origins.at[holder]);
                id = branch ? r->origins.at[holder].id : 0;
                seq = o.u.sign.last;
            } else if (rc == TALLY_OK && seq > 0) {
                uint32_t here = replica_origin_find(r, id);
                id = here != NONE && r->origins.at[here].branches > 0 ? 0 : id;
            }
            if (rc == TALLY_OK && id != 0 && seq > vclock_get(covered, id) &&
                !vclock_set(covered, id, seq)) {
                rc = TALLY_ENOMEM;
            }
            if (rc == TALLY_OK && o.kind == OP_FORK &&
                !vclock_add_flags(covered, o.origin, VCLOCK_FORKED)) {
                rc = TALLY_ENOMEM;
            }
        }
        at += block_len;
    }
    block_dec_free(&dec);
    return rc;
}

/* --- apply --------------------------------------------------------------------------------- */

/* The block dictionary's note of the incarnation an entry resolved to: a hint, which
 * op_validate checks before it trusts it. */
static uint32_t *dict_hint(block_dec *dec, uint32_t entry) {
    return entry != CODEC_NO_HINT ? &dec->dict.accounts.at[entry].hint : NULL;
}

/* Starts loading the record a transfer's dictionary entry names. An entry no earlier op of
 * the block resolved is looked up now, ahead of its op (a hint: op_validate checks it; an
 * account an OPEN of this batch has yet to create is simply not found here). */
static void account_ahead(const tally_replica *r, block_dec *dec, uint32_t entry) {
    if (entry == CODEC_NO_HINT) {
        return;
    }
    codec_account *e = &dec->dict.accounts.at[entry];
    if (e->hint == CODEC_NO_HINT) {
        uint32_t found = replica_account_find(r, e->id, e->ledger, e->flags);
        if (found == NONE) {
            return;
        }
        e->hint = found;
    }
    if (e->hint < r->accounts.count) {
        replica_account_prefetch(r, e->hint);
    }
}

/* An op decoded ahead of its apply, with what decoding it taught. */
typedef struct decoded_op {
    op o;
    uint32_t entries[2]; /* the block dictionary entries of its accounts (block_dec.accounts) */
    uint32_t id_hash;    /* transfer kinds: idmap_hash of its id */
} decoded_op;

static bool is_transfer_kind(const op *o) {
    return o->kind == OP_TRANSFER || o->kind == OP_POST || o->kind == OP_VOID;
}

/* Applies one decoded op: skip what is here, refuse gaps and invalid ops. *last caches the
 * previous op's origin, since ops of one origin come in runs. What the op's dictionary entries
 * resolve to is noted there for the block's later ops. */
static int apply_one(tally_replica *r, const decoded_op *d, block_dec *dec, op_refs *last,
                     uint64_t now_ms, uint32_t label) {
    const op *o = &d->o;
    if (o->kind == OP_CLOCK) {
        /* only a journal's decoder lets one through */
        return expiry_clock_replay(r, o->u.clock.steady_ms, o->u.clock.wall_ms);
    }
    if (o->kind == OP_SIGN) {
        return chain_replay(r, o); /* a peer's runs are checked whole, before this (apply_run) */
    }
    if (o->kind == OP_FORK) {
        return chain_fork_accept(r, o);
    }
    if (o->kind == OP_CONFIRM) {
        return TALLY_ECORRUPT; /* a delta's only (apply_block), never journalled */
    }
    if (o->kind == OP_ADMIT) {
        return chain_admit_accept(r, o, CHAIN_ADMIT_REPLAY);
    }
    if (o->kind == OP_BRANCH) {
        return chain_branch_replay(r, o); /* a journal's: the next run is a branch's */
    }
    if (label == NONE && r->replay_branch != NONE &&
        r->origins.at[r->origins.at[r->replay_branch].of].id == o->origin) {
        label = r->replay_branch;
    }
    op_refs refs = OP_REFS_NONE;
    refs.id_hash = d->id_hash;
    uint32_t *debit_hint = NULL, *credit_hint = NULL;
    if (is_transfer_kind(o)) {
        debit_hint = dict_hint(dec, d->entries[0]);
        credit_hint = dict_hint(dec, d->entries[1]);
        refs.debit = debit_hint != NULL ? *debit_hint : NONE;
        refs.credit = credit_hint != NULL ? *credit_hint : NONE;
    }
    refs.origin = label != NONE ? label
                  : last->origin != NONE && r->origins.at[last->origin].id == o->origin
                      ? last->origin
                      : replica_origin_find(r, o->origin);
    uint64_t have = refs.origin != NONE ? r->origins.at[refs.origin].seq : 0;
    if (o->seq <= have) {
        last->origin = refs.origin;
        return TALLY_OK;
    }
    /* a branch's op is applied under the branch's id (branch.h); it travels and is journalled
     * under its replica's */
    op in_branch;
    const op *v = o;
    if (label != NONE && origin_is_branch(&r->origins.at[label])) {
        in_branch = *o;
        in_branch.origin = r->origins.at[label].id;
        v = &in_branch;
    }
    if (o->seq != have + 1 || op_validate(r, v, false, &refs) != TALLY_OK) {
        return TALLY_ECORRUPT;
    }
    if (debit_hint != NULL && credit_hint != NULL) {
        *debit_hint = refs.debit;
        *credit_hint = refs.credit;
    }
    int rc = expiry_clock_before(r, o); /* one of ours, brought back with a timeout */
    if (rc == TALLY_OK) {
        rc = replica_journal_add(r, o);
    }
    if (rc != TALLY_OK) {
        return rc;
    }
    rc = op_apply(r, v, &refs, now_ms);
    if (rc != TALLY_OK) {
        replica_journal_unadd(r);
    }
    /* An origin seen for the first time was added by op_apply. */
    last->origin = refs.origin != NONE ? refs.origin : replica_origin_find(r, o->origin);
    return rc;
}

/* Readies n decoded ops for applying: looks up where their ids and accounts are and starts
 * loading them, so that the memory latency of many ops overlaps. */
static void apply_ahead(tally_replica *r, block_dec *dec, decoded_op *batch, uint32_t n) {
    for (uint32_t i = 0; i < n; i++) {
        decoded_op *d = &batch[i];
        d->id_hash = 0;
        if (is_transfer_kind(&d->o)) {
            d->id_hash = idmap_hash(d->o.u.transfer.id);
            idmap_prefetch_hashed(&r->transfer_map, d->id_hash);
        }
    }
    for (uint32_t i = 0; i < n; i++) {
        if (is_transfer_kind(&batch[i].o)) {
            account_ahead(r, dec, batch[i].entries[0]);
            account_ahead(r, dec, batch[i].entries[1]);
        }
    }
    replica_transfers_prefetch(r, n);
}

/* Replays a journal frame's block (the replica's own record: no run is checked again). Ops
 * before an error stay applied. */
static int replay_block(tally_replica *r, block_dec *dec, const uint8_t *buf, size_t len,
                        size_t *block_len, op_refs *last, uint64_t now_ms) {
    int rc = block_dec_begin(dec, buf, len, block_len);
    while (rc == TALLY_OK && dec->remaining > 0) {
        decoded_op batch[APPLY_AHEAD];
        uint32_t n = 0;
        int decoded = TALLY_OK;
        while (n < APPLY_AHEAD && dec->remaining > 0) {
            decoded = block_dec_next(dec, &batch[n].o, batch[n].entries);
            if (decoded == TALLY_OK) {
                decoded = block_dec_accounts(dec, &batch[n].o, batch[n].entries);
            }
            if (decoded != TALLY_OK) {
                break;
            }
            n++;
        }
        apply_ahead(r, dec, batch, n);
        for (uint32_t i = 0; i < n && rc == TALLY_OK; i++) {
            rc = apply_one(r, &batch[i], dec, last, now_ms, NONE);
        }
        if (rc == TALLY_OK) {
            rc = decoded;
        }
    }
    if (rc == TALLY_OK && !block_dec_done(dec)) {
        rc = TALLY_ECORRUPT;
    }
    return rc;
}

/* Reads the next run of the block, ops and SIGN record, hashing its ops: *sign is its record,
 * *n how many ops it has. A fork's record, a confirmation or a certificate where a run would
 * begin is read alone, with *n 0.
 * TALLY_ECORRUPT when the ops are not one origin's in seq order from
 * the record's first to its last, or more than a run holds, or the block ends first. */
static int read_run(tally_replica *r, block_dec *dec, op *sign, uint32_t *n,
                    uint8_t digest[CRYPTO_HASH]) {
    chain_digest d;
    chain_digest_begin(&d, &r->crypto.sha);
    uint64_t origin = 0, first = 0;
    for (*n = 0;; (*n)++) {
        op o;
        int rc = dec->remaining > 0 ? block_dec_op(dec, &o) : TALLY_ECORRUPT;
        if (rc != TALLY_OK) {
            return rc;
        }
        if ((o.kind == OP_FORK || o.kind == OP_CONFIRM || o.kind == OP_ADMIT) && *n == 0) {
            *sign = o;
            return TALLY_OK;
        }
        if (o.kind == OP_SIGN) {
            if (*n == 0 || o.origin != origin || o.u.sign.first != first ||
                o.u.sign.last != first + *n - 1) {
                return TALLY_ECORRUPT;
            }
            *sign = o;
            return chain_digest_end(&d, digest) ? TALLY_OK : TALLY_ENOMEM;
        }
        if (*n == CHAIN_RUN_OPS_MAX) {
            return TALLY_ECORRUPT;
        }
        if (*n == 0) {
            origin = o.origin;
            first = o.seq;
        } else if (o.origin != origin || o.seq != first + *n) {
            return TALLY_ECORRUPT;
        }
        chain_digest_op(&d, &o);
    }
}

/* Applies the n ops of a verified run, decoding them again from where the run begins: the
 * ones this replica lacks, in order; the ones it holds from before signing must be the run's. */
static int apply_run_ops(tally_replica *r, block_dec *dec, uint32_t n, chain_verdict verdict,
                         uint32_t origin, op_refs *last, uint64_t now_ms) {
    uint64_t had = r->origins.at[origin].seq;
    int rc = TALLY_OK;
    for (uint32_t i = 0; i < n && rc == TALLY_OK;) {
        decoded_op batch[APPLY_AHEAD];
        uint32_t m = 0;
        for (; m < APPLY_AHEAD && i + m < n && rc == TALLY_OK; m++) {
            rc = block_dec_next(dec, &batch[m].o, batch[m].entries);
            if (rc == TALLY_OK) {
                rc = block_dec_accounts(dec, &batch[m].o, batch[m].entries);
            }
        }
        if (rc != TALLY_OK) {
            return TALLY_ECORRUPT; /* it decoded the first time */
        }
        apply_ahead(r, dec, batch, m);
        for (uint32_t j = 0; j < m && rc == TALLY_OK; j++) {
            const op *o = &batch[j].o;
            if (o->seq <= had && verdict != CHAIN_KNOWN) {
                op mine;
                replica_op_at(r, origin_position(&r->origins.at[origin], o->seq), &mine);
                rc = chain_same_op(&mine, o) ? TALLY_OK : TALLY_ECORRUPT;
            } else {
                rc = apply_one(r, &batch[j], dec, last, now_ms, origin);
            }
        }
        i += m;
    }
    return rc;
}

/* Applies the block of a delta at buf with the decoder dec (its memory serves every block of
 * the delta), run after run: each is read and hashed, verified (chain_accept), and only then
 * decoded again and applied; then, if that completed it, its SIGN record goes to the journal.
 * *block_len is set to the block's size. Runs before an error stay applied. */
static int apply_block(tally_replica *r, block_dec *dec, const uint8_t *buf, size_t len,
                       size_t *block_len, op_refs *last, uint64_t now_ms) {
    int rc = block_dec_begin(dec, buf, len, block_len);
    while (rc == TALLY_OK && dec->remaining > 0) {
        block_dec_mark start = block_dec_save(dec);
        op sign;
        uint32_t n;
        uint8_t digest[CRYPTO_HASH];
        chain_verdict verdict;
        rc = read_run(r, dec, &sign, &n, digest);
        if (rc == TALLY_OK && sign.kind == OP_FORK) {
            rc = chain_fork_accept(r, &sign);
            continue;
        }
        if (rc == TALLY_OK && sign.kind == OP_CONFIRM) {
            rc = chain_confirm_accept(r, &sign);
            continue;
        }
        if (rc == TALLY_OK && sign.kind == OP_ADMIT) {
            /* an origin's certificate, before its first run; the authority's is never sent */
            rc = chain_admit_accept(r, &sign, CHAIN_ADMIT_PEER);
            continue;
        }
        uint32_t known = rc == TALLY_OK ? replica_origin_find(r, sign.origin) : NONE;
        bool was_keyed = known != NONE && r->origins.at[known].keyed;
        uint32_t origin = NONE; /* the history the run is in: its origin's, or a branch's */
        if (rc == TALLY_OK) {
            rc = chain_accept(r, &sign, digest, &verdict, &origin);
        }
        if (rc != TALLY_OK) {
            return rc;
        }
        block_dec_mark end = block_dec_save(dec);
        uint64_t had = r->origins.at[origin].seq;
        bool branch = origin_is_branch(&r->origins.at[origin]);
        op note; /* a branch's run: the journal's replay must find the branch first */
        if (branch && verdict != CHAIN_KNOWN) {
            rc = chain_branch_op(r, origin, sign.u.sign.first, sign.u.sign.last, &note);
            rc = rc == TALLY_OK ? replica_journal_add(r, &note) : rc;
        }
        block_dec_restore(dec, &start);
        rc = rc == TALLY_OK ? apply_run_ops(r, dec, n, verdict, origin, last, now_ms) : rc;
        block_dec_restore(dec, &end);
        bool none = r->origins.at[origin].seq == had;
        if (none && branch && verdict != CHAIN_KNOWN) {
            replica_journal_unadd(r);
        }
        if (rc != TALLY_OK && none && (verdict == CHAIN_NEW || verdict == CHAIN_BRANCH)) {
            /* none of it applied (its first new op invalid here, or ops from before signing
             * that are not the run's): it is not one of this replica's runs */
            chain_unaccept(r, origin, was_keyed, verdict);
        }
        /* the record goes to the journal when any op of the run applied, and when the run is
         * this replica's own and it lacks some of it: either way a restart must remember */
        bool behind = r->origins.at[origin].seq < sign.u.sign.last;
        int applied = r->origins.at[origin].seq > had || (behind && origin == r->self)
                          ? replica_journal_add(r, &sign)
                          : TALLY_OK;
        if (behind) {
            chain_partly_applied(r, origin, sign.u.sign.last);
        }
        rc = rc != TALLY_OK ? rc : applied;
    }
    return rc == TALLY_OK && !block_dec_done(dec) ? TALLY_ECORRUPT : rc;
}

int replica_replay_frame(void *ctx, const uint8_t *frame, size_t len) {
    tally_replica *r = ctx;
    if (r->id == 0 || r->self == NONE) {
        /* the first frame: the journal has read the replica id from the segment header */
        int rc = replica_set_id(r, r->journal->replica_id);
        if (rc != TALLY_OK) {
            return rc;
        }
    }
    op_refs last = OP_REFS_NONE;
    block_dec dec;
    block_dec_init(&dec);
    dec.clocks = r->journal->replay_clocks;
    size_t block_len;
    int rc = replay_block(r, &dec, frame, len, &block_len, &last, replica_now_ms(r));
    block_dec_free(&dec);
    return rc == TALLY_OK && block_len != len ? TALLY_ECORRUPT : rc;
}

int tally_apply(tally_replica *r, const uint8_t *delta, size_t len) {
    if (r == NULL || (delta == NULL && len > 0)) {
        return TALLY_EINVAL;
    }
    if (r->journal != NULL && r->journal->failed) {
        return TALLY_EIO;
    }
    if (len < DELTA_HEADER || memcmp(delta, delta_magic, 4) != 0 || delta[4] != SYNC_VERSION ||
        delta[5] != 0 || delta[6] != 0 || delta[7] != 0) {
        return TALLY_ECORRUPT;
    }
    size_t at = DELTA_HEADER;
    op_refs last = OP_REFS_NONE;
    uint64_t now_ms = expiry_clock_read(r);
    int rc = TALLY_OK;
    block_dec dec;
    block_dec_init(&dec);
    while (at < len && rc == TALLY_OK) {
        size_t block_len;
        rc = apply_block(r, &dec, delta + at, len - at, &block_len, &last, now_ms);
        at += block_len;
    }
    block_dec_free(&dec);
    replica_debug_check(r);
    /* What was applied is journalled before the sender hears of it, even when the apply then
     * stopped at a bad op. */
    return replica_commit(r, rc);
}

int sync_watch(tally_replica *r, void (*fn)(void *ctx), void *ctx) {
    if (fn != NULL && r->on_change != NULL) {
        return TALLY_EINVAL;
    }
    r->on_change = fn;
    r->on_change_ctx = fn != NULL ? ctx : NULL;
    r->notified_log = r->log.count;
    return TALLY_OK;
}

uint64_t sync_op_count(const tally_replica *r) {
    return r->log.count;
}
