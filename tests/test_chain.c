/*
 * test_chain.c — authentic histories (ledger/chain.c): every op a replica takes from a peer was
 * signed, in a run, by its origin's key; forgeries, tampering and degenerate keys are refused,
 * and a restored replica that writes over its own past meets the fork.
 */
#include "support.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "ledger/chain.h"
#include "ledger/journal.h"
#include "ledger/replica.h"

enum { BANK = 1, WALLET = 2, SHOP = 3, THIEF = 4 };
#define DEBITS_BOUND TALLY_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS

/* A bank, a bounded wallet holding 100 (its rights at r), a shop and a thief's account. */
static void fund_wallet(tally_replica *r) {
    tally_account a[4] = {account(BANK, 1, 0), account(WALLET, 1, DEBITS_BOUND),
                          account(SHOP, 1, 0), account(THIEF, 1, 0)};
    for (int i = 0; i < 4; i++) {
        assert_result(tally_create_account(r, &a[i]), TALLY_OK);
    }
    tally_transfer t = transfer(10, BANK, WALLET, 100);
    assert_result(tally_create_transfer(r, &t), TALLY_OK);
}

static uint8_t *delta_for(tally_replica *from, tally_replica *to, size_t *len) {
    uint8_t *summary, *delta;
    size_t summary_len;
    assert_result(tally_summary(to, &summary, &summary_len), TALLY_OK);
    assert_result(tally_delta(from, summary, summary_len, 0, &delta, len), TALLY_OK);
    tally_free(summary);
    return delta;
}

static uint64_t wallet_debits(tally_replica *r) {
    tally_balance b;
    assert_result(tally_lookup_balance(r, tid(WALLET), &b), TALLY_OK);
    return b.debits_posted;
}

/* The attack of the issue: anyone who reaches a sync port pulls the state, opens a replica
 * with the holder's id, spends the holder's rights to an account of theirs, and pushes the
 * delta, to the holder itself and to a replica that knows the holder. Both refuse it: the
 * forger cannot sign as the holder. */
static void a_forged_spend_is_refused_by_its_origin_and_by_others(void **state) {
    (void)state;
    tally_replica *holder = replica_new(7, NULL), *other = replica_new(8, NULL);
    fund_wallet(holder);
    sync_pair(holder, other);
    tally_replica *forger = replica_new(7, NULL); /* the holder's id, a key of its own */
    size_t len;
    uint8_t *state_of_holder = delta_for(holder, forger, &len);
    /* the forger's replica takes the pulled ops: its own origin's, under another key */
    assert_result(tally_apply(forger, state_of_holder, len), TALLY_ECORRUPT);
    tally_free(state_of_holder);
    /* so it writes its own history as replica 7 from seq 1, spending the wallet */
    tally_account a[4] = {account(BANK, 1, 0), account(WALLET, 1, DEBITS_BOUND),
                          account(SHOP, 1, 0), account(THIEF, 1, 0)};
    for (int i = 0; i < 4; i++) {
        assert_result(tally_create_account(forger, &a[i]), TALLY_OK);
    }
    tally_transfer fund = transfer(10, BANK, WALLET, 100);
    tally_transfer steal = transfer(11, WALLET, THIEF, 100);
    assert_result(tally_create_transfer(forger, &fund), TALLY_OK);
    assert_result(tally_create_transfer(forger, &steal), TALLY_OK);
    tally_replica *fresh = replica_new(9, NULL);
    uint8_t *theft = delta_for(forger, fresh, &len);
    tally_close(fresh);
    uint8_t before_holder[16], before_other[16], d[16];
    digest_of(holder, before_holder);
    digest_of(other, before_other);
    assert_result(tally_apply(holder, theft, len), TALLY_ECORRUPT);
    assert_result(tally_apply(other, theft, len), TALLY_ECORRUPT);
    digest_of(holder, d);
    assert_memory_equal(d, before_holder, 16);
    digest_of(other, d);
    assert_memory_equal(d, before_other, 16);
    assert_int_equal(wallet_debits(holder), 0);
    assert_int_equal(wallet_debits(other), 0);
    /* and the forger's ops, sent as they are, never become the holder's */
    assert_int_equal(tally_seen(holder, 7), 5);
    tally_free(theft);
    tally_close(forger);
    tally_close(holder);
    tally_close(other);
}

