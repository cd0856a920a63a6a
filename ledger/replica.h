/*
 * ledger/replica.h — the replica's internal state, shared by the files of ledger/.
 *
 * The state is the set of ops applied, kept as:
 *   opens[]      every OPEN op;
 *   accounts[]   account incarnations: (id, ledger, bound flags), each with its balances and
 *                rights; account_map maps an id to the head of its incarnation chain;
 *   transfers[]  every TRANSFER, POST and VOID op; transfer_map maps an id to the head of the
 *                chain of records with that id (more than one only after a conflict);
 *   grants[]     every GRANT op;
 *   log[]        (kind, index) of every op in the order it was applied here: a linear extension
 *                of causality, streamed by tally_delta (and, for a durable replica, the order
 *                of its journal on disk, ledger/journal.c);
 *   origins[]    every replica known here, with its seq (the version vector) and, for each of
 *                its ops, the op's position in the log.
 *
 * Invariants, checked by replica_check():
 *   1. origins[o].seq ops of origin o are in the log, seqs 1..seq, in order.
 *   2. Every balance is the sum of the ops that touched it; Σ rights == spendable amount S of
 *      every bounded incarnation, and no holder's rights are below zero (they are unsigned).
 *   3. An account chain's head comes first in incarnation order (incarnation_before: bounded
 *      before unbounded, then the smaller dot of the winning OPEN); a transfer chain's head has
 *      the smallest dot of its chain (dot order: origin id, then seq).
 *   4. A pending transfer's state is OPEN exactly when no POST or VOID of it has been applied.
 */
#ifndef TALLY_LEDGER_REPLICA_H
#define TALLY_LEDGER_REPLICA_H

#include <assert.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crdt/array.h"
#include "crdt/cert.h"
#include "crdt/crypto.h"
#include "crdt/hlc.h"
#include "crdt/idmap.h"
#include "crdt/rights.h"
#include "crdt/u128.h"
#include "ledger/op.h"
#include "tally.h"

#define NONE UINT32_MAX
/* Limits on what peers control: replicas known, and records of each kind. */
#define REPLICA_ORIGINS_MAX (UINT32_C(1) << 16)
#define REPLICA_RECORDS_MAX (UINT32_C(1) << 29)

typedef struct open_rec {
    tally_account a;
    uint32_t origin;  /* origins[] index */
    uint32_t account; /* accounts[] index of its incarnation */
    uint32_t next;    /* the incarnation's next OPEN, NONE at the end */
    uint64_t seq, hlc;
} open_rec;

typedef struct account_rec {
    tally_id id;
    uint32_t ledger;
    uint16_t flags;     /* bound flags only: the incarnation key with id and ledger */
    uint32_t open;      /* opens[] index of this incarnation's smallest-dot OPEN: its fields */
    uint32_t next;      /* next incarnation of the same id, NONE at the end */
    uint32_t opens;     /* opens[] index of the latest OPEN of this incarnation; linked by next */
    uint8_t conflicted; /* this id has OPENs with different fields (set on the whole chain) */
    u128 debits_posted, credits_posted, debits_pending, credits_pending;
    rights rights; /* holders are origins[] indices */
} account_rec;

/* The record every TRANSFER, POST and VOID keeps, 72 bytes: the most numerous thing a replica
 * holds. What follows from elsewhere is not stored: the accounts' ids and the ledger are the
 * incarnations' (transfer_ledger), an origin's seq fits 32 bits (op_reserve refuses more), and
 * there are at most REPLICA_ORIGINS_MAX origins. */
typedef struct transfer_rec {
    tally_id id; /* zero for a VOID by timeout */
    uint64_t amount, user_data;
    uint64_t hlc;
    uint32_t seq;
    uint32_t timeout_ms;
    uint32_t debit, credit; /* accounts[] indices: the accounts' ids and ledger live there */
    uint32_t link;          /* pending: its POST/VOID record; POST/VOID: its pending; or NONE */
    uint32_t next;          /* next record with the same id, NONE at the end */
    uint16_t origin;        /* origins[] index */
    uint16_t code, flags;
    unsigned kind : 3;    /* op_kind */
    unsigned state : 3;   /* tally_pending_state */
    unsigned expired : 1; /* VOID by timeout */
} transfer_rec;
_Static_assert(REPLICA_ORIGINS_MAX - 1 <= UINT16_MAX, "an origins[] index fits transfer_rec");
_Static_assert(OP_KIND_MAX < 8 && TALLY_PENDING_TIMED_OUT < 8, "kinds and states fit 3 bits");

