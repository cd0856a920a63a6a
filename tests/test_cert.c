/*
 * test_cert.c — crdt/cert.c: admission certificates issued and read back; every change to one
 * refused; a certificate from another authority or cluster, for a CA, or for a degenerate key
 * refused.
 */
#include "support.h"

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <string.h>
#include <time.h>

#include "crdt/cert.h"

static const uint8_t authority_seed[CRYPTO_SEED] = {7, 7, 7};

static cert_authority make_authority(const uint8_t seed[CRYPTO_SEED], const char *cluster) {
    uint8_t *der;
    size_t len;
    assert_true(cert_authority_issue(seed, cluster, &der, &len));
    cert_authority a;
    assert_true(cert_authority_read(der, len, &a));
    free(der);
    return a;
}

static cert_replica replica_with(uint64_t id, uint8_t fill) {
    crypto_ctx c = {0};
    assert_true(crypto_init(&c));
    uint8_t seed[CRYPTO_SEED];
    memset(seed, fill, sizeof seed);
    assert_true(crypto_set_signer(&c, seed));
    cert_replica r = {.replica = id, .not_after = CERT_NEVER, .permits = CERT_PERMIT_WRITE};
    memcpy(r.key, c.public_key, CRYPTO_KEY);
    crypto_free(&c);
    return r;
}

static void a_certificate_says_what_it_was_issued_with(void **state) {
    (void)state;
    uint8_t *der;
    size_t len;
    assert_true(cert_authority_issue(authority_seed, "blue", &der, &len));
    cert_authority a;
    assert_true(cert_authority_read(der, len, &a));
    assert_string_equal(a.cluster, "blue");
    /* PEM and back */
    char *pem;
    size_t pem_len;
    assert_true(cert_pem(der, len, &pem, &pem_len));
    assert_non_null(strstr(pem, "-----BEGIN CERTIFICATE-----"));
    uint8_t *again;
    size_t again_len;
    assert_true(cert_der((const uint8_t *)pem, pem_len, &again, &again_len));
    assert_int_equal(again_len, len);
    assert_memory_equal(again, der, len);
    free(again);
    free(pem);
    free(der);

    cert_replica want = replica_with(UINT64_C(18446744073709551615), 3);
    want.not_after = 2000000000;
    assert_true(cert_replica_issue(authority_seed, &a, &want, &der, &len));
    assert_true(len < 600);
    cert_replica got;
    assert_true(cert_replica_read(der, len, &a, &got));
    assert_int_equal(got.replica, want.replica);
    assert_memory_equal(got.key, want.key, CRYPTO_KEY);
    assert_int_equal(got.not_after, 2000000000);
    assert_int_equal(got.permits, CERT_PERMIT_WRITE);
    free(der);
    want.permits = 0; /* a replica that only reads */
    want.not_after = CERT_NEVER;
    assert_true(cert_replica_issue(authority_seed, &a, &want, &der, &len));
    assert_true(cert_replica_read(der, len, &a, &got));
    assert_int_equal(got.permits, 0);
    assert_int_equal(got.not_after, CERT_NEVER);
    free(der);

    /* the key in PEM and back */
    assert_true(cert_key_pem(authority_seed, &pem, &pem_len));
    uint8_t seed[CRYPTO_SEED];
    assert_true(cert_key_read((const uint8_t *)pem, pem_len, seed));
    assert_memory_equal(seed, authority_seed, CRYPTO_SEED);
    free(pem);
    assert_false(cert_key_read((const uint8_t *)"junk", 4, seed));
}

