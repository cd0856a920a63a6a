/*
 * ledger/chain.h — authentic, hash-linked histories: each origin signs its ops in runs, and each
 * run's statement names the one before it (docs/design.md, "Authentic histories").
 *
 * A run is ops first..last of one origin. Its statement, the bytes the origin signs, is
 *
 *     offset size field
 *     0      16   tag "tally run v1", zero-padded (its first byte is neither 0x20, TLS 1.3's
 *                 CertificateVerify padding, nor 0x30, DER's: a signature over a statement is
 *                 never one over either)
 *     16     8    origin            24  8  first          32  8  last
 *     40     32   prev: the hash of the origin's statement of the run ending at first - 1, or
 *                 for the first run its genesis, SHA-256("tally genesis v1", zero-padded to 16
 *                 bytes | origin | public key)
 *     72     32   digest: SHA-256 of the run's ops, each in its canonical bytes (chain.c)
 *
 * with integers little-endian. A statement's hash is SHA-256 of its 104 bytes.
 *
 * Invariants:
 *   1. An op of a peer's is applied only inside a run whose statement verified under its
 *      origin's key and chains onto that origin's runs here (or is one of them already).
 *   2. An origin's runs here are consecutive from seq 1, each chaining to the one before; all
 *      but the last end at or below the origin's seq, and the last ends past it only when its
 *      apply stopped part way (its ops are then never sent on); a run none of whose ops
 *      applied is not kept.
 *   3. Every run this replica signs covers ops it has committed and no other run of its own
 *      covers: it seals each of its write calls' ops once, in runs of at most CHAIN_RUN_OPS_MAX,
 *      and nothing while it holds part of a run of its own (it takes no writes then).
 *   4. A run some of whose ops applied has its SIGN record journalled, whole or not: replaying
 *      it keeps the origin's key across a restart, so no other key can take the origin. So
 *      does a run of this replica's own that it lacks some of, even if none of it applied:
 *      replaying it leaves the replica behind its own history, as it was.
 */
#ifndef TALLY_LEDGER_CHAIN_H
#define TALLY_LEDGER_CHAIN_H

#include "ledger/replica.h"

#define CHAIN_STATEMENT 104
_Static_assert(CHAIN_STATEMENT == TALLY_STATEMENT_BYTES, "the statement tally_forks shows");
/* A run's ops, at most: a batch of TigerBeetle's size signs as one run, and one run always
 * fits a delta block (4 MiB) and a network frame (8 MiB) even at the largest encoding of every
 * op (1.3 MB). Verifying a run costs about 80 us here: 10 ns an op at this size. */
#define CHAIN_RUN_OPS_MAX 8192

/* The digest of a run's ops, hashed a buffer at a time (one update per op would cost more
 * than the op): begin, one op at a time in seq order, end. */
typedef struct chain_digest {
    crypto_sha *sha;
    bool ok;
    uint32_t ops;
    uint64_t prev_hlc;
    size_t len;
    uint8_t buf[8192];
} chain_digest;
void chain_digest_begin(chain_digest *d, crypto_sha *sha);
void chain_digest_op(chain_digest *d, const op *o);
bool chain_digest_end(chain_digest *d, uint8_t out[CRYPTO_HASH]);

/* What a run a peer sent is to this replica. */
typedef enum chain_verdict {
    CHAIN_NEW,    /* verified, and it continues the origin's runs here: recorded */
    CHAIN_KNOWN,  /* one of the runs here already */
    CHAIN_FORK,   /* verified, and it overlaps a different run of the origin here */
    CHAIN_BRANCH, /* a CHAIN_FORK whose history is kept: recorded in a new branch (branch.h) */
} chain_verdict;

/* The first seq of run k of origin o. */
static inline uint64_t chain_run_first(const origin_rec *o, uint32_t k) {
    return k == 0 ? o->base + 1 : (uint64_t)o->runs.at[k - 1].last + 1;
}
/* The last run of o whose ops are all here (its head, which a summary names), or NONE. */
static inline uint32_t chain_head(const origin_rec *o) {
    uint32_t k = o->runs.count;
    while (k > 0 && o->runs.at[k - 1].last > o->seq) {
        k--;
    }
    return k == 0 ? NONE : k - 1;
}
/* The index of the run of o that holds seq (the first run ending at or past it), or
 * o->runs.count when none does. */
