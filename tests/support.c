#include "support.h"

#include <stdio.h>

#include <openssl/evp.h>

#include "ledger/chain.h"
#include "ledger/replica.h"

void assert_result_at(int actual, int expected, const char *expr, const char *file, int line) {
    if (actual != expected) {
        print_error("%s is %s (%d), expected %s (%d)\n", expr, tally_result_name(actual), actual,
                    tally_result_name(expected), expected);
        _fail(file, line);
    }
}

uint64_t test_clock_ms(void *ctx) {
    return ((test_clock *)ctx)->now_ms;
}

tally_replica *replica_new(uint64_t id, test_clock *clock) {
    test_chains_reset(); /* a new replica: hand-made histories start afresh */
    tally_options o;
    memset(&o, 0, sizeof o);
    o.replica_id = id;
    if (clock != NULL) {
        o.clock_ms = test_clock_ms;
        o.clock_ctx = clock;
    }
    tally_replica *r = NULL;
    assert_result(tally_open(&o, &r), TALLY_OK);
    assert_non_null(r);
    return r;
}

tally_replica *replica_clone(const tally_replica *src) {
    uint8_t seed[CRYPTO_SEED];
    size_t n = sizeof seed;
    assert_int_equal(EVP_PKEY_get_raw_private_key(src->crypto.signer, seed, &n), 1);
    tally_replica *c = replica_new(src->id, NULL);
    assert_true(crypto_set_signer(&c->crypto, seed));
    c->origins.at[c->self].keyed = false; /* it has signed nothing yet: it takes src's key */
    assert_result(chain_own_key(c), TALLY_OK);
    sync_pair((tally_replica *)src, c);
    return c;
}

op open_op(uint64_t origin, uint64_t seq, uint64_t id, uint16_t flags) {
    op o;
    memset(&o, 0, sizeof o);
    o.kind = OP_OPEN;
    o.origin = origin;
    o.seq = seq;
    o.u.account = account(id, 1, flags);
    return o;
}

op transfer_op(uint64_t origin, uint64_t seq, uint64_t id, uint64_t debit, uint8_t debit_flags,
               uint64_t credit, uint8_t credit_flags, uint64_t amount) {
    op o;
    memset(&o, 0, sizeof o);
    o.kind = OP_TRANSFER;
    o.origin = origin;
    o.seq = seq;
    o.u.transfer = transfer(id, debit, credit, amount);
    o.debit_flags = debit_flags;
    o.credit_flags = credit_flags;
    return o;
}

void fork_wallet(tally_replica *r) {
    uint16_t bound = TALLY_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS;
    tally_account a[5] = {account(1, 1, 0), account(2, 1, bound), account(3, 1, 0),
                          account(4, 1, 0), account(5, 1, bound)};
    for (int i = 0; i < 5; i++) {
        assert_result(tally_create_account(r, &a[i]), TALLY_OK);
    }
    tally_transfer t = transfer(10, 1, 2, 100);
    assert_result(tally_create_transfer(r, &t), TALLY_OK);
}

tally_replica *fork_wallet_pending(tally_replica *r, tally_replica *peer) {
    fork_wallet(r);
    tally_transfer hold = transfer(50, 2, 3, 40);
    hold.flags = TALLY_TRANSFER_PENDING;
    assert_result(tally_create_transfer(r, &hold), TALLY_OK);
    sync_pair(r, peer);
    return replica_clone(r);
}

int apply_from(tally_replica *from, tally_replica *to) {
    uint8_t *summary, *delta;
    size_t summary_len, delta_len;
    assert_result(tally_summary(to, &summary, &summary_len), TALLY_OK);
    assert_result(tally_delta(from, summary, summary_len, 0, &delta, &delta_len), TALLY_OK);
    int rc = tally_apply(to, delta, delta_len);
    tally_free(summary);
    tally_free(delta);
    return rc;
}

void sync_pair(tally_replica *from, tally_replica *to) {
    assert_result(apply_from(from, to), TALLY_OK);
}

void sync_all(tally_replica **r, int n) {
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < n; i++) {
            for (int k = 0; k < n; k++) {
                if (i != k) {
                    sync_pair(r[i], r[k]);
                }
            }
        }
    }
}

void digest_of(const tally_replica *r, uint8_t out[16]) {
    assert_result(tally_digest(r, out), TALLY_OK);
}

