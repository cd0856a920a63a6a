/*
 * test_attack_own_cert.c — an attack on admission an adversary found: an ADMIT record naming the
 * receiver's own id, carrying an older certificate the authority once issued it (every peer
 * holds one), replaced the one its operator gave: a demotion to read-only undone, a renewal
 * lost. A replica's own certificate now comes only from its operator (chain.h, "Admission").
 */
#include "support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "crdt/cert.h"
#include "ledger/chain.h"
#include "ledger/codec.h"
#include "ledger/replica.h"

static tally_replica *open_dir(const char *dir, const authority_dir *c, test_clock *clk) {
    tally_options o = {
        .dir = dir, .sync_mode = TALLY_SYNC_COMMIT, .clock_ms = test_clock_ms, .clock_ctx = clk};
    if (c != NULL) {
        o.replica_id = 8;
        o.authority = (const uint8_t *)c->cert;
        o.authority_len = strlen(c->cert);
    }
    tally_replica *r = NULL;
    assert_result(tally_open(&o, &r), TALLY_OK);
    return r;
}

static void demotion_is_undone_by_a_replayed_certificate(void **state) {
    authority_dir *blue = *state;
    const char *dir = blue->dir;
    test_clock clk = {1700000000000ull};
    tally_replica *r = open_dir(dir, blue, &clk);
    char *c_write = certificate_for(blue->cert, blue->key, r, 0, 1);
    char *c_read = certificate_for(blue->cert, blue->key, r, 0, 0);
    assert_result(tally_set_certificate(r, (const uint8_t *)c_write, strlen(c_write)), TALLY_OK);
    assert_result(create_account_of(r, 1), TALLY_OK);
    /* the operator demotes it: read only */
    assert_result(tally_set_certificate(r, (const uint8_t *)c_read, strlen(c_read)), TALLY_OK);
    assert_result(create_account_of(r, 2), TALLY_NOT_ADMITTED);
    /* an unadmitted stranger replays the old write certificate as an ADMIT record */
    int rc = apply_admit_pem(r, 8, c_write);
    fprintf(stderr, "[attack] stranger's ADMIT(own id, old write cert) -> %s\n",
            tally_result_name(rc));
    tally_close(r);
    r = open_dir(dir, NULL, &clk);
    tally_admission info;
    assert_result(tally_admission_of(r, &info), TALLY_OK);
    fprintf(stderr, "[attack] after reopen: admitted=%d may_write=%d\n", info.admitted,
            info.may_write);
    rc = create_account_of(r, 3);
    fprintf(stderr, "[attack] demoted replica writes after reopen -> %s (want NOT_ADMITTED)\n",
            tally_result_name(rc));
    assert_result(rc, TALLY_NOT_ADMITTED); /* the demotion stands */
    tally_close(r);
    tally_free(c_write);
    tally_free(c_read);
}

static void renewed_replica_is_stopped_by_its_expired_certificate(void **state) {
    authority_dir *blue = *state;
    const char *dir = blue->dir;
    test_clock clk = {1700000000000ull};
    tally_replica *r = open_dir(dir, blue, &clk);
    char *c_old = certificate_for(blue->cert, blue->key, r, 1700000060, 1); /* ends in a minute */
    assert_result(tally_set_certificate(r, (const uint8_t *)c_old, strlen(c_old)), TALLY_OK);
    assert_result(create_account_of(r, 1), TALLY_OK);
    /* an honest member takes r's first run, and with it c_old: the first one stays there */
    tally_options po = {.replica_id = 9,
                        .authority = (const uint8_t *)blue->cert,
                        .authority_len = strlen(blue->cert)};
    tally_replica *peer;
    assert_result(tally_open(&po, &peer), TALLY_OK);
    assert_result(apply_from(r, peer), TALLY_OK);
    clk.now_ms += 120000; /* c_old ended */
    assert_result(create_account_of(r, 2), TALLY_NOT_ADMITTED);
    char *c_new = certificate_for(blue->cert, blue->key, r, 0, 1); /* renewed */
    assert_result(tally_set_certificate(r, (const uint8_t *)c_new, strlen(c_new)), TALLY_OK);
    assert_result(create_account_of(r, 3), TALLY_OK);
    /* the peer still holds and sends c_old: it is public. Anyone replays it. */
    op held;
    chain_admit_op(peer, replica_origin_find(peer, 8), &held);
    uint8_t *der;
    size_t len;
    assert_true(cert_der((const uint8_t *)c_old, strlen(c_old), &der, &len));
    assert_int_equal(held.u.admit.len, len);
    assert_memory_equal(held.u.admit.der, der, len);
    free(der);
    int rc = apply_admit_pem(r, 8, c_old);
    fprintf(stderr, "[attack] stranger's ADMIT(own id, expired cert) -> %s\n",
            tally_result_name(rc));
    tally_close(r);
    r = open_dir(dir, NULL, &clk);
    rc = create_account_of(r, 4);
    fprintf(stderr, "[attack] renewed replica writes after reopen -> %s (want OK)\n",
            tally_result_name(rc));
    assert_result(rc, TALLY_OK); /* the renewal stands */
    tally_close(r);
    tally_close(peer);
    tally_free(c_old);
    tally_free(c_new);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(demotion_is_undone_by_a_replayed_certificate,
                                        authority_dir_setup, authority_dir_teardown),
        cmocka_unit_test_setup_teardown(renewed_replica_is_stopped_by_its_expired_certificate,
                                        authority_dir_setup, authority_dir_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
