/*
 * ledger/codec.h — the canonical binary encoding of ops, used for deltas and the journal.
 *
 * Ops travel in *blocks*. A block is a header and a payload:
 *
 *     offset size  field
 *     0      4     payload_len   (little-endian; 1 .. CODEC_BLOCK_PAYLOAD_MAX)
 *     4      4     op_count      (little-endian; 1 .. CODEC_BLOCK_OPS_MAX, <= payload_len)
 *     8      8     checksum      XXH3-64 of the payload, seeded with payload_len << 32 | op_count
 *     16     ...   payload       op_count ops, each as below
 *
 * so a flipped bit anywhere in a block is caught before any of its ops is looked at. Inside a
 * block, what repeats from op to op is sent once: account incarnations and origin replicas are
 * sent in full at their first use and by a small index after; a dot that follows the previous
 * op's (same origin, seq + 1) costs one bit; timestamps are sent as the difference from the
 * previous op's. docs/design.md ("Wire encoding") gives every field.
 *
 * 1. block_enc and block_dec agree on every op that op_encodable() accepts:
 *    decode(encode(o)) == o.
 * 2. The decoder reads nothing outside the payload it was given, and refuses overlong varints,
 *    unused bits, and explicit fields where the header says "as before".
 * 3. Dictionaries hold at most three entries per op, so a block's memory is bounded by
 *    op_count, which is bounded by payload_len.
 */
#ifndef TALLY_LEDGER_CODEC_H
#define TALLY_LEDGER_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "crdt/array.h"
#include "crdt/bytes.h"
#include "crdt/idmap.h"
#include "ledger/op.h"

#define CODEC_BLOCK_HEADER 16
#define CODEC_BLOCK_PAYLOAD_MAX (UINT32_C(1) << 22)
#define CODEC_BLOCK_OPS_MAX (UINT32_C(1) << 20)
/* No op encodes to more than this (an upper bound, checked by a static assertion). */
#define CODEC_OP_MAX 160
/* Nor does a fork's record (OP_FORK: two statements in full), the one record longer than an op. */
#define CODEC_FORK_MAX 320
/* The bytes of one side of a fork's record after its first and last: prev, digest, signature. */
#define CODEC_FORK_SIDE 128
/* An admission certificate's record (OP_ADMIT): header, whose (a byte, then an origin ref
 * unless it is the authority's), length and the DER, of at most CODEC_ADMIT_DER_MAX bytes. */
#define CODEC_ADMIT_DER_MAX 2048
#define CODEC_ADMIT_MAX (1 + 1 + 9 + 2 + CODEC_ADMIT_DER_MAX)
/* A confirmation's record (OP_CONFIRM): header, origin, last, answer, by, signature, and the
 * answerer's certificate (length and DER). */
#define CODEC_CONFIRM_MAX (1 + 9 + 10 + 32 + 9 + 64 + 2 + CODEC_ADMIT_DER_MAX)

#define CODEC_NO_HINT UINT32_MAX

typedef struct codec_account {
    tally_id id;
    uint32_t ledger;
    /* The decoder's caller may note here what this entry resolved to (for the replica: the
     * account incarnation), so that later ops of the block naming it need no lookup. The
     * codec only sets it to CODEC_NO_HINT when the entry is added. */
    uint32_t hint;
    uint8_t flags;
} codec_account;

/* The state both sides keep while walking one block. */
typedef struct block_prev {
    uint64_t origin, seq, hlc;
    uint16_t code;
} block_prev;

typedef struct block_dict {
    ARRAY(codec_account) accounts;
    ARRAY(tally_id) origins; /* {0, replica id}, so that an idmap can key them */
    block_prev prev; /* what the previous op of the block had; zeros at the block's start */
} block_dict;

typedef struct block_enc {
    block_dict dict;
    idmap account_index, origin_index; /* encoder only: key -> dict index */
    size_t start;                      /* offset of this block's header in the output */
    uint32_t ops;
    /* The state before the op being encoded, restored by block_enc_rollback: dictionary sizes,
     * the previous op's fields, and index entries the op overwrote (at most four per op). */
    uint32_t saved_accounts, saved_origins;
    block_prev saved_prev;
    struct {
        idmap *map;
        tally_id key;
        uint32_t value;
    } undo[4];
    uint32_t n_undo;
} block_enc;

