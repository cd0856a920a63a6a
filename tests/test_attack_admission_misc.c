/*
 * test_attack_admission_misc.c — attacks on admission an adversary tried: a read-only
 * certificate sent ahead of an origin's history (it used to pin the origin out for good: the
 * certificate in front of the first run is now the one it is checked against), and crafted
 * certificates of every kind, each refused.
 */
#include "support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crdt/cert.h"
#include "ledger/chain.h"
#include "ledger/replica.h"

static tally_replica *member(const char *ca, uint64_t id) {
    tally_options o = {
        .replica_id = id, .authority = (const uint8_t *)ca, .authority_len = strlen(ca)};
    tally_replica *r;
    assert_result(tally_open(&o, &r), TALLY_OK);
    return r;
}

static void a_read_certificate_sent_first_pins_an_origin_out(void **state) {
    (void)state;
    char *ca, *key;
    assert_result(tally_authority_create("blue", &ca, &key), TALLY_OK);
    tally_replica *x = member(ca, 1), *v = member(ca, 2);
    char *read = certificate_for(ca, key, x, 0, 0), *write = certificate_for(ca, key, x, 0, 1);
    assert_result(tally_set_certificate(x, (const uint8_t *)write, strlen(write)), TALLY_OK);
    assert_result(create_account_of(x, 10), TALLY_OK);
    /* a stranger gets there first with x's old read-only certificate */
    int rc = apply_admit_pem(v, 1, read);
    fprintf(stderr, "[attack] ADMIT(x, read cert) at v -> %s\n", tally_result_name(rc));
    rc = apply_from(x, v);
    fprintf(stderr, "[attack] x's honest history (write cert + first run) at v -> %s; seen %llu\n",
            tally_result_name(rc), (unsigned long long)tally_seen(v, 1));
    uint64_t seen = tally_seen(v, 1);
    tally_close(x);
    tally_close(v);
    tally_free(read);
    tally_free(write);
    tally_free(ca);
    tally_free(key);
    assert_int_equal(seen, 1); /* the honest history is taken */
}

static void crafted_certificates_are_refused(void **state) {
    (void)state;
    char *ca, *key, *ca2, *key2;
    assert_result(tally_authority_create("blue", &ca, &key), TALLY_OK);
    assert_result(tally_authority_create("blue", &ca2, &key2), TALLY_OK); /* same name */
    tally_replica *v = member(ca, 2);
    uint32_t origins = v->origins.count;
    tally_replica *x2 = member(ca2, 1);
    char *other = certificate_for(ca2, key2, x2, 0, 1);
    assert_result(apply_admit_pem(v, 1, other), TALLY_ECORRUPT);
    assert_result(apply_admit_pem(v, 1, ca), TALLY_ECORRUPT); /* the CA's own certificate */
    assert_result(apply_admit_pem(v, 0, ca), TALLY_ECORRUPT); /* an authority in a delta */
    assert_result(apply_admit_pem(v, 0, ca2), TALLY_ECORRUPT);
    assert_result(apply_admit(v, 1, (const uint8_t *)other, strlen(other)), TALLY_ECORRUPT);
    tally_replica *x = member(ca, 1);
    char *good = certificate_for(ca, key, x, 0, 1);
    uint8_t *der;
    size_t len;
    assert_true(cert_der((const uint8_t *)good, strlen(good), &der, &len));
    assert_result(apply_admit(v, 1, der, len - 1), TALLY_ECORRUPT);
    for (size_t i = 0; i < len; i += 7) {
        der[i] ^= 0x01;
        assert_result(apply_admit(v, 1, der, len), TALLY_ECORRUPT);
        der[i] ^= 0x01;
    }
    assert_result(apply_admit(v, 3, der, len), TALLY_ECORRUPT); /* x's certificate for id 3 */
    assert_int_equal(v->origins.count, origins);
    /* forger with x2's certificate (other authority, same cluster name) in front of its run */
    assert_result(tally_set_certificate(x2, (const uint8_t *)other, strlen(other)), TALLY_OK);
    assert_result(create_account_of(x2, 5), TALLY_OK);
    assert_result(apply_from(x2, v), TALLY_ECORRUPT);
    assert_int_equal(tally_seen(v, 1), 0);
    assert_int_equal(v->origins.count, origins);
    /* a durable replica's authority can't be switched to the same-named one */
    free(der);
    tally_free(good);
    tally_free(other);
    tally_close(x);
    tally_close(x2);
    tally_close(v);
    tally_free(ca);
    tally_free(key);
    tally_free(ca2);
    tally_free(key2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_read_certificate_sent_first_pins_an_origin_out),
        cmocka_unit_test(crafted_certificates_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
