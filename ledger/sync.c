/*
 * ledger/sync.c — the transport-agnostic sync core: summary, delta, apply, digest.
 *
 * A summary is this replica's version vector:
 *
 *     offset size     field
 *     0      4        magic "TLYS"
 *     4      1        format version (1)
 *     5      3        zero
 *     8      4        count (little-endian; <= REPLICA_ORIGINS_MAX)
 *     12     16*count (origin, seq) pairs, little-endian, origins strictly increasing, none 0
 *     ...    8        XXH3-64 of every byte before it
 *
 * A delta is an 8-byte header ("TLYD", version 1, three zero bytes) and zero or more blocks
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
#include "ledger/codec.h"
#include "ledger/replica.h"
#include "ledger/journal.h"
#include "ledger/sync.h"

static const uint8_t summary_magic[4] = {'T', 'L', 'Y', 'S'};
static const uint8_t delta_magic[4] = {'T', 'L', 'Y', 'D'};
#define SYNC_VERSION 1
#define DELTA_HEADER 8
/* Ops decoded ahead of applying, so their hash-table lookups overlap. */
#define APPLY_AHEAD 16

void replica_op_at(const tally_replica *r, uint32_t position, op *o) {
    const log_entry *j = &r->log.at[position];
    op_clear(o);
    o->kind = (uint8_t)j->kind;
    switch (j->kind) {
    case OP_OPEN: {
        const open_rec *rec = &r->opens.at[j->index];
        o->origin = r->origins.at[rec->origin].id;
        o->seq = rec->seq;
        o->hlc = rec->hlc;
        o->u.account = rec->a;
        break;
    }
    case OP_GRANT: {
        const grant_rec *g = &r->grants.at[j->index];
        const account_rec *a = &r->accounts.at[g->account];
        o->origin = r->origins.at[g->origin].id;
        o->seq = g->seq;
        o->hlc = g->hlc;
        o->u.grant.account = a->id;
        o->u.grant.ledger = a->ledger;
        o->u.grant.account_flags = (uint8_t)a->flags;
        o->u.grant.to = r->origins.at[g->to].id;
        o->u.grant.amount = g->amount;
        break;
    }
    default: {
        const transfer_rec *t = &r->transfers.at[j->index];
        o->origin = r->origins.at[t->origin].id;
        o->seq = t->seq;
        o->hlc = t->hlc;
        o->expired = t->expired;
        o->debit_flags = (uint8_t)r->accounts.at[t->debit].flags;
        o->credit_flags = (uint8_t)r->accounts.at[t->credit].flags;
        transfer_view(r, t, &o->u.transfer);
        break;
    }
    }
}

/* --- summary ------------------------------------------------------------------------------- */

int sync_summary_encode(const vclock *v, uint8_t **buf, size_t *len) {
    size_t n = 12 + 16 * (size_t)v->count + 8;
    uint8_t *p = malloc(n);
    if (p == NULL) {
        return TALLY_ENOMEM;
    }
    memcpy(p, summary_magic, 4);
    p[4] = SYNC_VERSION;
    p[5] = p[6] = p[7] = 0;
    put_u32le(p + 8, v->count);
    for (uint32_t i = 0; i < v->count; i++) {
        put_u64le(p + 12 + 16 * (size_t)i, v->entries[i].origin);
        put_u64le(p + 20 + 16 * (size_t)i, v->entries[i].seq);
    }
    put_u64le(p + n - 8, XXH3_64bits(p, n - 8));
    *buf = p;
    *len = n;
    return TALLY_OK;
}