/* Returns the delta of replica 7's whole history as `other` sends it to a fresh replica. */
static uint8_t *history_of_7(tally_replica **from, size_t *len) {
    *from = replica_new(7, NULL);
    fund_wallet(*from);
    tally_replica *fresh = replica_new(9, NULL);
    uint8_t *d = delta_for(*from, fresh, len);
    tally_close(fresh);
    return d;
}

/* Re-encodes a delta's single block after fn changed its ops (the block checksum is made
 * afresh, so only the signature can tell). */
static void reencode(uint8_t *delta, size_t *len, void (*fn)(op *ops, size_t n)) {
    block_dec dec;
    block_dec_init(&dec);
    size_t block_len;
    assert_result(block_dec_begin(&dec, delta + 8, *len - 8, &block_len), TALLY_OK);
    op ops[64];
    uint8_t keep[64][96];
    size_t n = 0;
    while (dec.remaining > 0) {
        assert_true(n < 64);
        assert_result(block_dec_op(&dec, &ops[n]), TALLY_OK);
        if (ops[n].kind == OP_SIGN) {
            memcpy(keep[n], ops[n].u.sign.chain, 96);
            ops[n].u.sign.chain = keep[n];
            ops[n].u.sign.sig = keep[n] + 32;
        }
        n++;
    }
    block_dec_free(&dec);
    fn(ops, n);
    bytes out = {0};
    assert_true(bytes_reserve(&out, 8));
    memcpy(out.at, delta, 8);
    out.len = 8;
    encode_block(ops, n, &out);
    memcpy(delta, out.at, out.len);
    *len = out.len;
    bytes_free(&out);
}

static void raise_the_deposit(op *ops, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (ops[i].kind == OP_TRANSFER) {
            ops[i].u.transfer.amount = 1000000;
        }
    }
}

static void hide_an_op(op *ops, size_t n) {
    /* the last run without its last op, under the same record */
    for (size_t i = n - 1; i > 0; i--) {
        if (ops[i].kind == OP_SIGN && ops[i - 1].kind != OP_SIGN) {
            memmove(&ops[i - 1], &ops[i], sizeof *ops);
            ops[i - 1].u.sign.last--;
            return;
        }
    }
}

static void another_signature(op *ops, size_t n) {
    ((uint8_t *)ops[n - 1].u.sign.sig)[5] ^= 1;
}

/* A relay (or the network) that changes a signed op, drops one, or changes a signature, gets
 * nothing of the run applied, even with every checksum made good (here the last run of five:
 * the deposit; the four before it apply). */
static void a_changed_run_applies_nothing(void **state) {
    (void)state;
    void (*tamper[])(op *, size_t) = {raise_the_deposit, hide_an_op, another_signature};
    for (size_t k = 0; k < sizeof tamper / sizeof tamper[0]; k++) {
        tally_replica *src, *dst = replica_new(9, NULL);
        size_t len;
        uint8_t *d = history_of_7(&src, &len);
        uint8_t *copy = malloc(len + 4096);
        memcpy(copy, d, len);
        size_t copy_len = len;
        reencode(copy, &copy_len, tamper[k]);
        assert_result(tally_apply(dst, copy, copy_len), TALLY_ECORRUPT);
        assert_int_equal(tally_seen(dst, 7), 4);
        tally_transfer t;
        assert_result(tally_lookup_transfer(dst, tid(10), &t), TALLY_NOT_FOUND);
        /* the untouched delta still applies */
        assert_result(tally_apply(dst, d, len), TALLY_OK);
        assert_converged(src, dst);
        free(copy);
        tally_free(d);
        tally_close(src);
        tally_close(dst);
    }
}

/* The degenerate-key forgery, played against a replica: a made-up origin whose "public key" is
 * the point of order 2 opens an unbounded account and pays itself, with the signature R = the
 * identity, S = 0, for a run that OpenSSL on its own would accept. The replica refuses it. */