static inline uint32_t chain_run_at(const origin_rec *o, uint64_t seq) {
    return origin_run_at(o, seq);
}

/* The pieces of a run's statement, for this file and for tests that make runs by hand: the
 * digest of n ops (each `stride` bytes after the one before), an origin's genesis, and a
 * statement's hash and its signature with c's signer. False when out of memory. */
bool chain_digest_ops(crypto_ctx *c, const op *ops, size_t stride, uint32_t n,
                      uint8_t out[CRYPTO_HASH]);
bool chain_genesis(crypto_ctx *c, uint64_t origin, const uint8_t key[CRYPTO_KEY],
                   uint8_t out[CRYPTO_HASH]);
bool chain_sign_run(crypto_ctx *c, uint64_t origin, uint64_t first, uint64_t last,
                    const uint8_t prev[CRYPTO_HASH], const uint8_t ops[CRYPTO_HASH],
                    uint8_t hash[CRYPTO_HASH], uint8_t sig[CRYPTO_SIG]);

/* Whether two ops of one dot are the same op (their canonical bytes are equal). */
bool chain_same_op(const op *a, const op *b);

/* Gives origins[origin] its public key (which must be valid) and the genesis it makes. */
bool chain_set_key(tally_replica *r, uint32_t origin, const uint8_t key[CRYPTO_KEY]);

/* Gives this replica's own origin the key it signs with (r->crypto's), or checks that its
 * runs were signed with it: TALLY_ECORRUPT when they were not (a key file and a journal that
 * belong to different replicas). */
int chain_own_key(tally_replica *r);
/* Hashes an op this replica made, just applied, into the run being made (so that sealing need
 * not read it back); chain_own_free drops what that holds. */
void chain_own_op(tally_replica *r, const op *o);
void chain_own_free(tally_replica *r);
/* Signs this replica's ops that no run holds yet, in runs, and adds their SIGN records to the
 * commit in progress. TALLY_ENOMEM (nothing recorded for the run that failed). */
int chain_seal(tally_replica *r);

/* Checks the run a peer sent: its SIGN record s, and the digest of its ops (the caller checked
 * that they are s's origin's, seqs first to last in order). *verdict says what it is, and
 * *into which of the origin's histories holds it (the origin, or a branch of it: its ops are
 * applied there); a run that does not verify, or does not fit the origin's runs here, is
 * TALLY_ECORRUPT. A run that forks the origin's history is proven and, unless the origin has
 * BRANCHES_MAX branches here (TALLY_FORKED), recorded in a new branch: CHAIN_BRANCH. */
int chain_accept(tally_replica *r, const op *s, const uint8_t digest[CRYPTO_HASH],
                 chain_verdict *verdict, uint32_t *into);
/* A run that forks leaves with chain_accept the proof that its origin signed two
 * histories, kept in r->forks (once per origin) and added to the journal, unless the run here
 * it overlaps stopped part way. The proof's record (OP_FORK), from a peer's delta or the
 * journal, is checked and kept by chain_fork_accept: TALLY_OK also when its origin is forked
 * here already, or has no key here yet (it cannot be checked, and comes again); TALLY_ECORRUPT
 * when its statements do not overlap, are one, or do not both verify under the origin's key. */
int chain_fork_accept(tally_replica *r, const op *f);
/* A fork's record, pointing into r's tables. */
void chain_fork_op(const tally_replica *r, const fork_rec *f, op *out);

/* Takes back the run chain_accept recorded last in origins[origin] (CHAIN_NEW or CHAIN_BRANCH:
 * the branch too), when none of its ops could be applied; the origin's key too, if that run
 * brought it. */
void chain_unaccept(tally_replica *r, uint32_t origin, bool was_keyed, chain_verdict verdict);
/* The journal's note (OP_BRANCH) that the run first..last of a branch follows: replaying it
 * (chain_branch_replay) finds the branch again, making it as chain_accept did, and the ops
 * and SIGN record that follow are the branch's. TALLY_ECORRUPT when it does not fit. */
int chain_branch_op(const tally_replica *r, uint32_t branch, uint64_t first, uint64_t last,
                    op *out);
int chain_branch_replay(tally_replica *r, const op *b);
/* Notes that a run of origins[origin] ending at last applied only part way here: when it is
 * this replica's own, it is behind its own history (TALLY_ORIGIN_BEHIND) until it has it. */
