/*
 * ledger/codec.c — see codec.h for the block layout. One op, inside a block:
 *
 *   header byte   bits 0-2 kind; 3 DOT_NEXT (origin as the previous op's, seq + 1);
 *                 4 SAME_CODE (code as the previous op's); 5 HAS_USER_DATA;
 *                 6 X (TRANSFER: pending; VOID: expired by timeout); 7 HAS_TIMEOUT
 *   [origin ref, seq varint]     unless DOT_NEXT
 *   hlc                          zigzag varint of the difference from the previous op's
 *   OPEN      account ref (a literal gives id, flags, ledger), [code], [user_data]
 *   TRANSFER  id, debit ref, credit ref, amount, [code], [user_data], [timeout_ms]
 *   POST/VOID [id unless expired], pending_id, debit ref, credit ref, amount, [code], [user_data]
 *   GRANT     account ref, to (origin ref), amount
 *
 * A CLOCK record (the journal's alone, with no dot: ledger/expiry.c) is its header byte, the
 * kind and no flag, then two varints, the steady clock and the wall clock reading under it; it
 * leaves the previous op's fields as they were. Only a decoder told to (block_dec.clocks)
 * accepts one.
 *
 * A SIGN record (ledger/chain.c) is its header byte (the kind, no flag), an origin ref, the
 * run's first and last seq (varints, 1 <= first <= last), 32 bytes (the origin's public key when
 * first is 1, else the hash of the origin's statement before the run) and the 64-byte
 * signature. It too has no dot and leaves the previous op's fields alone. So do a FORK record
 * (header byte 8: an origin ref, then each statement's first, last and 128 bytes), a CONFIRM
 * record (header byte 0x10, a delta's only: dec_confirm, ledger/chain.c) and an ADMIT record
 * (header byte 0x20: an admission certificate, dec_admit).
 *
 * ids are 16 bytes (hi then lo, each little-endian); numbers are LEB128 varints. An account ref
 * is a varint k: k > 0 names dictionary entry k - 1; k == 0 is followed by a literal: id, one
 * byte of bound flags, ledger (varint). An origin ref is the same with an 8-byte literal.
 * A transfer's ledger is its accounts' (they must agree); its flags follow from kind and X.
 */
#include "ledger/codec.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "crdt/id.h"

enum {
    H_KIND = 0x07,
    H_DOT_NEXT = 1u << 3,
    H_SAME_CODE = 1u << 4,
    H_USER_DATA = 1u << 5,
    H_X = 1u << 6,
    H_TIMEOUT = 1u << 7,
    /* The header of a confirmation (OP_CONFIRM): kind bits 0, which no op with a dot has, and
     * a bit other than OP_FORK's (whose header is OP_FORK itself, kind 0 with H_DOT_NEXT). */
    H_CONFIRM = H_SAME_CODE,
    H_ADMIT = H_USER_DATA, /* an admission certificate (OP_ADMIT), likewise */
    H_BRANCH = H_X,        /* a journal's note that a run is a branch's (OP_BRANCH), likewise */
};

/* --- the dictionary, shared by both directions --------------------------------------------- */

static void dict_init(block_dict *d) {
    memset(d, 0, sizeof *d);
}

static void dict_free(block_dict *d) {
    ARRAY_FREE(d->accounts);
    ARRAY_FREE(d->origins);
    dict_init(d);
}

static void dict_reset(block_dict *d) {
    d->accounts.count = d->origins.count = 0;
    memset(&d->prev, 0, sizeof d->prev);
}

/* A block adds at most three entries per op, so its op limit bounds the dictionaries. */
#define DICT_MAX (3 * CODEC_BLOCK_OPS_MAX)

static bool dict_add_account(block_dict *d, codec_account a) {
    if (!ARRAY_RESERVE_MAX(d->accounts, 1, DICT_MAX)) {
        return false;
    }
    d->accounts.at[d->accounts.count++] = a;
    return true;
}

static bool dict_add_origin(block_dict *d, uint64_t origin) {
    if (!ARRAY_RESERVE_MAX(d->origins, 1, DICT_MAX)) {
        return false;
    }
    tally_id key = {0, origin};
    d->origins.at[d->origins.count++] = key;
    return true;
}