void assert_converged(tally_replica *a, tally_replica *b) {
    uint8_t da[16], db[16];
    digest_of(a, da);
    digest_of(b, db);
    assert_memory_equal(da, db, 16);
}

tally_account account(uint64_t id, uint32_t ledger, uint16_t flags) {
    tally_account a;
    memset(&a, 0, sizeof a);
    a.id = tid(id);
    a.ledger = ledger;
    a.code = 1;
    a.flags = flags;
    return a;
}

int grant_to(tally_replica *r, tally_id account_id, uint64_t to_replica, uint64_t amount) {
    tally_grant_request g = {account_id, to_replica, amount, 0, 0, TALLY_GRANT_TO_UNKNOWN};
    return tally_grant_with(r, &g);
}

tally_transfer transfer(uint64_t id, uint64_t debit, uint64_t credit, uint64_t amount) {
    tally_transfer t;
    memset(&t, 0, sizeof t);
    t.id = tid(id);
    t.debit_account_id = tid(debit);
    t.credit_account_id = tid(credit);
    t.amount = amount;
    t.ledger = 1;
    t.code = 1;
    return t;
}

uint64_t test_rand(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

tally_transfer finish(uint64_t id, uint64_t pending_id, uint16_t flag, uint64_t amount) {
    tally_transfer t;
    memset(&t, 0, sizeof t);
    t.id = tid(id);
    t.pending_id = tid(pending_id);
    t.flags = flag;
    t.amount = amount;
    return t;
}

void records_delta(const op *ops, size_t n, bytes *out) {
    assert_true(bytes_reserve(out, 8));
    memcpy(out->at, "TLYD\3\0\0\0", 8);
    out->len = 8;
    encode_block(ops, n, out);
}

int apply_admit(tally_replica *r, uint64_t origin, const uint8_t *der, size_t len) {
    op a;
    op_clear(&a);
    a.kind = OP_ADMIT;
    a.origin = origin;
    a.u.admit.der = der;
    a.u.admit.len = (uint32_t)len;
    bytes d = {0};
    records_delta(&a, 1, &d);
    int rc = tally_apply(r, d.at, d.len);
    bytes_free(&d);
    return rc;
}

int apply_admit_pem(tally_replica *r, uint64_t origin, const char *pem) {
    uint8_t *der;
    size_t len;
    assert_true(cert_der((const uint8_t *)pem, strlen(pem), &der, &len));
    int rc = apply_admit(r, origin, der, len);
    free(der);
    return rc;
}

tally_replica *open_in(const char *dir, uint64_t id, const char *authority) {
    tally_options o = {.dir = dir,
                       .replica_id = id,
                       .sync_mode = TALLY_SYNC_COMMIT,
                       .authority = (const uint8_t *)authority,
                       .authority_len = authority != NULL ? strlen(authority) : 0};
    tally_replica *r = NULL;
    assert_result(tally_open(&o, &r), TALLY_OK);
    return r;
}

void remove_tree(const char *dir) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

int authority_dir_setup(void **state) {
    authority_dir *a = calloc(1, sizeof *a);
    assert_non_null(a);
    assert_result(tally_authority_create("blue", &a->cert, &a->key), TALLY_OK);
    snprintf(a->dir, sizeof a->dir, "/tmp/tally-attack-XXXXXX");
    assert_non_null(mkdtemp(a->dir));
    *state = a;
    return 0;
}

int authority_dir_teardown(void **state) {
    authority_dir *a = *state;
    remove_tree(a->dir);
    tally_free(a->cert);
    tally_free(a->key);
    free(a);
    return 0;
}

int create_account_of(tally_replica *r, uint64_t id) {
    tally_account a = account(id, 1, 0);
    return tally_create_account(r, &a);
}

char *certificate_for(const char *authority, const char *authority_key, const tally_replica *r,
                      uint64_t not_after, int may_write) {
    tally_admission a;
    assert_result(tally_admission_of(r, &a), TALLY_OK);
    char *pem = NULL;
    assert_result(tally_certificate_issue((const uint8_t *)authority, strlen(authority),
                                          (const uint8_t *)authority_key, strlen(authority_key),
                                          tally_replica_id(r), a.public_key, not_after, may_write,
                                          &pem),
                  TALLY_OK);
    return pem;
}

void encode_block(const op *ops, size_t n, bytes *out) {
    block_enc e;
    block_enc_init(&e);
    assert_true(block_enc_begin(&e, out));
    for (size_t i = 0; i < n; i++) {
        assert_true(block_enc_op(&e, out, &ops[i]));
    }
    block_enc_end(&e, out);
    block_enc_free(&e);
}

/* Where each origin's hand-made history stands: its last run's end and statement hash, in an
 * open-addressed table by origin (origin 0: an empty slot). */
#define CHAIN_SLOTS (1u << 17)
static struct {
    uint64_t origin, last;
    uint8_t hash[CRYPTO_HASH];
} chains[CHAIN_SLOTS];

bool openssl_accepts(const uint8_t key[CRYPTO_KEY], const void *msg, size_t len,
                     const uint8_t sig[CRYPTO_SIG]) {
    EVP_PKEY *pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, key, CRYPTO_KEY);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    bool ok = pkey != NULL && md != NULL &&
              EVP_DigestVerifyInit_ex(md, NULL, NULL, NULL, NULL, pkey, NULL) == 1 &&
              EVP_DigestVerify(md, sig, CRYPTO_SIG, msg, len) == 1;
    EVP_MD_CTX_free(md);
    EVP_PKEY_free(pkey);
    return ok;
}