static void a_run_signed_under_a_small_order_key_is_refused(void **state) {
    (void)state;
    uint8_t key[32], sig[64] = {1};
    memset(key, 0xff, sizeof key);
    key[0] = 0xec;
    key[31] = 0x7f;
    crypto_ctx c;
    assert_true(crypto_init(&c));
    uint8_t genesis[32];
    assert_true(chain_genesis(&c, 66, key, genesis));
    int forged = 0;
    for (uint64_t amount = 1; amount <= 64; amount++) {
        op ops[3];
        memset(ops, 0, sizeof ops);
        ops[0].kind = ops[1].kind = OP_OPEN;
        ops[0].u.account = account(60, 1, 0);
        ops[1].u.account = account(61, 1, 0);
        ops[2].kind = OP_TRANSFER;
        ops[2].u.transfer = transfer(62, 60, 61, amount);
        for (int i = 0; i < 3; i++) {
            ops[i].origin = 66;
            ops[i].seq = (uint64_t)i + 1;
        }
        uint8_t digest[32], st[CHAIN_STATEMENT];
        assert_true(chain_digest_ops(&c, ops, sizeof *ops, 3, digest));
        memcpy(st, "tally run v1\0\0\0\0", 16);
        put_u64le(st + 16, 66);
        put_u64le(st + 24, 1);
        put_u64le(st + 32, 3);
        memcpy(st + 40, genesis, 32);
        memcpy(st + 72, digest, 32);
        if (!openssl_accepts(key, st, sizeof st, sig)) {
            continue;
        }
        forged++;
        op all[4] = {ops[0], ops[1], ops[2]};
        memset(&all[3], 0, sizeof all[3]);
        all[3].kind = OP_SIGN;
        all[3].origin = 66;
        all[3].u.sign.first = 1;
        all[3].u.sign.last = 3;
        all[3].u.sign.chain = key;
        all[3].u.sign.sig = sig;
        bytes d = {0};
        assert_true(bytes_reserve(&d, 8));
        memcpy(d.at, "TLYD\3\0\0\0", 8);
        d.len = 8;
        encode_block(all, 4, &d);
        tally_replica *r = replica_new(1, NULL);
        assert_result(tally_apply(r, d.at, d.len), TALLY_ECORRUPT);
        assert_int_equal(tally_seen(r, 66), 0);
        tally_close(r);
        bytes_free(&d);
    }
    assert_true(forged > 0); /* the attack was real: OpenSSL took some of these */
    crypto_free(&c);
}

/* A run goes out whole: a delta cut by max_bytes ends at a run's end, and the runs it holds
 * apply; the rest follows in the next delta. */
static void max_bytes_never_splits_a_run(void **state) {
    (void)state;
    tally_replica *src = replica_new(1, NULL), *dst = replica_new(2, NULL);
    fund_wallet(src);
    tally_transfer batch[40];
    int results[40];
    for (int i = 0; i < 40; i++) {
        batch[i] = transfer(100 + (uint64_t)i, BANK, SHOP, 1);
    }
    assert_result(tally_create_transfers(src, batch, 40, results), TALLY_OK);
    for (size_t cap = 60; cap < 4000; cap += 97) {
        tally_replica *to = replica_new(3, NULL);
        uint64_t last_seen = 0;
        for (int round = 0; round < 100 && tally_seen(to, 1) < tally_seen(src, 1); round++) {
            uint8_t *summary, *delta;
            size_t summary_len, len;
            assert_result(tally_summary(to, &summary, &summary_len), TALLY_OK);
            assert_result(tally_delta(src, summary, summary_len, cap, &delta, &len), TALLY_OK);
            assert_result(tally_apply(to, delta, len), TALLY_OK);
            /* every seq it reaches is a run's end at the source */
            const origin_rec *o = &src->origins.at[src->self];
            uint64_t seen = tally_seen(to, 1);
            assert_true(seen > last_seen);
            assert_true(chain_run_at(o, seen) < o->runs.count &&
                        o->runs.at[chain_run_at(o, seen)].last == seen);
            last_seen = seen;
            tally_free(summary);
            tally_free(delta);
        }
        assert_converged(src, to);
        tally_close(to);
    }
    (void)dst;
    tally_close(src);
    tally_close(dst);
}

/* Runs relayed by a replica that is not their origin verify at a third: the relay sends the
 * origin's own records, never its own signature. */