typedef struct grant_rec {
    uint32_t account; /* accounts[] index */
    uint32_t origin, to;
    uint64_t seq, hlc, amount;
} grant_rec;

typedef struct log_entry {
    uint32_t kind : 3;
    uint32_t index : 29; /* into opens[], transfers[] or grants[] by kind */
} log_entry;

/* One run of an origin's ops as the origin signed it (ledger/chain.c): seqs from the end of
 * the run before it (0 for the first) + 1 to last. */
typedef struct run_rec {
    uint32_t last;
    uint8_t hash[CRYPTO_HASH]; /* of its statement: what the next run's statement chains to */
    uint8_t sig[CRYPTO_SIG];   /* the origin's signature of the statement */
} run_rec;

typedef struct origin_rec {
    uint64_t id;
    tally_id key;       /* {0, id}: the origin map's key */
    uint64_t seq;       /* highest seq applied: this origin's version-vector entry */
    uint32_t *position; /* position[s - base - 1]: log index of seq s; an array (crdt/array.h) */
    uint32_t capacity;
    /* A branch (ledger/branch.c) is one of the histories of a forked replica past the point
     * where they part: ops base + 1 .. seq of origins[of], as that branch has them. For a
     * replica itself: of is its own index, parent NONE, base 0. */
    uint32_t of, parent; /* the replica whose ops these are; the history the branch leaves */
    uint64_t base;       /* the branch leaves its parent after seq base */
    uint32_t branches;   /* a replica's: how many branches its history has here */
    bool keyed;                   /* pub is known: from its first run's record, or our own */
    uint8_t pub[CRYPTO_KEY];      /* its public key */
    uint8_t genesis[CRYPTO_HASH]; /* what its first run's statement chains to (chain.c): for a
                                     branch, the hash of its parent's run ending at base */
    ARRAY(run_rec)
    runs;        /* its runs in seq order, each verified before it applied;
                    only the last may end past seq (a run that stopped) */
    bool forked; /* forks[] holds a proof that it signed two histories */
    /* Its admission certificate, DER (ledger/chain.c), kept when the replica has an authority:
     * the first valid one that came. NULL: none. */
    uint8_t *cert;
    uint32_t cert_len;
    cert_replica admitted_as; /* what that certificate says, read once when it was taken */
} origin_rec;

/* One of the two statements of a fork's proof: run first..last of the origin, and the rest of
 * its statement and its signature, as a fork's record carries them (ledger/codec.h). */
#define FORK_SIDE (2 * CRYPTO_HASH + CRYPTO_SIG)
typedef struct fork_side {
    uint64_t first, last;
    uint8_t rest[FORK_SIDE]; /* prev, digest of the ops, signature */
} fork_side;

/* Proof that an origin signed two histories (ledger/chain.c): two statements of its, both
 * verified under its key, whose runs overlap and whose hashes differ. The sides are in the
 * order of their statements' bytes, so a fork found from either side reads the same. */
typedef struct fork_rec {
    uint32_t origin; /* origins[] index */
    fork_side side[2];
} fork_rec;

typedef struct expiry {
    uint64_t deadline_ms;
    uint32_t transfer;
} expiry;


struct tally_replica {
    uint64_t id;
    uint32_t self; /* origins[] index of this replica */
    uint64_t (*clock_ms)(void *ctx);
    void *clock_ctx;
    hlc clock;
    steady steady;           /* elapsed time, for timeouts (ledger/expiry.c) */
    steady journaled_steady; /* the steady clock as the journal's last CLOCK record has it */
    bool steady_journaled;   /* there is such a record (a journal from before 0.2 has none) */

