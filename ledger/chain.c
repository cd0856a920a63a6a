/*
 * ledger/chain.c — signed, hash-linked runs of each origin's ops (chain.h).
 *
 * An op's canonical bytes, which a run's digest hashes, are the fields the codec carries (so a
 * run relayed by any replica hashes the same): kind, the X bit (a pending TRANSFER, a VOID by
 * timeout), the HLC, then by kind
 *
 *     OPEN      id, bound flags (1 byte), ledger, code, user_data
 *     TRANSFER  id, debit id and bound flags, credit id and bound flags, ledger, amount, code,
 *               user_data, timeout_ms
 *     POST/VOID id, pending id, debit and credit as above, ledger, amount, code, user_data
 *     GRANT     account id, its bound flags, ledger, to, amount
 *
 * little-endian, at fixed sizes. The seq is not in them: op i of a run is seq first + i, and
 * the statement names first and the origin.
 */
#include "ledger/chain.h"

#include <string.h>

#include "crdt/bytes.h"
#include "ledger/journal.h"

static const char run_tag[16] = "tally run v1";
static const char genesis_tag[16] = "tally genesis v1";

/* Ops are hashed a buffer at a time: one digest update per op would cost more than the op. */
#define DIGEST_BUFFER 8192
#define CANONICAL_MAX 120

typedef struct digest {
    crypto_ctx *c;
    bool ok;
    size_t len;
    uint8_t buf[DIGEST_BUFFER];
} digest;

static uint8_t *put_id(uint8_t *p, tally_id id) {
    put_u64le(p, id.hi);
    put_u64le(p + 8, id.lo);
    return p + 16;
}

static uint8_t *put_u64(uint8_t *p, uint64_t v) {
    put_u64le(p, v);
    return p + 8;
}

static uint8_t *put_u32(uint8_t *p, uint32_t v) {
    put_u32le(p, v);
    return p + 4;
}

static uint8_t *put_u16(uint8_t *p, uint16_t v) {
    put_u16le(p, v);
    return p + 2;
}

static size_t canonical(const op *o, uint8_t *out) {
    uint8_t *p = out;
    const tally_transfer *t = &o->u.transfer;
    *p++ = o->kind;
    *p++ = (o->kind == OP_TRANSFER && (t->flags & TALLY_TRANSFER_PENDING)) ||
           (o->kind == OP_VOID && o->expired);
    p = put_u64(p, o->hlc);
    switch (o->kind) {
    case OP_OPEN:
        p = put_id(p, o->u.account.id);
        *p++ = (uint8_t)o->u.account.flags;
        p = put_u32(p, o->u.account.ledger);
        p = put_u16(p, o->u.account.code);
        p = put_u64(p, o->u.account.user_data);
        break;
    case OP_GRANT:
        p = put_id(p, o->u.grant.account);
        *p++ = o->u.grant.account_flags;
        p = put_u32(p, o->u.grant.ledger);
        p = put_u64(p, o->u.grant.to);
        p = put_u64(p, o->u.grant.amount);
        break;
    default:
        p = put_id(p, o->kind == OP_VOID && o->expired ? (tally_id){0, 0} : t->id);
        if (o->kind != OP_TRANSFER) {
            p = put_id(p, t->pending_id);
        }
        p = put_id(p, t->debit_account_id);
        *p++ = o->debit_flags;
        p = put_id(p, t->credit_account_id);
        *p++ = o->credit_flags;
        p = put_u32(p, t->ledger);
        p = put_u64(p, t->amount);
        p = put_u16(p, t->code);
        p = put_u64(p, t->user_data);
        if (o->kind == OP_TRANSFER) {
            p = put_u32(p, t->timeout_ms);
        }
        break;
    }
    return (size_t)(p - out);
}

static void digest_begin(digest *d, crypto_ctx *c) {
    d->c = c;
    d->len = 0;
    d->ok = crypto_sha256_begin(c);
}

static void digest_op(digest *d, const op *o) {
    if (d->len + CANONICAL_MAX > DIGEST_BUFFER) {
        d->ok = d->ok && crypto_sha256_add(d->c, d->buf, d->len);
        d->len = 0;
    }
    d->len += canonical(o, d->buf + d->len);
}

