/*
 * tally.h — the public API of tally, a replicated ledger that never overdraws and never
 * needs consensus.
 *
 * A replica (tally_replica) holds accounts and transfers. Every replica accepts writes on its
 * own, offline if need be; replicas exchange summaries and deltas (tally_summary, tally_delta,
 * tally_apply) over any transport and converge. The right to spend a bounded account's money is
 * split into rights held by replicas, so no replica can ever take such an account below its
 * bound, even while it cannot reach any other.
 *
 * Rules for every function here:
 *   1. Each returns a tally_result (as int) unless its type says otherwise.
 *   2. None aborts, exits or prints, whatever its arguments.
 *   3. Out parameters are set to a known value (NULL, zero) before anything can fail, so a caller
 *      never reads garbage after an error.
 *   4. Buffers returned through uint8_t ** belong to the caller and are freed with tally_free.
 *   5. A call that takes a callback and returns an error never runs that callback.
 *   6. A replica is not thread-safe: one thread at a time may call into it.
 *
 * This header is C11 with no compiler extensions, and needs no other header than the standard
 * ones below (libuv is only named, never included).
 *
 * Changes in 0.3 (each listed in README.md too):
 *   - Every replica has an Ed25519 key and signs its ops in runs; tally_apply takes a peer's
 *     ops only in runs signed by their origin's key and chained onto its history, and refuses
 *     anything else with TALLY_ECORRUPT, its own origin's ops included (docs/design.md, 4).
 *   - tally_summary and tally_delta speak format version 3 (heads and flags in summaries,
 *     signed runs and proofs of forks in deltas); versions 1 and 2 are refused. A delta never
 *     splits a run (max_bytes is exceeded only by a first run longer than it).
 *   - Results appended: TALLY_FORKED, TALLY_REPLICA_FORKED, TALLY_ORIGIN_FORKED. A replica id
 *     that signed two histories is proven forked where they meet; tally_forks lists the proofs;
 *     every replica keeps all of its histories (up to 64) and converges on them, and
 *     tally_fork_damage (new, with tally_damage) reports what they spent beyond what it held
 *     (see "Forks" below).
 *   - Holds (see "Holds"): tally_open holds the writes of a replica whose directory was
 *     restored, copied or damaged, or that is opened with the new flag TALLY_OPEN_RESTORED,
 *     durably (dir/MARK; journal segment version 3), until a peer that holds its history
 *     answers the challenge in its summary, or tally_lift_hold; result appended:
 *     TALLY_ORIGIN_HELD. tally_held, tally_hold_name, tally_hold_reason, tally_lift_hold,
 *     tally_node_lift_hold are new. A summary no longer makes a replica refuse writes with
 *     TALLY_ORIGIN_BEHIND (anyone could send one claiming any seq); only its own signed runs,
 *     brought back in part, do.
 *   - TALLY_OPEN_AS_NEW starts what a directory holds as a new replica (new id and key), and
 *     keeps the old replica's files beside it, held (TALLY_HOLD_RENEWED, appended).
 *   - Admission (see "Admission"): tally_options gains authority and certificate (appended);
 *     tally_admission_of, tally_set_certificate, tally_authority_create and
 *     tally_certificate_issue are new; result appended: TALLY_NOT_ADMITTED.
 *   - A durable replica keeps its key in dir/key; tally_open refuses a journal whose runs were
 *     signed with a key that is not there (TALLY_ECORRUPT, and opts->error says so). Snapshot
 *     format version 6; versions 1 to 5 and 0.2's journals still open, and the ops this
 *     replica made before are signed when it opens.
 *
 * Changes in 0.2:
 *   - Results appended: TALLY_REPLICA_UNKNOWN, TALLY_ACCOUNT_UNBOUNDED, TALLY_ACCOUNT_AMBIGUOUS.
 *   - tally_grant refuses a receiver never heard from (TALLY_REPLICA_UNKNOWN) and an unbounded
 *     account with TALLY_ACCOUNT_UNBOUNDED (was TALLY_FLAGS_INVALID); tally_grant_with takes a
 *     flag for a receiver the caller vouches for, and names an incarnation.
 *   - tally_node_request_rights answers TALLY_ACCOUNT_UNBOUNDED for an unbounded account.
 *   - tally_transfer gains debit_bound and credit_bound (in what was padding: the size is the
 *     same) and the flag TALLY_TRANSFER_BOUNDS_NAMED; tally_conflict gains the other
 *     incarnation's ledger, flags and balance; tally_incarnations lists an id's incarnations.
 *   - Writes by account id never go to a less restrictive incarnation (docs/design.md, 5).
 *   - tally_create_transfers writes every results[i], also when the batch fails whole, and
 *     answers TALLY_ORIGIN_BEHIND per transfer.
 *   - tally_version_vector lists the version vector as numbers.
 *   - tally_next_expiry says when the next pending created here is due to expire; timeouts
 *     count across restarts from a clock the journal keeps (journal and snapshot format
 *     version 2; version 1 files still open, and a version 1 segment is not appended to).
 *   - tally_log_level names the levels a node's log callback is given (the numbers are as
 *     before).
 */
#ifndef TALLY_H
#define TALLY_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(TALLY_BUILDING) && defined(__GNUC__)
#define TALLY_API __attribute__((visibility("default")))
#else
#define TALLY_API
#endif

#define TALLY_VERSION_MAJOR 0
#define TALLY_VERSION_MINOR 3
#define TALLY_VERSION_PATCH 0

/* ---------------------------------------------------------------------------------------------
 * Results.
 *
 * One table makes the enum, tally_strerror and tally_result_name, so they never drift apart.
 * The first 26 entries are fixed; new ones are only ever appended, so a result's number never
 * changes.
 * ------------------------------------------------------------------------------------------- */