static void runs_relayed_through_a_third_replica_verify(void **state) {
    (void)state;
    tally_replica *a = replica_new(1, NULL), *b = replica_new(2, NULL), *c = replica_new(3, NULL);
    fund_wallet(a);
    sync_pair(a, b);
    tally_account mine = account(20, 1, 0);
    assert_result(tally_create_account(b, &mine), TALLY_OK);
    sync_pair(b, c); /* a's runs and b's, all from b */
    assert_converged(b, c);
    assert_int_equal(tally_seen(c, 1), tally_seen(a, 1));
    const origin_rec *at_c = &c->origins.at[replica_origin_find(c, 1)];
    const origin_rec *at_a = &a->origins.at[a->self];
    assert_int_equal(at_c->runs.count, at_a->runs.count);
    assert_memory_equal(at_c->pub, at_a->pub, 32);
    tally_close(a);
    tally_close(b);
    tally_close(c);
}

/* --- restore ------------------------------------------------------------------------------ */

static char *temp_dir(void) {
    char *dir = strdup("/tmp/tally-chain-XXXXXX");
    assert_non_null(mkdtemp(dir));
    return dir;
}

static void shell(const char *fmt, const char *a, const char *b) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, fmt, a, b);
    assert_int_equal(system(cmd), 0);
}

/* A durable replica in dir, with the id asked for (0: the directory's, or a new one). */
static tally_replica *open_dir_as(const char *dir, uint64_t id) {
    tally_options o;
    memset(&o, 0, sizeof o);
    o.dir = dir;
    o.replica_id = id;
    tally_replica *r = NULL;
    assert_result(tally_open(&o, &r), TALLY_OK);
    return r;
}

/* A fork's proof, as tally_forks lists it, holds by itself: two statements of the replica's,
 * each verifying under its key (checked with OpenSSL directly), whose runs overlap. */
static void assert_proof_of(const tally_replica *r, uint64_t forked) {
    size_t n;
    tally_fork f;
    assert_result(tally_forks(r, 0, &f, 1, &n), TALLY_OK);
    assert_int_equal(n, 1);
    assert_int_equal(f.replica_id, forked);
    assert_true(f.first[0] <= f.last[1] && f.first[1] <= f.last[0]);
    assert_memory_not_equal(f.statement[0], f.statement[1], TALLY_STATEMENT_BYTES);
    assert_true(memcmp(f.statement[0], f.statement[1], TALLY_STATEMENT_BYTES) < 0);
    for (int side = 0; side < 2; side++) {
        uint64_t origin, first, last;
        memcpy(&origin, f.statement[side] + 16, 8);
        memcpy(&first, f.statement[side] + 24, 8);
        memcpy(&last, f.statement[side] + 32, 8);
        assert_true(origin == forked && first == f.first[side] && last == f.last[side]);
        assert_true(openssl_accepts(f.public_key, f.statement[side], TALLY_STATEMENT_BYTES,
                                    f.signature[side]));
    }
}

/* A replica restored from a backup writes again over seqs it had already signed and shared:
 * its old runs, coming back from a peer, overlap its new ones. It keeps the proof (its two
 * statements) and both histories, as branches, across a restart and a snapshot, takes no more
 * writes, and both spread: a peer that holds either history, or neither, comes to the same
 * state, learns of the fork and gives the forked replica no rights. Without signatures both
 * were "seq 6" and nobody saw. */
