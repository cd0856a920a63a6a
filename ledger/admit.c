/*
 * ledger/admit.c — admission: an authority and its certificates, from the API's side (the
 * model and its checks: ledger/chain.c; the certificates themselves: crdt/cert.c).
 *
 * At opening, the authority's certificate (given, or the one the journal has) and this
 * replica's own (given, or the newest the journal has) are checked and, when new, journalled,
 * so that a durable replica needs them once.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crdt/cert.h"
#include "ledger/chain.h"
#include "ledger/replica.h"

static int say(const tally_options *opts, int rc, const char *message) {
    if (opts->error != NULL && opts->error_size > 0 && opts->error[0] == '\0') {
        snprintf(opts->error, opts->error_size, "%s", message);
    }
    return rc;
}

/* The record of a certificate given in PEM or DER: into *der (freed by the caller). */
static bool admit_record(const uint8_t *in, size_t len, uint64_t origin, uint8_t **der, op *out) {
    size_t n;
    if (!cert_der(in, len, der, &n)) {
        return false;
    }
    op_clear(out);
    out->kind = OP_ADMIT;
    out->origin = origin;
    out->u.admit.der = *der;
    out->u.admit.len = (uint32_t)n;
    return true;
}

/* Takes this replica's own certificate (PEM or DER), journalled when new: TALLY_EINVAL when it
 * does not decode, or is not this replica's from its authority (chain_admit_accept checks the
 * authority, the id, and the key its runs are signed with, which is its own). */
static int own_certificate(tally_replica *r, const uint8_t *in, size_t len) {
    uint8_t *der = NULL;
    op rec;
    if (!admit_record(in, len, r->id, &der, &rec)) {
        return TALLY_EINVAL;
    }
    int rc = chain_admit_accept(r, &rec, CHAIN_ADMIT_LOCAL);
    free(der);
    return rc == TALLY_ECORRUPT ? TALLY_EINVAL : rc;
}

/* What this replica's own certificate, if it has one, lets it do. */
static void own_admission(tally_replica *r) {
    const origin_rec *self = &r->origins.at[r->self];
    struct replica_admission *m = r->admission;
    m->admitted = self->cert != NULL;
    m->not_after = m->admitted ? self->admitted_as.not_after : 0;
    m->may_write = m->admitted && (self->admitted_as.permits & CERT_PERMIT_WRITE) != 0;
}

int replica_open_admission(tally_replica *r, const tally_options *opts) {
    uint8_t *der = NULL;
    op rec;
    int rc = TALLY_OK;
    bool had = r->admission != NULL;
    if (opts->authority != NULL) {
        if (!admit_record(opts->authority, opts->authority_len, 0, &der, &rec)) {
            return say(opts, TALLY_EINVAL, "the authority's certificate does not decode");
        }
        rc = chain_admit_accept(r, &rec, CHAIN_ADMIT_LOCAL);
        free(der);
        der = NULL;
        if (rc == TALLY_ECORRUPT) {
            return say(opts, TALLY_EINVAL,
                       had ? "this replica belongs to another authority than the one given"
                           : "the authority's certificate does not check (a self-signed "
                             "Ed25519 CA certificate naming a cluster, from tally cluster init)");
        }
    }
    /* every origin here but this replica admitted under its key: a journal or snapshot that
     * says otherwise was written without the checks, or altered */
    if (rc == TALLY_OK && chain_admitted_all(r) != TALLY_OK) {
        return say(opts, had ? TALLY_ECORRUPT : TALLY_EINVAL,
                   had ? "the journal or snapshot holds runs of replicas its authority did not "
                         "admit"
                       : "this replica holds ops of replicas no authority admitted: a cluster "
                         "takes an authority when it is created");
    }
    if (rc != TALLY_OK) {
        return rc;
    }
    if (r->admission == NULL) {
        return opts->certificate == NULL
                   ? TALLY_OK
                   : say(opts, TALLY_EINVAL, "a certificate needs its authority's certificate");
    }
    rc = opts->certificate != NULL ? own_certificate(r, opts->certificate, opts->certificate_len)
                                   : TALLY_OK;
    if (rc == TALLY_EINVAL) {
        return say(opts, rc,
                   "the certificate is not this replica's from its authority (it must name this "
                   "replica's id and public key: tally_admission_of)");
    }
    if (rc == TALLY_OK) {
        own_admission(r);
    }
    return rc;
}