#define TALLY_RESULT_MAP(XX)                                                                       \
    XX(OK, "ok")                                                                                   \
    XX(EXISTS, "exists with the same fields; nothing was applied again")                           \
    XX(EXISTS_WITH_DIFFERENT_FIELDS, "exists with different fields")                               \
    XX(ID_ZERO, "an id is zero")                                                                   \
    XX(LEDGER_ZERO, "ledger is zero")                                                              \
    XX(FLAGS_INVALID, "flags are invalid")                                                         \
    XX(ACCOUNTS_SAME, "debit and credit accounts are the same")                                    \
    XX(DEBIT_ACCOUNT_NOT_FOUND, "debit account not found")                                         \
    XX(CREDIT_ACCOUNT_NOT_FOUND, "credit account not found")                                       \
    XX(LEDGER_MISMATCH, "the transfer's and the accounts' ledgers differ")                         \
    XX(AMOUNT_ZERO, "amount is zero")                                                              \
    XX(EXCEEDS_CREDITS, "the debit exceeds the account's credits")                                 \
    XX(EXCEEDS_DEBITS, "the credit exceeds the account's debits")                                  \
    XX(INSUFFICIENT_RIGHTS, "the funds exist, but this replica holds too few rights")              \
    XX(OVERFLOW, "a sum would overflow")                                                           \
    XX(PENDING_NOT_FOUND, "pending transfer not found")                                            \
    XX(PENDING_ALREADY_POSTED, "pending transfer already posted")                                  \
    XX(PENDING_ALREADY_VOIDED, "pending transfer already voided")                                  \
    XX(PENDING_EXPIRED, "pending transfer expired")                                                \
    XX(PENDING_NOT_HERE, "the pending transfer is held by another replica")                        \
    XX(NOT_FOUND, "not found")                                                                     \
    XX(EINVAL, "invalid argument")                                                                 \
    XX(ENOMEM, "out of memory")                                                                    \
    XX(EIO, "input/output error")                                                                  \
    XX(ECORRUPT, "bytes that do not decode or do not validate")                                    \
    XX(ELOCKED, "the directory is open in another replica or process")                             \
    XX(PENDING_MISMATCH, "post/void names accounts, ledger or code other than the pending's")      \
    XX(EXCEEDS_PENDING_AMOUNT, "the post exceeds the pending amount")                              \
    XX(TIMEOUT_NOT_PENDING, "a timeout is only allowed on a pending transfer")                     \
    XX(PENDING_ID_INVALID, "pending_id must be zero, or differ from id on a post or void")         \
    XX(ETOOBIG, "a limit was reached (replicas, ops per origin, buffer size)")                     \
    XX(ORIGIN_BEHIND, "a peer holds ops of this replica newer than its journal: apply them first") \
    XX(ETIMEDOUT, "no answer in time")                                                             \
    XX(REPLICA_UNKNOWN, "the receiving replica has never been heard from here")                    \
    XX(ACCOUNT_UNBOUNDED, "the account is unbounded: it has no rights to spend, grant or ask for") \
    XX(ACCOUNT_AMBIGUOUS, "the account id has incarnations with different bounds: name one")       \
    XX(FORKED, "an origin signed more histories than a replica keeps (64): this one is refused")   \
    XX(REPLICA_FORKED, "the receiving replica signed two histories: it is given nothing")          \
    XX(ORIGIN_FORKED, "this replica's history forked (a restore, a copy): start a new replica")    \
    XX(ORIGIN_HELD, "this replica may have been restored or copied: a peer must confirm its "      \
                    "history first (tally_held)")                                                  \
    XX(NOT_ADMITTED, "the cluster's authority has not admitted this replica to write (no valid "   \
                     "certificate: tally_admission_of)")

typedef enum tally_result {
#define TALLY_RESULT_ENUM_(name, message) TALLY_##name,
    TALLY_RESULT_MAP(TALLY_RESULT_ENUM_)
#undef TALLY_RESULT_ENUM_
        TALLY_RESULT_COUNT_
} tally_result;

/* A sentence for a result; "unknown result" for a value outside the table. Never NULL. */
TALLY_API const char *tally_strerror(int result);
/* The enum's name without its prefix ("INSUFFICIENT_RIGHTS"); "UNKNOWN" outside the table. */
TALLY_API const char *tally_result_name(int result);

/* ---------------------------------------------------------------------------------------------
 * Replicas.
 * ------------------------------------------------------------------------------------------- */
typedef struct tally_id {
    uint64_t hi, lo;
} tally_id; /* 128-bit; all-zero is invalid */

typedef struct tally_replica tally_replica; /* opaque */

typedef enum tally_sync_mode {
    TALLY_SYNC_NONE = 0,   /* never fsync (tests, benchmarks) */
    TALLY_SYNC_COMMIT = 1, /* fsync before each create_* call returns */
} tally_sync_mode;

enum {
    /* Open a journal that has a corrupt frame in the middle by keeping what comes before it
     * (and dropping everything after). Without it, such a journal is refused. */
    TALLY_OPEN_REPAIR = 1u << 0,
    /* The directory was restored from a backup (or the replica's state otherwise brought
     * back): hold its writes until a peer confirms its history (see "Holds" below). */
    TALLY_OPEN_RESTORED = 1u << 1,
    /* Start what the directory holds as a new replica: a new id (opts->replica_id, or a random
     * one when 0) and a new key, with every op and proof the old replica held that it can
     * vouch for (its peers' signed runs, and its own), in the directory. The old replica's
     * files move, whole, to "<dir>.replica-<old id>" (a further "-N" if that is taken), held
     * (TALLY_HOLD_RENEWED) so that they write nothing by mistake. For a replica that was
     * restored, copied or damaged (tally_held) and should not wait for a peer to confirm it,
     * or that was proven forked: see "Holds" below. */
    TALLY_OPEN_AS_NEW = 1u << 2,
};

typedef struct tally_options {
    const char *dir;     /* NULL: in-memory replica, nothing persisted */
    uint64_t replica_id; /* 0: load it from dir, or generate a new random one */
    tally_sync_mode sync_mode;
    uint64_t (*clock_ms)(void *ctx); /* NULL: the real wall clock (ms since epoch) */
    void *clock_ctx;
    /* Added after the fixed part: zero is the default for each. */
    uint32_t flags;      /* TALLY_OPEN_* */
    char *error;         /* NULL, or where tally_open writes a sentence saying why it failed */
    size_t error_size;   /* the size of that buffer */
    /* Admission (see "Admission" below). The cluster authority's certificate and this
     * replica's, each PEM or DER; NULL: none given (a durable replica keeps both once given). */
    const uint8_t *authority;
    size_t authority_len;
    const uint8_t *certificate;
    size_t certificate_len;
} tally_options;

/* Opens a replica. *out is set to NULL first and to the replica on TALLY_OK; the caller closes
 * it with tally_close.
 *
 * With opts->dir, the replica is durable: the directory (created if missing) holds its journal,
 * and opening replays it. A torn write at the journal's tail (a crash mid-write) is cut off;
 * anything dropped that may have been shared holds the replica's writes (see "Holds");
 * a corrupt frame followed by valid ones is refused with TALLY_ECORRUPT, and opts->error
 * names the file and offset, unless opts->flags has TALLY_OPEN_REPAIR. The replica id is kept
 * in the journal; a non-zero opts->replica_id must match it.
 *
 * Results: TALLY_OK; TALLY_EINVAL (opts or out NULL, an unknown sync_mode or flag, a replica id
 * that differs from the directory's); TALLY_ENOMEM; TALLY_EIO (the directory or a file cannot
 * be read or written, or no random id can be drawn); TALLY_ECORRUPT; TALLY_ELOCKED (the
 * directory is open in another replica, in this process or another). */