    ARRAY(open_rec) opens;
    ARRAY(account_rec) accounts;
    ARRAY(transfer_rec) transfers;
    ARRAY(grant_rec) grants;
    ARRAY(log_entry) log;
    ARRAY(origin_rec) origins;
    ARRAY(expiry) expiries; /* min-heap by deadline: local pendings with a timeout */
    ARRAY(tally_id) conflicted_accounts;
    ARRAY(tally_id) conflicted_transfers;
    ARRAY(fork_rec) forks; /* at most one per origin, in the order they were learned */
    /* Finishes of pendings past a fork that are not their pending's link: each branch of its
     * origin's history may finish a pending made before they parted (ledger/branch.c). */
    ARRAY(uint32_t) refinished;
    /* What branch_open made last, so that branch_close can take it back: the entries it made
     * branches (the new history's, and the rest's when it parted a history), each as it was. */
    struct branch_made {
        uint32_t real;
        struct branch_entry_was {
            uint32_t index; /* NONE: none */
            bool made;      /* added to the table by branch_open */
            bool keyed;
            uint32_t of, parent;
            uint64_t base, seq;
            uint8_t pub[CRYPTO_KEY], genesis[CRYPTO_HASH];
        } branch, rest;
    } branch_made;
    idmap account_map, transfer_map, origin_map;

    bool replaying; /* opening: ops come from the journal, not to it */
    uint32_t replay_branch; /* the branch a journal's note (OP_BRANCH) routes the next run to */
    uint64_t pending_open;
    uint64_t refused_rights;

    crypto_ctx crypto;     /* hashes runs, and signs this replica's with its key */
    struct chain_own *own; /* the run of its own being made (ledger/chain.c); NULL: none */

    struct journal *journal; /* NULL: in memory */
    /* Called at the end of a write call that applied ops (local or a peer's), so that a sync
     * node can push them on; set by net/node.c. */
    void (*on_change)(void *ctx);
    void *on_change_ctx;
    uint32_t notified_log; /* log.count when on_change last ran */
    uint32_t checked_log;  /* log.count at the last replica_debug_check that ran */
    /* What reading a peer's summary taught this replica. tally_delta takes a const replica
     * (the API is fixed) and still must record it, so it lives behind a pointer. */
    struct replica_learned {
        uint64_t own_behind; /* a peer holds our own ops up to this seq: refuse local writes */
        bool confirmed;      /* a peer answered the challenge about our head: the hold can go */
        uint8_t nonce[CRYPTO_HASH]; /* the challenge a held replica's summary carries (chain.h) */
    } *learned;
    uint32_t hold; /* tally_hold: why local writes are held (a durable one is in dir/MARK) */
    /* The cluster's authority, when the replica has one (ledger/chain.c, "admission"): only
     * origins it admitted may bring runs. NULL: none, keys are first come. */
    struct replica_admission {
        cert_authority authority;
        uint8_t *der; /* the authority's certificate */
        uint32_t len;
        bool admitted;      /* this replica's own certificate is here, valid */
        uint64_t not_after; /* its end, in seconds since the epoch: then it takes no writes */
        bool may_write;     /* it lets this replica make ops */
    } * admission;
};

/* Grows a replica's ARRAY so that `more` further elements fit. False when out of memory or
 * past REPLICA_RECORDS_MAX; the array is unchanged then. */
#define ARRAY_RESERVE(arr, more) ARRAY_RESERVE_MAX(arr, more, REPLICA_RECORDS_MAX)

/* Room in an origin's position table for n more of its ops. False when out of memory or past
 * REPLICA_RECORDS_MAX; the table is unchanged then. */
static inline bool origin_reserve(origin_rec *o, uint32_t n) {
    return o->seq - o->base <= REPLICA_RECORDS_MAX &&
           array_reserve((void **)&o->position, &o->capacity, (uint32_t)(o->seq - o->base), n,
                         sizeof *o->position, REPLICA_RECORDS_MAX);
}

/* The log position of o's op with this seq (base < seq <= o->seq). */
static inline uint32_t origin_position(const origin_rec *o, uint64_t seq) {
    return o->position[seq - o->base - 1];
}

/* The index of o's run holding seq (the first ending at or past it); o->runs.count if none:
 * a binary search, the runs being in seq order. */
