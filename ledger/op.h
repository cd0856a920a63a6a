/*
 * ledger/op.h — ops, the immutable unit of change that replicas exchange.
 *
 * Every state change is an op created at one replica (its origin) and numbered there: its dot
 * is (origin, seq), seq = 1, 2, 3, ... with no gaps. An op in this form is *resolved*: a POST
 * names the amount it posts and the pending's accounts, ledger and code, so applying it never
 * depends on defaults.
 *
 * Transfers and grants name each bounded account together with the bound flags the origin saw
 * (op.debit_flags, op.credit_flags, op.account_flags): together with the ledger they pick the
 * account *incarnation* the op applies to. Two replicas that open one id with a different
 * ledger or bound while cut off get two incarnations with separate balances and rights, so the
 * escrow invariant holds for each (see docs/design.md, "Conflicting opens").
 */
#ifndef TALLY_LEDGER_OP_H
#define TALLY_LEDGER_OP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "tally.h"

typedef enum op_kind {
    OP_OPEN = 1,
    OP_TRANSFER = 2, /* posted, or pending when transfer.flags has TALLY_TRANSFER_PENDING */
    OP_POST = 3,
    OP_VOID = 4, /* expired != 0: the origin's own timeout, with a zero transfer id */
    OP_GRANT = 5,
    OP_CLOCK = 6,   /* in the journal only, with no dot: the steady clock (ledger/expiry.c) */
    OP_SIGN = 7,    /* with no dot: the origin's signed statement of a run of its ops (chain.c) */
    OP_FORK = 8,    /* with no dot: two signed statements of the origin's that overlap and differ */
    OP_CONFIRM = 9, /* in a delta only, with no dot: a held origin's challenge, answered */
    OP_ADMIT = 10, /* with no dot: the origin's admission certificate (origin 0: the authority's) */
    OP_BRANCH = 11, /* in the journal only, with no dot: the next run's ops are a branch's */
} op_kind;

/* The kinds that have a dot and travel between replicas. */
#define OP_KIND_MAX OP_GRANT
#define ACCOUNT_BOUND_FLAGS                                                                        \
    (TALLY_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS | TALLY_ACCOUNT_CREDITS_MUST_NOT_EXCEED_DEBITS)
#define TRANSFER_KIND_FLAGS                                                                        \
    (TALLY_TRANSFER_PENDING | TALLY_TRANSFER_POST_PENDING | TALLY_TRANSFER_VOID_PENDING)

typedef struct op {
    uint8_t kind;
    uint8_t expired;      /* OP_VOID only */
    uint8_t debit_flags;  /* transfers: the debit account's bound flags at the origin */
    uint8_t credit_flags; /* transfers: the credit account's bound flags at the origin */
    uint64_t origin, seq, hlc;
    union {
        tally_account account;   /* OP_OPEN */
        tally_transfer transfer; /* OP_TRANSFER, OP_POST, OP_VOID */
        struct {
            tally_id account;
            uint32_t ledger;
            uint8_t account_flags;
            uint64_t to;
            uint64_t amount;
        } grant; /* OP_GRANT */
        struct {
            uint64_t steady_ms, wall_ms; /* the replica's steady clock, both its fields */
        } clock;                         /* OP_CLOCK */
        struct {
            uint64_t first, last; /* the run: seqs first..last of o->origin */
            /* 32 bytes: the origin's public key when first is 1, else the hash of the
             * statement before; then the 64-byte signature. Both point into the block the
             * record was decoded from, or into the replica's tables when it is encoded. */
            const uint8_t *chain, *sig;
        } sign; /* OP_SIGN */
        struct {
            uint64_t first[2], last[2]; /* the two runs: seqs first..last of o->origin */
            /* each statement's other fields, 128 bytes: the hash of the statement before it
             * (or the origin's genesis), the digest of its ops, and the signature. They point
             * where sign's do. */
            const uint8_t *side[2];
        } fork; /* OP_FORK */
        struct {
            uint64_t last;         /* the answering replica's head of o->origin: its last seq */
            const uint8_t *answer; /* 32 bytes (chain_confirm_op); points where sign's do */
            uint64_t by;           /* the answering replica */
            const uint8_t *sig;    /* 64 bytes: its signature of the answer (chain.c) */
            const uint8_t *cert;   /* its admission certificate, DER, or NULL */
            uint32_t cert_len;
        } confirm;                 /* OP_CONFIRM */
        struct {
            const uint8_t *der; /* the certificate, DER; points where sign's do */
            uint32_t len;       /* at most CODEC_ADMIT_DER_MAX */
        } admit;                /* OP_ADMIT */
        struct {
            uint64_t first, last; /* the run of o->origin that follows */
            /* 32 bytes each: what its statement chains to, and its hash; they point where
             * sign's do */
            const uint8_t *prev, *hash;
        } branch; /* OP_BRANCH (ledger/branch.h) */
    } u;
} op;

/* Zeroes an op. In pieces of at most 64 bytes, which compilers turn into a few vector stores:
 * gcc makes one 128-byte memset a `rep stos`, whose start-up cost exceeded the decoding of a
 * whole op (docs/benchmarks.md). */
static inline void op_clear(op *o) {
    unsigned char *p = (unsigned char *)o;
    for (size_t at = 0; at < sizeof *o; at += 64) {
        memset(p + at, 0, sizeof *o - at < 64 ? sizeof *o - at : 64);
    }
}

#endif
