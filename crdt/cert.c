/*
 * crdt/cert.c — admission certificates (cert.h).
 */
#define _GNU_SOURCE
#include "crdt/cert.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char authority_cn[] = "tally authority";

/* --- reading ---------------------------------------------------------------------------------- */

bool cert_der(const uint8_t *in, size_t len, uint8_t **der, size_t *der_len) {
    *der = NULL;
    *der_len = 0;
    static const char begin[] = "-----BEGIN CERTIFICATE-----";
    if (len < sizeof begin - 1 || memcmp(in, begin, sizeof begin - 1) != 0) {
        if (len == 0 || len > CERT_DER_MAX || (*der = malloc(len)) == NULL) {
            return false;
        }
        memcpy(*der, in, len);
        *der_len = len;
        return true;
    }
    BIO *b = len <= CERT_DER_MAX * 2 ? BIO_new_mem_buf(in, (int)len) : NULL;
    X509 *x = b != NULL ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    unsigned char *out = NULL;
    int n = x != NULL ? i2d_X509(x, &out) : -1;
    bool ok = n > 0 && n <= CERT_DER_MAX && (*der = malloc((size_t)n)) != NULL;
    if (ok) {
        memcpy(*der, out, (size_t)n);
        *der_len = (size_t)n;
    }
    OPENSSL_free(out);
    X509_free(x);
    BIO_free(b);
    ERR_clear_error();
    return ok;
}

/* Parses DER that re-encodes to exactly itself (so the to-be-signed bytes OpenSSL writes are
 * the ones that were signed). NULL otherwise. */
static X509 *parse_exact(const uint8_t *der, size_t len) {
    if (len == 0 || len > CERT_DER_MAX) {
        return NULL;
    }
    const unsigned char *p = der;
    X509 *x = d2i_X509(NULL, &p, (long)len);
    unsigned char *again = NULL, *tbs = NULL;
    /* OpenSSL keeps the bytes it parsed a certificate's body from and writes them back as they
     * were: encoding the body afresh first makes i2d_X509 write what OpenSSL itself would */
    int n = x != NULL && p == der + len && i2d_re_X509_tbs(x, &tbs) > 0 ? i2d_X509(x, &again) : -1;
    OPENSSL_free(tbs);
    /* and the signature is the last thing in it, a BIT STRING of 64 bytes with no unused bits
     * (which OpenSSL would write back as it read them) */
    bool same = n == (int)len && memcmp(again, der, len) == 0 && len > 3 + CRYPTO_SIG &&
                memcmp(der + len - CRYPTO_SIG - 3, "\x03\x41\x00", 3) == 0;
    OPENSSL_free(again);
    if (!same) {
        X509_free(x);
        return NULL;
    }
    return x;
}

/* Whether x's Ed25519 signature verifies under key, by crypto_verify. */
static bool signed_by(X509 *x, const uint8_t key[CRYPTO_KEY]) {
    const ASN1_BIT_STRING *sig;
    const X509_ALGOR *alg;
    X509_get0_signature(&sig, &alg, x);
    const ASN1_OBJECT *oid;
    X509_ALGOR_get0(&oid, NULL, NULL, alg);
    if (OBJ_obj2nid(oid) != NID_ED25519 || X509_get_signature_nid(x) != NID_ED25519 ||
        ASN1_STRING_length(sig) != CRYPTO_SIG) {
        return false;
    }
    unsigned char *tbs = NULL;
    int n = i2d_re_X509_tbs(x, &tbs);
    bool ok = n > 0 && crypto_verify(key, tbs, (size_t)n, ASN1_STRING_get0_data(sig));
    OPENSSL_free(tbs);
    return ok;
}

/* The one entry of a name with this nid, as a NUL-terminated UTF-8 string of at most cap - 1
 * bytes with no NUL inside. */
static bool name_text(const X509_NAME *name, int nid, char *out, size_t cap) {
    int at = X509_NAME_get_index_by_NID(name, nid, -1);
    if (at < 0 || X509_NAME_get_index_by_NID(name, nid, at) >= 0) {
        return false;
    }
    const ASN1_STRING *s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, at));
    int n = ASN1_STRING_length(s);
    if (n <= 0 || (size_t)n >= cap || memchr(ASN1_STRING_get0_data(s), 0, (size_t)n) != NULL) {
        return false;
    }
    memcpy(out, ASN1_STRING_get0_data(s), (size_t)n);
    out[n] = '\0';
    return true;
}

static bool raw_key(X509 *x, uint8_t key[CRYPTO_KEY]) {
    EVP_PKEY *k = X509_get0_pubkey(x);
    size_t n = CRYPTO_KEY;
    return k != NULL && EVP_PKEY_get_id(k) == EVP_PKEY_ED25519 &&
           EVP_PKEY_get_raw_public_key(k, key, &n) == 1 && n == CRYPTO_KEY && crypto_key_valid(key);
}

/* Whether x is a CA (basicConstraints CA:TRUE) or says it is not. */
static bool is_ca(X509 *x) {
    return (X509_get_extension_flags(x) & EXFLAG_CA) != 0;
}