TALLY_API int tally_open(const tally_options *opts, tally_replica **out);
/* Closes a replica and frees everything it owns; a durable replica's journal is synced first
 * (whatever its sync mode) and its directory unlocked. tally_close(NULL) does nothing. */
TALLY_API void tally_close(tally_replica *r);
/* Writes a snapshot of a durable replica's state, so that opening it loads the snapshot and
 * replays only the journal written after it; journal segments that only older snapshots needed
 * are deleted (the two newest snapshots are kept). Written atomically: a crash leaves the old
 * snapshot or the new one, whole.
 * Results: TALLY_OK; TALLY_EINVAL (NULL, or an in-memory replica); TALLY_EIO; TALLY_ENOMEM. */
TALLY_API int tally_snapshot(tally_replica *r);
/* This replica's non-zero id; 0 for NULL. */
TALLY_API uint64_t tally_replica_id(const tally_replica *r);

/* ---------------------------------------------------------------------------------------------
 * Holds: a replica that may not be where its history is.
 *
 * A replica that writes an op with a seq it already used, and shared, has signed two histories
 * (a fork, see "Forks"). That happens when it lost what it wrote: restored from a backup,
 * copied, or a journal that lost frames. tally_open looks for the signs and, when it finds one,
 * holds the replica's writes: every write answers TALLY_ORIGIN_HELD, and its deltas carry none
 * of its own ops, until one of:
 *   - a peer answers its challenge: a held replica's summary carries a nonce drawn at each
 *     opening, and a peer's tally_delta for it ends with the answer, a hash over the nonce and
 *     the peer's head run of this replica, which only a holder of that run's ops can make.
 *     tally_apply takes it: right, and about the head the replica is at, it confirms that the
 *     peer held this replica's history up to here, which it did not learn from the replica
 *     since the hold (it sends none of its own ops). Any ops of its own the peer holds beyond
 *     that come back first, in the same delta. The next write lifts the hold, durably.
 *   - tally_lift_hold: an operator's word that no other copy of this replica wrote.
 * Or, not waiting: reopened with TALLY_OPEN_AS_NEW, its data becomes a new replica's.
 * A hold outlives restarts (dir/MARK). What it cannot see: a restore that keeps the files'
 * inodes (a file-system or VM snapshot rolled back) looks like no restore; open it with
 * TALLY_OPEN_RESTORED. A copy started while the original is quiet, and confirmed by a peer
 * before the original writes again, is found only as a fork when the two histories meet. Any
 * replica that holds its runs can answer, wrongly on purpose too: a hold stops an honest
 * mistake and an attacker who holds none of its history; a dishonest holder gains a fork that
 * is then proven (docs/design.md, "Holds").
 * ------------------------------------------------------------------------------------------- */
typedef enum tally_hold {
    TALLY_HOLD_NONE = 0,
    TALLY_HOLD_RESTORED = 1, /* opened with TALLY_OPEN_RESTORED */
    TALLY_HOLD_MOVED = 2,    /* the directory is not the one it was written in (restored from a
                                backup, copied, or moved to another file system) */
    TALLY_HOLD_DAMAGED = 3,  /* opening dropped a journal frame that may have been shared, or the
                                directory's mark is damaged or missing */
    TALLY_HOLD_MISSING = 4,  /* a journal segment the directory had is missing */
    TALLY_HOLD_UNCLEAN = 5,  /* it stopped without closing while it did not sync
                                (TALLY_SYNC_NONE): what it wrote last, and shared, may be lost */
    TALLY_HOLD_RENEWED = 6,  /* its data was started as a new replica (TALLY_OPEN_AS_NEW): what
                                is left here is kept to read; only tally_lift_hold lifts it */
} tally_hold;

/* Why r's writes are held; TALLY_HOLD_NONE when they are not (or once a peer confirmed it). */
TALLY_API tally_hold tally_held(const tally_replica *r);
/* The enum's name without its prefix ("MOVED"), or a sentence saying why; "UNKNOWN" and
 * "unknown hold" outside the enum. Never NULL. */
TALLY_API const char *tally_hold_name(int hold);
TALLY_API const char *tally_hold_reason(int hold);
/* Lifts r's hold, durably: the caller vouches that no other copy of this replica wrote after
 * the state it holds (a node logs it). TALLY_OK also when nothing is held; TALLY_EINVAL
 * (NULL); TALLY_EIO. */
TALLY_API int tally_lift_hold(tally_replica *r);

/* ---------------------------------------------------------------------------------------------
 * Admission (docs/design.md, "Admission"; docs/operations.md, "Keys and certificates").
 *
 * A cluster may have an authority: an Ed25519 key that signs a certificate (X.509) for each
 * replica it admits, binding the replica id to the key that signs its ops, the cluster, an end
 * (notAfter) and whether it may write. A replica opened with the authority's certificate
 * (tally_options.authority) takes an origin's ops only under the key its certificate names
 * (TALLY_NOT_ADMITTED otherwise): nobody can write as a replica id without the authority's
 * word, nor take an id nobody was given. Certificates travel with their replica's history.
 * Its own certificate (tally_options.certificate) lets it write until its end
 * (TALLY_NOT_ADMITTED after, or without one: such a replica syncs and writes nothing; give its
 * public key, tally_admission_of, to the authority). A durable replica keeps both in its journal:
 * they need to be given once. Keys that are not canonical or of small order are refused.
 *
 * Without an authority (the quick start), a replica still signs its ops, and each origin's key
 * is the one its first run brought: forgery of a replica whose history a replica has is
 * refused, forks are proven; but a replica that meets an id first through a forger takes the
 * forger's key, and anyone may add replica ids.
 * ------------------------------------------------------------------------------------------- */