static void a_restored_replica_meets_its_own_past_as_a_fork(void **state) {
    (void)state;
    char *dir = temp_dir(), backup[64];
    snprintf(backup, sizeof backup, "%s-backup", dir);
    tally_replica *r = open_dir_as(dir, 0), *peer = replica_new(2, NULL);
    tally_replica *bystander = replica_new(3, NULL);
    fund_wallet(r);
    sync_pair(r, bystander);
    tally_close(r);
    shell("cp -a %s %s", dir, backup);
    r = open_dir_as(dir, 0);
    uint64_t id = tally_replica_id(r);
    tally_transfer pay = transfer(20, WALLET, SHOP, 60);
    assert_result(tally_create_transfer(r, &pay), TALLY_OK);
    sync_pair(r, peer);
    tally_close(r);
    shell("rm -rf %s%s", dir, "");
    shell("mv %s %s", backup, dir);
    r = open_dir_as(dir, 0); /* restored: knows nothing of the payment */
    tally_transfer again = transfer(21, WALLET, THIEF, 60);
    /* it sees it is not where it was, and holds its writes; an operator lifts the hold without
     * asking a peer, and it writes over its past */
    assert_int_equal(tally_held(r), TALLY_HOLD_MOVED);
    assert_result(tally_create_transfer(r, &again), TALLY_ORIGIN_HELD);
    assert_result(tally_lift_hold(r), TALLY_OK);
    assert_result(tally_create_transfer(r, &again), TALLY_OK);
    uint64_t seq = tally_seen(r, id);
    size_t n;
    assert_result(tally_forks(r, 0, NULL, 0, &n), TALLY_OK);
    assert_int_equal(n, 0);
    assert_result(apply_from(peer, r), TALLY_OK); /* both histories kept (test_fork.c) */
    assert_proof_of(r, id);
    assert_int_equal(wallet_debits(r), 120);
    uint8_t before[16], after[16];
    digest_of(r, before);
    tally_transfer more = transfer(22, WALLET, THIEF, 1);
    assert_result(tally_create_transfer(r, &more), TALLY_ORIGIN_FORKED);
    tally_close(r);
    r = open_dir_as(dir, 0); /* the proof and both histories are in the journal */
    assert_proof_of(r, id);
    digest_of(r, after);
    assert_memory_equal(before, after, 16);
    assert_result(tally_create_transfer(r, &more), TALLY_ORIGIN_FORKED);
    assert_result(tally_snapshot(r), TALLY_OK);
    tally_close(r);
    r = open_dir_as(dir, 0); /* and in the snapshot */
    assert_int_not_equal(r->journal->snapshot_segment, 0);
    assert_proof_of(r, id);
    digest_of(r, after);
    assert_memory_equal(before, after, 16);
    assert_result(tally_create_transfer(r, &more), TALLY_ORIGIN_FORKED);
    /* the peer holds the other history: it is sent this one, keeps both, and stops giving */
    assert_result(apply_from(r, peer), TALLY_OK);
    assert_proof_of(peer, id);
    assert_converged(r, peer);
    assert_int_equal(tally_seen(peer, id), seq);
    assert_result(grant_to(peer, tid(WALLET), id, 1), TALLY_REPLICA_FORKED);
    /* and a bystander that saw neither new history learns both, and the proof, from the peer */
    assert_result(apply_from(peer, bystander), TALLY_OK);
    assert_proof_of(bystander, id);
    assert_converged(r, bystander);
    assert_result(tally_forks(bystander, 1, NULL, 0, &n), TALLY_OK);
    assert_int_equal(n, 1);
    /* once every replica has it, no delta carries it again */
    uint8_t *summary, *delta;
    size_t summary_len, len;
    assert_result(tally_summary(bystander, &summary, &summary_len), TALLY_OK);
    assert_result(tally_delta(peer, summary, summary_len, 0, &delta, &len), TALLY_OK);
    assert_int_equal(len, 8);
    tally_free(delta);
    tally_free(summary);
    tally_close(r);
    tally_close(peer);
    tally_close(bystander);
    shell("rm -rf %s%s", dir, "");
    free(dir);
}

/* A journal whose key file is gone cannot go on signing as its replica. */
static void a_directory_without_its_key_does_not_open(void **state) {
    (void)state;
    char *dir = temp_dir();
    tally_replica *r = open_dir_as(dir, 0);
    fund_wallet(r);
    tally_close(r);
    char path[128];
    snprintf(path, sizeof path, "%s/key", dir);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600); /* the key is its owner's alone */
    assert_int_equal(remove(path), 0);
    char error[256];
    tally_options o;
    memset(&o, 0, sizeof o);
    o.dir = dir;
    o.error = error;
    o.error_size = sizeof error;
    assert_result(tally_open(&o, &r), TALLY_ECORRUPT);
    assert_non_null(strstr(error, "key"));
    shell("rm -rf %s%s", dir, "");
    free(dir);
}

/* --- runs that apply part way ------------------------------------------------------------ */

static op open_at(uint64_t origin, uint64_t seq, uint64_t id) {
    op o = open_op(origin, seq, id, 0);
    o.hlc = 1000 + seq;
    return o;
}