void block_enc_init(block_enc *e);
void block_enc_free(block_enc *e);
/* Starts a block at the end of out (reserving its header). False when out of memory. */
bool block_enc_begin(block_enc *e, bytes *out);
/* Encodes one op after the block's previous ones. False when out of memory; the op may then
 * be partly written: call block_enc_rollback. */
bool block_enc_op(block_enc *e, bytes *out, const op *o);
/* Takes back the op just encoded, truncating out to `len` (its length before the op). */
void block_enc_rollback(block_enc *e, bytes *out, size_t len);
/* Where the current block stands, to go back to with block_enc_rewind: for taking back
 * several ops at once (block_enc_rollback takes back the last one). */
typedef struct block_mark {
    size_t len;
    uint32_t ops, accounts, origins;
    block_prev prev;
} block_mark;
static inline block_mark block_enc_mark(const block_enc *e, const bytes *out) {
    block_mark m = {out->len, e->ops, e->dict.accounts.count, e->dict.origins.count, e->dict.prev};
    return m;
}
/* Takes back every op encoded since the mark (in the current block). False when out of
 * memory: the block must then be ended and nothing more added to it. */
bool block_enc_rewind(block_enc *e, bytes *out, const block_mark *m);
/* Writes the header of the block begun last. With no op in it, removes it instead. */
void block_enc_end(block_enc *e, bytes *out);
/* Payload bytes in the current block. */
static inline size_t block_enc_payload(const block_enc *e, const bytes *out) {
    return out->len - e->start - CODEC_BLOCK_HEADER;
}
/* Whether the current block must end before another op: the op might take its payload past
 * `most` bytes (at most CODEC_BLOCK_PAYLOAD_MAX), or its ops past CODEC_BLOCK_OPS_MAX. */
static inline bool block_enc_full(const block_enc *e, const bytes *out, size_t most) {
    return block_enc_payload(e, out) + CODEC_OP_MAX > most || e->ops + 1 > CODEC_BLOCK_OPS_MAX;
}

typedef struct block_dec {
    block_dict dict;
    const uint8_t *p, *end;
    uint32_t remaining;
    bool clocks; /* accepts CLOCK records (a journal's frames): false unless set */
} block_dec;

/* An empty decoder. block_dec_begin readies it for a block, once for each block in turn: the
 * dictionaries' memory is kept from one block to the next (their contents are not). */
void block_dec_init(block_dec *d);
/* Checks a block's header and checksum at buf (len bytes available) and readies the decoder
 * for its payload. *block_len is set to the whole block's size. TALLY_ECORRUPT for anything
 * that does not check; TALLY_ENOMEM. */
int block_dec_begin(block_dec *d, const uint8_t *buf, size_t len, size_t *block_len);
/* The next op of the block, or TALLY_ECORRUPT. Call at most op_count times. */
int block_dec_op(block_dec *d, op *out);
/* block_dec_op in two steps, for a caller that decodes several ops ahead: block_dec_next leaves
 * a transfer's accounts (ids, ledger, flags) unfilled, sets entries to the dictionary entries
 * the op names (a transfer's debit and credit, an open's or a grant's account in [0];
 * CODEC_NO_HINT where none) and starts loading them; block_dec_accounts, given those entries,
 * fills them in (TALLY_ECORRUPT if their ledgers differ). Entries stay valid until the next
 * block begins. */
int block_dec_next(block_dec *d, op *out, uint32_t entries[2]);
int block_dec_accounts(const block_dec *d, op *o, const uint32_t entries[2]);
/* Where a decoder stands in its block, to decode the same ops again from there: the
 * dictionaries only grow, and decoding the same bytes adds the same entries again. */
typedef struct block_dec_mark {
    const uint8_t *p;
    uint32_t remaining, accounts, origins;
    block_prev prev;
} block_dec_mark;
static inline block_dec_mark block_dec_save(const block_dec *d) {
    block_dec_mark m = {d->p, d->remaining, d->dict.accounts.count, d->dict.origins.count,
                        d->dict.prev};
    return m;
}
static inline void block_dec_restore(block_dec *d, const block_dec_mark *m) {
    d->p = m->p;
    d->remaining = m->remaining;
    d->dict.accounts.count = m->accounts;
    d->dict.origins.count = m->origins;
    d->dict.prev = m->prev;
}
/* True when every op was read and every payload byte consumed. */
bool block_dec_done(const block_dec *d);
/* Releases the decoder's memory; it is empty again, as after block_dec_init. */
void block_dec_free(block_dec *d);

#endif