static inline uint32_t origin_run_at(const origin_rec *o, uint64_t seq) {
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

/* The state a pending is in once finished by a POST, or a VOID (by timeout or not). */
static inline unsigned finish_state(unsigned kind, bool expired) {
    return kind == OP_POST ? TALLY_PENDING_POSTED
           : expired       ? TALLY_PENDING_TIMED_OUT
                           : TALLY_PENDING_VOIDED;
}

/* Whether o is a branch of a forked replica's history, not a replica. */
static inline bool origin_is_branch(const origin_rec *o) {
    return o->parent != UINT32_MAX;
}

/* origins[] index for a replica id, or NONE. */
uint32_t replica_origin_find(const tally_replica *r, uint64_t id);
/* origins[] index for a replica id, added if new. NONE when out of memory or past the limit. */
uint32_t replica_origin_get(tally_replica *r, uint64_t id);

/* The incarnation for (id, ledger, bound flags), or NONE. */
uint32_t replica_account_find(const tally_replica *r, tally_id id, uint32_t ledger, uint16_t flags);
/* The incarnation lookups by id show (the chain head), or NONE. */
static inline uint32_t replica_account_head(const tally_replica *r, tally_id id) {
    return idmap_get(&r->account_map, id);
}

/* Starts loading an account record (all of its cache lines) ahead of its use. */
static inline void replica_account_prefetch(const tally_replica *r, uint32_t account) {
#if defined(__GNUC__)
    const char *rec = (const char *)&r->accounts.at[account];
    for (size_t line = 0; line < sizeof(account_rec); line += 64) {
        __builtin_prefetch(rec + line);
    }
    __builtin_prefetch(rec + sizeof(account_rec) - 1);
#else
    (void)r;
    (void)account;
#endif
}

/* Starts bringing in, for writing, the records the next n transfers will fill (if reserved):
 * fresh memory, which each record's first store would otherwise wait for. */
static inline void replica_transfers_prefetch(const tally_replica *r, uint32_t n) {
#if defined(__GNUC__)
    if (n > 0 && (uint64_t)r->transfers.count + n <= r->transfers.capacity) {
        const char *from = (const char *)&r->transfers.at[r->transfers.count];
        for (size_t line = 0; line < (size_t)n * sizeof(transfer_rec); line += 64) {
            __builtin_prefetch(from + line, 1);
        }
    }
#else
    (void)r;
    (void)n;
#endif
}

/* A transfer's ledger: its accounts' (op_validate found them by it). */
static inline uint32_t transfer_ledger(const tally_replica *r, const transfer_rec *t) {
    return r->accounts.at[t->debit].ledger;
}

/* A transfer record as the API shows it (resolved: a post names its amount and accounts);
 * ledger/query.c. */
void transfer_view(const tally_replica *r, const transfer_rec *t, tally_transfer *out);
/* Rebuilds the op at a journal position from the records it was applied into, as it travels
 * (a branch's op under its replica's id); query.c. */
void replica_op_at(const tally_replica *r, uint32_t position, op *o);

static inline bool side_consumes(const account_rec *a, bool debit_side) {
    return debit_side ? (a->flags & TALLY_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS) != 0
                      : (a->flags & TALLY_ACCOUNT_CREDITS_MUST_NOT_EXCEED_DEBITS) != 0;
}

/* Rights one side of a transfer-like op takes from and gives to its origin (rules 1-3).
 * p is the pending amount (POST and VOID), a the op's amount. */
static inline void op_side_rights(const account_rec *acct, bool debit_side, uint8_t kind,
                                  bool pending, uint64_t p, uint64_t a, uint64_t *take,
                                  uint64_t *give) {
    *take = 0;
    *give = 0;
    if ((acct->flags & ACCOUNT_BOUND_FLAGS) == 0) {
        return;
    }
    bool consumes = side_consumes(acct, debit_side);
    switch (kind) {
    case OP_TRANSFER:
        if (consumes) {
            *take = a;
        } else if (!pending) {
            *give = a;
        }
        break;
    case OP_POST:
        *give = consumes ? p - a : a;
        break;
    case OP_VOID:
        *give = consumes ? p : 0;
        break;
    default:
        assert(0 && "not a transfer kind");
    }
}

/* The spendable amount of a bounded incarnation (0 for an unbounded one). */
u128 account_spendable(const tally_replica *r, const account_rec *a);

/* Dot order: by origin id, then seq. */
static inline bool dot_less(uint64_t origin_a, uint64_t seq_a, uint64_t origin_b, uint64_t seq_b) {
    return origin_a != origin_b ? origin_a < origin_b : seq_a < seq_b;
}

/* A precondition on a record index: within its table (debug builds; the appends are guarded
 * in every build, crdt/guard.h). */
#define REC_INDEX(table, i) assert((uint32_t)(i) < (table).count && "a record index in its table")

/* Incarnation order for an id's chain (invariant 3, docs/design.md section 5): a bounded
 * incarnation before an unbounded one, so that lookups by id never show a less restrictive
 * account than one the id has; then the smaller dot of each one's winning OPEN. */
static inline bool incarnation_before(const tally_replica *r, uint32_t a, uint32_t b) {
    REC_INDEX(r->accounts, a);
    REC_INDEX(r->accounts, b);
    const account_rec *x = &r->accounts.at[a], *y = &r->accounts.at[b];
    bool x_bound = (x->flags & ACCOUNT_BOUND_FLAGS) != 0;
    bool y_bound = (y->flags & ACCOUNT_BOUND_FLAGS) != 0;
    if (x_bound != y_bound) {
        return x_bound;
    }
    const open_rec *ox = &r->opens.at[x->open], *oy = &r->opens.at[y->open];
    return dot_less(r->origins.at[ox->origin].id, ox->seq, r->origins.at[oy->origin].id, oy->seq);
}

/* --- ledger/replica.c --- */
/* Readies the maps of a zeroed replica, and its clock (NULL: the system's wall clock). */
void replica_init(tally_replica *r, uint64_t (*clock_ms)(void *ctx), void *clock_ctx);
/* Frees every table; leaves them empty and usable (the maps initialised again). */
void replica_free_tables(tally_replica *r);
/* Frees r->admission (the authority), and sets it NULL. */
void replica_free_admission(tally_replica *r);
uint64_t replica_now_ms(const tally_replica *r);

/* Sets the replica's id (once, before any op): opening, or replaying a journal. */
int replica_set_id(tally_replica *r, uint64_t id);
/* Checks, and journals when new, the authority's certificate and this replica's own that
 * opts gives, and sets what they admit it to (ledger/admit.c). TALLY_EINVAL (opts->error
 * says why), TALLY_ENOMEM, TALLY_EIO. */
int replica_open_admission(tally_replica *r, const tally_options *opts);
/* tally_open without TALLY_OPEN_AS_NEW (ledger/open.c), which ledger/renew.c's tally_open
 * handles. */
int replica_open(const tally_options *opts, tally_replica **out);
/* Adds a validated op to the journal's commit in progress (no-op in memory or while
 * replaying); replica_journal_unadd takes it back. */
int replica_journal_add(tally_replica *r, const op *o);
void replica_journal_unadd(tally_replica *r);
/* Ends a write call: commits the journal (a failure turns rc into TALLY_EIO) and returns rc. */
int replica_commit(tally_replica *r, int rc);
/* Refuses local writes on a replica whose journal failed, whose own origin forked, that is
 * behind its own origin, or whose writes are held (a hold a peer confirmed is lifted here,
 * durably). In ledger/create.c. */
int replica_writable(tally_replica *r);
/* Whether r's writes are held (tally_held), and so its own ops not sent. */
static inline bool replica_held(const tally_replica *r) {
    return r->hold != 0 && !r->learned->confirmed;
}

/* --- ledger/apply.c --- */
/* What op_validate found, so that op_apply need not look it up again. The caller sets every
 * field, to a hint or to NONE (id_hash to the hash itself); op_validate checks a hint before it
 * trusts it. */
typedef struct op_refs {
    uint32_t origin;        /* origins[] index of the op's origin; NONE if not known yet */
    uint32_t debit, credit; /* transfers: the incarnations; a grant's account is in debit */
    uint32_t pending;       /* POST/VOID: the pending transfer */
    uint32_t id_hash;       /* transfer kinds: idmap_hash of the transfer id, hashed once by the
                               caller (unused for other kinds and for a VOID by timeout) */
    idmap_spot id_spot;     /* where the lookup of the transfer id ended, if the caller or
                               op_validate made one: op_apply inserts the id there */
} op_refs;
/* op_refs with nothing known yet: no hints, no id hash, no spot. */
#define OP_REFS_NONE {.origin = NONE, .debit = NONE, .credit = NONE, .pending = NONE}
/* Checks that a resolved op may be applied to the current state, filling refs. For a local op
 * the result is what the caller is told; for a remote op anything but TALLY_OK means the op is
 * invalid. */
int op_validate(const tally_replica *r, const op *o, bool local, op_refs *refs);
/* Applies an op that op_validate accepted with these refs, with nothing changed in between;
 * now_ms is the wall clock the HLC is advanced against. Allocates first, mutates after: on
 * TALLY_ENOMEM or TALLY_ETOOBIG nothing has changed. */
int op_apply(tally_replica *r, const op *o, const op_refs *refs, uint64_t now_ms);
/* Field checks that need no state, shared by local requests and decoded ops. */
int transfer_check_fields(const tally_transfer *t);
/* The same checks of a transfer record's view, once resolved (a post or void with its
 * accounts and amount): what every record a replica holds passes. */
int transfer_check_record(const tally_transfer *t);
int account_check_fields(const tally_account *a);

/* --- ledger/expiry.c --- */
/* Adds the deadline of transfers[ti], a pending of this replica's with a timeout, being applied
 * (room reserved by the caller): from the steady clock now and the pending's stamp. */
void expiry_add(tally_replica *r, uint32_t ti);
/* Removes the earliest deadline. */
void expiry_pop(tally_replica *r);
/* The open pending with the earliest deadline (dropping finished ones on the way), or NONE. */
uint32_t expiry_next(tally_replica *r);
/* After a snapshot loads, or the journal's first CLOCK record is read: the heap made again
 * from its entries, with their deadlines as stored or, when `estimate`, derived from the
 * pendings' stamps (ledger/expiry.c). False when the entries are not exactly one for each open
 * pending of this replica's with a timeout, each no further ahead than its timeout. */
bool expiry_rebuild(tally_replica *r, bool estimate);

/* A pending of this replica's with a timeout: what the expiry heap keeps a deadline for. */
static inline bool expiry_kept(const tally_replica *r, const transfer_rec *t) {
    /* its own history's, in a branch too when it forked (it then voids nothing: it writes
     * nothing, ledger/branch.h) */
    return t->kind == OP_TRANSFER && (t->flags & TALLY_TRANSFER_PENDING) &&
           r->origins.at[t->origin].of == r->self && t->timeout_ms != 0;
}

/* The steady clock across restarts. expiry_clock_start starts it afresh from the wall clock
 * (opening, before the journal is read); expiry_clock_resume sets it to a CLOCK record's
 * fields as a snapshot is read, expiry_clock_replay as the journal is (a move of the clock;
 * TALLY_ECORRUPT when the first record finds the deadlines before it wrong); expiry_clock_read
 * moves it on by the wall clock (once the journal is read, and at every write);
 * expiry_clock_moved is what every move of it does: each deadline the move passed from `from`
 * becomes due (ledger/expiry.c, invariant 3). expiry_clock_journal adds a CLOCK record to the
 * commit in progress, unless the journal's last record says the same; expiry_clock_before does
 * so when op o, about to be journalled, is a pending of this replica's with a timeout. */
void expiry_clock_moved(tally_replica *r, uint64_t from);
void expiry_clock_start(tally_replica *r);
void expiry_clock_resume(tally_replica *r, uint64_t steady_ms, uint64_t wall_ms);
int expiry_clock_replay(tally_replica *r, uint64_t steady_ms, uint64_t wall_ms);
int expiry_clock_journal(tally_replica *r);
/* Inline: it is on every op's way to the journal, and almost every op is not one (op o has
 * passed op_validate, so a timeout means a pending). */
static inline int expiry_clock_before(tally_replica *r, const op *o) {
    if (o->kind != OP_TRANSFER || o->u.transfer.timeout_ms == 0 || o->origin != r->id) {
        return TALLY_OK;
    }
    return expiry_clock_journal(r);
}
/* Reads the wall clock and moves the steady clock on by it; returns the wall clock. */
uint64_t expiry_clock_read(tally_replica *r);

/* --- ledger/check.c --- */
/* Walks the whole state and checks the invariants above. True when they hold. */
bool replica_check(const tally_replica *r);
/* The same, telling a broken invariant (TALLY_ECORRUPT) from a check that ran out of memory
 * (TALLY_ENOMEM). */
int replica_check_status(const tally_replica *r);
/* What a loaded snapshot must pass, from what the replica keeps, without recomputing it from
 * the records: invariants 1 and 2 of every incarnation (none overdrawn, Σ rights equal to the
 * spendable amount, none for an unbounded one), conservation per ledger, and fields an op can
 * have in every pending this replica will void by itself. Linear in accounts and timed
 * pendings, allocates nothing. */
bool replica_check_loaded(const tally_replica *r);
/* With TALLY_CHECK_WRITES (a debug build option): asserts the invariants at the end of every
 * write call, apply and open; see check.c for how often on a large replica. Else nothing. */
#ifdef TALLY_CHECK_WRITES
void replica_debug_check(tally_replica *r);
#else
static inline void replica_debug_check(tally_replica *r) {
    (void)r;
}
#endif

#endif