/* A delta of ops[0..n), origin ops[0].origin from seq 1, signed with a key that is not the
 * origin's. */
static void signed_by_another(const op *ops, size_t n, bytes *out) {
    crypto_ctx c;
    assert_true(crypto_init(&c));
    uint8_t seed[CRYPTO_SEED], genesis[CRYPTO_HASH], digest[CRYPTO_HASH], hash[CRYPTO_HASH];
    uint8_t sig[CRYPTO_SIG], key[CRYPTO_KEY];
    memset(seed, 0x77, sizeof seed);
    assert_true(crypto_set_signer(&c, seed));
    memcpy(key, c.public_key, CRYPTO_KEY);
    assert_true(chain_genesis(&c, ops[0].origin, key, genesis));
    assert_true(chain_digest_ops(&c, ops, sizeof *ops, (uint32_t)n, digest));
    assert_true(chain_sign_run(&c, ops[0].origin, 1, n, genesis, digest, hash, sig));
    op all[8];
    memcpy(all, ops, n * sizeof *ops);
    memset(&all[n], 0, sizeof all[n]);
    all[n].kind = OP_SIGN;
    all[n].origin = ops[0].origin;
    all[n].u.sign.first = 1;
    all[n].u.sign.last = n;
    all[n].u.sign.chain = key;
    all[n].u.sign.sig = sig;
    assert_true(bytes_reserve(out, 8));
    memcpy(out->at, "TLYD\3\0\0\0", 8);
    out->len = 8;
    encode_block(all, n + 1, out);
    crypto_free(&c);
}

/* One side of a fork's record for origin, signed with signer's key: run first..last, with
 * made-up prev and digest (a proof needs no ops: only two signed statements). */
static void proof_side(crypto_ctx *signer, uint64_t origin, op *f, int side, uint64_t first,
                       uint64_t last, uint8_t rest[128], uint8_t tag) {
    memset(rest, tag, 64);
    uint8_t hash[CRYPTO_HASH];
    assert_true(chain_sign_run(signer, origin, first, last, rest, rest + 32, hash, rest + 64));
    f->u.fork.first[side] = first;
    f->u.fork.last[side] = last;
    f->u.fork.side[side] = rest;
}

/* A delta holding only a fork's record. */
static void proof_delta(const op *f, bytes *out) {
    out->len = 0;
    assert_true(bytes_reserve(out, 8));
    memcpy(out->at, "TLYD\3\0\0\0", 8);
    out->len = 8;
    encode_block(f, 1, out);
}

/* A proof of a fork is taken only when it holds: both statements verify under the key the
 * origin's runs brought here, their runs overlap, and they differ. Anything else is refused
 * with nothing kept, so no one can make an honest replica look forked. A proof for an origin
 * whose key is not known here yet cannot be checked: it is set aside, and comes again. */