void chain_partly_applied(tally_replica *r, uint32_t origin, uint64_t last);
/* Replays a SIGN record from the journal, after the ops it covers (its signature was checked
 * before it was written). TALLY_ECORRUPT when it does not fit. */
int chain_replay(tally_replica *r, const op *s);
/* The SIGN record of run k of origins[origin] (pointing into the replica's tables). */
void chain_sign_op(const tally_replica *r, uint32_t origin, uint32_t k, op *out);

/* A held replica is confirmed by a challenge (docs/design.md, "Holds"): its summary carries a
 * nonce, drawn at each opening, in place of its head, and a peer answers, at the end of its
 * delta, with an OP_CONFIRM record: its head of that origin (the last seq of the run there) and
 * SHA-256("tally confirm v1" | nonce | the head run's 104-byte statement). A summary carries a
 * statement's hash, never the statement: only a holder of the run's ops can answer.
 *
 * The record also names the answering replica, carries its Ed25519 signature of ("tally
 * confirmed" | the held replica | last | answer) and, in a cluster with an authority, its
 * certificate: there only an admitted member's answer counts.
 *
 * chain_confirm_op makes the answer about origin (into *buf, which *out points to):
 * TALLY_NOT_FOUND when there is none to give (the origin is not known here, is this replica's
 * own, which only a copy of it would ask about, is forked here, or has no run whole here; or
 * this replica is not an admitted member of its cluster); TALLY_ENOMEM. chain_confirm_accept
 * takes one from a peer's delta: when it is about this replica, held (but not
 * TALLY_HOLD_RENEWED: a replica whose data lives on as a new one waits for an operator), at
 * the head it names, the answer is right and, with an authority, it comes signed by another
 * admitted replica, the hold is confirmed (replica_held; the next write or the node lifts
 * it). Any other answer changes nothing. */
typedef struct chain_confirmation {
    uint8_t answer[CRYPTO_HASH];
    uint8_t sig[CRYPTO_SIG];
} chain_confirmation;
int chain_confirm_op(const tally_replica *r, uint64_t origin, const uint8_t nonce[CRYPTO_HASH],
                     chain_confirmation *buf, op *out);
int chain_confirm_accept(tally_replica *r, const op *c);

/* Admission (docs/design.md, "Admission"). A replica with an authority (r->admission) takes an
 * origin's first run only under the key the origin's certificate names, from that authority,
 * letting it write (chain_accept: TALLY_NOT_ADMITTED otherwise). A certificate travels as an
 * OP_ADMIT record before its origin's first run in a delta, and is journalled and kept in the
 * snapshot; the authority's own is an OP_ADMIT record of origin 0, in the journal only.
 *
 * chain_admit_accept takes one, from where `from` says:
 *   - CHAIN_ADMIT_PEER, in a delta: an origin's, checked against the authority, replacing the
 *     one before (the one in front of a first run is the one it is checked against), until
 *     the origin's first run is here; after that, and about this replica itself, ignored;
 *     the authority's is TALLY_ECORRUPT;
 *   - CHAIN_ADMIT_LOCAL, given at opening or by tally_set_certificate: the authority's, when
 *     there is none yet, or the same again; this replica's own, replacing the one before;
 *   - CHAIN_ADMIT_REPLAY, from the journal or the snapshot: as it was taken, not journalled.
 * Without an authority an origin's is ignored. TALLY_ECORRUPT for one that does not check,
 * names another origin or another key than the origin's runs here, or a second authority;
 * TALLY_ETOOBIG, TALLY_ENOMEM. chain_admitted_all checks, after opening, that every origin but
 * this replica whose ops or key are here is admitted under that key (a journal or snapshot
 * written without the checks, or altered): TALLY_ECORRUPT if not. chain_admit_op is the record
 * of origins[origin]'s certificate, or with NONE the authority's. */
typedef enum chain_admit_from {
    CHAIN_ADMIT_PEER,
    CHAIN_ADMIT_LOCAL,
    CHAIN_ADMIT_REPLAY,
} chain_admit_from;
int chain_admit_accept(tally_replica *r, const op *a, chain_admit_from from);
int chain_admitted_all(const tally_replica *r);
void chain_admit_op(const tally_replica *r, uint32_t origin, op *out);

/* Lifts r's hold (tally_lift_hold), durably, and signs the ops of its own that opening left
 * unsigned while it was held. */
int chain_lift_hold(tally_replica *r);

#endif