typedef struct tally_admission {
    uint8_t authority;      /* 1: the replica belongs to a cluster with an authority */
    char cluster[65];       /* its name, as the authority's certificate has it */
    uint8_t admitted;       /* 1: this replica's own certificate is here, from that authority */
    uint8_t may_write;      /* 1: it lets it write */
    uint64_t not_after;     /* when it ends, seconds since the epoch (253402300799: never) */
    uint8_t public_key[32]; /* the key this replica signs with: its certificate names it */
} tally_admission;
/* Results: TALLY_OK; TALLY_EINVAL (NULL). */
TALLY_API int tally_admission_of(const tally_replica *r, tally_admission *out);
/* Gives an open replica its certificate (PEM or DER), kept durably: for a replica that was
 * opened before the authority admitted it. Results: TALLY_OK; TALLY_EINVAL (NULL, a replica
 * without an authority, a certificate that is not this replica's, by its id and public key,
 * from its authority); TALLY_ENOMEM; TALLY_EIO. */
TALLY_API int tally_set_certificate(tally_replica *r, const uint8_t *certificate, size_t len);
/* A new authority for a cluster (a name of 1 to 64 bytes): its certificate and its private key,
 * PEM, NUL-terminated, each freed with tally_free. Keep the key offline and secret: it admits
 * replicas. Results: TALLY_OK; TALLY_EINVAL; TALLY_ENOMEM; TALLY_EIO (no randomness). */
TALLY_API int tally_authority_create(const char *cluster, char **certificate_pem, char **key_pem);
/* A certificate for replica_id's public key, signed by the authority (its certificate and its
 * key, PEM or DER), valid until not_after (seconds since the epoch; 0: never), letting it write
 * unless may_write is 0: PEM, NUL-terminated, freed with tally_free. Results: TALLY_OK;
 * TALLY_EINVAL (an argument NULL or 0, an authority that does not check, a key that is not
 * the authority's, a public key that is not canonical or of small order); TALLY_ENOMEM. */
TALLY_API int tally_certificate_issue(const uint8_t *authority, size_t authority_len,
                                      const uint8_t *authority_key, size_t authority_key_len,
                                      uint64_t replica_id, const uint8_t public_key[32],
                                      uint64_t not_after, int may_write, char **certificate_pem);

/* ---------------------------------------------------------------------------------------------
 * Accounts and transfers (TigerBeetle's vocabulary).
 * ------------------------------------------------------------------------------------------- */
enum {
    TALLY_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS = 1u << 0,
    TALLY_ACCOUNT_CREDITS_MUST_NOT_EXCEED_DEBITS = 1u << 1,
};
typedef struct tally_account {
    tally_id id;
    uint64_t user_data;
    uint32_t ledger; /* non-zero */
    uint16_t code;
    uint16_t flags;
} tally_account;

enum {
    TALLY_TRANSFER_PENDING = 1u << 0,
    TALLY_TRANSFER_POST_PENDING = 1u << 1,
    TALLY_TRANSFER_VOID_PENDING = 1u << 2,
    /* The request names each account's incarnation by its bound flags (debit_bound,
     * credit_bound): see "Incarnations" below. Never set on a transfer read back. */
    TALLY_TRANSFER_BOUNDS_NAMED = 1u << 3,
};
typedef struct tally_transfer {
    tally_id id;
    tally_id debit_account_id;
    tally_id credit_account_id;
    tally_id pending_id; /* for POST_PENDING / VOID_PENDING */
    uint64_t amount;     /* POST_PENDING: 0 means the full pending amount */
    uint64_t user_data;
    uint32_t ledger;
    uint32_t timeout_ms; /* PENDING only; 0 = never expires */
    uint16_t code;
    uint16_t flags;
    /* The bound flags (TALLY_ACCOUNT_*_MUST_NOT_EXCEED_*, 0: unbounded) of the incarnation each
     * side writes to. Read only with TALLY_TRANSFER_BOUNDS_NAMED; lookups always fill them. */
    uint16_t debit_bound, credit_bound;
} tally_transfer;

/* Creates an account.
 * Results: TALLY_OK; TALLY_EXISTS (same id and fields: nothing applied);
 * TALLY_EXISTS_WITH_DIFFERENT_FIELDS; TALLY_ID_ZERO; TALLY_LEDGER_ZERO; TALLY_FLAGS_INVALID
 * (an unknown flag, or both bound flags); TALLY_EINVAL (NULL); TALLY_ENOMEM; TALLY_ETOOBIG. */
TALLY_API int tally_create_account(tally_replica *r, const tally_account *a);

/* Creates a transfer: posted (flags 0), pending (TALLY_TRANSFER_PENDING, optionally with a
 * timeout), or the post or void of a pending transfer that this replica created.
 *
 * On a post or void, debit_account_id, credit_account_id, ledger and code may be zero (taken from
 * the pending) or must equal the pending's; amount 0 posts the full pending amount, a smaller
 * amount posts part and releases the rest; a void's amount must be 0 or the pending amount.
 * A post never fails for want of rights, and a void never fails for want of rights or room in
 * a sum: the pending's origin can always finish what it reserved.
 *
 * A transfer by account id writes to the incarnation "Incarnations" below describes; with
 * TALLY_TRANSFER_BOUNDS_NAMED it names them (not on a post or void: those follow the pending).
 * A retry (the same id) is TALLY_EXISTS when a transfer with that id and these fields is known
 * here, whichever replica created it, and TALLY_EXISTS_WITH_DIFFERENT_FIELDS otherwise.
 *
 * Results: TALLY_OK; TALLY_EXISTS; TALLY_EXISTS_WITH_DIFFERENT_FIELDS; TALLY_ID_ZERO (id, an
 * account id, or a post/void's pending_id); TALLY_LEDGER_ZERO; TALLY_FLAGS_INVALID;
 * TALLY_ACCOUNTS_SAME; TALLY_DEBIT_ACCOUNT_NOT_FOUND; TALLY_CREDIT_ACCOUNT_NOT_FOUND;
 * TALLY_ACCOUNT_AMBIGUOUS; TALLY_LEDGER_MISMATCH; TALLY_AMOUNT_ZERO; TALLY_EXCEEDS_CREDITS
 * and TALLY_EXCEEDS_DEBITS (the account, as known here, cannot cover it at all);
 * TALLY_INSUFFICIENT_RIGHTS (the account can cover it, but this replica holds too few rights:
 * ask a holder, see tally_rights_holders); TALLY_OVERFLOW; TALLY_PENDING_NOT_FOUND;
 * TALLY_PENDING_ALREADY_POSTED; TALLY_PENDING_ALREADY_VOIDED; TALLY_PENDING_EXPIRED;
 * TALLY_PENDING_NOT_HERE; TALLY_PENDING_MISMATCH; TALLY_EXCEEDS_PENDING_AMOUNT;
 * TALLY_TIMEOUT_NOT_PENDING; TALLY_PENDING_ID_INVALID; TALLY_EINVAL; TALLY_ENOMEM;
 * TALLY_ETOOBIG; TALLY_EIO; TALLY_ORIGIN_BEHIND; TALLY_ORIGIN_FORKED; TALLY_ORIGIN_HELD. */