static uint16_t op_code(const op *o) {
    switch (o->kind) {
    case OP_OPEN:
        return o->u.account.code;
    case OP_GRANT:
        return 0;
    default:
        return o->u.transfer.code;
    }
}

/* --- encoding ------------------------------------------------------------------------------ */

static uint8_t *put_varint(uint8_t *p, uint64_t v) {
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

static uint8_t *put_id(uint8_t *p, tally_id id) {
    put_u64le(p, id.hi);
    put_u64le(p + 8, id.lo);
    return p + 16;
}

static const tally_id *dict_account_key(const void *ctx, uint32_t i) {
    return &((const block_dict *)ctx)->accounts.at[i].id;
}
static const tally_id *dict_origin_key(const void *ctx, uint32_t i) {
    return &((const block_dict *)ctx)->origins.at[i];
}

void block_enc_init(block_enc *e) {
    memset(e, 0, sizeof *e);
    dict_init(&e->dict);
    idmap_init(&e->account_index, dict_account_key, &e->dict);
    idmap_init(&e->origin_index, dict_origin_key, &e->dict);
}

void block_enc_free(block_enc *e) {
    dict_free(&e->dict);
    idmap_free(&e->account_index);
    idmap_free(&e->origin_index);
}

bool block_enc_begin(block_enc *e, bytes *out) {
    if (!bytes_reserve(out, CODEC_BLOCK_HEADER)) {
        return false;
    }
    dict_reset(&e->dict);
    idmap_clear(&e->account_index);
    idmap_clear(&e->origin_index);
    e->start = out->len;
    e->ops = 0;
    out->len += CODEC_BLOCK_HEADER;
    return true;
}

/* Points key at a new dictionary index, remembering what it pointed at for a rollback. */
static bool enc_index(block_enc *e, idmap *map, tally_id key, uint32_t value) {
    uint32_t old = idmap_get(map, key);
    if (old != IDMAP_NONE) {
        GUARD(e->n_undo < sizeof e->undo / sizeof e->undo[0]);
        e->undo[e->n_undo].map = map;
        e->undo[e->n_undo].key = key;
        e->undo[e->n_undo].value = old;
        e->n_undo++;
    }
    return idmap_put(map, key, value);
}

static uint8_t *enc_account(block_enc *e, uint8_t *p, tally_id id, uint32_t ledger, uint8_t flags,
                            bool *ok) {
    block_dict *d = &e->dict;
    uint32_t k = idmap_get(&e->account_index, id);
    if (k < d->accounts.count && id_eq(d->accounts.at[k].id, id) && d->accounts.at[k].ledger == ledger &&
        d->accounts.at[k].flags == flags) {
        return put_varint(p, (uint64_t)k + 1);
    }
    codec_account a = {id, ledger, CODEC_NO_HINT, flags};
    if (!dict_add_account(d, a) || !enc_index(e, &e->account_index, id, d->accounts.count - 1)) {
        *ok = false;
        return p;
    }
    *p++ = 0;
    p = put_id(p, id);
    *p++ = flags;
    return put_varint(p, ledger);
}

static uint8_t *enc_origin(block_enc *e, uint8_t *p, uint64_t origin, bool *ok) {
    block_dict *d = &e->dict;
    tally_id key = {0, origin};
    uint32_t k = idmap_get(&e->origin_index, key);
    if (k < d->origins.count && d->origins.at[k].lo == origin) {
        return put_varint(p, (uint64_t)k + 1);
    }
    if (!dict_add_origin(d, origin) || !enc_index(e, &e->origin_index, key, d->origins.count - 1)) {
        *ok = false;
        return p;
    }
    *p++ = 0;
    put_u64le(p, origin);
    return p + 8;
}

static uint64_t zigzag(uint64_t delta) {
    int64_t v = (int64_t)delta;
    return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

static uint64_t unzigzag(uint64_t v) {
    return (v >> 1) ^ (0 - (v & 1));
}

/* The most bytes a record longer than an op can take (ops, CLOCK and SIGN: CODEC_OP_MAX), so
 * that an op pays one comparison for it. */
_Static_assert(OP_FORK > OP_SIGN && OP_CONFIRM > OP_SIGN && OP_ADMIT > OP_SIGN,
               "the kinds of the long records come after the op kinds and SIGN");
static size_t record_max(uint8_t kind) {
    return kind == OP_FORK    ? CODEC_FORK_MAX
           : kind == OP_ADMIT ? CODEC_ADMIT_MAX
                              : CODEC_CONFIRM_MAX;
}

/* A certificate's bytes in a record: a varint length, then the DER. */
static uint8_t *put_der(uint8_t *p, const uint8_t *der, uint32_t len) {
    assert(len <= CODEC_ADMIT_DER_MAX);
    p = put_varint(p, len);
    memcpy(p, der, len);
    return p + len;
}

bool block_enc_op(block_enc *e, bytes *out, const op *o) {
    if (!bytes_reserve(out, o->kind <= OP_SIGN || o->kind == OP_BRANCH ? CODEC_OP_MAX
                                                                       : record_max(o->kind))) {
        return false;
    }
    block_dict *d = &e->dict;
    e->saved_accounts = d->accounts.count;
    e->saved_origins = d->origins.count;
    e->saved_prev = d->prev;
    e->n_undo = 0;
    uint8_t *start = out->at + out->len, *p = start + 1;
    if (o->kind == OP_CLOCK) {
        *start = OP_CLOCK;
        p = put_varint(p, o->u.clock.steady_ms);
        p = put_varint(p, o->u.clock.wall_ms);
        out->len += (size_t)(p - start);
        e->ops++;
        return true;
    }
    bool ok = true;
    if (o->kind == OP_SIGN) {
        *start = OP_SIGN;
        p = enc_origin(e, p, o->origin, &ok);
        p = put_varint(p, o->u.sign.first);
        p = put_varint(p, o->u.sign.last);
        memcpy(p, o->u.sign.chain, 32);
        memcpy(p + 32, o->u.sign.sig, 64);
        p += 96;
        assert(p - start <= CODEC_OP_MAX);
        out->len += (size_t)(p - start);
        e->ops++;
        return ok;
    }
    if (o->kind == OP_BRANCH) {
        *start = H_BRANCH;
        p = enc_origin(e, p, o->origin, &ok);
        p = put_varint(p, o->u.branch.first);
        p = put_varint(p, o->u.branch.last);
        memcpy(p, o->u.branch.prev, 32);
        memcpy(p + 32, o->u.branch.hash, 32);
        p += 64;
        assert(p - start <= CODEC_OP_MAX);
        out->len += (size_t)(p - start);
        e->ops++;
        return ok;
    }
    if (o->kind == OP_ADMIT) {
        assert(o->u.admit.len > 0 && o->u.admit.len <= CODEC_ADMIT_DER_MAX);
        *start = H_ADMIT;
        *p++ = o->origin != 0;
        if (o->origin != 0) {
            p = enc_origin(e, p, o->origin, &ok);
        }
        p = put_der(p, o->u.admit.der, o->u.admit.len);
        out->len += (size_t)(p - start);
        e->ops++;
        return ok;
    }
    if (o->kind == OP_CONFIRM) {
        *start = H_CONFIRM;
        p = enc_origin(e, p, o->origin, &ok);
        p = put_varint(p, o->u.confirm.last);
        memcpy(p, o->u.confirm.answer, 32);
        p += 32;
        p = enc_origin(e, p, o->u.confirm.by, &ok);
        memcpy(p, o->u.confirm.sig, 64);
        p += 64;
        p = o->u.confirm.cert_len > 0 ? put_der(p, o->u.confirm.cert, o->u.confirm.cert_len)
                                      : put_varint(p, 0);
        out->len += (size_t)(p - start);
        e->ops++;
        return ok;
    }
    if (o->kind == OP_FORK) {
        *start = OP_FORK;
        p = enc_origin(e, p, o->origin, &ok);
        for (int i = 0; i < 2; i++) {
            p = put_varint(p, o->u.fork.first[i]);
            p = put_varint(p, o->u.fork.last[i]);
            memcpy(p, o->u.fork.side[i], CODEC_FORK_SIDE);
            p += CODEC_FORK_SIDE;
        }
        assert(p - start <= CODEC_FORK_MAX);
        out->len += (size_t)(p - start);
        e->ops++;
        return ok;
    }
    const tally_transfer *t = &o->u.transfer;
    uint16_t code = op_code(o);
    uint8_t h = o->kind;
    if (o->origin == d->prev.origin && o->seq == d->prev.seq + 1) {
        h |= H_DOT_NEXT;
    } else {
        p = enc_origin(e, p, o->origin, &ok);
        p = put_varint(p, o->seq);
    }
    p = put_varint(p, zigzag(o->hlc - d->prev.hlc));
    if (o->kind != OP_GRANT && code == d->prev.code) {
        h |= H_SAME_CODE;
    }
    switch (o->kind) {
    case OP_OPEN:
        p = enc_account(e, p, o->u.account.id, o->u.account.ledger, (uint8_t)o->u.account.flags,
                        &ok);
        break;
    case OP_GRANT:
        p = enc_account(e, p, o->u.grant.account, o->u.grant.ledger, o->u.grant.account_flags, &ok);
        p = enc_origin(e, p, o->u.grant.to, &ok);
        p = put_varint(p, o->u.grant.amount);
        break;
    default:
        if (o->kind == OP_TRANSFER && (t->flags & TALLY_TRANSFER_PENDING)) {
            h |= H_X;
        }
        if (o->kind == OP_VOID && o->expired) {
            h |= H_X;
        } else {
            p = put_id(p, t->id);
        }
        if (o->kind != OP_TRANSFER) {
            p = put_id(p, t->pending_id);
        }
        p = enc_account(e, p, t->debit_account_id, t->ledger, o->debit_flags, &ok);
        p = enc_account(e, p, t->credit_account_id, t->ledger, o->credit_flags, &ok);
        p = put_varint(p, t->amount);
        break;
    }
    uint64_t user_data = o->kind == OP_OPEN    ? o->u.account.user_data
                         : o->kind == OP_GRANT ? 0
                                               : t->user_data;
    if (o->kind != OP_GRANT && !(h & H_SAME_CODE)) {
        p = put_varint(p, code);
    }
    if (user_data != 0) {
        h |= H_USER_DATA;
        p = put_varint(p, user_data);
    }
    if (o->kind == OP_TRANSFER && t->timeout_ms != 0) {
        h |= H_TIMEOUT;
        p = put_varint(p, t->timeout_ms);
    }
    *start = h;
    assert(p - start <= CODEC_OP_MAX);
    out->len += (size_t)(p - start);
    d->prev.origin = o->origin;
    d->prev.seq = o->seq;
    d->prev.hlc = o->hlc;
    if (o->kind != OP_GRANT) {
        d->prev.code = code;
    }
    e->ops++;
    return ok;
}

void block_enc_rollback(block_enc *e, bytes *out, size_t len) {
    e->dict.accounts.count = e->saved_accounts;
    e->dict.origins.count = e->saved_origins;
    e->dict.prev = e->saved_prev;
    while (e->n_undo > 0) {
        e->n_undo--;
        bool ok =
            idmap_put(e->undo[e->n_undo].map, e->undo[e->n_undo].key, e->undo[e->n_undo].value);
        assert(ok && "replacing a value never allocates");
        (void)ok;
    }
    e->ops--;
    out->len = len;
}

bool block_enc_rewind(block_enc *e, bytes *out, const block_mark *m) {
    block_dict *d = &e->dict;
    out->len = m->len;
    e->ops = m->ops;
    d->accounts.count = m->accounts;
    d->origins.count = m->origins;
    d->prev = m->prev;
    /* The indexes again from the entries left, later entries of an id over earlier ones, as
     * the encoder left them. */
    idmap_clear(&e->account_index);
    idmap_clear(&e->origin_index);
    bool ok = true;
    for (uint32_t i = 0; i < d->accounts.count; i++) {
        ok = ok && idmap_put(&e->account_index, d->accounts.at[i].id, i);
    }
    for (uint32_t i = 0; i < d->origins.count; i++) {
        ok = ok && idmap_put(&e->origin_index, d->origins.at[i], i);
    }
    return ok;
}

void block_enc_end(block_enc *e, bytes *out) {
    if (e->ops == 0) {
        out->len = e->start;
        return;
    }
    uint8_t *h = out->at + e->start;
    size_t payload = block_enc_payload(e, out);
    assert(payload <= CODEC_BLOCK_PAYLOAD_MAX && e->ops <= CODEC_BLOCK_OPS_MAX);
    put_u32le(h, (uint32_t)payload);
    put_u32le(h + 4, e->ops);
    put_u64le(h + 8, XXH3_64bits_withSeed(h + CODEC_BLOCK_HEADER, payload,
                                          ((uint64_t)payload << 32) | e->ops));
}

/* --- decoding ------------------------------------------------------------------------------ */

void block_dec_init(block_dec *d) {
    dict_init(&d->dict);
    d->p = d->end = NULL;
    d->remaining = 0;
    d->clocks = false;
}

int block_dec_begin(block_dec *d, const uint8_t *buf, size_t len, size_t *block_len) {
    *block_len = 0;
    dict_reset(&d->dict);
    d->p = d->end = NULL;
    d->remaining = 0;
    if (len < CODEC_BLOCK_HEADER) {
        return TALLY_ECORRUPT;
    }
    uint32_t payload = get_u32le(buf), ops = get_u32le(buf + 4);
    if (payload == 0 || payload > CODEC_BLOCK_PAYLOAD_MAX || ops == 0 ||
        ops > CODEC_BLOCK_OPS_MAX || ops > payload || payload > len - CODEC_BLOCK_HEADER) {
        return TALLY_ECORRUPT;
    }
    const uint8_t *body = buf + CODEC_BLOCK_HEADER;
    if (!CHECKSUM_OK(get_u64le(buf + 8),
                     XXH3_64bits_withSeed(body, payload, ((uint64_t)payload << 32) | ops))) {
        return TALLY_ECORRUPT;
    }
    d->p = body;
    d->end = body + payload;
    d->remaining = ops;
    *block_len = CODEC_BLOCK_HEADER + (size_t)payload;
    return TALLY_OK;
}

void block_dec_free(block_dec *d) {
    dict_free(&d->dict);
}

bool block_dec_done(const block_dec *d) {
    return d->remaining == 0 && d->p == d->end;
}

static bool get_varint(block_dec *d, uint64_t *out) {
    if (d->p != d->end && *d->p < 0x80) { /* one byte: most fields of most ops */
        *out = *d->p++;
        return true;
    }
    uint64_t v = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
        if (d->p == d->end) {
            return false;
        }
        uint8_t b = *d->p++;
        if (shift == 63 && b > 1) {
            return false;
        }
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            if (b == 0 && shift > 0) {
                return false; /* overlong */
            }
            *out = v;
            return true;
        }
    }
    return false;
}

