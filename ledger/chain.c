/*
 * ledger/chain.c — signed, hash-linked runs of each origin's ops (chain.h).
 *
 * An op's canonical bytes, which a run's digest hashes, are the fields the codec carries (so a
 * run relayed by any replica hashes the same), ids at 16 bytes and numbers as LEB128 varints:
 * kind, the X bit (a pending TRANSFER, a VOID by timeout), the HLC as the zigzag difference from
 * the run's previous op's (from 0 for its first), then by kind
 *
 *     OPEN      id, bound flags (1 byte), ledger, code, user_data
 *     TRANSFER  id, debit id and bound flags, credit id and bound flags, ledger, amount, code,
 *               user_data, timeout_ms
 *     POST/VOID id (zeros for a VOID by timeout), pending id, debit and credit as above, ledger,
 *               amount, code, user_data
 *     GRANT     account id, its bound flags, ledger, to (8 bytes), amount
 *
 * The seq is not in them: op i of a run is seq first + i, and the statement names first and the
 * origin. Varints keep a transfer near 60 bytes, one SHA-256 block: hashing is most of what
 * signing costs per op.
 */
#include "ledger/chain.h"

#include <stdlib.h>
#include <string.h>

#include "crdt/bytes.h"
#include "ledger/branch.h"
#include "ledger/codec.h"
#include "ledger/journal.h"

static const char run_tag[16] = "tally run v1";
static const char genesis_tag[16] = "tally genesis v1";

/* The most an op's canonical bytes take. */
#define CANONICAL_MAX 128

static uint8_t *put_id(uint8_t *p, tally_id id) {
    put_u64le(p, id.hi);
    put_u64le(p + 8, id.lo);
    return p + 16;
}