TALLY_API int tally_create_transfer(tally_replica *r, const tally_transfer *t);

/* One durable write for the whole batch; results[i] is t[i]'s tally_result. Returns TALLY_OK
 * unless the batch as a whole failed (TALLY_EIO, TALLY_ENOMEM, TALLY_EINVAL): then every
 * results[i] holds that same result (when results is not NULL), and no transfer of the batch
 * can be counted on (after TALLY_EIO, what was applied in memory is not durable). A replica
 * that refuses local writes (TALLY_ORIGIN_BEHIND, _FORKED, _HELD) answers TALLY_OK with that
 * result for each transfer. Transfers are applied in order, so t[i] sees the effect of t[0..i-1]. n
 * == 0 is TALLY_OK. */
TALLY_API int tally_create_transfers(tally_replica *r, const tally_transfer *t, size_t n,
                                     int *results);

/* Moves `amount` of this replica's rights on a bounded account to replica `to_replica`, which
 * must have been heard from here (at least one of its ops applied): rights granted to an id
 * nobody holds are stranded for good. tally_grant_with can vouch for a receiver instead.
 * Results: TALLY_OK; TALLY_ID_ZERO; TALLY_NOT_FOUND (no such account here);
 * TALLY_ACCOUNT_UNBOUNDED (it has no rights); TALLY_ACCOUNT_AMBIGUOUS (the id has more than one
 * bounded incarnation: name one with tally_grant_with); TALLY_EINVAL (to_replica is 0 or this
 * replica); TALLY_REPLICA_UNKNOWN; TALLY_AMOUNT_ZERO; TALLY_INSUFFICIENT_RIGHTS; TALLY_OVERFLOW;
 * TALLY_ENOMEM; TALLY_ETOOBIG. */
TALLY_API int tally_grant(tally_replica *r, tally_id account_id, uint64_t to_replica,
                          uint64_t amount);

enum {
    /* The caller knows the receiver exists (it is a peer on the line, or was admitted out of
     * band), although no op of it has reached this replica yet. */
    TALLY_GRANT_TO_UNKNOWN = 1u << 0,
};
typedef struct tally_grant_request {
    tally_id account_id;
    uint64_t to_replica;
    uint64_t amount;
    uint32_t ledger; /* 0: the incarnation tally_grant would use; else, with bound, the one */
    uint16_t bound;  /* with a ledger: the incarnation's bound flags */
    uint16_t flags;  /* TALLY_GRANT_* */
} tally_grant_request;
/* tally_grant with options: a receiver not heard from yet (TALLY_GRANT_TO_UNKNOWN), and an
 * incarnation named by ledger and bound flags. Results: as tally_grant, and TALLY_EINVAL (g
 * NULL, an unknown flag); TALLY_NOT_FOUND (no such incarnation). */
TALLY_API int tally_grant_with(tally_replica *r, const tally_grant_request *g);

/* Voids, on this replica's own clock, every pending transfer created here whose timeout has
 * passed. The create calls do this themselves first; call it when idle to release reservations
 * (tally_next_expiry says when; the sync node does it on a timer by itself).
 * A timeout is measured on the wall clock's forward steps only: a pending of timeout T expires
 * once the clock has moved forward T since it was created, counting the time the replica was
 * closed when the clock moved forward across it (the journal keeps the count, so restarts,
 * however frequent, never grant a timeout afresh). A clock that jumps back does not keep a
 * reservation alive; one that jumps forward brings due expiries forward, never later ones.
 * A pending of this replica's that a peer brings back (after a restore from a backup) gets
 * what its timestamp shows is left of its timeout, at most T from when it came back.
 * docs/design.md, section 4, has the rule and why an expiry can never fail for want of rights
 * or room in a sum.
 * *voided (may be NULL) is set to how many were voided.
 * Results: TALLY_OK; TALLY_EINVAL; TALLY_ENOMEM; TALLY_ETOOBIG; TALLY_EIO;
 * TALLY_ORIGIN_BEHIND. */
TALLY_API int tally_expire(tally_replica *r, uint64_t *voided);
/* How long until the next pending created here is due to expire: *in_ms is 0 when one is due
 * now, UINT64_MAX when none has a timeout. Results: TALLY_OK; TALLY_EINVAL. */
TALLY_API int tally_next_expiry(tally_replica *r, uint64_t *in_ms);

typedef struct tally_balance {
    uint64_t debits_posted, credits_posted;
    uint64_t debits_pending, credits_pending;
    uint64_t rights_here; /* bounded accounts: what this replica may still spend; 0 otherwise */
} tally_balance;

/* Results: TALLY_OK; TALLY_NOT_FOUND; TALLY_ID_ZERO; TALLY_EINVAL; TALLY_OVERFLOW when a sum
 * made of concurrent writes on several replicas exceeds 64 bits (the field then reads
 * UINT64_MAX). */
TALLY_API int tally_lookup_balance(const tally_replica *r, tally_id account_id, tally_balance *out);
/* The account's fields (of the winning OPEN, if two replicas opened it differently).
 * Results: TALLY_OK; TALLY_NOT_FOUND; TALLY_ID_ZERO; TALLY_EINVAL. */
TALLY_API int tally_lookup_account(const tally_replica *r, tally_id account_id, tally_account *out);
/* The rights replica_id holds on a bounded account, as known here (0 for an unbounded account).
 * Results: TALLY_OK; TALLY_NOT_FOUND; TALLY_ID_ZERO; TALLY_EINVAL; TALLY_OVERFLOW. */
TALLY_API int tally_rights(const tally_replica *r, tally_id account_id, uint64_t replica_id,
                           uint64_t *out);

typedef struct tally_rights_entry {
    uint64_t replica_id;
    uint64_t amount;
} tally_rights_entry;
/* Who holds rights on an account, as known here, richest first. Writes at most cap entries;
 * *count is set to how many holders there are (which may exceed cap).
 * Results: TALLY_OK; TALLY_NOT_FOUND; TALLY_ID_ZERO; TALLY_EINVAL (out NULL with cap > 0). */
TALLY_API int tally_rights_holders(const tally_replica *r, tally_id account_id,
                                   tally_rights_entry *out, size_t cap, size_t *count);