static bool get_varint_max(block_dec *d, uint64_t max, uint64_t *out) {
    return get_varint(d, out) && *out <= max;
}

static bool get_id(block_dec *d, tally_id *id) {
    if (d->end - d->p < 16) {
        return false;
    }
    id->hi = get_u64le(d->p);
    id->lo = get_u64le(d->p + 8);
    d->p += 16;
    return true;
}

/* Reads an account reference, a literal added to the dictionary or an entry already there, and
 * sets *entry to its dictionary index. The entry itself is read by the caller once the op's
 * other references are parsed (account_entry): its load then overlaps theirs. */
static int dec_account(block_dec *d, uint32_t *entry) {
    uint64_t k;
    if (!get_varint_max(d, d->dict.accounts.count, &k)) {
        return TALLY_ECORRUPT;
    }
    if (k > 0) {
        *entry = (uint32_t)(k - 1);
        return TALLY_OK;
    }
    codec_account a;
    uint64_t ledger;
    if (!get_id(d, &a.id) || d->p == d->end) {
        return TALLY_ECORRUPT;
    }
    a.flags = *d->p++;
    if (!get_varint_max(d, UINT32_MAX, &ledger) || ledger == 0 || id_is_zero(a.id) ||
        (a.flags & ~ACCOUNT_BOUND_FLAGS) != 0 || a.flags == ACCOUNT_BOUND_FLAGS) {
        return TALLY_ECORRUPT;
    }
    a.ledger = (uint32_t)ledger;
    a.hint = CODEC_NO_HINT;
    *entry = d->dict.accounts.count;
    return dict_add_account(&d->dict, a) ? TALLY_OK : TALLY_ENOMEM;
}

