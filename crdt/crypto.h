/*
 * crdt/crypto.h — the cryptography tally relies on: SHA-256 and Ed25519 (RFC 8032), from
 * OpenSSL 3's libcrypto, behind one small interface so that there is one verifier everywhere.
 *
 * Every replica must agree on which signatures are valid: a signature one replica accepts and
 * another refuses would split the cluster. Two things make that so here:
 *   1. one implementation verifies every signature (this file's crypto_verify);
 *   2. a public key is refused before any use when its encoding is not canonical (y ≥ p) or the
 *      point is of small order (its order divides 8). Under such a key signatures can be made
 *      without any private key: OpenSSL 3.0 accepts the order-2 point as a key together with
 *      the "signature" R = identity, S = 0 for about half of all messages, where libsodium
 *      refuses it. tests/test_crypto.c plays exactly that forgery.
 *
 * A private key is kept as its 32-byte seed only (RFC 8032's private key); the public key is
 * derived from it, never stored beside it, so that the two can never disagree.
 *
 * Calls return false when OpenSSL fails (out of memory) or, for crypto_verify, when the
 * signature does not verify; they leave OpenSSL's error queue empty either way.
 */
#ifndef TALLY_CRDT_CRYPTO_H
#define TALLY_CRDT_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CRYPTO_SEED 32
#define CRYPTO_KEY 32
#define CRYPTO_SIG 64
#define CRYPTO_HASH 32

/* A SHA-256 computation in steps. */
typedef struct crypto_sha {
    const struct evp_md_st *alg;
    struct evp_md_ctx_st *md;
} crypto_sha;

/* What signing and hashing keep between calls: the fetched SHA-256 (fetching it once is twice
 * as fast as fetching it at every call), a hash in steps for one-shot hashes, a context for
 * signing, and the signing key if one is set. One per replica; not shared between threads. */
typedef struct crypto_ctx {
    struct evp_md_st *sha256;
    crypto_sha sha;
    struct evp_md_ctx_st *sign;
    struct evp_pkey_st *signer;
    uint8_t public_key[CRYPTO_KEY]; /* the signing key's, once set */
} crypto_ctx;

/* Readies ctx (zeroed or freed before). False when out of memory. */
bool crypto_init(crypto_ctx *ctx);
/* Frees what ctx holds; it is zeroed again. */
void crypto_free(crypto_ctx *ctx);

/* SHA-256 of len bytes. */
bool crypto_sha256(crypto_ctx *ctx, const void *data, size_t len, uint8_t out[CRYPTO_HASH]);
/* SHA-256 in steps, with ctx's algorithm: init once (zeroed before), then begin, add any number
 * of times, end, as often as needed; free at the end. */
bool crypto_sha_init(const crypto_ctx *ctx, crypto_sha *s);
void crypto_sha_free(crypto_sha *s);
bool crypto_sha_begin(crypto_sha *s);
bool crypto_sha_add(crypto_sha *s, const void *data, size_t len);
bool crypto_sha_end(crypto_sha *s, uint8_t out[CRYPTO_HASH]);

/* A fresh random seed, from the kernel. */
bool crypto_seed_random(uint8_t seed[CRYPTO_SEED]);
/* Sets the key ctx signs with, from its seed; ctx->public_key becomes its public key. */
bool crypto_set_signer(crypto_ctx *ctx, const uint8_t seed[CRYPTO_SEED]);
/* The Ed25519 signature of len bytes with the signer's key (set). */
bool crypto_sign(crypto_ctx *ctx, const void *msg, size_t len, uint8_t sig[CRYPTO_SIG]);

/* Whether a public key may be used at all: canonical, and not of small order. */
bool crypto_key_valid(const uint8_t key[CRYPTO_KEY]);
/* Whether sig is a valid Ed25519 signature of len bytes under key. False for a key that
 * crypto_key_valid refuses, whatever the signature. */
bool crypto_verify(const uint8_t key[CRYPTO_KEY], const void *msg, size_t len,
                   const uint8_t sig[CRYPTO_SIG]);

#endif