/* The transfer as created (for a POST/VOID, the record of that post or void), wherever it was
 * created. A post created with amount 0 reads back with the amount it posted.
 * Results: TALLY_OK; TALLY_NOT_FOUND; TALLY_ID_ZERO; TALLY_EINVAL. */
TALLY_API int tally_lookup_transfer(const tally_replica *r, tally_id transfer_id,
                                    tally_transfer *out);

typedef enum tally_pending_state {
    TALLY_PENDING_NONE = 0, /* not a pending transfer */
    TALLY_PENDING_OPEN = 1,
    TALLY_PENDING_POSTED = 2,
    TALLY_PENDING_VOIDED = 3,
    TALLY_PENDING_TIMED_OUT = 4,
} tally_pending_state;
/* Where a transfer stands: who created it, and for a pending transfer whether it is still open.
 * Results: TALLY_OK; TALLY_NOT_FOUND; TALLY_ID_ZERO; TALLY_EINVAL. */
TALLY_API int tally_transfer_status(const tally_replica *r, tally_id transfer_id, uint64_t *origin,
                                    tally_pending_state *state);

/* ---------------------------------------------------------------------------------------------
 * Conflicts: what concurrent writes on replicas that could not talk produced. Never dropped.
 * ------------------------------------------------------------------------------------------- */
typedef enum tally_conflict_kind {
    TALLY_CONFLICT_ACCOUNT = 1,  /* two OPENs of one account id with different fields */
    TALLY_CONFLICT_TRANSFER = 2, /* one transfer id created on two replicas */
} tally_conflict_kind;
typedef struct tally_dot {
    uint64_t origin, seq;
} tally_dot;
typedef struct tally_conflict {
    tally_conflict_kind kind;
    tally_id id;
    tally_dot winner; /* what lookups by id show (for accounts, see "Incarnations") */
    tally_dot other;  /* the concurrent op, which stays applied */
    /* TALLY_CONFLICT_ACCOUNT: the other OPEN's ledger and flags, and the balance of the
     * incarnation it belongs to (reach it by naming them, see "Incarnations"); zero for a
     * transfer conflict. balance.rights_here is this replica's rights there. */
    uint32_t ledger;
    uint16_t flags;
    tally_balance balance;
} tally_conflict;
/* Lists conflicts, in the order they were found here. Writes entries [first, first + cap) of
 * the list; *count is set to the total number. Equal sets on converged replicas (order aside).
 * Results: TALLY_OK; TALLY_EINVAL (out NULL with cap > 0). */
TALLY_API int tally_conflicts(const tally_replica *r, size_t first, tally_conflict *out, size_t cap,
                              size_t *count);

/* ---------------------------------------------------------------------------------------------
 * Forks. An honest replica signs each of its ops once, in runs (docs/design.md, "Whose ops
 * these are"). Two of its signed statements whose runs overlap and differ prove that it did
 * not: its directory was restored from a backup or copied, or its key taken. A replica keeps
 * the first such proof it finds or is sent for each replica id, durably, and sends it on to
 * every peer. It keeps every history of the forked replica, each as a branch, and sends them
 * on like any other ops, so all replicas converge (docs/design.md, "Past a fork"); it gives
 * the forked replica nothing (tally_grant: TALLY_REPLICA_FORKED), and, when the forked replica
 * is itself, takes no writes (TALLY_ORIGIN_FORKED). Past 64 histories of one replica, it
 * refuses a further one (tally_apply: TALLY_FORKED). tally_fork_damage reports what the
 * histories spent beyond what the forked replica held.
 * ------------------------------------------------------------------------------------------- */
#define TALLY_STATEMENT_BYTES 104
typedef struct tally_fork {
    uint64_t replica_id;        /* the replica that signed two histories */
    uint8_t public_key[32];     /* its Ed25519 key: both signatures verify under it */
    uint64_t first[2], last[2]; /* the two runs the statements sign: its seqs first..last */
    /* The two statements, each as it was signed (its layout: docs/design.md), in the order of
     * their bytes, and their Ed25519 signatures: anyone can check the proof with the key. */
    uint8_t statement[2][TALLY_STATEMENT_BYTES];
    uint8_t signature[2][64];
} tally_fork;
/* Lists the forks proven here, in the order they were learned. Writes entries
 * [first, first + cap) of the list; *count is set to the total number. Results: TALLY_OK;
 * TALLY_EINVAL (out NULL with cap > 0). */
TALLY_API int tally_forks(const tally_replica *r, size_t first, tally_fork *out, size_t cap,
                          size_t *count);

/* On one bounded account, what the histories of one forked replica spent beyond the rights it
 * held: the account may be below its bound by this much because of the fork, and by no more
 * than `bound`. For each place where its histories part, bound counts the rights the history
 * held there (with what was granted to it since, by replicas that had no proof yet) once for
 * each history past the first; taken <= bound always (docs/design.md, "Past a fork"). */
typedef struct tally_damage {
    uint64_t replica_id; /* the forked replica */
    tally_id account_id; /* the account's incarnation: id, ledger, bound flags */
    uint32_t ledger;
    uint16_t flags;
    uint32_t histories;    /* how many histories of the replica's are here */
    uint64_t taken, bound; /* UINT64_MAX when past 64 bits */
} tally_damage;
/* Lists, for each forked replica and each bounded account where its histories took more than
 * it held (taken > 0), the damage. Writes entries [first, first + cap) of the list; *count is
 * set to the total number. Equal lists on converged replicas. Results: TALLY_OK; TALLY_EINVAL
 * (out NULL with cap > 0). */
TALLY_API int tally_fork_damage(const tally_replica *r, size_t first, tally_damage *out, size_t cap,
                                size_t *count);

/* ---------------------------------------------------------------------------------------------
 * Incarnations. Two replicas that could not talk may open one account id with different
 * ledgers or bound flags; each such OPEN makes its own *incarnation* (id, ledger, bound flags)
 * with its own balance and rights, so that neither breaks its bound (docs/design.md, 5).
 *
 * Lookups by id show the head: a bounded incarnation before an unbounded one, then the one
 * with the smaller OPEN dot. A transfer by id writes, on each side, to the incarnation in the
 * transfer's ledger, a bounded one before an unbounded one; if that ledger has incarnations
 * with both bound flags, which is meant cannot be told and the transfer is refused with
 * TALLY_ACCOUNT_AMBIGUOUS. So a write by id never lands on a less restrictive incarnation than
 * one the id has. Any incarnation is reached by naming it: TALLY_TRANSFER_BOUNDS_NAMED on a
 * transfer, a ledger and bound in tally_grant_with.
 * ------------------------------------------------------------------------------------------- */