void test_chains_reset(void) {
    memset(chains, 0, sizeof chains);
}

void test_key_of(uint64_t origin, crypto_ctx *c) {
    uint8_t seed[CRYPTO_SEED] = {0};
    put_u64le(seed, origin);
    seed[31] = 0x5a; /* not any replica's own: those are random */
    assert_true(crypto_set_signer(c, seed));
}

/* The chain entry of an origin, new at its genesis if need be. */
static size_t chain_of(crypto_ctx *c, uint64_t origin) {
    size_t i = (size_t)(origin * 0x9e3779b97f4a7c15u >> 40) % CHAIN_SLOTS;
    while (chains[i].origin != 0 && chains[i].origin != origin) {
        i = (i + 1) % CHAIN_SLOTS;
    }
    if (chains[i].origin == 0) {
        chains[i].origin = origin;
        assert_true(chain_genesis(c, origin, c->public_key, chains[i].hash));
    }
    return i;
}

void sign_run(const op *ops, size_t n, op *sign, uint8_t chain[CRYPTO_HASH],
              uint8_t sig[CRYPTO_SIG]) {
    crypto_ctx c;
    assert_true(crypto_init(&c));
    test_key_of(ops[0].origin, &c);
    size_t k = chain_of(&c, ops[0].origin);
    uint8_t digest[CRYPTO_HASH];
    assert_true(chain_digest_ops(&c, ops, sizeof *ops, (uint32_t)n, digest));
    memcpy(chain, ops[0].seq == 1 ? c.public_key : chains[k].hash, CRYPTO_HASH);
    assert_true(chain_sign_run(&c, ops[0].origin, ops[0].seq, ops[n - 1].seq, chains[k].hash,
                               digest, chains[k].hash, sig));
    chains[k].last = ops[n - 1].seq;
    memset(sign, 0, sizeof *sign);
    sign->kind = OP_SIGN;
    sign->origin = ops[0].origin;
    sign->u.sign.first = ops[0].seq;
    sign->u.sign.last = ops[n - 1].seq;
    sign->u.sign.chain = chain;
    sign->u.sign.sig = sig;
    crypto_free(&c);
}

void make_delta(const op *ops, size_t n, bytes *out) {
    assert_true(bytes_reserve(out, 8));
    memcpy(out->at, "TLYD\3\0\0\0", 8);
    out->len = 8;
    block_enc e;
    block_enc_init(&e);
    assert_true(block_enc_begin(&e, out));
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        while (j < n && ops[j].origin == ops[i].origin && ops[j].seq == ops[j - 1].seq + 1) {
            j++;
        }
        op sign;
        uint8_t chain[CRYPTO_HASH], sig[CRYPTO_SIG];
        sign_run(ops + i, j - i, &sign, chain, sig);
        if (block_enc_payload(&e, out) + (j - i + 1) * CODEC_OP_MAX > CODEC_BLOCK_PAYLOAD_MAX) {
            block_enc_end(&e, out); /* a run never spans blocks */
            assert_true(block_enc_begin(&e, out));
        }
        for (size_t k = i; k < j; k++) {
            assert_true(block_enc_op(&e, out, &ops[k]));
        }
        assert_true(block_enc_op(&e, out, &sign));
        i = j;
    }
    block_enc_end(&e, out);
    block_enc_free(&e);
}