bool cert_authority_read(const uint8_t *der, size_t len, cert_authority *out) {
    memset(out, 0, sizeof *out);
    X509 *x = parse_exact(der, len);
    char cn[sizeof authority_cn];
    bool ok = x != NULL && raw_key(x, out->key) && signed_by(x, out->key) && is_ca(x) &&
              X509_NAME_cmp(X509_get_subject_name(x), X509_get_issuer_name(x)) == 0 &&
              name_text(X509_get_subject_name(x), NID_commonName, cn, sizeof cn) &&
              strcmp(cn, authority_cn) == 0 &&
              name_text(X509_get_subject_name(x), NID_organizationName, out->cluster,
                        sizeof out->cluster);
    X509_free(x);
    ERR_clear_error();
    if (!ok) {
        memset(out, 0, sizeof *out);
    }
    return ok;
}

/* A decimal u64 with no sign, space or leading zero, not 0. */
static bool decimal_id(const char *s, uint64_t *out) {
    if (s[0] < '1' || s[0] > '9') {
        return false;
    }
    uint64_t v = 0;
    for (const char *p = s; *p != '\0'; p++) {
        if (*p < '0' || *p > '9' || v > (UINT64_MAX - (uint64_t)(*p - '0')) / 10) {
            return false;
        }
        v = v * 10 + (uint64_t)(*p - '0');
    }
    *out = v;
    return true;
}

static bool not_after(X509 *x, uint64_t *out) {
    struct tm tm;
    if (ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) != 1) {
        return false;
    }
    time_t t = timegm(&tm);
    *out = t < 0 ? 0 : (uint64_t)t;
    return t >= 0;
}

bool cert_replica_read(const uint8_t *der, size_t len, const cert_authority *a, cert_replica *out) {
    memset(out, 0, sizeof *out);
    X509 *x = parse_exact(der, len);
    char cluster[CERT_CLUSTER_MAX + 1], cn[24], ou[8], issuer_cn[sizeof authority_cn];
    const X509_NAME *subject = x != NULL ? X509_get_subject_name(x) : NULL;
    const X509_NAME *issuer = x != NULL ? X509_get_issuer_name(x) : NULL;
    bool ok = x != NULL && signed_by(x, a->key) && !is_ca(x) && raw_key(x, out->key) &&
              name_text(issuer, NID_commonName, issuer_cn, sizeof issuer_cn) &&
              strcmp(issuer_cn, authority_cn) == 0 &&
              name_text(issuer, NID_organizationName, cluster, sizeof cluster) &&
              strcmp(cluster, a->cluster) == 0 &&
              name_text(subject, NID_organizationName, cluster, sizeof cluster) &&
              strcmp(cluster, a->cluster) == 0 &&
              name_text(subject, NID_commonName, cn, sizeof cn) && decimal_id(cn, &out->replica) &&
              name_text(subject, NID_organizationalUnitName, ou, sizeof ou) &&
              (strcmp(ou, "write") == 0 || strcmp(ou, "read") == 0) &&
              not_after(x, &out->not_after);
    if (ok) {
        out->permits = strcmp(ou, "write") == 0 ? CERT_PERMIT_WRITE : 0;
    }
    X509_free(x);
    ERR_clear_error();
    if (!ok) {
        memset(out, 0, sizeof *out);
    }
    return ok;
}

/* --- issuing ---------------------------------------------------------------------------------- */

static bool add_name(X509_NAME *n, const char *field, const char *value) {
    return X509_NAME_add_entry_by_txt(n, field, MBSTRING_UTF8, (const unsigned char *)value, -1, -1,
                                      0) == 1;
}

static bool add_ext(X509 *x, X509 *issuer, int nid, const char *value) {
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    bool ok = e != NULL && X509_add_ext(x, e, -1) == 1;
    X509_EXTENSION_free(e);
    return ok;
}