int replica_version_vector(const tally_replica *r, vclock *out) {
    vclock_init(out);
    for (uint32_t i = 0; i < r->origins.count; i++) {
        if (!vclock_set(out, r->origins.at[i].id, r->origins.at[i].seq)) {
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
        for (uint32_t i = 0; i < v.count && i < cap; i++) {
            out[i].replica_id = v.entries[i].origin;
            out[i].seq = v.entries[i].seq;
        }
        *count = v.count;
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
    vclock v;
    int rc = replica_version_vector(r, &v);
    if (rc == TALLY_OK) {
        rc = sync_summary_encode(&v, buf, len);
        vclock_free(&v);
    }
    return rc;
}

int sync_summary_decode(const uint8_t *buf, size_t len, vclock *out) {
    vclock_init(out);
    if (buf == NULL || len < 20 || memcmp(buf, summary_magic, 4) != 0 || buf[4] != SYNC_VERSION ||
        buf[5] != 0 || buf[6] != 0 || buf[7] != 0) {
        return TALLY_ECORRUPT;
    }
    uint32_t count = get_u32le(buf + 8);
    if (count > REPLICA_ORIGINS_MAX || len != 12 + 16 * (size_t)count + 8 ||
        !CHECKSUM_OK(get_u64le(buf + len - 8), XXH3_64bits(buf, len - 8))) {
        return TALLY_ECORRUPT;
    }
    if (!array_reserve((void **)&out->entries, &out->capacity, 0, count + 1, sizeof *out->entries,
                       REPLICA_ORIGINS_MAX + 1)) {
        return TALLY_ENOMEM;
    }
    for (uint32_t i = 0; i < count; i++) {
        uint64_t origin = get_u64le(buf + 12 + 16 * (size_t)i);
        uint64_t seq = get_u64le(buf + 20 + 16 * (size_t)i);
        if (origin == 0 || seq == 0 || (i > 0 && origin <= out->entries[i - 1].origin)) {
            vclock_free(out);
            return TALLY_ECORRUPT;
        }
        out->entries[i].origin = origin;
        out->entries[i].seq = seq;
        out->count++;
    }
    return TALLY_OK;
}

/* --- delta --------------------------------------------------------------------------------- */

/* The journal position of the first op the peer lacks, and for each origin the seq it has. */
static uint32_t delta_start(const tally_replica *r, const vclock *peer, uint64_t *has) {
    uint32_t start = r->log.count;
    for (uint32_t i = 0; i < r->origins.count; i++) {
        const origin_rec *o = &r->origins.at[i];
        has[i] = vclock_get(peer, o->id);
        if (has[i] < o->seq && o->position[has[i]] < start) {
            start = o->position[has[i]];
        }
    }
    return start;
}

/* A peer holding ops of this replica's own origin beyond its journal means this replica lost
 * acknowledged writes (a restored backup, a lost disk): until it has them back, a new local op
 * would reuse their seqs. */
static void learn_own_behind(const tally_replica *r, const vclock *peer) {
    uint64_t peer_has_mine = vclock_get(peer, r->id);
    if (peer_has_mine > r->origins.at[r->self].seq && peer_has_mine > r->learned->own_behind) {
        r->learned->own_behind = peer_has_mine;
    }
}

/* Appends to out the ops the peer lacks, in log order and in blocks, stopping before the op
 * that would take out past max_bytes (0: no limit) unless it is the first. has[] (by origin
 * index) is filled with what the peer has, and ends as what the delta brings it to. */
static int delta_ops(const tally_replica *r, const vclock *peer, size_t max_bytes, uint64_t *has,
                     bytes *out) {
    block_enc enc;
    block_enc_init(&enc);
    int rc = TALLY_OK;
    bool open = false, any = false;
    for (uint32_t pos = delta_start(r, peer, has); pos < r->log.count; pos++) {
        op o;
        replica_op_at(r, pos, &o);
        uint32_t origin = replica_origin_find(r, o.origin);
        if (o.seq <= has[origin]) {
            continue;
        }
        if (open && block_enc_full(&enc, out, CODEC_BLOCK_PAYLOAD_MAX)) {
            block_enc_end(&enc, out);
            open = false;
        }
        size_t before = out->len;
        if (!open && !block_enc_begin(&enc, out)) {
            rc = TALLY_ENOMEM;
            break;
        }
        open = true;
        if (!block_enc_op(&enc, out, &o)) {
            rc = TALLY_ENOMEM;
            break;
        }
        if (max_bytes != 0 && any && out->len > max_bytes) {
            block_enc_rollback(&enc, out, before);
            break;
        }
        any = true;
        has[origin] = o.seq; /* ops of one origin go out in seq order */
    }
    if (open && rc == TALLY_OK) {
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

int sync_delta(const tally_replica *r, const vclock *peer, size_t max_bytes, uint8_t **buf,
               size_t *len, vclock *covered) {
    *buf = NULL;
    *len = 0;
    learn_own_behind(r, peer);
    uint64_t *has = malloc(((size_t)r->origins.count + 1) * sizeof *has);
    bytes out = {0};
    int rc = has != NULL && bytes_reserve(&out, DELTA_HEADER) ? TALLY_OK : TALLY_ENOMEM;
    if (rc == TALLY_OK) {
        memcpy(out.at, delta_magic, 4);
        out.at[4] = SYNC_VERSION;
        out.at[5] = out.at[6] = out.at[7] = 0;
        out.len = DELTA_HEADER;
        rc = delta_ops(r, peer, max_bytes, has, &out);
    }
    if (rc == TALLY_OK && covered != NULL) {
        rc = delta_covered(r, peer, has, covered);
    }
    if (rc == TALLY_OK) {
        *buf = out.at;
        *len = out.len;
        out.at = NULL;
    }
    bytes_free(&out);
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
    int rc = sync_summary_decode(peer_summary, peer_len, &peer);
    if (rc == TALLY_OK) {
        rc = sync_delta(r, &peer, max_bytes, buf, len, NULL);
    }
    vclock_free(&peer);
    return rc;
}

int sync_delta_covers(const uint8_t *delta, size_t len, vclock *covered) {
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
            if (rc == TALLY_OK && o.seq > vclock_get(covered, o.origin) &&
                !vclock_set(covered, o.origin, o.seq)) {
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
                     uint64_t now_ms) {
    const op *o = &d->o;
    if (o->kind == OP_CLOCK) {
        /* only a journal's decoder lets one through */
        return expiry_clock_replay(r, o->u.clock.steady_ms, o->u.clock.wall_ms);
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
    refs.origin = last->origin != NONE && r->origins.at[last->origin].id == o->origin
                      ? last->origin
                      : replica_origin_find(r, o->origin);
    uint64_t have = refs.origin != NONE ? r->origins.at[refs.origin].seq : 0;
    if (o->seq <= have) {
        last->origin = refs.origin;
        return TALLY_OK;
    }
    if (o->seq != have + 1 || op_validate(r, o, false, &refs) != TALLY_OK) {
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
    rc = op_apply(r, o, &refs, now_ms);
    if (rc != TALLY_OK) {
        replica_journal_unadd(r);
    }
    /* An origin seen for the first time was added by op_apply. */
    last->origin = refs.origin != NONE ? refs.origin : replica_origin_find(r, o->origin);
    return rc;
}

/* Applies the block at buf with the decoder dec (its memory serves every block of a delta):
 * *block_len is set to the block's size. Ops before an error stay applied. */
static int apply_block(tally_replica *r, block_dec *dec, const uint8_t *buf, size_t len,
                       size_t *block_len, op_refs *last, uint64_t now_ms) {
    int rc = block_dec_begin(dec, buf, len, block_len);
    while (rc == TALLY_OK && dec->remaining > 0) {
        /* Decode a few ops ahead, prefetching their dictionary entries and where their ids
         * will be looked up; then fill in their accounts, look those up and prefetch their
         * records; then apply them in order. Each stage overlaps the memory latency of many
         * ops. A decoding error still lets the ops before it apply. */
        decoded_op batch[APPLY_AHEAD];
        int n = 0, decoded = TALLY_OK;
        while (n < APPLY_AHEAD && dec->remaining > 0) {
            decoded_op *d = &batch[n];
            decoded = block_dec_next(dec, &d->o, d->entries);
            if (decoded != TALLY_OK) {
                break;
            }
            d->id_hash = 0;
            if (is_transfer_kind(&d->o)) {
                d->id_hash = idmap_hash(d->o.u.transfer.id);
                idmap_prefetch_hashed(&r->transfer_map, d->id_hash);
            }
            n++;
        }
        for (int i = 0; i < n; i++) {
            if (block_dec_accounts(dec, &batch[i].o, batch[i].entries) != TALLY_OK) {
                n = i; /* the ops before it apply; decoding stops there */
                decoded = TALLY_ECORRUPT;
                break;
            }
            if (is_transfer_kind(&batch[i].o)) {
                account_ahead(r, dec, batch[i].entries[0]);
                account_ahead(r, dec, batch[i].entries[1]);
            }
        }
        replica_transfers_prefetch(r, (uint32_t)n);
        for (int i = 0; i < n && rc == TALLY_OK; i++) {
            rc = apply_one(r, &batch[i], dec, last, now_ms);
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
    int rc = apply_block(r, &dec, frame, len, &block_len, &last, replica_now_ms(r));
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