static const codec_account *account_entry(const block_dec *d, uint32_t entry) {
    return &d->dict.accounts.at[entry];
}

static int dec_origin(block_dec *d, uint64_t *out) {
    uint64_t k;
    if (!get_varint_max(d, d->dict.origins.count, &k)) {
        return TALLY_ECORRUPT;
    }
    if (k > 0) {
        *out = d->dict.origins.at[k - 1].lo;
        return TALLY_OK;
    }
    if (d->end - d->p < 8) {
        return TALLY_ECORRUPT;
    }
    *out = get_u64le(d->p);
    d->p += 8;
    if (*out == 0) {
        return TALLY_ECORRUPT;
    }
    return dict_add_origin(&d->dict, *out) ? TALLY_OK : TALLY_ENOMEM;
}

static int dec_transfer(block_dec *d, op *o, uint8_t h, uint32_t entries[2]) {
    tally_transfer *t = &o->u.transfer;
    int rc = TALLY_OK;
    if (o->kind == OP_VOID && (h & H_X)) {
        o->expired = 1;
    } else if (!get_id(d, &t->id)) {
        return TALLY_ECORRUPT;
    }
    if (o->kind != OP_TRANSFER && !get_id(d, &t->pending_id)) {
        return TALLY_ECORRUPT;
    }
    if ((rc = dec_account(d, &entries[0])) != TALLY_OK ||
        (rc = dec_account(d, &entries[1])) != TALLY_OK) {
        return rc;
    }
    if (!get_varint(d, &t->amount)) {
        return TALLY_ECORRUPT;
    }
#if defined(__GNUC__)
    __builtin_prefetch(account_entry(d, entries[0])); /* for block_dec_accounts */
    __builtin_prefetch(account_entry(d, entries[1]));
#endif
    t->flags = o->kind == OP_POST   ? TALLY_TRANSFER_POST_PENDING
               : o->kind == OP_VOID ? TALLY_TRANSFER_VOID_PENDING
               : (h & H_X)          ? TALLY_TRANSFER_PENDING
                                    : 0;
    return TALLY_OK;
}