static void a_proof_of_a_fork_that_does_not_hold_is_refused(void **state) {
    (void)state;
    enum { X = 100 };
    crypto_ctx xk, other;
    assert_true(crypto_init(&xk) && crypto_init(&other));
    test_key_of(X, &xk);
    test_key_of(X + 1, &other);
    uint8_t a[128], b[128];
    bytes d = {0}, runs = {0};
    op f;
    memset(&f, 0, sizeof f);
    f.kind = OP_FORK;
    f.origin = X;
    struct {
        const char *what;
        uint64_t first[2], last[2];
        bool other_key, flip, same;
        int result;
    } cases[] = {
        {"a fork", {1, 2}, {3, 2}, false, false, false, TALLY_OK},
        {"runs that do not overlap", {1, 3}, {2, 3}, false, false, false, TALLY_ECORRUPT},
        {"one statement twice", {1, 1}, {3, 3}, false, false, true, TALLY_ECORRUPT},
        {"a side signed by another key", {1, 2}, {3, 2}, true, false, false, TALLY_ECORRUPT},
        {"a signature changed", {1, 2}, {3, 2}, false, true, false, TALLY_ECORRUPT},
        {"a run past the longest",
         {1, 1},
         {1, CHAIN_RUN_OPS_MAX + 1},
         false,
         false,
         false,
         TALLY_ECORRUPT},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        tally_replica *r = replica_new(9, NULL);
        op x_ops[1] = {open_at(X, 1, 50)};
        runs.len = 0;
        make_delta(x_ops, 1, &runs); /* X's key, here */
        proof_side(&xk, X, &f, 0, cases[k].first[0], cases[k].last[0], a, 1);
        proof_side(cases[k].other_key ? &other : &xk, X, &f, 1, cases[k].first[1], cases[k].last[1],
                   b, cases[k].same ? 1 : 2);
        b[100] ^= cases[k].flip ? 1 : 0;
        proof_delta(&f, &d);
        /* before X's key is here, it cannot be checked: set aside */
        assert_result(tally_apply(r, d.at, d.len), TALLY_OK);
        size_t n;
        assert_result(tally_forks(r, 0, NULL, 0, &n), TALLY_OK);
        assert_int_equal(n, 0);
        assert_result(tally_apply(r, runs.at, runs.len), TALLY_OK);
        if (tally_apply(r, d.at, d.len) != cases[k].result) {
            fail_msg("%s: not %s", cases[k].what, tally_result_name(cases[k].result));
        }
        assert_result(tally_forks(r, 0, NULL, 0, &n), TALLY_OK);
        assert_int_equal(n, cases[k].result == TALLY_OK ? 1 : 0);
        assert_int_equal(tally_seen(r, X), 1); /* a proof takes nothing away */
        tally_close(r);
    }
    bytes_free(&d);
    bytes_free(&runs);
    crypto_free(&xk);
    crypto_free(&other);
}

/* Found by an adversary: an origin's first run that applied only part way (a relay left out
 * what its second op needs) had no SIGN record in the journal, so after a restart the origin
 * had ops but no key, and anyone could claim it with a key of their own, copying the op that
 * applied and adding ops the origin never made. The record is journalled now, and keeps the
 * key. */
static void a_run_applied_part_way_keeps_its_origins_key_across_a_restart(void **state) {
    (void)state;
    char *dir = temp_dir();
    tally_replica *r = open_dir_as(dir, 5);
    test_chains_reset();
    op y_ops[1] = {open_at(200, 1, 999)};
    op x_ops[2] = {open_at(100, 1, 50), open_at(100, 2, 51)};
    x_ops[1].kind = OP_TRANSFER;
    x_ops[1].u.transfer = transfer(60, 999, 50, 10); /* needs 200's account */
    bytes yd = {0}, xd = {0}, forged = {0};
    make_delta(y_ops, 1, &yd);
    make_delta(x_ops, 2, &xd);
    assert_result(tally_apply(r, xd.at, xd.len), TALLY_ECORRUPT); /* op 1 applies, op 2 not */
    assert_int_equal(tally_seen(r, 100), 1);
    tally_close(r);
    r = open_dir_as(dir, 5);
    assert_true(r->origins.at[replica_origin_find(r, 100)].keyed);
    op claim[2] = {open_at(100, 1, 50), open_at(100, 2, 4242)};
    signed_by_another(claim, 2, &forged);
    assert_result(tally_apply(r, forged.at, forged.len), TALLY_ECORRUPT);
    tally_account a;
    assert_result(tally_lookup_account(r, tid(4242), &a), TALLY_NOT_FOUND);
    /* the origin's own run completes once what it needs is here */
    assert_result(tally_apply(r, yd.at, yd.len), TALLY_OK);
    assert_result(tally_apply(r, xd.at, xd.len), TALLY_OK);
    assert_int_equal(tally_seen(r, 100), 2);
    assert_true(replica_check(r));
    tally_close(r);
    r = open_dir_as(dir, 5);
    assert_int_equal(tally_seen(r, 100), 2);
    tally_close(r);
    bytes_free(&forged);
    bytes_free(&xd);
    bytes_free(&yd);
    shell("rm -rf %s%s", dir, "");
    free(dir);
}

/* Found by an adversary: a replica restored from a backup is handed a run of its own that
 * applies only part way (a relay left out what its second op needs). It then took a write at a
 * seq inside that signed run, and never converged again. Holding part of a run of its own, it
 * is behind its own history now: it refuses writes (also after a restart) and signs nothing
 * until it has the run whole. */
