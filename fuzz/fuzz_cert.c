/*
 * fuzz_cert.c — admission certificates (crdt/cert.c) under edits: the input is a list of
 * edits, each 3 bytes (a 16-bit offset, little-endian, and a byte to XOR there; an offset past
 * the end cuts the certificate there instead), applied to a valid replica certificate and to
 * the authority's, both made at start from fixed keys.
 *
 * Properties: no crash, leak or undefined behaviour; an edited certificate that reads as valid
 * is byte for byte the one issued (nobody without the authority's key can make another, and
 * one certificate has one encoding: a malleable one would let a peer send "new" certificates
 * at will); what a valid one says is what was issued; cert_der of any bytes either fails or
 * gives at most CERT_DER_MAX bytes.
 */
#include <stdlib.h>
#include <string.h>

#include "crdt/cert.h"
#include "fuzz_common.h"

static const uint8_t authority_seed[CRYPTO_SEED] = {0x41, 0x75, 0x74, 0x68};
static cert_authority authority;
static cert_replica issued;
static uint8_t *authority_der, *replica_der;
static size_t authority_len, replica_len;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    FUZZ_CHECK(cert_authority_issue(authority_seed, "fuzz", &authority_der, &authority_len));
    FUZZ_CHECK(cert_authority_read(authority_der, authority_len, &authority));
    crypto_ctx c = {0};
    uint8_t seed[CRYPTO_SEED] = {0x52, 0x65, 0x70};
    FUZZ_CHECK(crypto_init(&c) && crypto_set_signer(&c, seed));
    issued = (cert_replica){.replica = 77, .not_after = 2000000000, .permits = CERT_PERMIT_WRITE};
    memcpy(issued.key, c.public_key, CRYPTO_KEY);
    crypto_free(&c);
    FUZZ_CHECK(cert_replica_issue(authority_seed, &authority, &issued, &replica_der, &replica_len));
    return 0;
}

/* A copy of der with the edits applied; *len is its length after them. */
static uint8_t *edited(const uint8_t *der, size_t der_len, const uint8_t *edits, size_t n,
                       size_t *len) {
    uint8_t *b = malloc(der_len + 1);
    FUZZ_CHECK(b != NULL);
    memcpy(b, der, der_len);
    *len = der_len;
    for (size_t i = 0; i + 3 <= n; i += 3) {
        size_t at = (size_t)edits[i] | (size_t)edits[i + 1] << 8;
        if (at < *len) {
            b[at] ^= edits[i + 2];
        } else if (edits[i + 2] == 0) {
            *len = at % (*len + 1); /* cut short */
        }
    }
    return b;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    size_t len;
    uint8_t *b = edited(replica_der, replica_len, data, size, &len);
    cert_replica got;
    if (cert_replica_read(b, len, &authority, &got)) {
        FUZZ_CHECK(len == replica_len && memcmp(b, replica_der, len) == 0);
        FUZZ_CHECK(got.replica == issued.replica && got.not_after == issued.not_after &&
                   got.permits == issued.permits &&
                   memcmp(got.key, issued.key, CRYPTO_KEY) == 0);
    }
    cert_authority other;
    FUZZ_CHECK(!cert_authority_read(b, len, &other)); /* a replica's is never an authority's */
    free(b);
    b = edited(authority_der, authority_len, data, size, &len);
    if (cert_authority_read(b, len, &other)) {
        FUZZ_CHECK(len == authority_len && memcmp(b, authority_der, len) == 0);
        FUZZ_CHECK(memcmp(other.key, authority.key, CRYPTO_KEY) == 0 &&
                   strcmp(other.cluster, authority.cluster) == 0);
    }
    FUZZ_CHECK(!cert_replica_read(b, len, &authority, &got));
    free(b);
    uint8_t *der;
    size_t der_len;
    if (cert_der(data, size, &der, &der_len)) {
        FUZZ_CHECK(der_len > 0 && der_len <= CERT_DER_MAX);
        free(der);
    }
    return 0;
}
