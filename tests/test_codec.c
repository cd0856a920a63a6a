/*
 * test_codec.c — the block encoding of ops: round trips, compactness, and refusal of anything
 * that is not a canonical, checksummed block.
 */
#include "support.h"

#include <stdlib.h>

#include "crdt/id.h"
#include "ledger/codec.h"

static tally_id random_id(uint64_t *seed) {
    tally_id id = {test_rand(seed), test_rand(seed) | 1};
    return id;
}

/* A random op of any kind (its validity against a state does not matter to the codec). */
static op random_op(uint64_t *seed, const tally_id *accounts, int n_accounts, uint64_t *seqs) {
    op o;
    memset(&o, 0, sizeof o);
    o.kind = (uint8_t)(1 + test_rand(seed) % OP_KIND_MAX);
    int who = (int)(test_rand(seed) % 3);
    o.origin = 1000 + (uint64_t)who;
    o.seq = ++seqs[who];
    o.hlc = (UINT64_C(1700000000000) << 16) + test_rand(seed) % 100000;
    tally_id d = accounts[test_rand(seed) % (uint64_t)n_accounts];
    tally_id c = accounts[test_rand(seed) % (uint64_t)n_accounts];
    uint32_t ledger = 1 + (uint32_t)(test_rand(seed) % 2);
    switch (o.kind) {
    case OP_OPEN:
        o.u.account.id = d;
        o.u.account.ledger = ledger;
        o.u.account.flags = (uint16_t)(test_rand(seed) % 3);
        o.u.account.code = (uint16_t)(test_rand(seed) % 3);
        o.u.account.user_data = test_rand(seed) % 2 ? test_rand(seed) : 0;
        break;
    case OP_GRANT:
        o.u.grant.account = d;
        o.u.grant.ledger = ledger;
        o.u.grant.account_flags = (uint8_t)(1 + test_rand(seed) % 2);
        o.u.grant.to = 1000 + test_rand(seed) % 5;
        o.u.grant.amount = test_rand(seed) >> (test_rand(seed) % 64);
        break;
    default:
        o.u.transfer.id = random_id(seed);
        o.u.transfer.debit_account_id = d;
        o.u.transfer.credit_account_id = c;
        o.u.transfer.ledger = ledger;
        o.u.transfer.amount = test_rand(seed) >> (test_rand(seed) % 64);
        o.u.transfer.code = (uint16_t)(test_rand(seed) % 3);
        o.u.transfer.user_data = test_rand(seed) % 2 ? test_rand(seed) : 0;
        o.debit_flags = (uint8_t)(test_rand(seed) % 3);
        o.credit_flags = (uint8_t)(test_rand(seed) % 3);
        if (o.kind == OP_TRANSFER && test_rand(seed) % 2) {
            o.u.transfer.flags = TALLY_TRANSFER_PENDING;
            o.u.transfer.timeout_ms = (uint32_t)(test_rand(seed) % 2 ? test_rand(seed) : 0);
        } else if (o.kind == OP_POST) {
            o.u.transfer.flags = TALLY_TRANSFER_POST_PENDING;
            o.u.transfer.pending_id = random_id(seed);
        } else if (o.kind == OP_VOID) {
            o.u.transfer.flags = TALLY_TRANSFER_VOID_PENDING;
            o.u.transfer.pending_id = random_id(seed);
            if (test_rand(seed) % 2) {
                o.expired = 1;
                o.u.transfer.id = (tally_id){0, 0};
            }
        }
        break;
    }
    return o;
}