typedef struct tally_incarnation {
    tally_account account; /* the fields of its smallest-dot OPEN (flags: all of that OPEN's) */
    tally_dot open;        /* that OPEN's dot */
    tally_balance balance; /* rights_here: this replica's rights there */
    int head;              /* 1 for the one lookups by id show */
} tally_incarnation;
/* Lists an account id's incarnations, the head first, then by ledger and bound flags. Writes
 * at most cap; *count is set to how many there are.
 * Results: TALLY_OK; TALLY_NOT_FOUND; TALLY_ID_ZERO; TALLY_EINVAL (r or count NULL, out NULL
 * with cap > 0); TALLY_OVERFLOW (a balance exceeds 64 bits: that field reads UINT64_MAX). */
TALLY_API int tally_incarnations(const tally_replica *r, tally_id account_id,
                                 tally_incarnation *out, size_t cap, size_t *count);

/* ---------------------------------------------------------------------------------------------
 * Transport-agnostic sync. Buffers returned through uint8_t ** are freed with tally_free.
 * ------------------------------------------------------------------------------------------- */
/* This replica's version vector, encoded. Results: TALLY_OK; TALLY_EINVAL; TALLY_ENOMEM. */
TALLY_API int tally_summary(const tally_replica *r, uint8_t **buf, size_t *len);
/* The ops the peer's summary lacks, in this replica's journal order, at most max_bytes long
 * unless the first op alone is longer (an op is never split; 0: no limit). An empty delta (no
 * op) is a valid delta. A summary is only the peer's word: it changes nothing here. A held
 * peer's summary carries a challenge (tally_held), which a delta that brings the peer all it
 * lacks answers at its end; tally_apply takes the answer. A held replica's delta holds none of
 * its own ops (and nothing after the first of them).
 * Results: TALLY_OK; TALLY_EINVAL; TALLY_ENOMEM; TALLY_ECORRUPT (the summary does not decode);
 * TALLY_EIO (a durable replica whose journal failed: nothing leaves it). */
TALLY_API int tally_delta(const tally_replica *r, const uint8_t *peer_summary, size_t peer_len,
                          size_t max_bytes, uint8_t **buf, size_t *len);
/* Validates and applies a delta. Any byte string whatever either applies a causally valid
 * prefix of its ops and returns TALLY_OK, or returns TALLY_ECORRUPT having applied nothing of
 * the rejected op (ops before it stay applied). Ops this replica has are skipped. On a durable
 * replica what was applied is in the journal (synced under TALLY_SYNC_COMMIT) before it returns.
 * Results: TALLY_OK; TALLY_ECORRUPT; TALLY_EINVAL; TALLY_ENOMEM; TALLY_ETOOBIG; TALLY_EIO. */
TALLY_API int tally_apply(tally_replica *r, const uint8_t *delta, size_t len);
/* Frees a buffer returned by this library. tally_free(NULL) does nothing. */
TALLY_API void tally_free(void *buf);

/* XXH3-128 of the canonical derived state and version vector: equal on converged replicas.
 * Results: TALLY_OK; TALLY_EINVAL. */
TALLY_API int tally_digest(const tally_replica *r, uint8_t out[16]);

/* The highest seq of `origin` applied here (0 if none). */
TALLY_API uint64_t tally_seen(const tally_replica *r, uint64_t origin);

typedef struct tally_version {
    uint64_t replica_id; /* an origin */
    uint64_t seq;        /* the highest of its seqs applied here, at least 1 */
} tally_version;
/* This replica's version vector: every origin it has applied ops of, by replica id ascending.
 * Writes at most cap entries; *count is set to how many there are (which may exceed cap).
 * Results: TALLY_OK; TALLY_EINVAL (r or count NULL, or out NULL with cap > 0); TALLY_ENOMEM. */
TALLY_API int tally_version_vector(const tally_replica *r, tally_version *out, size_t cap,
                                   size_t *count);

typedef struct tally_stats {
    uint64_t ops;            /* ops applied (the journal's length) */
    uint64_t accounts;       /* account ids known */
    uint64_t transfers;      /* transfer records (creations, posts, voids) */
    uint64_t pending;        /* pending transfers still open */
    uint64_t conflicts;      /* conflicts listed by tally_conflicts */
    uint64_t origins;        /* replicas with at least one op here */
    uint64_t refused_rights; /* local creates refused with TALLY_INSUFFICIENT_RIGHTS since the
                                replica was opened (a refusal is not an op: not kept) */
} tally_stats;
/* Results: TALLY_OK; TALLY_EINVAL. */
TALLY_API int tally_get_stats(const tally_replica *r, tally_stats *out);

/* Makes room for `accounts` accounts and `transfers` transfers (TRANSFER, POST and VOID ops) in
 * all, counting those held already, and faults the memory in now. Until the replica holds more,
 * creating and applying them does not grow its record arrays, its op log, its id maps or the log
 * positions of its own ops (no doubling, no rehash of a large map in the middle of a write), nor
 * take the page faults of their first touch; a peer's ops still add 4 bytes each to that peer's
 * position table as they arrive. For a server that knows its size: it pays for its memory at
 * start, as TigerBeetle does. A replica that is never reserved grows as it goes. The memory is
 * about 100 bytes a transfer and 250 an account. The reservation lasts while the replica is
 * open (not across tally_close). Whatever the result, the replica is unchanged but for its
 * capacity.
 * Results: TALLY_OK; TALLY_EINVAL (r NULL); TALLY_ETOOBIG (more than a replica can hold);
 * TALLY_ENOMEM. */
TALLY_API int tally_reserve(tally_replica *r, uint64_t accounts, uint64_t transfers);

/* ---------------------------------------------------------------------------------------------
 * The sync node: a replica's endpoint on the network (libuv, TCP). tally.h names libuv's loop
 * type without including uv.h, so an application that does not sync needs no libuv headers.
 * A node and its replica are used from the loop's thread only.
 * ------------------------------------------------------------------------------------------- */
struct uv_loop_s;
typedef struct tally_node tally_node; /* opaque: one replica's sync endpoint */

/* The level of a line a node logs: its callback's `level` argument. */
typedef enum tally_log_level {
    TALLY_LOG_ERROR = 0,
    TALLY_LOG_WARN = 1,
    TALLY_LOG_INFO = 2,
    TALLY_LOG_DEBUG = 3,
} tally_log_level;