static bool digest_end(digest *d, uint8_t out[CRYPTO_HASH]) {
    return d->ok && crypto_sha256_add(d->c, d->buf, d->len) && crypto_sha256_end(d->c, out);
}

static void statement(uint8_t out[CHAIN_STATEMENT], uint64_t origin, uint64_t first, uint64_t last,
                      const uint8_t prev[CRYPTO_HASH], const uint8_t ops[CRYPTO_HASH]) {
    memcpy(out, run_tag, 16);
    put_u64le(out + 16, origin);
    put_u64le(out + 24, first);
    put_u64le(out + 32, last);
    memcpy(out + 40, prev, CRYPTO_HASH);
    memcpy(out + 72, ops, CRYPTO_HASH);
}

bool chain_digest_ops(crypto_ctx *c, const op *ops, size_t stride, uint32_t n,
                      uint8_t out[CRYPTO_HASH]) {
    digest d;
    digest_begin(&d, c);
    for (uint32_t i = 0; i < n; i++) {
        digest_op(&d, (const op *)(const void *)((const char *)ops + (size_t)i * stride));
    }
    return digest_end(&d, out);
}

bool chain_sign_run(crypto_ctx *c, uint64_t origin, uint64_t first, uint64_t last,
                    const uint8_t prev[CRYPTO_HASH], const uint8_t ops[CRYPTO_HASH],
                    uint8_t hash[CRYPTO_HASH], uint8_t sig[CRYPTO_SIG]) {
    uint8_t st[CHAIN_STATEMENT];
    statement(st, origin, first, last, prev, ops);
    return crypto_sha256(c, st, sizeof st, hash) && crypto_sign(c, st, sizeof st, sig);
}

bool chain_same_op(const op *a, const op *b) {
    uint8_t x[CANONICAL_MAX], y[CANONICAL_MAX];
    size_t n = canonical(a, x);
    return n == canonical(b, y) && memcmp(x, y, n) == 0;
}

