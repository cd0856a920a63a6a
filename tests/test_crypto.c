/*
 * test_crypto.c — crdt/crypto.c: SHA-256 and Ed25519 as RFC 8032 and FIPS 180-4 give them, and
 * the forgery a degenerate public key allows, refused.
 */
#include "support.h"

#include <stdio.h>
#include <string.h>

#include "crdt/crypto.h"

static void hex(const char *s, uint8_t *out, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned v = 0;
        assert_int_equal(sscanf(s + 2 * i, "%2x", &v), 1);
        out[i] = (uint8_t)v;
    }
}

static void sha256_matches_the_standard(void **state) {
    (void)state;
    crypto_ctx c;
    assert_true(crypto_init(&c));
    uint8_t want[CRYPTO_HASH], got[CRYPTO_HASH];
    hex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", want, sizeof want);
    assert_true(crypto_sha256(&c, "abc", 3, got));
    assert_memory_equal(got, want, CRYPTO_HASH);
    /* in steps, the same */
    crypto_sha s;
    assert_true(crypto_sha_init(&c, &s));
    for (int twice = 0; twice < 2; twice++) {
        assert_true(crypto_sha_begin(&s));
        assert_true(crypto_sha_add(&s, "a", 1));
        assert_true(crypto_sha_add(&s, "bc", 2));
        assert_true(crypto_sha_end(&s, got));
        assert_memory_equal(got, want, CRYPTO_HASH);
    }
    crypto_sha_free(&s);
    crypto_free(&c);
}

/* RFC 8032, section 7.1, tests 1 and 2. */
static void ed25519_matches_rfc_8032(void **state) {
    (void)state;
    static const struct {
        const char *seed, *key, *msg, *sig;
    } cases[] = {
        {"9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
         "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
         "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e3970"
         "1cf9b46bd25bf5f0595bbe24655141438e7a100b"},
        {"4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
         "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
         "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613"
         "d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"},
    };
    crypto_ctx c;
    assert_true(crypto_init(&c));
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t seed[CRYPTO_SEED], key[CRYPTO_KEY], msg[1], sig[CRYPTO_SIG], got[CRYPTO_SIG];
        size_t n = strlen(cases[i].msg) / 2;
        hex(cases[i].seed, seed, sizeof seed);
        hex(cases[i].key, key, sizeof key);
        hex(cases[i].msg, msg, n);
        hex(cases[i].sig, sig, sizeof sig);
        assert_true(crypto_set_signer(&c, seed));
        assert_memory_equal(c.public_key, key, CRYPTO_KEY);
        assert_true(crypto_key_valid(key));
        assert_true(crypto_sign(&c, msg, n, got));
        assert_memory_equal(got, sig, CRYPTO_SIG);
        assert_true(crypto_verify(key, msg, n, sig));
        /* a changed message, signature or key does not verify */
        uint8_t other = 1;
        assert_false(crypto_verify(key, &other, 1, sig));
        got[10] ^= 0x20;
        assert_false(crypto_verify(key, msg, n, got));
        key[3] ^= 1;
        assert_false(crypto_verify(key, msg, n, sig));
    }
    /* signing leaves hashing as it was */
    uint8_t want[CRYPTO_HASH], got[CRYPTO_HASH];
    hex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", want, sizeof want);
    assert_true(crypto_sha256(&c, "abc", 3, got));
    assert_memory_equal(got, want, CRYPTO_HASH);
    crypto_free(&c);
}

/* S + L, with L the group's order, is the same signature to a careless verifier: RFC 8032
 * requires S < L, so that a signature has one encoding. */
static void a_signature_with_a_non_canonical_s_is_refused(void **state) {
    (void)state;
    crypto_ctx c;
    assert_true(crypto_init(&c));
    uint8_t seed[CRYPTO_SEED] = {7}, sig[CRYPTO_SIG];
    assert_true(crypto_set_signer(&c, seed));
    assert_true(crypto_sign(&c, "run", 3, sig));
    assert_true(crypto_verify(c.public_key, "run", 3, sig));
    static const uint8_t order[32] = {0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58,       0xd6,
                                      0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, [31] = 0x10};
    unsigned carry = 0;
    for (int i = 0; i < 32; i++) {
        unsigned s = sig[32 + i] + order[i] + carry;
        sig[32 + i] = (uint8_t)s;
        carry = s >> 8;
    }
    assert_int_equal(carry, 0);
    assert_false(crypto_verify(c.public_key, "run", 3, sig));
    crypto_free(&c);
}

/* The attack: choose as "your" public key a point of small order A, and sign anything with
 * R = the identity and S = 0. The check [S]B = R + [k]A holds whenever k, the message's hash,
 * is a multiple of A's order, so no private key is needed for a good share of all messages.
 * OpenSSL accepts such signatures; crypto_verify refuses the key, and so every one of them. */
static void no_signature_verifies_under_a_small_order_key(void **state) {
    (void)state;
    static const char *small_order[] = {
        "0100000000000000000000000000000000000000000000000000000000000000", /* identity */
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", /* order 2 */
        "0000000000000000000000000000000000000000000000000000000000000000", /* order 4 */
        "0000000000000000000000000000000000000000000000000000000000000080", /* order 4 */
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05", /* order 8 */
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85", /* order 8 */
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a", /* order 8 */
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa", /* order 8 */
        /* not canonical: y = p - 1 with x = "-0", y = p, y = p + 1, and the largest y */
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    };
    uint8_t sig[CRYPTO_SIG] = {1}; /* R = the identity (y = 1), S = 0 */
    int forged_order_2 = 0;
    for (size_t k = 0; k < sizeof small_order / sizeof small_order[0]; k++) {
        uint8_t key[CRYPTO_KEY];
        hex(small_order[k], key, sizeof key);
        assert_false(crypto_key_valid(key));
        for (uint32_t m = 0; m < 256; m++) {
            uint8_t msg[4] = {(uint8_t)m, (uint8_t)(m >> 8), 't', 'y'};
            if (k == 1 && openssl_accepts(key, msg, sizeof msg, sig)) {
                forged_order_2++;
            }
            assert_false(crypto_verify(key, msg, sizeof msg, sig));
        }
    }
    /* the forgery is real: OpenSSL alone takes about half of them */
    assert_true(forged_order_2 > 64);
    /* and an ordinary key is fine */
    crypto_ctx c;
    assert_true(crypto_init(&c));
    uint8_t seed[CRYPTO_SEED] = {1, 2, 3};
    assert_true(crypto_set_signer(&c, seed));
    assert_true(crypto_key_valid(c.public_key));
    crypto_free(&c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sha256_matches_the_standard),
        cmocka_unit_test(ed25519_matches_rfc_8032),
        cmocka_unit_test(a_signature_with_a_non_canonical_s_is_refused),
        cmocka_unit_test(no_signature_verifies_under_a_small_order_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
