/*
 * crdt/crypto.c — SHA-256 and Ed25519 from OpenSSL 3's libcrypto (crdt/crypto.h).
 */
#include "crdt/crypto.h"

#include <string.h>
#include <sys/random.h>

#include <openssl/err.h>
#include <openssl/evp.h>

/* An OpenSSL failure leaves entries in the calling thread's error queue, which belongs to the
 * application as much as to us: nothing of ours stays there. */
static bool done(bool ok) {
    if (!ok) {
        ERR_clear_error();
    }
    return ok;
}

bool crypto_init(crypto_ctx *ctx) {
    memset(ctx, 0, sizeof *ctx);
    ctx->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    ctx->sign = EVP_MD_CTX_new();
    if (ctx->sha256 == NULL || ctx->sign == NULL || !crypto_sha_init(ctx, &ctx->sha)) {
        crypto_free(ctx);
        return done(false);
    }
    return true;
}

void crypto_free(crypto_ctx *ctx) {
    EVP_PKEY_free(ctx->signer);
    EVP_MD_CTX_free(ctx->sign);
    crypto_sha_free(&ctx->sha);
    EVP_MD_free(ctx->sha256);
    memset(ctx, 0, sizeof *ctx);
}

bool crypto_sha256(crypto_ctx *ctx, const void *data, size_t len, uint8_t out[CRYPTO_HASH]) {
    return crypto_sha_begin(&ctx->sha) && crypto_sha_add(&ctx->sha, data, len) &&
           crypto_sha_end(&ctx->sha, out);
}

bool crypto_sha_init(const crypto_ctx *ctx, crypto_sha *s) {
    s->alg = ctx->sha256;
    s->md = EVP_MD_CTX_new();
    return done(s->md != NULL);
}

void crypto_sha_free(crypto_sha *s) {
    EVP_MD_CTX_free(s->md);
    s->md = NULL;
}

bool crypto_sha_begin(crypto_sha *s) {
    return done(EVP_DigestInit_ex2(s->md, s->alg, NULL) == 1);
}

bool crypto_sha_add(crypto_sha *s, const void *data, size_t len) {
    return done(EVP_DigestUpdate(s->md, data, len) == 1);
}

bool crypto_sha_end(crypto_sha *s, uint8_t out[CRYPTO_HASH]) {
    unsigned int n = 0;
    return done(EVP_DigestFinal_ex(s->md, out, &n) == 1 && n == CRYPTO_HASH);
}

bool crypto_seed_random(uint8_t seed[CRYPTO_SEED]) {
    return getrandom(seed, CRYPTO_SEED, 0) == CRYPTO_SEED;
}

bool crypto_set_signer(crypto_ctx *ctx, const uint8_t seed[CRYPTO_SEED]) {
    EVP_PKEY *key = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, CRYPTO_SEED);
    size_t n = CRYPTO_KEY;
    if (key == NULL || EVP_PKEY_get_raw_public_key(key, ctx->public_key, &n) != 1 ||
        n != CRYPTO_KEY) {
        EVP_PKEY_free(key);
        return done(false);
    }
    EVP_PKEY_free(ctx->signer);
    ctx->signer = key;
    return true;
}

bool crypto_sign(crypto_ctx *ctx, const void *msg, size_t len, uint8_t sig[CRYPTO_SIG]) {
    size_t n = CRYPTO_SIG;
    /* Ed25519 hashes the message itself: no digest is named, and the whole message is signed
     * in one call (RFC 8032 PureEdDSA). Signing has a context of its own, reset every time:
     * OpenSSL 3.0 keeps the key of an earlier signing in a context and signs with that one, and
     * a context that signed no longer hashes. */
    EVP_MD_CTX_reset(ctx->sign);
    return done(ctx->signer != NULL &&
                EVP_DigestSignInit_ex(ctx->sign, NULL, NULL, NULL, NULL, ctx->signer, NULL) == 1 &&
                EVP_DigestSign(ctx->sign, sig, &n, msg, len) == 1 && n == CRYPTO_SIG);
}

/* The y coordinates (little-endian, without the sign bit) of the points of small order:
 * 1 (the identity), p - 1 (order 2), 0 (order 4), and the two of order 8. With the sign bit
 * either way these are every small-order point and every non-canonical encoding of one whose
 * y is below p; encodings with y >= p are refused separately. The order-8 values are the
 * square roots of (sqrt(1 + d) - 1) / d mod p, d = -121665/121666. tests/test_crypto.c plays
 * the forgery under the order-2 key, which OpenSSL alone accepts. */
static const uint8_t small_order_y[5][CRYPTO_KEY] = {
    {0x01},
    {0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
     0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
     0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
    {0x00},
    {0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4,
     0x89, 0xf2, 0xef, 0x98, 0xf0, 0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6,
     0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53, 0xfc, 0x05},
    {0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b,
     0x76, 0x0d, 0x10, 0x67, 0x0f, 0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39,
     0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac, 0x03, 0x7a},
};

bool crypto_key_valid(const uint8_t key[CRYPTO_KEY]) {
    uint8_t y[CRYPTO_KEY];
    memcpy(y, key, CRYPTO_KEY);
    y[CRYPTO_KEY - 1] &= 0x7f;
    /* y >= p = 2^255 - 19: bytes 1..31 all at their maximum (0xff, and 0x7f at the top) and
     * the lowest byte at 0xed or above. */
    bool top = y[CRYPTO_KEY - 1] == 0x7f;
    for (int i = 1; i < CRYPTO_KEY - 1 && top; i++) {
        top = y[i] == 0xff;
    }
    if (top && y[0] >= 0xed) {
        return false;
    }
    for (size_t i = 0; i < sizeof small_order_y / sizeof small_order_y[0]; i++) {
        if (memcmp(y, small_order_y[i], CRYPTO_KEY) == 0) {
            return false;
        }
    }
    return true;
}

bool crypto_verify(const uint8_t key[CRYPTO_KEY], const void *msg, size_t len,
                   const uint8_t sig[CRYPTO_SIG]) {
    if (!crypto_key_valid(key)) {
        return false;
    }
    EVP_PKEY *pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, key, CRYPTO_KEY);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    bool ok = pkey != NULL && md != NULL &&
              EVP_DigestVerifyInit_ex(md, NULL, NULL, NULL, NULL, pkey, NULL) == 1 &&
              EVP_DigestVerify(md, sig, CRYPTO_SIG, msg, len) == 1;
    EVP_MD_CTX_free(md);
    EVP_PKEY_free(pkey);
    return done(ok);
}