int block_dec_accounts(const block_dec *d, op *o, const uint32_t entries[2]) {
    if (o->kind != OP_TRANSFER && o->kind != OP_POST && o->kind != OP_VOID) {
        return TALLY_OK;
    }
    const codec_account *debit = account_entry(d, entries[0]);
    const codec_account *credit = account_entry(d, entries[1]);
    if (debit->ledger != credit->ledger) {
        return TALLY_ECORRUPT; /* a transfer's ledger is its accounts', and they must agree */
    }
    tally_transfer *t = &o->u.transfer;
    t->debit_account_id = debit->id;
    t->credit_account_id = credit->id;
    t->ledger = debit->ledger;
    o->debit_flags = debit->flags;
    o->credit_flags = credit->flags;
    return TALLY_OK;
}

/* The rest of a SIGN record, after its header byte. */
/* A fork's record: the origin, then each side's first, last and 128 bytes. */
static int dec_fork(block_dec *d, op *o) {
    o->kind = OP_FORK;
    int rc = dec_origin(d, &o->origin);
    for (int i = 0; i < 2 && rc == TALLY_OK; i++) {
        if (!get_varint(d, &o->u.fork.first[i]) || !get_varint(d, &o->u.fork.last[i]) ||
            o->u.fork.first[i] == 0 || o->u.fork.last[i] < o->u.fork.first[i] ||
            d->end - d->p < CODEC_FORK_SIDE) {
            return TALLY_ECORRUPT;
        }
        o->u.fork.side[i] = d->p;
        d->p += CODEC_FORK_SIDE;
    }
    if (rc == TALLY_OK) {
        d->remaining--;
    }
    return rc;
}