static void every_changed_bit_of_a_certificate_is_refused(void **state) {
    (void)state;
    cert_authority a = make_authority(authority_seed, "blue");
    cert_replica want = replica_with(42, 4);
    uint8_t *der;
    size_t len;
    assert_true(cert_replica_issue(authority_seed, &a, &want, &der, &len));
    cert_replica got;
    for (size_t bit = 0; bit < len * 8; bit++) {
        der[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        assert_false(cert_replica_read(der, len, &a, &got));
        der[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    for (size_t cut = 0; cut < len; cut++) {
        assert_false(cert_replica_read(der, cut, &a, &got));
    }
    assert_true(cert_replica_read(der, len, &a, &got));
    /* nor is it good for another cluster, or under another authority of the same name */
    cert_authority other = make_authority(authority_seed, "green");
    assert_false(cert_replica_read(der, len, &other, &got));
    uint8_t other_seed[CRYPTO_SEED] = {8};
    cert_authority impostor = make_authority(other_seed, "blue");
    assert_false(cert_replica_read(der, len, &impostor, &got));
    /* and it is no authority */
    assert_false(cert_authority_read(der, len, &other));
    free(der);
}

/* A certificate as an authority that signs anything would make it: any key, CA or not. */
static void forged_shape(const cert_authority *a, const uint8_t key[CRYPTO_KEY], bool ca,
                         uint8_t **der, size_t *len) {
    EVP_PKEY *signer =
        EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, authority_seed, CRYPTO_SEED);
    EVP_PKEY *pub = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, key, CRYPTO_KEY);
    assert_non_null(signer);
    assert_non_null(pub);
    X509 *x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, pub);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "O", MBSTRING_UTF8, (const unsigned char *)a->cluster, -1, -1, 0);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8, (const unsigned char *)"9", -1, -1, 0);
    X509_NAME_add_entry_by_txt(n, "OU", MBSTRING_UTF8, (const unsigned char *)"write", -1, -1, 0);
    X509_NAME *i = X509_NAME_new();
    X509_NAME_add_entry_by_txt(i, "O", MBSTRING_UTF8, (const unsigned char *)a->cluster, -1, -1, 0);
    X509_NAME_add_entry_by_txt(i, "CN", MBSTRING_UTF8, (const unsigned char *)"tally authority", -1,
                               -1, 0);
    X509_set_issuer_name(x, i);
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, NULL, x, NULL, NULL, 0);
    X509_EXTENSION *e =
        X509V3_EXT_conf_nid(NULL, &ctx, NID_basic_constraints, ca ? "CA:TRUE" : "CA:FALSE");
    X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
    assert_true(X509_sign(x, signer, NULL) > 0);
    unsigned char *out = NULL;
    int k = i2d_X509(x, &out);
    assert_true(k > 0);
    *der = malloc((size_t)k);
    memcpy(*der, out, (size_t)k);
    *len = (size_t)k;
    OPENSSL_free(out);
    X509_NAME_free(i);
    X509_free(x);
    EVP_PKEY_free(pub);
    EVP_PKEY_free(signer);
}

/* Two Ed25519 libraries disagree on degenerate keys (tests/test_crypto.c): admission refuses
 * them whoever signed the certificate, and refuses a replica's certificate that is a CA's. */
static void no_degenerate_key_or_ca_is_admitted(void **state) {
    (void)state;
    cert_authority a = make_authority(authority_seed, "blue");
    cert_replica ok = replica_with(9, 5);
    uint8_t *der;
    size_t len;
    forged_shape(&a, ok.key, false, &der, &len);
    cert_replica got;
    assert_true(cert_replica_read(der, len, &a, &got)); /* the shape itself is fine */
    free(der);
    forged_shape(&a, ok.key, true, &der, &len);
    assert_false(cert_replica_read(der, len, &a, &got));
    free(der);
    static const uint8_t order_2[CRYPTO_KEY] = {0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                                0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                                0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                                0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f};
    static const uint8_t identity[CRYPTO_KEY] = {1};
    const uint8_t *bad[] = {order_2, identity};
    for (size_t k = 0; k < 2; k++) {
        forged_shape(&a, bad[k], false, &der, &len);
        assert_false(cert_replica_read(der, len, &a, &got));
        free(der);
        cert_replica c = {.replica = 9, .not_after = CERT_NEVER, .permits = CERT_PERMIT_WRITE};
        memcpy(c.key, bad[k], CRYPTO_KEY);
        assert_false(cert_replica_issue(authority_seed, &a, &c, &der, &len));
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_certificate_says_what_it_was_issued_with),
        cmocka_unit_test(every_changed_bit_of_a_certificate_is_refused),
        cmocka_unit_test(no_degenerate_key_or_ca_is_admitted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