static void a_replica_holding_part_of_its_own_run_takes_no_write(void **state) {
    (void)state;
    /* 0: the run's first op applies, no restart; 1: the same, and a restart; 2: none of it
     * applies (its first op is the one that needs 200's account), and a restart */
    for (int variant = 0; variant < 3; variant++) {
        int restart = variant > 0, none = variant == 2;
        char *dir = temp_dir(), backup[64];
        snprintf(backup, sizeof backup, "%s-backup", dir);
        tally_replica *a = open_dir_as(dir, 5);
        tally_account acc[2] = {account(1, 1, 0), account(3, 1, 0)};
        assert_result(tally_create_account(a, &acc[0]), TALLY_OK);
        assert_result(tally_create_account(a, &acc[1]), TALLY_OK);
        tally_close(a);
        shell("cp -a %s %s", dir, backup);
        a = open_dir_as(dir, 5);
        tally_replica *y = replica_new(200, NULL);
        tally_account y999 = account(999, 1, 0);
        assert_result(tally_create_account(y, &y999), TALLY_OK);
        assert_result(apply_from(y, a), TALLY_OK);
        int res[2];
        tally_transfer t[2] = {transfer(10, 1, 3, 5), transfer(11, 999, 3, 7)};
        if (none) {
            tally_transfer first = t[0];
            t[0] = t[1];
            t[1] = first;
        }
        assert_result(tally_create_transfers(a, t, 2, res), TALLY_OK); /* run [3..4] */
        /* a's delta for a replica that holds 200's account, handed to the restored b */
        tally_replica *b = open_dir_as(backup, 5), *has_y = replica_new(78, NULL);
        /* a copy, so held; an operator lifts that, and being behind its own history still
         * holds its writes */
        assert_int_equal(tally_held(b), TALLY_HOLD_MOVED);
        assert_result(tally_lift_hold(b), TALLY_OK);
        assert_result(apply_from(y, has_y), TALLY_OK);
        uint8_t *summary, *d;
        size_t summary_len, len;
        assert_result(tally_summary(has_y, &summary, &summary_len), TALLY_OK);
        assert_result(tally_delta(a, summary, summary_len, 0, &d, &len), TALLY_OK);
        assert_result(tally_apply(b, d, len), TALLY_ECORRUPT); /* transfer 10 at most */
        tally_free(summary);
        tally_free(d);
        assert_int_equal(tally_seen(b, 5), none ? 2 : 3);
        if (restart) {
            tally_close(b);
            b = open_dir_as(backup, 5);
            assert_int_equal(tally_seen(b, 5), none ? 2 : 3);
        }
        tally_account mine = account(555, 1, 0);
        assert_result(tally_create_account(b, &mine), TALLY_ORIGIN_BEHIND);
        assert_result(apply_from(y, b), TALLY_OK);
        assert_result(apply_from(a, b), TALLY_OK);
        assert_int_equal(tally_seen(b, 5), 4);
        assert_result(tally_create_account(b, &mine), TALLY_OK); /* whole again */
        tally_replica *fresh = replica_new(90, NULL);
        assert_result(apply_from(y, fresh), TALLY_OK);
        assert_result(apply_from(b, fresh), TALLY_OK);
        assert_converged(b, fresh);
        tally_close(fresh);
        tally_close(has_y);
        tally_close(y);
        tally_close(b);
        tally_close(a);
        shell("rm -rf %s %s", dir, backup);
        free(dir);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_forged_spend_is_refused_by_its_origin_and_by_others),
        cmocka_unit_test(a_changed_run_applies_nothing),
        cmocka_unit_test(a_run_signed_under_a_small_order_key_is_refused),
        cmocka_unit_test(max_bytes_never_splits_a_run),
        cmocka_unit_test(runs_relayed_through_a_third_replica_verify),
        cmocka_unit_test(a_restored_replica_meets_its_own_past_as_a_fork),
        cmocka_unit_test(a_proof_of_a_fork_that_does_not_hold_is_refused),
        cmocka_unit_test(a_directory_without_its_key_does_not_open),
        cmocka_unit_test(a_run_applied_part_way_keeps_its_origins_key_across_a_restart),
        cmocka_unit_test(a_replica_holding_part_of_its_own_run_takes_no_write),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