/* A certificate's bytes (put_der): *der points into the block; NULL when the length is 0. */
static bool get_der(block_dec *d, const uint8_t **der, uint32_t *len) {
    uint64_t n;
    if (!get_varint(d, &n) || n > CODEC_ADMIT_DER_MAX || (uint64_t)(d->end - d->p) < n) {
        return false;
    }
    *der = n > 0 ? d->p : NULL;
    *len = (uint32_t)n;
    d->p += n;
    return true;
}

/* An admission certificate: a byte saying whose (0: the cluster's authority, with origin 0;
 * 1: an origin ref follows), a varint length (1 to CODEC_ADMIT_DER_MAX) and the DER. */
static int dec_admit(block_dec *d, op *o) {
    if (d->p == d->end || *d->p > 1) {
        return TALLY_ECORRUPT;
    }
    int rc = *d->p++ == 1 ? dec_origin(d, &o->origin) : TALLY_OK;
    if (rc != TALLY_OK) {
        return rc;
    }
    if (!get_der(d, &o->u.admit.der, &o->u.admit.len) || o->u.admit.len == 0) {
        return TALLY_ECORRUPT;
    }
    d->remaining--;
    return TALLY_OK;
}

/* A held origin's challenge answered: the origin, the answering replica's head's last seq,
 * 32 bytes of answer, the answering replica (an origin ref), its 64-byte signature, and its
 * certificate (a varint length, 0 to CODEC_ADMIT_DER_MAX, and the DER). */
