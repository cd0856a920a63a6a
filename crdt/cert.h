/*
 * crdt/cert.h — admission certificates: X.509 v3, Ed25519, from OpenSSL 3's libcrypto.
 *
 * A cluster's authority is an Ed25519 key and a self-signed certificate naming the cluster
 * (subject O = the cluster, CN = "tally authority", a CA). It admits a replica with a
 * certificate it signs (docs/design.md, "Admission"):
 *
 *     subject   O = the cluster, CN = the replica id in decimal, OU = "write" or "read"
 *     issuer    the authority's subject
 *     key       the replica's Ed25519 key: the key that signs its ops' runs
 *     validity  notAfter: when the replica stops taking writes (99991231235959Z: never)
 *     extension basicConstraints CA:FALSE
 *
 * X.509 because it is the standard for exactly this, and because the same certificate serves
 * TLS between replicas. Checking one never calls OpenSSL's verifier: the certificate must be
 * DER as OpenSSL writes it (re-encoding gives the same bytes), and its signature is checked by
 * crypto_verify over the to-be-signed bytes, so that one verifier decides every signature, and
 * its keys, the authority's and the replica's, pass crypto_key_valid (canonical, not of small
 * order).
 *
 * Calls return false when the input does not check or OpenSSL fails; they leave OpenSSL's
 * error queue empty either way.
 */
#ifndef TALLY_CRDT_CERT_H
#define TALLY_CRDT_CERT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crdt/crypto.h"

/* The most bytes a certificate may have, DER: one is about 300. */
#define CERT_DER_MAX 2048
/* The longest cluster name. */
#define CERT_CLUSTER_MAX 64
/* A replica that may make ops; one without it only reads. */
#define CERT_PERMIT_WRITE 1u
/* A certificate's notAfter when it has none: 9999-12-31T23:59:59Z. */
#define CERT_NEVER UINT64_C(253402300799)

/* What an authority is: its key and its cluster. */
typedef struct cert_authority {
    uint8_t key[CRYPTO_KEY];
    char cluster[CERT_CLUSTER_MAX + 1];
} cert_authority;

/* What a replica's certificate says. */
typedef struct cert_replica {
    uint64_t replica;
    uint8_t key[CRYPTO_KEY];
    uint64_t not_after; /* seconds since the epoch (CERT_NEVER: none) */
    uint32_t permits;   /* CERT_PERMIT_* */
} cert_replica;

/* A certificate in PEM ("-----BEGIN CERTIFICATE-----") or DER, as DER in *der (len bytes,
 * freed with free). */
bool cert_der(const uint8_t *in, size_t len, uint8_t **der, size_t *der_len);
/* Reads an authority's certificate (DER): self-signed, a CA, for a cluster. */
bool cert_authority_read(const uint8_t *der, size_t len, cert_authority *out);
/* Checks a replica's certificate (DER) against its authority. */
bool cert_replica_read(const uint8_t *der, size_t len, const cert_authority *a, cert_replica *out);

/* A new authority for cluster, from its key's seed: its certificate, DER, in *der. */
bool cert_authority_issue(const uint8_t seed[CRYPTO_SEED], const char *cluster, uint8_t **der,
                          size_t *len);
/* A replica's certificate, signed by the authority whose seed it is (and whose certificate
 * says what its cluster is). */
bool cert_replica_issue(const uint8_t seed[CRYPTO_SEED], const cert_authority *a,
                        const cert_replica *c, uint8_t **der, size_t *len);

/* DER as PEM text (NUL-terminated, in *pem, freed with free), and a private key's seed as a
 * PKCS #8 PEM and back. */
bool cert_pem(const uint8_t *der, size_t len, char **pem, size_t *pem_len);
bool cert_key_pem(const uint8_t seed[CRYPTO_SEED], char **pem, size_t *pem_len);
bool cert_key_read(const uint8_t *pem, size_t len, uint8_t seed[CRYPTO_SEED]);

#endif
