/*
 * support.h — helpers shared by the cmocka tests.
 */
#ifndef TALLY_TESTS_SUPPORT_H
#define TALLY_TESTS_SUPPORT_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "crdt/crypto.h"
#include "ledger/codec.h"
#include "ledger/op.h"
#include "tally.h"

/* Compares two tally_results and prints both names when they differ. */
#define assert_result(actual, expected)                                                            \
    assert_result_at((actual), (expected), #actual, __FILE__, __LINE__)
void assert_result_at(int actual, int expected, const char *expr, const char *file, int line);

static inline tally_id tid(uint64_t n) {
    tally_id id = {0, n};
    return id;
}

/* A clock the test moves by hand. */
typedef struct test_clock {
    uint64_t now_ms;
} test_clock;
uint64_t test_clock_ms(void *ctx);

/* An in-memory replica with a fixed id and, if clock is not NULL, that clock. */
tally_replica *replica_new(uint64_t id, test_clock *clock);

/* Carries everything `to` lacks from `from`, asserting each step succeeds. */
/* An in-memory replica with src's id, key and history: a copy of its directory, as restoring
 * a backup or cloning a machine makes one. What each of the two writes next forks the id. */
tally_replica *replica_clone(const tally_replica *src);
/* Applies the delta from's makes for to's summary there: tally_apply's result. */
int apply_from(tally_replica *from, tally_replica *to);
void sync_pair(tally_replica *from, tally_replica *to);
void sync_all(tally_replica **r, int n);
void assert_converged(tally_replica *a, tally_replica *b);
/* The digest, for "nothing changed" checks. */
void digest_of(const tally_replica *r, uint8_t out[16]);

tally_account account(uint64_t id, uint32_t ledger, uint16_t flags);
/* tally_grant to a replica the caller vouches for (TALLY_GRANT_TO_UNKNOWN): for tests whose
 * receivers have not written anything yet. */
int grant_to(tally_replica *r, tally_id account_id, uint64_t to_replica, uint64_t amount);
tally_transfer transfer(uint64_t id, uint64_t debit, uint64_t credit, uint64_t amount);

/* The accounts the fork tests spend (ledger 1): a bank (1, unbounded), a wallet (2, debits
 * bounded) funded with 100 from the bank at r, whose rights r then holds, a shop (3) and a
 * thief's account (4), unbounded, and another wallet (5, debits bounded). */
void fork_wallet(tally_replica *r);
/* fork_wallet(r), then a pending transfer 50 of 40 from the wallet to the shop, made at r and
 * synced to peer; returns a copy of r from then on (replica_clone): the pending belongs to
 * both of the histories the two go on to write. */
tally_replica *fork_wallet_pending(tally_replica *r, tally_replica *peer);

/* Hand-made ops of an origin at seq: an OPEN of account id (ledger 1), and a TRANSFER between
 * accounts named with the bound flags the origin saw. */
op open_op(uint64_t origin, uint64_t seq, uint64_t id, uint16_t flags);
op transfer_op(uint64_t origin, uint64_t seq, uint64_t id, uint64_t debit, uint8_t debit_flags,
               uint64_t credit, uint8_t credit_flags, uint64_t amount);

/* The post (flag TALLY_TRANSFER_POST_PENDING) or void of a pending transfer; amount 0: all. */
tally_transfer finish(uint64_t id, uint64_t pending_id, uint16_t flag, uint64_t amount);

/* Encodes ops into one block at the end of out (which may be empty). */
void encode_block(const op *ops, size_t n, bytes *out);
/* A delta of one block holding ops[0..n) as they are (records with no dot too: a certificate,
 * a confirmation, a proof), in out (empty before). */
void records_delta(const op *ops, size_t n, bytes *out);
/* Applies to r a delta of one ADMIT record: origin's certificate, DER. tally_apply's result. */
int apply_admit(tally_replica *r, uint64_t origin, const uint8_t *der, size_t len);
/* The same with the certificate in PEM. */
int apply_admit_pem(tally_replica *r, uint64_t origin, const char *pem);
/* Opens a durable replica in dir with id (0: the directory's), in the cluster whose authority's
 * certificate is `authority` (PEM; NULL: none), syncing every commit. */
tally_replica *open_in(const char *dir, uint64_t id, const char *authority);
/* rm -rf dir. */
void remove_tree(const char *dir);
/* A cmocka fixture for tests of admission: cluster "blue"'s authority and a fresh directory. */
typedef struct authority_dir {
    char *cert, *key; /* the authority's certificate and key, PEM */
    char dir[40];
} authority_dir;
int authority_dir_setup(void **state);
int authority_dir_teardown(void **state);
/* Creates account id (ledger 1, unbounded) on r: tally_create_account's result. */
int create_account_of(tally_replica *r, uint64_t id);
/* A certificate (PEM, freed with tally_free) for r's id and public key, from the authority
 * whose certificate and key (PEM) are given, until not_after (0: never). */
char *certificate_for(const char *authority, const char *authority_key, const tally_replica *r,
                      uint64_t not_after, int may_write);
/* A delta holding ops in blocks: the way to hand a replica hand-made ops. Each run of
 * consecutive ops of one origin is signed as that origin (test_key_of), chained to the runs
 * made before for it since the last replica_new or test_chains_reset. */
void make_delta(const op *ops, size_t n, bytes *out);
void test_chains_reset(void);
/* Whether OpenSSL itself, asked directly (not through crypto_verify, which refuses degenerate
 * keys first), takes sig as an Ed25519 signature of msg under key: how tests show an attack
 * is real. */
bool openssl_accepts(const uint8_t key[CRYPTO_KEY], const void *msg, size_t len,
                     const uint8_t sig[CRYPTO_SIG]);
/* The key a hand-made origin signs with (a fixed seed made from its id). */
void test_key_of(uint64_t origin, crypto_ctx *c);
/* Signs ops[0..n), consecutive ops of one origin, as a run: *sign is its record, pointing into
 * chain and sig. */
void sign_run(const op *ops, size_t n, op *sign, uint8_t chain[CRYPTO_HASH],
              uint8_t sig[CRYPTO_SIG]);

/* A small deterministic PRNG for property tests. */
uint64_t test_rand(uint64_t *state);

#endif