int tally_set_certificate(tally_replica *r, const uint8_t *certificate, size_t len) {
    if (r == NULL || certificate == NULL || r->admission == NULL) {
        return TALLY_EINVAL;
    }
    int rc = own_certificate(r, certificate, len);
    if (rc == TALLY_OK) {
        own_admission(r);
    }
    return replica_commit(r, rc);
}

int tally_admission_of(const tally_replica *r, tally_admission *out) {
    if (out != NULL) {
        memset(out, 0, sizeof *out);
    }
    if (r == NULL || out == NULL) {
        return TALLY_EINVAL;
    }
    memcpy(out->public_key, r->crypto.public_key, sizeof out->public_key);
    const struct replica_admission *m = r->admission;
    if (m != NULL) {
        _Static_assert(sizeof out->cluster == sizeof m->authority.cluster, "one length");
        out->authority = true;
        memcpy(out->cluster, m->authority.cluster, sizeof out->cluster);
        out->admitted = m->admitted;
        out->may_write = m->may_write;
        out->not_after = m->not_after;
    }
    return TALLY_OK;
}

int tally_authority_create(const char *cluster, char **certificate_pem, char **key_pem) {
    if (certificate_pem != NULL) {
        *certificate_pem = NULL;
    }
    if (key_pem != NULL) {
        *key_pem = NULL;
    }
    if (cluster == NULL || certificate_pem == NULL || key_pem == NULL || cluster[0] == '\0' ||
        strlen(cluster) > CERT_CLUSTER_MAX) {
        return TALLY_EINVAL;
    }
    uint8_t seed[CRYPTO_SEED], *der = NULL;
    size_t len, pem_len;
    if (!crypto_seed_random(seed)) {
        return TALLY_EIO;
    }
    int rc = cert_authority_issue(seed, cluster, &der, &len) &&
                     cert_pem(der, len, certificate_pem, &pem_len) &&
                     cert_key_pem(seed, key_pem, &pem_len)
                 ? TALLY_OK
                 : TALLY_ENOMEM;
    memset(seed, 0, sizeof seed);
    free(der);
    if (rc != TALLY_OK) {
        free(*certificate_pem);
        free(*key_pem);
        *certificate_pem = *key_pem = NULL;
    }
    return rc;
}

int tally_certificate_issue(const uint8_t *authority, size_t authority_len,
                            const uint8_t *authority_key, size_t authority_key_len,
                            uint64_t replica_id, const uint8_t public_key[32], uint64_t not_after,
                            int may_write, char **certificate_pem) {
    if (certificate_pem != NULL) {
        *certificate_pem = NULL;
    }
    if (authority == NULL || authority_key == NULL || public_key == NULL ||
        certificate_pem == NULL || replica_id == 0) {
        return TALLY_EINVAL;
    }
    uint8_t *der = NULL, seed[CRYPTO_SEED];
    size_t len, pem_len;
    cert_authority a;
    crypto_ctx c = {0};
    bool ok = cert_der(authority, authority_len, &der, &len) && cert_authority_read(der, len, &a) &&
              cert_key_read(authority_key, authority_key_len, seed) && crypto_init(&c) &&
              crypto_set_signer(&c, seed) && memcmp(c.public_key, a.key, CRYPTO_KEY) == 0 &&
              crypto_key_valid(public_key);
    crypto_free(&c);
    free(der);
    der = NULL;
    cert_replica want = {.replica = replica_id,
                         .not_after = not_after == 0 ? CERT_NEVER : not_after,
                         .permits = may_write ? CERT_PERMIT_WRITE : 0};
    memcpy(want.key, public_key, CRYPTO_KEY);
    int rc = !ok ? TALLY_EINVAL
             : cert_replica_issue(seed, &a, &want, &der, &len) &&
                     cert_pem(der, len, certificate_pem, &pem_len)
                 ? TALLY_OK
                 : TALLY_ENOMEM;
    memset(seed, 0, sizeof seed);
    free(der);
    return rc;
}