static void decode_of_encode_is_the_op(void **state) {
    (void)state;
    uint64_t seed = 42, seqs[3] = {0, 0, 0};
    tally_id accounts[20];
    for (int i = 0; i < 20; i++) {
        accounts[i] = random_id(&seed);
    }
    enum { N = 5000 };
    op *ops = calloc(N, sizeof *ops);
    for (int i = 0; i < N; i++) {
        ops[i] = random_op(&seed, accounts, 20, seqs);
    }
    bytes out = {0};
    encode_block(ops, N, &out);
    block_dec d;
    block_dec_init(&d);
    size_t block_len;
    assert_result(block_dec_begin(&d, out.at, out.len, &block_len), TALLY_OK);
    assert_int_equal(block_len, out.len);
    for (int i = 0; i < N; i++) {
        op got;
        assert_result(block_dec_op(&d, &got), TALLY_OK);
        assert_memory_equal(&got, &ops[i], sizeof got);
    }
    assert_true(block_dec_done(&d));
    block_dec_free(&d);
    bytes_free(&out);
    free(ops);
}

static void accounts_and_dots_that_repeat_are_sent_once(void **state) {
    (void)state;
    op o;
    memset(&o, 0, sizeof o);
    o.kind = OP_TRANSFER;
    o.origin = 77;
    o.u.transfer.debit_account_id = (tally_id){0x1234567890abcdefu, 0xfedcba0987654321u};
    o.u.transfer.credit_account_id = (tally_id){0x1111111111111111u, 0x2222222222222222u};
    o.u.transfer.ledger = 1;
    o.u.transfer.code = 1;
    o.u.transfer.amount = 100;
    op ops[2] = {o, o};
    ops[0].seq = 1;
    ops[0].hlc = UINT64_C(1700000000000) << 16;
    ops[0].u.transfer.id = (tally_id){0xaaaaaaaaaaaaaaaau, 0xbbbbbbbbbbbbbbbbu};
    ops[1].seq = 2;
    ops[1].hlc = ops[0].hlc + 1;
    ops[1].u.transfer.id = (tally_id){0xccccccccccccccccu, 0xddddddddddddddddu};
    bytes one = {0}, two = {0};
    encode_block(ops, 1, &one);
    encode_block(ops, 2, &two);
    size_t second = two.len - one.len;
    /* header byte, hlc delta, 16-byte id, two one-byte refs, amount: 21 bytes */
    assert_int_equal(second, 1 + 1 + 16 + 1 + 1 + 1);
    bytes_free(&one);
    bytes_free(&two);
}