static int dec_confirm(block_dec *d, op *o) {
    int rc = dec_origin(d, &o->origin);
    if (rc != TALLY_OK) {
        return rc;
    }
    if (!get_varint(d, &o->u.confirm.last) || o->u.confirm.last == 0 || d->end - d->p < 32) {
        return TALLY_ECORRUPT;
    }
    o->u.confirm.answer = d->p;
    d->p += 32;
    if ((rc = dec_origin(d, &o->u.confirm.by)) != TALLY_OK) {
        return rc;
    }
    if (d->end - d->p < 64) {
        return TALLY_ECORRUPT;
    }
    o->u.confirm.sig = d->p;
    d->p += 64;
    if (!get_der(d, &o->u.confirm.cert, &o->u.confirm.cert_len)) {
        return TALLY_ECORRUPT;
    }
    d->remaining--;
    return TALLY_OK;
}

/* A journal's branch note: the origin, the run's first and last, its prev and its hash. */
static int dec_branch(block_dec *d, op *o) {
    int rc = dec_origin(d, &o->origin);
    if (rc != TALLY_OK) {
        return rc;
    }
    if (!get_varint(d, &o->u.branch.first) || !get_varint(d, &o->u.branch.last) ||
        o->u.branch.first == 0 || o->u.branch.last < o->u.branch.first || d->end - d->p < 64) {
        return TALLY_ECORRUPT;
    }
    o->u.branch.prev = d->p;
    o->u.branch.hash = d->p + 32;
    d->p += 64;
    d->remaining--;
    return TALLY_OK;
}

static int dec_sign(block_dec *d, op *o) {
    int rc = dec_origin(d, &o->origin);
    if (rc != TALLY_OK) {
        return rc;
    }
    if (!get_varint(d, &o->u.sign.first) || !get_varint(d, &o->u.sign.last) ||
        o->u.sign.first == 0 || o->u.sign.last < o->u.sign.first || d->end - d->p < 96) {
        return TALLY_ECORRUPT;
    }
    o->u.sign.chain = d->p;
    o->u.sign.sig = d->p + 32;
    d->p += 96;
    d->remaining--;
    return TALLY_OK;
}

int block_dec_op(block_dec *d, op *o) {
    uint32_t entries[2];
    int rc = block_dec_next(d, o, entries);
    return rc == TALLY_OK ? block_dec_accounts(d, o, entries) : rc;
}