typedef struct tally_node_options {
    const char *listen;       /* "127.0.0.1:7400"; port 0 picks a free one; NULL: do not listen */
    const char *cluster;      /* peers with another cluster name are refused; NULL: "tally" */
    uint32_t anti_entropy_ms; /* 0: a sensible default (1000) */
    void (*log)(void *ctx, int level, const char *message); /* a tally_log_level; NULL: silent */
    void *log_ctx;
    /* Added after the fixed part: zero is the default for each. */
    uint64_t rights_reserve;    /* rights on each account this node keeps when asked for some */
    uint32_t rights_timeout_ms; /* how long a rights request waits (0: 2000) */
    uint32_t handshake_timeout_ms; /* a peer must complete its HELLO within this (0: 5000) */
    uint32_t idle_timeout_ms;      /* a peer silent this long is dropped (0: 10000) */
} tally_node_options;

/* Starts a node for r on loop: listens (if asked), and from then on pushes every change to r
 * (local writes and ops from peers) to connected peers, exchanges summaries with each every
 * anti_entropy_ms to heal anything lost, and voids r's pendings when their timeouts pass
 * (tally_expire on a timer set by tally_next_expiry), busy or idle; it logs at the levels of
 * tally_log_level.
 * opts->listen is "host:port" with an IPv4 literal, "localhost" or a bracketed IPv6 literal.
 * If SIGPIPE is at its default action, the first node sets it to ignored (as libuv servers do):
 * a peer that goes away mid-write is then an error on that connection, not the process's end.
 * Results: TALLY_OK; TALLY_EINVAL (a NULL argument, a bad address or cluster name, or r already
 * has a node); TALLY_ENOMEM; TALLY_EIO (cannot listen: the node cleans up on the loop). */
TALLY_API int tally_node_start(struct uv_loop_s *loop, tally_replica *r,
                               const tally_node_options *opts, tally_node **out);
/* The bound port, or -1 (not listening, or NULL). */
TALLY_API int tally_node_port(const tally_node *n);
/* Keeps a connection to a peer, reconnecting with exponential backoff and jitter until removed.
 * addr is "host:port": an IPv4 literal, a bracketed IPv6 literal, or a DNS name. A name is looked
 * up on libuv's thread pool before every round of connection attempts (so a changed record is
 * picked up at the next reconnect), and each address it has is tried in turn; a name that does
 * not resolve is retried with the same backoff (and logged) until removed.
 * Results: TALLY_OK; TALLY_EXISTS (already a peer); TALLY_EINVAL (not host:port, a host that is
 * neither a literal nor a valid name, port 0 or past 65535); TALLY_ENOMEM. */
TALLY_API int tally_node_add_peer(tally_node *n, const char *addr);
/* Closes the session with a peer and stops reconnecting to it.
 * Results: TALLY_OK; TALLY_NOT_FOUND (unknown); TALLY_EINVAL. */
TALLY_API int tally_node_remove_peer(tally_node *n, const char *addr);
/* tally_lift_hold on the node's replica, logged as a warning with the hold it lifts: the
 * operator's word that no other copy of this replica wrote. Results as tally_lift_hold's. */
TALLY_API int tally_node_lift_hold(tally_node *n);
/* Asks reachable peers for `amount` of rights on a bounded account: the holders this replica
 * knows of, richest first, one after another until the amount is reached. A holder grants what
 * it holds above its rights_reserve (a GRANT op, which replicates like any op) or refuses; a
 * holder asked again for the same account by the same replica within 100 ms refuses. cb runs
 * once, on the loop, after every grant the holders announced has been applied here (judged by
 * the grants themselves, so spending or receiving meanwhile changes nothing): TALLY_OK and the
 * amount (all of it); TALLY_INSUFFICIENT_RIGHTS and what was granted (part or none; no
 * reachable holder has more to spare); TALLY_ETIMEDOUT and what had arrived by then.
 * Results: TALLY_OK (cb will run); TALLY_EINVAL (NULL, amount 0, no cb); TALLY_ID_ZERO;
 * TALLY_NOT_FOUND (no such account here); TALLY_ACCOUNT_UNBOUNDED (it has no rights to ask
 * for); TALLY_ENOMEM. If it returns anything but TALLY_OK, cb never runs. */
typedef void (*tally_rights_cb)(void *ctx, int result, uint64_t granted);
TALLY_API int tally_node_request_rights(tally_node *n, tally_id account_id, uint64_t amount,
                                        tally_rights_cb cb, void *ctx);
/* The "home replica" policy: rights on this account that reach this node are passed on to the
 * home replica as soon as a session with it is ready (a home of 0 removes the policy).
 * Results: TALLY_OK; TALLY_EINVAL; TALLY_ID_ZERO; TALLY_ENOMEM. */
TALLY_API int tally_node_set_home(tally_node *n, tally_id account_id, uint64_t home_replica);
typedef struct tally_node_stats {
    uint64_t peers;            /* configured peers */
    uint64_t sessions;         /* open connections */
    uint64_t sessions_ready;   /* of which past the handshake */
    uint64_t bytes_in, bytes_out; /* on the wire, since the node started */
    uint64_t ops_in, ops_out;  /* ops received and applied / sent */
} tally_node_stats;
/* Results: TALLY_OK; TALLY_EINVAL. */
TALLY_API int tally_node_get_stats(const tally_node *n, tally_node_stats *out);

typedef enum tally_peer_state {
    TALLY_PEER_DOWN = 0,       /* no connection: waiting to reconnect */
    TALLY_PEER_CONNECTING = 1, /* TCP connect in progress */
    TALLY_PEER_HANDSHAKE = 2,  /* connected, HELLO not yet exchanged */
    TALLY_PEER_READY = 3,      /* syncing */
} tally_peer_state;
typedef struct tally_node_peer {
    char address[96];    /* as given to tally_node_add_peer, or "ip:port (incoming)" */
    uint64_t replica_id; /* 0 until the handshake */
    tally_peer_state state;
    int outgoing;        /* 1: a configured peer; 0: a connection a peer made to this node */
} tally_node_peer;
/* The configured peers and every open connection, at most cap of them; *count is set to how
 * many there are. Results: TALLY_OK; TALLY_EINVAL (n or count NULL, out NULL with cap > 0). */
TALLY_API int tally_node_peers(const tally_node *n, tally_node_peer *out, size_t cap,
                               size_t *count);
/* Closes every session and handle; stopped runs on the loop when all are closed, after which
 * the node is freed. The replica stays open (close it after stopped). NULL: nothing. */
TALLY_API void tally_node_stop(tally_node *n, void (*stopped)(void *ctx), void *ctx);

#ifdef __cplusplus
}
#endif
#endif /* TALLY_H */