uint32_t chain_run_at(const origin_rec *o, uint64_t seq) {
    uint32_t lo = 0, hi = o->runs.count;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (o->runs.at[mid].last < seq) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

/* What run k of o chains to. */
static const uint8_t *run_prev(const origin_rec *o, uint32_t k) {
    return k == 0 ? o->genesis : o->runs.at[k - 1].hash;
}

bool chain_genesis(crypto_ctx *c, uint64_t origin, const uint8_t key[CRYPTO_KEY],
                   uint8_t out[CRYPTO_HASH]) {
    uint8_t g[16 + 8 + CRYPTO_KEY];
    memcpy(g, genesis_tag, 16);
    put_u64le(g + 16, origin);
    memcpy(g + 24, key, CRYPTO_KEY);
    return crypto_sha256(c, g, sizeof g, out);
}

bool chain_set_key(tally_replica *r, uint32_t origin, const uint8_t key[CRYPTO_KEY]) {
    origin_rec *o = &r->origins.at[origin];
    if (!chain_genesis(&r->crypto, o->id, key, o->genesis)) {
        return false;
    }
    memcpy(o->pub, key, CRYPTO_KEY);
    o->keyed = true;
    return true;
}

int chain_own_key(tally_replica *r) {
    origin_rec *self = &r->origins.at[r->self];
    if (!self->keyed) {
        return chain_set_key(r, r->self, r->crypto.public_key) ? TALLY_OK : TALLY_ENOMEM;
    }
    return memcmp(self->pub, r->crypto.public_key, CRYPTO_KEY) == 0 ? TALLY_OK : TALLY_ECORRUPT;
}

/* The digest of ops first..last of origins[origin], all applied here. */
static bool digest_applied(tally_replica *r, const origin_rec *o, uint64_t first, uint64_t last,
                           uint8_t out[CRYPTO_HASH]) {
    digest d;
    digest_begin(&d, &r->crypto);
    for (uint64_t s = first; s <= last; s++) {
        op x;
        replica_op_at(r, o->position[s - 1], &x);
        digest_op(&d, &x);
    }
    return digest_end(&d, out);
}

void chain_sign_op(const tally_replica *r, uint32_t origin, uint32_t k, op *out) {
    const origin_rec *o = &r->origins.at[origin];
    op_clear(out);
    out->kind = OP_SIGN;
    out->origin = o->id;
    out->u.sign.first = chain_run_first(o, k);
    out->u.sign.last = o->runs.at[k].last;
    out->u.sign.chain = k == 0 ? o->pub : o->runs.at[k - 1].hash;
    out->u.sign.sig = o->runs.at[k].sig;
}

int chain_seal(tally_replica *r) {
    origin_rec *self = &r->origins.at[r->self];
    assert(self->keyed && "a replica has its key from the moment it has an id");
    for (;;) {
        uint64_t first = chain_run_first(self, self->runs.count);
        if (first > self->seq) {
            return TALLY_OK;
        }
        uint64_t last =
            self->seq - first < CHAIN_RUN_OPS_MAX ? self->seq : first + CHAIN_RUN_OPS_MAX - 1;
        if (!ARRAY_RESERVE(self->runs, 1)) {
            return TALLY_ENOMEM;
        }
        uint8_t ops[CRYPTO_HASH];
        run_rec run = {.last = (uint32_t)last};
        if (!digest_applied(r, self, first, last, ops) ||
            !chain_sign_run(&r->crypto, self->id, first, last, run_prev(self, self->runs.count),
                            ops, run.hash, run.sig)) {
            return TALLY_ENOMEM;
        }
        self->runs.at[ARRAY_PUSH(self->runs)] = run;
        op s;
        chain_sign_op(r, r->self, self->runs.count - 1, &s);
        int rc = replica_journal_add(r, &s);
        if (rc != TALLY_OK) {
            self->runs.count--;
            return rc;
        }
    }
}

/* Where run [first, last] of o would go among its runs here, given its statement's hash: a
 * verdict, or TALLY_ECORRUPT when it can go nowhere (it skips seqs, names a statement before it
 * that is not the one here, or follows a run whose ops are not all here). */
static int place(const origin_rec *o, uint64_t first, uint64_t last,
                 const uint8_t prev[CRYPTO_HASH], const uint8_t hash[CRYPTO_HASH],
                 chain_verdict *verdict) {
    uint32_t k = chain_run_at(o, first);
    if (k < o->runs.count) {
        const run_rec *mine = &o->runs.at[k];
        bool same = chain_run_first(o, k) == first && mine->last == last &&
                    memcmp(mine->hash, hash, CRYPTO_HASH) == 0;
        *verdict = same ? CHAIN_KNOWN : CHAIN_FORK;
        return TALLY_OK;
    }
    if (chain_run_first(o, k) != first || o->seq < first - 1 ||
        memcmp(run_prev(o, k), prev, CRYPTO_HASH) != 0) {
        return TALLY_ECORRUPT;
    }
    *verdict = CHAIN_NEW;
    return TALLY_OK;
}

int chain_accept(tally_replica *r, const op *s, const op *ops, size_t stride, uint32_t n,
                 chain_verdict *verdict) {
    uint64_t first = s->u.sign.first, last = s->u.sign.last;
    if (n == 0 || last - first + 1 != n || n > CHAIN_RUN_OPS_MAX) {
        return TALLY_ECORRUPT;
    }
    for (uint32_t i = 0; i < n; i++) {
        const op *o = (const op *)(const void *)((const char *)ops + (size_t)i * stride);
        if (o->origin != s->origin || o->seq != first + i) {
            return TALLY_ECORRUPT;
        }
    }
    uint8_t digest_of_ops[CRYPTO_HASH], st[CHAIN_STATEMENT], hash[CRYPTO_HASH];
    if (!chain_digest_ops(&r->crypto, ops, stride, n, digest_of_ops)) {
        return TALLY_ENOMEM;
    }
    uint32_t i = replica_origin_find(r, s->origin);
    const origin_rec *o = i != NONE ? &r->origins.at[i] : NULL;
    const uint8_t *key = o != NULL && o->keyed ? o->pub : s->u.sign.chain;
    uint8_t genesis[CRYPTO_HASH];
    const uint8_t *prev = s->u.sign.chain;
    if (first == 1) {
        /* the first run carries the origin's key: the one known here, if any */
        if (memcmp(key, s->u.sign.chain, CRYPTO_KEY) != 0) {
            return TALLY_ECORRUPT;
        }
        if (!chain_genesis(&r->crypto, s->origin, key, genesis)) {
            return TALLY_ENOMEM;
        }
        prev = genesis;
    } else if (o == NULL || !o->keyed) {
        return TALLY_ECORRUPT; /* an origin's first run comes before any other */
    }
    statement(st, s->origin, first, last, prev, digest_of_ops);
    if (!crypto_sha256(&r->crypto, st, sizeof st, hash)) {
        return TALLY_ENOMEM;
    }
    if (o != NULL && o->keyed) {
        int rc = place(o, first, last, prev, hash, verdict);
        if (rc != TALLY_OK || *verdict == CHAIN_KNOWN) {
            return rc; /* a known run verified when it came first */
        }
    } else {
        *verdict = CHAIN_NEW;
    }
    if (!crypto_verify(key, st, sizeof st, s->u.sign.sig)) {
        return TALLY_ECORRUPT;
    }
    if (*verdict == CHAIN_FORK) {
        return TALLY_OK;
    }
    /* Verified and new: only now may the origin take a place in the table. */
    if (i == NONE && (i = replica_origin_get(r, s->origin)) == NONE) {
        return r->origins.count >= REPLICA_ORIGINS_MAX ? TALLY_ETOOBIG : TALLY_ENOMEM;
    }
    origin_rec *mut = &r->origins.at[i];
    if (!ARRAY_RESERVE(mut->runs, 1)) {
        return TALLY_ENOMEM;
    }
    if (!mut->keyed && !chain_set_key(r, i, key)) {
        return TALLY_ENOMEM;
    }
    run_rec run = {.last = (uint32_t)last};
    memcpy(run.hash, hash, CRYPTO_HASH);
    memcpy(run.sig, s->u.sign.sig, CRYPTO_SIG);
    mut->runs.at[ARRAY_PUSH(mut->runs)] = run;
    return TALLY_OK;
}

int chain_replay(tally_replica *r, const op *s) {
    uint32_t i = replica_origin_find(r, s->origin);
    uint64_t first = s->u.sign.first, last = s->u.sign.last;
    if (i == NONE || last > r->origins.at[i].seq || last > UINT32_MAX) {
        return TALLY_ECORRUPT;
    }
    origin_rec *o = &r->origins.at[i];
    if (first == 1 && o->keyed && memcmp(o->pub, s->u.sign.chain, CRYPTO_KEY) != 0) {
        return TALLY_ECORRUPT;
    }
    if (first == 1 && !o->keyed &&
        (!crypto_key_valid(s->u.sign.chain) || !chain_set_key(r, i, s->u.sign.chain))) {
        return crypto_key_valid(s->u.sign.chain) ? TALLY_ENOMEM : TALLY_ECORRUPT;
    }
    if (!o->keyed) {
        return TALLY_ECORRUPT;
    }
    uint8_t ops[CRYPTO_HASH], st[CHAIN_STATEMENT];
    run_rec run = {.last = (uint32_t)last};
    if (!ARRAY_RESERVE(o->runs, 1) || !digest_applied(r, o, first, last, ops)) {
        return TALLY_ENOMEM;
    }
    const uint8_t *prev = first == 1 ? o->genesis : s->u.sign.chain;
    statement(st, o->id, first, last, prev, ops);
    if (!crypto_sha256(&r->crypto, st, sizeof st, run.hash)) {
        return TALLY_ENOMEM;
    }
    chain_verdict verdict;
    int rc = place(o, first, last, prev, run.hash, &verdict);
    if (rc != TALLY_OK || verdict == CHAIN_FORK) {
        return TALLY_ECORRUPT;
    }
    if (verdict == CHAIN_NEW) {
        memcpy(run.sig, s->u.sign.sig, CRYPTO_SIG);
        o->runs.at[ARRAY_PUSH(o->runs)] = run;
    }
    return TALLY_OK;
}