int block_dec_next(block_dec *d, op *o, uint32_t entries[2]) {
    op_clear(o);
    entries[0] = entries[1] = CODEC_NO_HINT;
    if (d->remaining == 0 || d->p == d->end) {
        return TALLY_ECORRUPT;
    }
    block_prev *prev = &d->dict.prev;
    uint8_t h = *d->p++;
    o->kind = h & H_KIND;
    if (h == OP_CLOCK && d->clocks) {
        d->remaining--;
        return get_varint(d, &o->u.clock.steady_ms) && get_varint(d, &o->u.clock.wall_ms)
                   ? TALLY_OK
                   : TALLY_ECORRUPT;
    }
    if (h == OP_SIGN) {
        return dec_sign(d, o);
    }
    if (h == OP_FORK) {
        return dec_fork(d, o);
    }
    if (h == H_CONFIRM) {
        o->kind = OP_CONFIRM;
        return dec_confirm(d, o);
    }
    if (h == H_ADMIT) {
        o->kind = OP_ADMIT;
        return dec_admit(d, o);
    }
    if (h == H_BRANCH && d->clocks) {
        o->kind = OP_BRANCH;
        return dec_branch(d, o);
    }
    if (o->kind < OP_OPEN || o->kind > OP_KIND_MAX) {
        return TALLY_ECORRUPT;
    }
    bool x_ok = o->kind == OP_VOID || o->kind == OP_TRANSFER;
    bool timeout_ok = o->kind == OP_TRANSFER && (h & H_X);
    if (((h & H_X) && !x_ok) || ((h & H_TIMEOUT) && !timeout_ok) ||
        ((h & (H_SAME_CODE | H_USER_DATA)) && o->kind == OP_GRANT)) {
        return TALLY_ECORRUPT;
    }
    int rc;
    uint64_t delta;
    if (h & H_DOT_NEXT) {
        if (prev->origin == 0) {
            return TALLY_ECORRUPT;
        }
        o->origin = prev->origin;
        o->seq = prev->seq + 1;
    } else {
        if ((rc = dec_origin(d, &o->origin)) != TALLY_OK) {
            return rc;
        }
        if (!get_varint(d, &o->seq) || o->seq == 0 ||
            (o->origin == prev->origin && o->seq == prev->seq + 1)) {
            return TALLY_ECORRUPT;
        }
    }
    if (!get_varint(d, &delta)) {
        return TALLY_ECORRUPT;
    }
    o->hlc = prev->hlc + unzigzag(delta);
    const codec_account *a;
    uint64_t v;
    switch (o->kind) {
    case OP_OPEN:
        if ((rc = dec_account(d, &entries[0])) != TALLY_OK) {
            return rc;
        }
        a = account_entry(d, entries[0]);
        o->u.account.id = a->id;
        o->u.account.ledger = a->ledger;
        o->u.account.flags = a->flags;
        break;
    case OP_GRANT:
        if ((rc = dec_account(d, &entries[0])) != TALLY_OK ||
            (rc = dec_origin(d, &o->u.grant.to)) != TALLY_OK) {
            return rc;
        }
        if (!get_varint(d, &o->u.grant.amount)) {
            return TALLY_ECORRUPT;
        }
        a = account_entry(d, entries[0]);
        o->u.grant.account = a->id;
        o->u.grant.ledger = a->ledger;
        o->u.grant.account_flags = a->flags;
        break;
    default:
        if ((rc = dec_transfer(d, o, h, entries)) != TALLY_OK) {
            return rc;
        }
        break;
    }
    uint16_t code = prev->code;
    if (o->kind != OP_GRANT && !(h & H_SAME_CODE)) {
        if (!get_varint_max(d, UINT16_MAX, &v) || v == prev->code) {
            return TALLY_ECORRUPT;
        }
        code = (uint16_t)v;
    }
    uint64_t user_data = 0;
    if ((h & H_USER_DATA) && (!get_varint(d, &user_data) || user_data == 0)) {
        return TALLY_ECORRUPT;
    }
    if (h & H_TIMEOUT) {
        if (!get_varint_max(d, UINT32_MAX, &v) || v == 0) {
            return TALLY_ECORRUPT;
        }
        o->u.transfer.timeout_ms = (uint32_t)v;
    }
    if (o->kind == OP_OPEN) {
        o->u.account.code = code;
        o->u.account.user_data = user_data;
    } else if (o->kind != OP_GRANT) {
        o->u.transfer.code = code;
        o->u.transfer.user_data = user_data;
    }
    prev->origin = o->origin;
    prev->seq = o->seq;
    prev->hlc = o->hlc;
    if (o->kind != OP_GRANT) {
        prev->code = code;
    }
    d->remaining--;
    return TALLY_OK;
}