static void every_bit_flip_of_a_block_is_caught(void **state) {
    (void)state;
    uint64_t seed = 9, seqs[3] = {0, 0, 0};
    tally_id accounts[4];
    for (int i = 0; i < 4; i++) {
        accounts[i] = random_id(&seed);
    }
    op ops[12];
    for (int i = 0; i < 12; i++) {
        ops[i] = random_op(&seed, accounts, 4, seqs);
    }
    bytes out = {0};
    encode_block(ops, 12, &out);
    for (size_t bit = 0; bit < out.len * 8; bit++) {
        out.at[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        block_dec d;
        block_dec_init(&d);
        size_t block_len;
        assert_result(block_dec_begin(&d, out.at, out.len, &block_len), TALLY_ECORRUPT);
        block_dec_free(&d);
        out.at[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    for (size_t len = 0; len < out.len; len++) {
        block_dec d;
        block_dec_init(&d);
        size_t block_len;
        assert_result(block_dec_begin(&d, out.at, len, &block_len), TALLY_ECORRUPT);
        block_dec_free(&d);
    }
    bytes_free(&out);
}

/* Seals a hand-made payload into a block with a valid checksum, to test what the decoder does
 * with well-checksummed but malformed ops. */
static size_t seal(uint8_t *block, const uint8_t *payload, uint32_t len, uint32_t ops) {
    put_u32le(block, len);
    put_u32le(block + 4, ops);
    memcpy(block + CODEC_BLOCK_HEADER, payload, len);
    put_u64le(block + 8, XXH3_64bits_withSeed(payload, len, ((uint64_t)len << 32) | ops));
    return CODEC_BLOCK_HEADER + len;
}

static int decode_first(const uint8_t *payload, uint32_t len) {
    uint8_t block[256];
    size_t n = seal(block, payload, len, 1);
    block_dec d;
    block_dec_init(&d);
    size_t block_len;
    int rc = block_dec_begin(&d, block, n, &block_len);
    op o;
    if (rc == TALLY_OK) {
        rc = block_dec_op(&d, &o);
    }
    block_dec_free(&d);
    return rc;
}

static void malformed_ops_under_a_valid_checksum_are_refused(void **state) {
    (void)state;
    /* An OPEN: header, origin literal (0 + 8 bytes), seq 1, hlc 0, account literal. */
    uint8_t good[31] = {OP_OPEN | (1u << 4),
                        0,
                        9,
                        0,
                        0,
                        0,
                        0,
                        0,
                        0,
                        0, /* origin 9 */
                        1,
                        0, /* seq 1, hlc 0 */
                        0,
                        1}; /* literal, id hi 1 */
    good[30] = 1;           /* ledger 1 */
    assert_result(decode_first(good, sizeof good), TALLY_OK);
    uint8_t bad[sizeof good];

    memcpy(bad, good, sizeof good);
    bad[0] = 0; /* kind 0 */
    assert_result(decode_first(bad, sizeof bad), TALLY_ECORRUPT);
    memcpy(bad, good, sizeof good);
    bad[0] = 6 | (1u << 4); /* kind beyond GRANT */
    assert_result(decode_first(bad, sizeof bad), TALLY_ECORRUPT);
    memcpy(bad, good, sizeof good);
    bad[0] |= 1u << 6; /* the X bit on an OPEN */
    assert_result(decode_first(bad, sizeof bad), TALLY_ECORRUPT);
    memcpy(bad, good, sizeof good);
    bad[0] |= 1u << 3; /* DOT_NEXT with no previous op */
    assert_result(decode_first(bad, sizeof bad), TALLY_ECORRUPT);
    memcpy(bad, good, sizeof good);
    bad[1] = 1; /* an origin reference to an empty dictionary */
    assert_result(decode_first(bad, sizeof bad), TALLY_ECORRUPT);
    memcpy(bad, good, sizeof good);
    bad[10] = 0; /* seq 0 */
    assert_result(decode_first(bad, sizeof bad), TALLY_ECORRUPT);
    memcpy(bad, good, sizeof good);
    bad[29] = 3; /* both bound flags */
    assert_result(decode_first(bad, sizeof bad), TALLY_ECORRUPT);
    memcpy(bad, good, sizeof good);
    bad[30] = 0; /* ledger 0 */
    assert_result(decode_first(bad, sizeof bad), TALLY_ECORRUPT);
    /* an overlong varint for seq: 0x81 0x00 means 1 in two bytes */
    uint8_t overlong[sizeof good + 1];
    memcpy(overlong, good, 10);
    overlong[10] = 0x81;
    overlong[11] = 0x00;
    memcpy(overlong + 12, good + 11, sizeof good - 11);
    assert_result(decode_first(overlong, sizeof overlong), TALLY_ECORRUPT);
    /* every truncation of the payload */
    for (uint32_t len = 1; len < sizeof good; len++) {
        assert_result(decode_first(good, len), TALLY_ECORRUPT);
    }
}

/* A CLOCK record (the journal's own, ledger/expiry.c) round-trips where a decoder is told to
 * accept one, costs the ops around it nothing (the op after it still follows the one before),
 * and is refused by every other decoder: a peer cannot send one. */
static void a_clock_record_is_read_only_where_asked(void **state) {
    (void)state;
    uint64_t seed = 7, seqs[3] = {0, 0, 0};
    tally_id accounts[4];
    for (int i = 0; i < 4; i++) {
        accounts[i] = random_id(&seed);
    }
    op ops[3];
    ops[0] = random_op(&seed, accounts, 4, seqs);
    memset(&ops[1], 0, sizeof ops[1]);
    ops[1].kind = OP_CLOCK;
    ops[1].u.clock.steady_ms = UINT64_C(1700000000000) + 12345;
    ops[1].u.clock.wall_ms = UINT64_C(1700000000000);
    ops[2] = random_op(&seed, accounts, 4, seqs);
    ops[2].origin = ops[0].origin;
    ops[2].seq = ops[0].seq + 1;
    op without[2] = {ops[0], ops[2]};
    bytes with_clock = {0}, plain = {0};
    encode_block(ops, 3, &with_clock);
    encode_block(without, 2, &plain);
    /* a header byte and two varints of six bytes each */
    assert_int_equal(with_clock.len - plain.len, 1 + 6 + 6);
    for (int accept = 0; accept < 2; accept++) {
        block_dec d;
        block_dec_init(&d);
        d.clocks = accept != 0;
        size_t block_len;
        assert_result(block_dec_begin(&d, with_clock.at, with_clock.len, &block_len), TALLY_OK);
        op got;
        assert_result(block_dec_op(&d, &got), TALLY_OK);
        assert_memory_equal(&got, &ops[0], sizeof got);
        if (!accept) {
            assert_result(block_dec_op(&d, &got), TALLY_ECORRUPT);
            block_dec_free(&d);
            continue;
        }
        for (int i = 1; i < 3; i++) {
            assert_result(block_dec_op(&d, &got), TALLY_OK);
            assert_memory_equal(&got, &ops[i], sizeof got);
        }
        assert_true(block_dec_done(&d));
        block_dec_free(&d);
    }
    /* with any flag bit set beside its kind, it is no CLOCK record */
    uint8_t payload[3] = {OP_CLOCK | (1u << 3), 1, 1}, block[64];
    size_t n = seal(block, payload, sizeof payload, 1);
    block_dec d;
    block_dec_init(&d);
    d.clocks = true;
    size_t block_len;
    op got;
    assert_result(block_dec_begin(&d, block, n, &block_len), TALLY_OK);
    assert_result(block_dec_op(&d, &got), TALLY_ECORRUPT);
    block_dec_free(&d);
    bytes_free(&with_clock);
    bytes_free(&plain);
}

static void a_rolled_back_op_leaves_no_trace(void **state) {
    (void)state;
    uint64_t seed = 3, seqs[3] = {0, 0, 0};
    tally_id accounts[6];
    for (int i = 0; i < 6; i++) {
        accounts[i] = random_id(&seed);
    }
    op ops[40];
    for (int i = 0; i < 40; i++) {
        ops[i] = random_op(&seed, accounts, 6, seqs);
    }
    bytes straight = {0}, rolled = {0};
    encode_block(ops, 40, &straight);
    block_enc e;
    block_enc_init(&e);
    assert_true(block_enc_begin(&e, &rolled));
    for (int i = 0; i < 40; i++) {
        size_t before = rolled.len;
        assert_true(block_enc_op(&e, &rolled, &ops[(i * 7) % 40]));
        block_enc_rollback(&e, &rolled, before);
        assert_true(block_enc_op(&e, &rolled, &ops[i]));
    }
    block_enc_end(&e, &rolled);
    block_enc_free(&e);
    assert_int_equal(rolled.len, straight.len);
    assert_memory_equal(rolled.at, straight.at, straight.len);
    bytes_free(&straight);
    bytes_free(&rolled);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(decode_of_encode_is_the_op),
        cmocka_unit_test(accounts_and_dots_that_repeat_are_sent_once),
        cmocka_unit_test(every_bit_flip_of_a_block_is_caught),
        cmocka_unit_test(malformed_ops_under_a_valid_checksum_are_refused),
        cmocka_unit_test(a_clock_record_is_read_only_where_asked),
        cmocka_unit_test(a_rolled_back_op_leaves_no_trace),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