static uint8_t *put_varint(uint8_t *p, uint64_t v) {
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

static size_t canonical(const op *o, uint64_t prev_hlc, uint8_t *out) {
    uint8_t *p = out;
    const tally_transfer *t = &o->u.transfer;
    int64_t step = (int64_t)(o->hlc - prev_hlc);
    *p++ = o->kind;
    *p++ = (o->kind == OP_TRANSFER && (t->flags & TALLY_TRANSFER_PENDING)) ||
           (o->kind == OP_VOID && o->expired);
    p = put_varint(p, ((uint64_t)step << 1) ^ (uint64_t)(step >> 63));
    switch (o->kind) {
    case OP_OPEN:
        p = put_id(p, o->u.account.id);
        *p++ = (uint8_t)o->u.account.flags;
        p = put_varint(p, o->u.account.ledger);
        p = put_varint(p, o->u.account.code);
        p = put_varint(p, o->u.account.user_data);
        break;
    case OP_GRANT:
        p = put_id(p, o->u.grant.account);
        *p++ = o->u.grant.account_flags;
        p = put_varint(p, o->u.grant.ledger);
        put_u64le(p, o->u.grant.to);
        p = put_varint(p + 8, o->u.grant.amount);
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
        p = put_varint(p, t->ledger);
        p = put_varint(p, t->amount);
        p = put_varint(p, t->code);
        p = put_varint(p, t->user_data);
        if (o->kind == OP_TRANSFER) {
            p = put_varint(p, t->timeout_ms);
        }
        break;
    }
    assert(p - out <= CANONICAL_MAX);
    return (size_t)(p - out);
}

void chain_digest_begin(chain_digest *d, crypto_sha *sha) {
    d->sha = sha;
    d->len = 0;
    d->ops = 0;
    d->prev_hlc = 0;
    d->ok = crypto_sha_begin(sha);
}

void chain_digest_op(chain_digest *d, const op *o) {
    if (d->len + CANONICAL_MAX > sizeof d->buf) {
        d->ok = d->ok && crypto_sha_add(d->sha, d->buf, d->len);
        d->len = 0;
    }
    d->len += canonical(o, d->prev_hlc, d->buf + d->len);
    d->prev_hlc = o->hlc;
    d->ops++;
}

bool chain_digest_end(chain_digest *d, uint8_t out[CRYPTO_HASH]) {
    return d->ok && crypto_sha_add(d->sha, d->buf, d->len) && crypto_sha_end(d->sha, out);
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
    chain_digest d;
    chain_digest_begin(&d, &c->sha);
    for (uint32_t i = 0; i < n; i++) {
        chain_digest_op(&d, (const op *)(const void *)((const char *)ops + (size_t)i * stride));
    }
    return chain_digest_end(&d, out);
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
    size_t n = canonical(a, 0, x);
    return a->hlc == b->hlc && n == canonical(b, 0, y) && memcmp(x, y, n) == 0;
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

/* The replica's hashing and signing contexts: scratch state, which tally_delta (whose replica
 * is const, the API being fixed) uses as any other call does. */
static crypto_ctx *scratch(const tally_replica *r) {
    return (crypto_ctx *)&r->crypto;
}

/* The digest of ops first..last of o, all applied here. */
static bool digest_applied(const tally_replica *r, const origin_rec *o, uint64_t first,
                           uint64_t last, uint8_t out[CRYPTO_HASH]) {
    chain_digest d;
    chain_digest_begin(&d, &scratch(r)->sha);
    for (uint64_t s = first; s <= last; s++) {
        op x;
        replica_op_at(r, origin_position(o, s), &x);
        chain_digest_op(&d, &x);
    }
    return chain_digest_end(&d, out);
}

void chain_sign_op(const tally_replica *r, uint32_t origin, uint32_t k, op *out) {
    const origin_rec *o = &r->origins.at[origin];
    op_clear(out);
    out->kind = OP_SIGN;
    out->origin = o->id;
    out->origin = r->origins.at[o->of].id; /* a branch's runs are its replica's */
    out->u.sign.first = chain_run_first(o, k);
    out->u.sign.last = o->runs.at[k].last;
    out->u.sign.chain = k > 0 ? o->runs.at[k - 1].hash : o->base == 0 ? o->pub : o->genesis;
    out->u.sign.sig = o->runs.at[k].sig;
}

/* The run of its own a replica is making: the digests of its full runs, and of the one still
 * open, of ops from seq `from` on, in the order they were made. */
typedef struct own_digest {
    uint8_t at[CRYPTO_HASH];
} own_digest;
struct chain_own {
    crypto_sha sha;
    chain_digest run;
    uint64_t from;
    bool broken; /* something failed: the next seal reads the ops back instead */
    ARRAY(own_digest) done;
};

void chain_own_free(tally_replica *r) {
    if (r->own != NULL) {
        crypto_sha_free(&r->own->sha);
        ARRAY_FREE(r->own->done);
        free(r->own);
        r->own = NULL;
    }
}

void chain_own_op(tally_replica *r, const op *o) {
    struct chain_own *own = r->own;
    if (own == NULL) {
        own = calloc(1, sizeof *own);
        if (own == NULL || !crypto_sha_init(&r->crypto, &own->sha)) {
            free(own);
            return; /* the seal reads the ops back */
        }
        r->own = own;
    }
    if (own->broken) {
        return;
    }
    if (own->run.ops == 0 && own->done.count == 0) {
        own->from = o->seq;
    }
    if (own->run.ops == 0) {
        chain_digest_begin(&own->run, &own->sha);
    }
    chain_digest_op(&own->run, o);
    if (own->run.ops == CHAIN_RUN_OPS_MAX) {
        own->broken = !ARRAY_RESERVE(own->done, 1) ||
                      !chain_digest_end(&own->run, own->done.at[own->done.count].at);
        own->done.count += !own->broken;
        own->run.ops = 0;
    }
}

/* The digest of run [first, last] of this replica's, the k-th of this seal: from what
 * chain_own_op hashed when it is all there, else read back from the records. */
static bool own_digest_of(tally_replica *r, uint32_t k, uint64_t first, uint64_t last,
                          uint8_t out[CRYPTO_HASH]) {
    struct chain_own *own = r->own;
    const origin_rec *self = &r->origins.at[r->self];
    uint64_t made = own == NULL ? 0 : (uint64_t)own->done.count * CHAIN_RUN_OPS_MAX + own->run.ops;
    bool hashed = own != NULL && !own->broken &&
                  own->from + (uint64_t)k * CHAIN_RUN_OPS_MAX == first &&
                  own->from + made - 1 == self->seq;
    bool ok = !hashed               ? digest_applied(r, self, first, last, out)
              : k < own->done.count ? (memcpy(out, own->done.at[k].at, CRYPTO_HASH), true)
                                    : chain_digest_end(&own->run, out);
#ifdef TALLY_CHECK_WRITES
    uint8_t again[CRYPTO_HASH];
    assert(!ok || !hashed ||
           (digest_applied(r, self, first, last, again) && memcmp(again, out, CRYPTO_HASH) == 0));
#endif
    return ok;
}

int chain_seal(tally_replica *r) {
    origin_rec *self = &r->origins.at[r->self];
    assert(self->keyed && "a replica has its key from the moment it has an id");
    int rc = TALLY_OK;
    if (r->learned->own_behind > self->seq || r->hold != 0) {
        /* its ops past its runs are part of a run of its own it has only some of, or, held,
         * may be (a frame that held the run's record was dropped): signing them again would
         * fork its history. It makes none while behind or held; lifting the hold seals them. */
        return TALLY_OK;
    }
    for (uint32_t k = 0; rc == TALLY_OK; k++) {
        uint64_t first = chain_run_first(self, self->runs.count);
        if (first > self->seq) {
            break;
        }
        uint64_t last =
            self->seq - first < CHAIN_RUN_OPS_MAX ? self->seq : first + CHAIN_RUN_OPS_MAX - 1;
        uint8_t ops[CRYPTO_HASH];
        run_rec run = {.last = (uint32_t)last};
        if (!ARRAY_RESERVE(self->runs, 1) || !own_digest_of(r, k, first, last, ops) ||
            !chain_sign_run(&r->crypto, self->id, first, last, run_prev(self, self->runs.count),
                            ops, run.hash, run.sig)) {
            rc = TALLY_ENOMEM;
            break;
        }
        self->runs.at[ARRAY_PUSH(self->runs)] = run;
        op s;
        chain_sign_op(r, r->self, self->runs.count - 1, &s);
        rc = replica_journal_add(r, &s);
        if (rc != TALLY_OK) {
            self->runs.count--;
        }
    }
    if (r->own != NULL) { /* what is left unsigned is read back next time */
        r->own->done.count = 0;
        r->own->run.ops = 0;
        r->own->broken = false;
    }
    return rc;
}

/* Where run [first, last] of o would go among o's own runs, given its statement's hash: a
 * verdict, or TALLY_ECORRUPT when it can go nowhere (it skips seqs, names a statement before it
 * that is not the one here, or follows a run whose ops are not all here). */
static int place_in(const origin_rec *o, uint64_t first, uint64_t last,
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


/* Where a run of origins[real] goes among its histories here (branch.h): the run it follows
 * (run k of origins[label]; k NONE for a first run, which follows real's genesis), and what
 * follows that run here already. */
typedef struct chain_spot {
    uint32_t label, k;
    uint32_t into;           /* KNOWN: where the run is; NEW: the history it continues */
    uint32_t other, other_k; /* FORK: a run here that follows the same run, and differs */
} chain_spot;

static int place(const tally_replica *r, uint32_t real, uint64_t first, uint64_t last,
                 const uint8_t prev[CRYPTO_HASH], const uint8_t hash[CRYPTO_HASH],
                 chain_verdict *verdict, chain_spot *spot) {
    spot->label = spot->k = spot->into = spot->other = spot->other_k = NONE;
    if (first == 1) {
        spot->label = real; /* the caller checked that prev is its genesis */
    } else {
        (void)branch_find_run(r, real, first - 1, prev, &spot->label, &spot->k);
    }
    if (spot->label == NONE || r->origins.at[spot->label].seq < first - 1) {
        return TALLY_ECORRUPT; /* it follows no run here, or one whose ops are not all here */
    }
    /* what follows that run here: the rest of its history, and the branches that leave it */
    uint32_t next = spot->k == NONE ? 0 : spot->k + 1;
    for (uint32_t i = branch_next(r, real, NONE); i != NONE; i = branch_next(r, real, i)) {
        const origin_rec *o = &r->origins.at[i];
        uint32_t k = i == spot->label ? next : 0;
        if (i != spot->label && (o->parent != spot->label || o->base != first - 1)) {
            continue;
        }
        if (k >= o->runs.count) {
            continue;
        }
        if (chain_run_first(o, k) == first && o->runs.at[k].last == last &&
            memcmp(o->runs.at[k].hash, hash, CRYPTO_HASH) == 0) {
            *verdict = CHAIN_KNOWN;
            spot->into = i;
            return TALLY_OK;
        }
        if (spot->other == NONE) {
            spot->other = i;
            spot->other_k = k;
        }
    }
    *verdict = spot->other == NONE ? CHAIN_NEW : CHAIN_FORK;
    spot->into = spot->other == NONE ? spot->label : NONE;
    return TALLY_OK;
}

/* --- admission ------------------------------------------------------------------------------ */

/* Keeps the authority's certificate: the first one (journalled when `record`), or the same
 * again. Another is TALLY_ECORRUPT: a replica belongs to one cluster. */
static int admit_authority(tally_replica *r, const op *a, bool record) {
    if (r->admission != NULL) {
        return r->admission->len == a->u.admit.len &&
                       memcmp(r->admission->der, a->u.admit.der, a->u.admit.len) == 0
                   ? TALLY_OK
                   : TALLY_ECORRUPT;
    }
    cert_authority who;
    if (!cert_authority_read(a->u.admit.der, a->u.admit.len, &who)) {
        return TALLY_ECORRUPT;
    }
    struct replica_admission *m = calloc(1, sizeof *m);
    int rc = m != NULL && (m->der = malloc(a->u.admit.len)) != NULL ? TALLY_OK : TALLY_ENOMEM;
    if (rc == TALLY_OK && record) {
        rc = replica_journal_add(r, a);
    }
    if (rc != TALLY_OK) {
        free(m != NULL ? m->der : NULL);
        free(m);
        return rc;
    }
    m->authority = who;
    memcpy(m->der, a->u.admit.der, a->u.admit.len);
    m->len = a->u.admit.len;
    r->admission = m;
    return TALLY_OK;
}

/* Whether an origin may bring a first run signed with key: always without an authority; with
 * one, only if its certificate is here, names that key and lets it write. */
static bool admitted(const tally_replica *r, uint32_t origin, const uint8_t key[CRYPTO_KEY]) {
    if (r->admission == NULL) {
        return true;
    }
    const origin_rec *o = origin != NONE ? &r->origins.at[origin] : NULL;
    return o != NULL && o->cert != NULL && (o->admitted_as.permits & CERT_PERMIT_WRITE) != 0 &&
           memcmp(o->admitted_as.key, key, CRYPTO_KEY) == 0;
}

int chain_admit_accept(tally_replica *r, const op *a, chain_admit_from from) {
    /* a peer's is journalled with the first run it admits (chain_accept), not before: what
     * is journalled is then bounded by the runs taken, whatever a peer sends */
    bool record = from == CHAIN_ADMIT_LOCAL;
    if (a->origin == 0) {
        return from == CHAIN_ADMIT_PEER ? TALLY_ECORRUPT : admit_authority(r, a, record);
    }
    if (r->admission == NULL) {
        return TALLY_OK; /* keys are first come here: a certificate changes nothing */
    }
    uint32_t i = replica_origin_find(r, a->origin);
    bool own = i != NONE && i == r->self;
    const origin_rec *had = i != NONE ? &r->origins.at[i] : NULL;
    if (from == CHAIN_ADMIT_PEER && (own || (had != NULL && had->keyed))) {
        /* A replica's own certificate is its operator's to give (a peer's may be older: a
         * demotion undone, a renewal lost), and once an origin's first run is here its key is
         * settled: nothing a peer sends about either changes anything, nor costs a check. */
        return TALLY_OK;
    }
    if (had != NULL && had->cert_len == a->u.admit.len &&
        memcmp(had->cert, a->u.admit.der, a->u.admit.len) == 0) {
        return TALLY_OK;
    }
    cert_replica c;
    if (!cert_replica_read(a->u.admit.der, a->u.admit.len, &r->admission->authority, &c) ||
        c.replica != a->origin) {
        return TALLY_ECORRUPT;
    }
    if (had != NULL && had->keyed && memcmp(had->pub, c.key, CRYPTO_KEY) != 0) {
        return TALLY_ECORRUPT; /* its runs here were signed with another key */
    }
    if (i == NONE && (i = replica_origin_get(r, a->origin)) == NONE) {
        return r->origins.count >= REPLICA_ORIGINS_MAX ? TALLY_ETOOBIG : TALLY_ENOMEM;
    }
    uint8_t *der = malloc(a->u.admit.len);
    if (der == NULL) {
        return TALLY_ENOMEM;
    }
    memcpy(der, a->u.admit.der, a->u.admit.len);
    op rec = *a;
    rec.u.admit.der = der;
    int rc = record ? replica_journal_add(r, &rec) : TALLY_OK;
    if (rc != TALLY_OK) {
        free(der);
        return rc;
    }
    /* the newest replaces the one before: the one in front of an origin's first run is the
     * one that run is checked against (admitted), whatever came before it */
    origin_rec *o = &r->origins.at[i];
    free(o->cert);
    o->cert = der;
    o->cert_len = a->u.admit.len;
    o->admitted_as = c;
    return TALLY_OK;
}

int chain_admitted_all(const tally_replica *r) {
    for (uint32_t i = 0; r->admission != NULL && i < r->origins.count; i++) {
        const origin_rec *o = &r->origins.at[i];
        /* a branch is under its replica's certificate, with its key (ledger/branch.h) */
        if (o->of != r->self && (o->keyed || o->seq > o->base) && !admitted(r, o->of, o->pub)) {
            return TALLY_ECORRUPT;
        }
    }
    return TALLY_OK;
}

void chain_admit_op(const tally_replica *r, uint32_t origin, op *out) {
    op_clear(out);
    out->kind = OP_ADMIT;
    if (origin == NONE) {
        out->u.admit.der = r->admission->der;
        out->u.admit.len = r->admission->len;
        return;
    }
    out->origin = r->origins.at[origin].id;
    out->u.admit.der = r->origins.at[origin].cert;
    out->u.admit.len = r->origins.at[origin].cert_len;
}

/* --- forks ---------------------------------------------------------------------------------- */

_Static_assert(FORK_SIDE == CODEC_FORK_SIDE, "a fork's side is stored as its record carries it");

static void side_statement(uint8_t st[CHAIN_STATEMENT], uint64_t origin, const fork_side *s) {
    statement(st, origin, s->first, s->last, s->rest, s->rest + CRYPTO_HASH);
}

static fork_side side_of(uint64_t first, uint64_t last, const uint8_t prev[CRYPTO_HASH],
                         const uint8_t digest[CRYPTO_HASH], const uint8_t sig[CRYPTO_SIG]) {
    fork_side s = {.first = first, .last = last};
    memcpy(s.rest, prev, CRYPTO_HASH);
    memcpy(s.rest + CRYPTO_HASH, digest, CRYPTO_HASH);
    memcpy(s.rest + 2 * CRYPTO_HASH, sig, CRYPTO_SIG);
    return s;
}

void chain_fork_op(const tally_replica *r, const fork_rec *f, op *out) {
    op_clear(out);
    out->kind = OP_FORK;
    out->origin = r->origins.at[f->origin].id;
    for (int i = 0; i < 2; i++) {
        out->u.fork.first[i] = f->side[i].first;
        out->u.fork.last[i] = f->side[i].last;
        out->u.fork.side[i] = f->side[i].rest;
    }
}

/* Keeps the proof that origins[origin] signed the statements of a and b (both verified, their
 * runs overlapping, their hashes different), the first one for that origin only, and adds its
 * record to the journal. */
static int fork_keep(tally_replica *r, uint32_t origin, const fork_side *a, const fork_side *b) {
    origin_rec *o = &r->origins.at[origin];
    if (o->forked) {
        return TALLY_OK;
    }
    if (!ARRAY_RESERVE(r->forks, 1)) {
        return TALLY_ENOMEM;
    }
    uint8_t sa[CHAIN_STATEMENT], sb[CHAIN_STATEMENT];
    side_statement(sa, o->id, a);
    side_statement(sb, o->id, b);
    bool swap = memcmp(sa, sb, CHAIN_STATEMENT) > 0;
    fork_rec *f = &r->forks.at[r->forks.count];
    f->origin = origin;
    f->side[0] = swap ? *b : *a;
    f->side[1] = swap ? *a : *b;
    op rec;
    chain_fork_op(r, f, &rec);
    int rc = replica_journal_add(r, &rec);
    if (rc == TALLY_OK) {
        (void)ARRAY_PUSH(r->forks);
        o->forked = true;
    }
    return rc;
}

/* A run a peer sent, verified, overlaps a different run of origins[origin]'s here, run k of
 * origins[holder] (origin itself or one of its branches): the two statements are the proof.
 * It is kept unless the run here stopped part way (its ops are not all here to rebuild its
 * statement from), which leaves the fork unproven here. */
static int fork_found(tally_replica *r, uint32_t origin, uint32_t holder, uint32_t k,
                      uint64_t first, uint64_t last, const uint8_t prev[CRYPTO_HASH],
                      const uint8_t digest[CRYPTO_HASH], const uint8_t sig[CRYPTO_SIG]) {
    const origin_rec *o = &r->origins.at[holder];
    const run_rec *mine = &o->runs.at[k];
    uint8_t ops[CRYPTO_HASH];
    if (r->origins.at[origin].forked || mine->last > o->seq) {
        return TALLY_OK;
    }
    if (!digest_applied(r, o, chain_run_first(o, k), mine->last, ops)) {
        return TALLY_ENOMEM;
    }
    fork_side here = side_of(chain_run_first(o, k), mine->last, run_prev(o, k), ops, mine->sig);
    fork_side theirs = side_of(first, last, prev, digest, sig);
    return fork_keep(r, origin, &here, &theirs);
}

/* A run of origins[origin]'s here, in any of its histories, that overlaps first..last: *holder
 * and *k; false when there is none. */
static bool overlapping(const tally_replica *r, uint32_t origin, uint64_t first, uint64_t last,
                        uint32_t *holder, uint32_t *k) {
    for (uint32_t i = branch_next(r, origin, NONE); i != NONE; i = branch_next(r, origin, i)) {
        const origin_rec *o = &r->origins.at[i];
        uint32_t at = chain_run_at(o, first);
        if (at < o->runs.count && chain_run_first(o, at) <= last) {
            *holder = i;
            *k = at;
            return true;
        }
    }
    return false;
}

int chain_fork_accept(tally_replica *r, const op *f) {
    uint32_t i = replica_origin_find(r, f->origin);
    if (i == NONE || !r->origins.at[i].keyed) {
        return TALLY_OK; /* it cannot be checked here yet: it comes again after the origin's key */
    }
    if (r->origins.at[i].forked) {
        return TALLY_OK;
    }
    fork_side sides[2];
    uint8_t st[2][CHAIN_STATEMENT], hash[2][CRYPTO_HASH];
    for (int k = 0; k < 2; k++) {
        sides[k].first = f->u.fork.first[k];
        sides[k].last = f->u.fork.last[k];
        memcpy(sides[k].rest, f->u.fork.side[k], FORK_SIDE);
        if (sides[k].last - sides[k].first >= CHAIN_RUN_OPS_MAX) {
            return TALLY_ECORRUPT;
        }
        side_statement(st[k], f->origin, &sides[k]);
        if (!crypto_sha256(&r->crypto, st[k], CHAIN_STATEMENT, hash[k])) {
            return TALLY_ENOMEM;
        }
    }
    bool overlap = sides[0].first <= sides[1].last && sides[1].first <= sides[0].last;
    if (!overlap || memcmp(hash[0], hash[1], CRYPTO_HASH) == 0) {
        return TALLY_ECORRUPT; /* an honest origin may sign both */
    }
    for (int k = 0; k < 2; k++) {
        if (!crypto_verify(r->origins.at[i].pub, st[k], CHAIN_STATEMENT,
                           sides[k].rest + 2 * CRYPTO_HASH)) {
            return TALLY_ECORRUPT;
        }
    }
    return fork_keep(r, i, &sides[0], &sides[1]);
}

int tally_forks(const tally_replica *r, size_t first, tally_fork *out, size_t cap, size_t *count) {
    if (count != NULL) {
        *count = 0;
    }
    if (r == NULL || count == NULL || (out == NULL && cap > 0)) {
        return TALLY_EINVAL;
    }
    for (size_t k = first; k < r->forks.count && k - first < cap; k++) {
        const fork_rec *f = &r->forks.at[k];
        tally_fork *x = &out[k - first];
        memset(x, 0, sizeof *x);
        x->replica_id = r->origins.at[f->origin].id;
        memcpy(x->public_key, r->origins.at[f->origin].pub, sizeof x->public_key);
        for (int side = 0; side < 2; side++) {
            x->first[side] = f->side[side].first;
            x->last[side] = f->side[side].last;
            side_statement(x->statement[side], x->replica_id, &f->side[side]);
            memcpy(x->signature[side], f->side[side].rest + 2 * CRYPTO_HASH, CRYPTO_SIG);
        }
    }
    *count = r->forks.count;
    return TALLY_OK;
}

/* --- runs from peers ------------------------------------------------------------------------ */

int chain_accept(tally_replica *r, const op *s, const uint8_t digest_of_ops[CRYPTO_HASH],
                 chain_verdict *verdict, uint32_t *into) {
    uint64_t first = s->u.sign.first, last = s->u.sign.last;
    *into = NONE;
    if (last - first >= CHAIN_RUN_OPS_MAX) {
        return TALLY_ECORRUPT;
    }
    uint8_t st[CHAIN_STATEMENT], hash[CRYPTO_HASH];
    uint32_t i = replica_origin_find(r, s->origin);
    const origin_rec *o = i != NONE ? &r->origins.at[i] : NULL;
    if (o != NULL && origin_is_branch(o)) {
        return TALLY_ECORRUPT; /* a branch's id is this replica's name for it, never sent */
    }
    const uint8_t *key = o != NULL && o->keyed ? o->pub : s->u.sign.chain;
    uint8_t genesis[CRYPTO_HASH];
    const uint8_t *prev = s->u.sign.chain;
    if (first == 1) {
        /* the first run carries the origin's key: the one known here, if any, and the one the
         * authority admitted, if there is one */
        if (memcmp(key, s->u.sign.chain, CRYPTO_KEY) != 0) {
            return TALLY_ECORRUPT;
        }
        if (!admitted(r, i, key)) {
            return TALLY_NOT_ADMITTED;
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
    chain_spot spot = {.into = i};
    *verdict = CHAIN_NEW;
    if (o != NULL && o->keyed) {
        int rc = place(r, i, first, last, prev, hash, verdict, &spot);
        if (rc == TALLY_ECORRUPT && spot.label == NONE) {
            /* it follows no run here: a proof all the same, if it overlaps one */
            uint32_t holder, k;
            if (overlapping(r, i, first, last, &holder, &k) &&
                crypto_verify(key, st, sizeof st, s->u.sign.sig) &&
                (rc = fork_found(r, i, holder, k, first, last, prev, digest_of_ops,
                                 s->u.sign.sig)) == TALLY_OK) {
                rc = TALLY_ECORRUPT;
            }
        }
        if (rc != TALLY_OK || *verdict == CHAIN_KNOWN) {
            *into = spot.into;
            return rc; /* a known run verified when it came first */
        }
    }
    if (!crypto_verify(key, st, sizeof st, s->u.sign.sig)) {
        return TALLY_ECORRUPT;
    }
    if (*verdict == CHAIN_FORK) {
        /* a second history of the origin: proven, and kept as a branch (branch.h) */
        int rc = fork_found(r, i, spot.other, spot.other_k, first, last, prev, digest_of_ops,
                            s->u.sign.sig);
        uint64_t id = rc == TALLY_OK ? branch_id(&r->crypto, s->origin, hash) : 0;
        if (rc == TALLY_OK && id == 0) {
            rc = TALLY_ENOMEM;
        }
        if (rc == TALLY_OK &&
            (rc = branch_open(r, spot.label, spot.k, id, &spot.into)) == TALLY_OK &&
            !ARRAY_RESERVE(r->origins.at[spot.into].runs, 1)) {
            branch_close(r, spot.into);
            rc = TALLY_ENOMEM;
        }
        if (rc != TALLY_OK) {
            return rc;
        }
        *verdict = CHAIN_BRANCH;
    }
    /* Verified and new: only now may the origin take a place in the table. */
    if (i == NONE && (i = spot.into = replica_origin_get(r, s->origin)) == NONE) {
        return r->origins.count >= REPLICA_ORIGINS_MAX ? TALLY_ETOOBIG : TALLY_ENOMEM;
    }
    origin_rec *mut = &r->origins.at[spot.into];
    if (!ARRAY_RESERVE(mut->runs, 1)) {
        return TALLY_ENOMEM;
    }
    if (!mut->keyed && !chain_set_key(r, i, key)) {
        return TALLY_ENOMEM;
    }
    run_rec run = {.last = (uint32_t)last};
    memcpy(run.hash, hash, CRYPTO_HASH);
    memcpy(run.sig, s->u.sign.sig, CRYPTO_SIG);
    if (first == 1 && r->admission != NULL && spot.into == i) {
        op cert; /* what admitted the run goes to the journal with it */
        chain_admit_op(r, i, &cert);
        int rc = replica_journal_add(r, &cert);
        if (rc != TALLY_OK) {
            return rc;
        }
    }
    mut->runs.at[ARRAY_PUSH(mut->runs)] = run;
    *into = spot.into;
    return TALLY_OK;
}

void chain_unaccept(tally_replica *r, uint32_t origin, bool was_keyed, chain_verdict verdict) {
    origin_rec *o = &r->origins.at[origin];
    assert(o->runs.count > 0);
    if (verdict == CHAIN_BRANCH) {
        branch_close(r, origin);
        return;
    }
    o->runs.count--;
    o->keyed = was_keyed;
}

int chain_branch_op(const tally_replica *r, uint32_t branch, uint64_t first, uint64_t last,
                    op *out) {
    const origin_rec *b = &r->origins.at[branch];
    uint32_t k = chain_run_at(b, first);
    if (k >= b->runs.count || chain_run_first(b, k) != first || b->runs.at[k].last != last) {
        return TALLY_ECORRUPT;
    }
    op_clear(out);
    out->kind = OP_BRANCH;
    out->origin = r->origins.at[b->of].id;
    out->u.branch.first = first;
    out->u.branch.last = last;
    out->u.branch.prev = run_prev(b, k);
    out->u.branch.hash = b->runs.at[k].hash;
    return TALLY_OK;
}

int chain_branch_replay(tally_replica *r, const op *b) {
    uint32_t i = replica_origin_find(r, b->origin);
    if (i == NONE || origin_is_branch(&r->origins.at[i]) || !r->origins.at[i].keyed ||
        b->u.branch.last - b->u.branch.first >= CHAIN_RUN_OPS_MAX) {
        return TALLY_ECORRUPT;
    }
    chain_verdict verdict;
    chain_spot spot;
    int rc = place(r, i, b->u.branch.first, b->u.branch.last, b->u.branch.prev, b->u.branch.hash,
                   &verdict, &spot);
    if (rc == TALLY_OK && verdict == CHAIN_FORK) {
        uint64_t id = branch_id(&r->crypto, b->origin, b->u.branch.hash);
        rc = id == 0 ? TALLY_ENOMEM : branch_open(r, spot.label, spot.k, id, &spot.into);
    }
    if (rc == TALLY_OK && !origin_is_branch(&r->origins.at[spot.into])) {
        rc = TALLY_ECORRUPT; /* a note is written only for a branch's run */
    }
    r->replay_branch = rc == TALLY_OK ? spot.into : NONE;
    return rc == TALLY_FORKED ? TALLY_ECORRUPT : rc;
}

void chain_partly_applied(tally_replica *r, uint32_t origin, uint64_t last) {
    if (origin == r->self && last > r->learned->own_behind) {
        r->learned->own_behind = last;
    }
}

int chain_replay(tally_replica *r, const op *s) {
    uint32_t i = replica_origin_find(r, s->origin);
    uint64_t first = s->u.sign.first, last = s->u.sign.last;
    if (i == NONE || last > UINT32_MAX || origin_is_branch(&r->origins.at[i])) {
        return TALLY_ECORRUPT;
    }
    if (r->replay_branch != NONE && r->origins.at[r->replay_branch].of == i) {
        i = r->replay_branch; /* the run a branch note named (chain_branch_replay) */
        r->replay_branch = NONE;
        if (first <= r->origins.at[i].base) {
            return TALLY_ECORRUPT;
        }
    }
    if (first > r->origins.at[i].seq) {
        /* only a run of this replica's own none of whose ops it could apply is journalled
         * so: it is behind its own history */
        if (i != r->self || first != r->origins.at[i].seq + 1) {
            return TALLY_ECORRUPT;
        }
        chain_partly_applied(r, i, last);
        return TALLY_OK;
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
    if (last > o->seq) {
        /* a run whose apply stopped part way: its ops are not all here to hash, so it is not
         * one of the runs here; its key stays (no other key may take its origin), and if it
         * is this replica's own, so does knowing that its history goes further */
        chain_partly_applied(r, i, last);
        return TALLY_OK;
    }
    uint8_t ops[CRYPTO_HASH], st[CHAIN_STATEMENT];
    run_rec run = {.last = (uint32_t)last};
    if (!ARRAY_RESERVE(o->runs, 1) || !digest_applied(r, o, first, last, ops)) {
        return TALLY_ENOMEM;
    }
    const uint8_t *prev = first == o->base + 1 ? o->genesis : s->u.sign.chain;
    statement(st, r->origins.at[o->of].id, first, last, prev, ops);
    if (!crypto_sha256(&r->crypto, st, sizeof st, run.hash)) {
        return TALLY_ENOMEM;
    }
    chain_verdict verdict;
    int rc = place_in(o, first, last, prev, run.hash, &verdict);
    if (rc != TALLY_OK || verdict == CHAIN_FORK) {
        return TALLY_ECORRUPT;
    }
    if (verdict == CHAIN_NEW) {
        memcpy(run.sig, s->u.sign.sig, CRYPTO_SIG);
        o->runs.at[ARRAY_PUSH(o->runs)] = run;
    }
    return TALLY_OK;
}

/* --- confirmations of a held replica's head ------------------------------------------------ */

static const char confirm_tag[16] = "tally confirm v1";

/* The answer to nonce about run k of o (all of its ops here): SHA-256 of a tag, the nonce and
 * the run's statement. */
static bool confirm_answer(const tally_replica *r, const origin_rec *o, uint32_t k,
                           const uint8_t nonce[CRYPTO_HASH], uint8_t out[CRYPTO_HASH]) {
    uint8_t ops[CRYPTO_HASH], m[16 + CRYPTO_HASH + CHAIN_STATEMENT];
    if (!digest_applied(r, o, chain_run_first(o, k), o->runs.at[k].last, ops)) {
        return false;
    }
    memcpy(m, confirm_tag, 16);
    memcpy(m + 16, nonce, CRYPTO_HASH);
    statement(m + 16 + CRYPTO_HASH, o->id, chain_run_first(o, k), o->runs.at[k].last,
              run_prev(o, k), ops);
    return crypto_sha256(scratch(r), m, sizeof m, out);
}

static const char confirmed_tag[16] = "tally confirmed";

/* What an answerer signs: a tag, the held replica, the head's last seq and the answer (which
 * holds the nonce). */
static void confirmed_message(uint8_t m[16 + 8 + 8 + CRYPTO_HASH], uint64_t held, uint64_t last,
                              const uint8_t answer[CRYPTO_HASH]) {
    memcpy(m, confirmed_tag, 16);
    put_u64le(m + 16, held);
    put_u64le(m + 24, last);
    memcpy(m + 32, answer, CRYPTO_HASH);
}

int chain_confirm_op(const tally_replica *r, uint64_t origin, const uint8_t nonce[CRYPTO_HASH],
                     chain_confirmation *buf, op *out) {
    uint32_t i = replica_origin_find(r, origin);
    const origin_rec *self = &r->origins.at[r->self];
    if (i == NONE || i == r->self || r->origins.at[i].forked ||
        (r->admission != NULL && (self->cert == NULL || !r->admission->admitted))) {
        return TALLY_NOT_FOUND; /* in a cluster with an authority only a member answers */
    }
    const origin_rec *o = &r->origins.at[i];
    uint32_t k = chain_head(o);
    if (k == NONE) {
        return TALLY_NOT_FOUND;
    }
    uint8_t m[16 + 8 + 8 + CRYPTO_HASH];
    bool ok = confirm_answer(r, o, k, nonce, buf->answer);
    if (ok) {
        confirmed_message(m, origin, o->runs.at[k].last, buf->answer);
        ok = crypto_sign(scratch(r), m, sizeof m, buf->sig);
    }
    if (!ok) {
        return TALLY_ENOMEM;
    }
    op_clear(out);
    out->kind = OP_CONFIRM;
    out->origin = origin;
    out->u.confirm.last = o->runs.at[k].last;
    out->u.confirm.answer = buf->answer;
    out->u.confirm.by = r->id;
    out->u.confirm.sig = buf->sig;
    out->u.confirm.cert = r->admission != NULL ? self->cert : NULL;
    out->u.confirm.cert_len = r->admission != NULL ? self->cert_len : 0;
    return TALLY_OK;
}

/* Whether a confirmation comes from a replica this one may take it from: anyone who holds its
 * history without an authority; with one, a member, by its certificate and signature. */
static bool confirmed_by_member(const tally_replica *r, const op *c) {
    if (r->admission == NULL) {
        return true;
    }
    cert_replica who;
    uint8_t m[16 + 8 + 8 + CRYPTO_HASH];
    confirmed_message(m, c->origin, c->u.confirm.last, c->u.confirm.answer);
    return c->u.confirm.cert != NULL && c->u.confirm.by != r->id &&
           cert_replica_read(c->u.confirm.cert, c->u.confirm.cert_len, &r->admission->authority,
                             &who) &&
           who.replica == c->u.confirm.by && crypto_verify(who.key, m, sizeof m, c->u.confirm.sig);
}

int chain_confirm_accept(tally_replica *r, const op *c) {
    const origin_rec *self = &r->origins.at[r->self];
    uint32_t k = chain_head(self);
    if (c->origin != self->id || r->hold == 0 || r->hold == TALLY_HOLD_RENEWED ||
        r->learned->confirmed || k == NONE || self->runs.at[k].last != self->seq ||
        c->u.confirm.last != self->seq) {
        return TALLY_OK; /* not for this replica, or not about the head it is at */
    }
    uint8_t want[CRYPTO_HASH];
    if (!confirm_answer(r, self, k, r->learned->nonce, want)) {
        return TALLY_ENOMEM;
    }
    if (memcmp(want, c->u.confirm.answer, CRYPTO_HASH) == 0 && confirmed_by_member(r, c)) {
        r->learned->confirmed = true;
    }
    return TALLY_OK;
}

int chain_lift_hold(tally_replica *r) {
    int rc = r->journal != NULL ? journal_lift(r->journal) : TALLY_OK;
    if (rc == TALLY_OK && r->hold != 0) {
        r->hold = 0;
        r->learned->confirmed = false;
        rc = chain_seal(r); /* what opening left unsigned while held */
    }
    return rc;
}