/* A certificate for key, named subject, signed by the authority's seed. */
static bool issue(const uint8_t seed[CRYPTO_SEED], const cert_authority *a, bool ca, const char *cn,
                  const char *ou, const uint8_t key[CRYPTO_KEY], uint64_t until, uint8_t **der,
                  size_t *len) {
    *der = NULL;
    *len = 0;
    EVP_PKEY *signer = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, CRYPTO_SEED);
    EVP_PKEY *subject_key = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, key, CRYPTO_KEY);
    X509 *x = X509_new();
    BIGNUM *serial = BN_new();
    bool ok = signer != NULL && subject_key != NULL && x != NULL && serial != NULL &&
              X509_set_version(x, 2) == 1 &&
              BN_rand(serial, 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) == 1 &&
              BN_to_ASN1_INTEGER(serial, X509_get_serialNumber(x)) != NULL &&
              X509_gmtime_adj(X509_getm_notBefore(x), 0) != NULL &&
              ASN1_TIME_set(X509_getm_notAfter(x), (time_t)until) != NULL &&
              X509_set_pubkey(x, subject_key) == 1;
    X509_NAME *issuer = X509_NAME_new(), *subject = X509_get_subject_name(x);
    ok = ok && issuer != NULL && add_name(issuer, "O", a->cluster) &&
         add_name(issuer, "CN", authority_cn) && X509_set_issuer_name(x, issuer) == 1 &&
         add_name(subject, "O", a->cluster) && add_name(subject, "CN", cn) &&
         (ou == NULL || add_name(subject, "OU", ou)) &&
         add_ext(x, ca ? x : NULL, NID_basic_constraints,
                 ca ? "critical,CA:TRUE" : "critical,CA:FALSE") &&
         add_ext(x, NULL, NID_key_usage,
                 ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature") &&
         X509_sign(x, signer, NULL) > 0;
    unsigned char *out = NULL;
    int n = ok ? i2d_X509(x, &out) : -1;
    ok = n > 0 && n <= CERT_DER_MAX && (*der = malloc((size_t)n)) != NULL;
    if (ok) {
        memcpy(*der, out, (size_t)n);
        *len = (size_t)n;
    }
    OPENSSL_free(out);
    X509_NAME_free(issuer);
    BN_free(serial);
    X509_free(x);
    EVP_PKEY_free(subject_key);
    EVP_PKEY_free(signer);
    ERR_clear_error();
    return ok;
}

bool cert_authority_issue(const uint8_t seed[CRYPTO_SEED], const char *cluster, uint8_t **der,
                          size_t *len) {
    *der = NULL;
    *len = 0;
    cert_authority a;
    memset(&a, 0, sizeof a);
    size_t n = strlen(cluster);
    crypto_ctx c = {0};
    bool ok = n > 0 && n <= CERT_CLUSTER_MAX && crypto_init(&c) && crypto_set_signer(&c, seed);
    if (ok) {
        memcpy(a.cluster, cluster, n);
        memcpy(a.key, c.public_key, CRYPTO_KEY);
    }
    crypto_free(&c);
    return ok && crypto_key_valid(a.key) &&
           issue(seed, &a, true, authority_cn, NULL, a.key, CERT_NEVER, der, len);
}

bool cert_replica_issue(const uint8_t seed[CRYPTO_SEED], const cert_authority *a,
                        const cert_replica *c, uint8_t **der, size_t *len) {
    *der = NULL;
    *len = 0;
    char cn[24];
    snprintf(cn, sizeof cn, "%llu", (unsigned long long)c->replica);
    return c->replica != 0 && crypto_key_valid(c->key) &&
           issue(seed, a, false, cn, (c->permits & CERT_PERMIT_WRITE) ? "write" : "read", c->key,
                 c->not_after, der, len);
}

/* --- PEM ------------------------------------------------------------------------------------- */

/* What a memory BIO holds, as a NUL-terminated string. */
static bool bio_text(BIO *b, char **out, size_t *len) {
    char *p;
    long n = BIO_get_mem_data(b, &p);
    *out = n > 0 ? malloc((size_t)n + 1) : NULL;
    if (*out == NULL) {
        return false;
    }
    memcpy(*out, p, (size_t)n);
    (*out)[n] = '\0';
    *len = (size_t)n;
    return true;
}

bool cert_pem(const uint8_t *der, size_t len, char **pem, size_t *pem_len) {
    *pem = NULL;
    *pem_len = 0;
    const unsigned char *p = der;
    X509 *x = len <= CERT_DER_MAX ? d2i_X509(NULL, &p, (long)len) : NULL;
    BIO *b = BIO_new(BIO_s_mem());
    bool ok = x != NULL && b != NULL && PEM_write_bio_X509(b, x) == 1 && bio_text(b, pem, pem_len);
    BIO_free(b);
    X509_free(x);
    ERR_clear_error();
    return ok;
}

bool cert_key_pem(const uint8_t seed[CRYPTO_SEED], char **pem, size_t *pem_len) {
    *pem = NULL;
    *pem_len = 0;
    EVP_PKEY *k = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, CRYPTO_SEED);
    BIO *b = BIO_new(BIO_s_mem());
    bool ok = k != NULL && b != NULL &&
              PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL) == 1 &&
              bio_text(b, pem, pem_len);
    BIO_free(b);
    EVP_PKEY_free(k);
    ERR_clear_error();
    return ok;
}

bool cert_key_read(const uint8_t *pem, size_t len, uint8_t seed[CRYPTO_SEED]) {
    BIO *b = len <= 4096 ? BIO_new_mem_buf(pem, (int)len) : NULL;
    EVP_PKEY *k = b != NULL ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
    size_t n = CRYPTO_SEED;
    bool ok = k != NULL && EVP_PKEY_get_id(k) == EVP_PKEY_ED25519 &&
              EVP_PKEY_get_raw_private_key(k, seed, &n) == 1 && n == CRYPTO_SEED;
    EVP_PKEY_free(k);
    BIO_free(b);
    ERR_clear_error();
    return ok;
}
