/*
 * test_admission.c — a cluster with an authority (docs/design.md, "Admission"): only replicas
 * it admitted write, under the keys it named; a forger who makes up a history for an admitted
 * id, or for an id of its own, gets nothing applied anywhere, even where the id is new; the
 * certificates travel with the histories and outlive restarts and snapshots.
 */
#include "support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ledger/chain.h"
#include "ledger/codec.h"
#include "ledger/replica.h"

typedef struct cluster {
    char *cert, *key; /* the authority's, PEM */
} cluster;

static cluster cluster_new(const char *name) {
    cluster c;
    assert_result(tally_authority_create(name, &c.cert, &c.key), TALLY_OK);
    assert_non_null(strstr(c.cert, "BEGIN CERTIFICATE"));
    assert_non_null(strstr(c.key, "PRIVATE KEY"));
    return c;
}

static void cluster_free(cluster *c) {
    tally_free(c->cert);
    tally_free(c->key);
}

/* An in-memory replica of c, admitted to write unless `admit` is false. */
static tally_replica *member(const cluster *c, uint64_t id, test_clock *clock, bool admit) {
    tally_options o = {
        .replica_id = id, .authority = (const uint8_t *)c->cert, .authority_len = strlen(c->cert)};
    if (clock != NULL) {
        o.clock_ms = test_clock_ms;
        o.clock_ctx = clock;
    }
    tally_replica *r = NULL;
    assert_result(tally_open(&o, &r), TALLY_OK);
    if (admit) {
        char *pem = certificate_for(c->cert, c->key, r, 0, 1);
        assert_result(tally_set_certificate(r, (const uint8_t *)pem, strlen(pem)), TALLY_OK);
        tally_free(pem);
    }
    return r;
}

/* The delta from's summary-less peer would get: everything from has. */
static void delta_of(tally_replica *from, uint8_t **d, size_t *len) {
    tally_replica *empty = replica_new(999, NULL);
    uint8_t *s;
    size_t s_len;
    assert_result(tally_summary(empty, &s, &s_len), TALLY_OK);
    assert_result(tally_delta(from, s, s_len, 0, d, len), TALLY_OK);
    tally_free(s);
    tally_close(empty);
}

static void only_what_the_authority_admitted_writes_or_applies(void **state) {
    (void)state;
    cluster blue = cluster_new("blue");
    tally_replica *a = member(&blue, 1, NULL, true), *b = member(&blue, 2, NULL, true);
    tally_admission info;
    assert_result(tally_admission_of(a, &info), TALLY_OK);
    assert_true(info.authority && info.admitted && info.may_write);
    assert_string_equal(info.cluster, "blue");
    assert_int_equal(info.not_after, UINT64_C(253402300799));
    assert_result(create_account_of(a, 10), TALLY_OK);
    sync_pair(a, b);
    assert_int_equal(tally_seen(b, 1), 1);
    assert_non_null(b->origins.at[replica_origin_find(b, 1)].cert); /* it came with the run */
    /* relayed: a third member that meets a only through b takes a's ops, with a's certificate */
    tally_replica *c = member(&blue, 3, NULL, true);
    sync_pair(b, c);
    assert_int_equal(tally_seen(c, 1), 1);

    /* not admitted: it syncs and reads, and writes nothing */
    tally_replica *guest = member(&blue, 4, NULL, false);
    assert_result(tally_admission_of(guest, &info), TALLY_OK);
    assert_true(info.authority && !info.admitted);
    assert_result(create_account_of(guest, 11), TALLY_NOT_ADMITTED);
    sync_pair(a, guest);
    assert_int_equal(tally_seen(guest, 1), 1);

    /* A forger with a's id and its own key, in a cluster of its own making: a member that has
     * never heard of a refuses its history, with or without a's certificate in front of it
     * (a's certificate names a's key); so does a itself, and b. */
    tally_replica *forger = replica_new(1, NULL);
    assert_result(create_account_of(forger, 66), TALLY_OK);
    tally_replica *fresh = member(&blue, 5, NULL, true);
    assert_result(apply_from(forger, fresh), TALLY_NOT_ADMITTED);
    assert_int_equal(tally_seen(fresh, 1), 0);
    uint8_t *forged;
    size_t forged_len;
    delta_of(forger, &forged, &forged_len);
    op cert;
    chain_admit_op(a, a->self, &cert);
    bytes spliced = {0};
    assert_true(bytes_reserve(&spliced, 8));
    memcpy(spliced.at, forged, 8);
    spliced.len = 8;
    encode_block(&cert, 1, &spliced); /* a's certificate, then the forger's run */
    assert_true(bytes_reserve(&spliced, forged_len - 8));
    memcpy(spliced.at + spliced.len, forged + 8, forged_len - 8);
    spliced.len += forged_len - 8;
    assert_result(tally_apply(fresh, spliced.at, spliced.len), TALLY_NOT_ADMITTED);
    assert_int_equal(tally_seen(fresh, 1), 0);
    assert_result(tally_apply(b, forged, forged_len), TALLY_ECORRUPT); /* b knows a's key */
    assert_result(tally_apply(a, forged, forged_len), TALLY_ECORRUPT);
    bytes_free(&spliced);
    tally_free(forged);

    /* made-up ids fill no table: a thousand of them, none admitted, none kept */
    uint32_t origins = fresh->origins.count;
    for (uint64_t id = 1000; id < 2000; id++) {
        tally_replica *nobody = replica_new(id, NULL);
        assert_result(create_account_of(nobody, id), TALLY_OK);
        assert_result(apply_from(nobody, fresh), TALLY_NOT_ADMITTED);
        tally_close(nobody);
    }
    assert_int_equal(fresh->origins.count, origins);
    /* and the honest history still comes */
    sync_pair(c, fresh);
    assert_int_equal(tally_seen(fresh, 1), 1);
    assert_converged(c, fresh);

    /* another cluster's authority: its members' certificates are nothing here */
    cluster green = cluster_new("green");
    tally_replica *alien = member(&green, 7, NULL, true);
    assert_result(create_account_of(alien, 70), TALLY_OK);
    assert_result(apply_from(alien, fresh), TALLY_ECORRUPT); /* its certificate does not check */
    assert_int_equal(tally_seen(fresh, 7), 0);
    char *wrong = certificate_for(green.cert, green.key, fresh, 0, 1);
    assert_result(tally_set_certificate(fresh, (const uint8_t *)wrong, strlen(wrong)),
                  TALLY_EINVAL);
    tally_free(wrong);
    char *not_mine =
        certificate_for(blue.cert, blue.key, a, 0, 1); /* a's id and key, given to fresh */
    assert_result(tally_set_certificate(fresh, (const uint8_t *)not_mine, strlen(not_mine)),
                  TALLY_EINVAL);
    tally_free(not_mine);

    tally_close(alien);
    cluster_free(&green);
    tally_close(forger);
    tally_close(fresh);
    tally_close(guest);
    tally_close(c);
    tally_close(b);
    tally_close(a);
    cluster_free(&blue);
}

/* A certificate that only reads, and one that has ended, let a replica write nothing. */
static void a_certificate_ends_and_can_forbid_writing(void **state) {
    (void)state;
    cluster blue = cluster_new("blue");
    test_clock clock = {UINT64_C(1800000000000)}; /* ms: 2027-01-15 */
    tally_replica *reader = member(&blue, 1, &clock, false);
    char *pem = certificate_for(blue.cert, blue.key, reader, 0, 0);
    assert_result(tally_set_certificate(reader, (const uint8_t *)pem, strlen(pem)), TALLY_OK);
    tally_free(pem);
    tally_admission info;
    assert_result(tally_admission_of(reader, &info), TALLY_OK);
    assert_true(info.admitted && !info.may_write);
    assert_result(create_account_of(reader, 1), TALLY_NOT_ADMITTED);

    tally_replica *temp = member(&blue, 2, &clock, false);
    pem = certificate_for(blue.cert, blue.key, temp, 1800000060, 1); /* a minute from now */
    assert_result(tally_set_certificate(temp, (const uint8_t *)pem, strlen(pem)), TALLY_OK);
    tally_free(pem);
    assert_result(create_account_of(temp, 2), TALLY_OK);
    clock.now_ms += 60 * 1000;
    assert_result(create_account_of(temp, 3), TALLY_OK); /* the last second */
    clock.now_ms += 1000;
    assert_result(create_account_of(temp, 4), TALLY_NOT_ADMITTED);
    /* what it wrote while admitted stays good everywhere */
    sync_pair(temp, reader);
    assert_int_equal(tally_seen(reader, 2), 2);
    /* a renewed certificate lets it write again */
    pem = certificate_for(blue.cert, blue.key, temp, 0, 1);
    assert_result(tally_set_certificate(temp, (const uint8_t *)pem, strlen(pem)), TALLY_OK);
    tally_free(pem);
    assert_result(create_account_of(temp, 4), TALLY_OK);
    tally_close(temp);
    tally_close(reader);
    cluster_free(&blue);
}

/* A durable replica keeps its authority and certificate: given once, they outlive restarts and
 * snapshots, and the directory refuses another authority. */
static void a_durable_replica_keeps_its_admission(void **state) {
    (void)state;
    cluster blue = cluster_new("blue"), green = cluster_new("green");
    char dir[] = "/tmp/tally-admission-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char error[256] = "";
    tally_options o = {.dir = dir,
                       .replica_id = 8,
                       .sync_mode = TALLY_SYNC_COMMIT,
                       .error = error,
                       .error_size = sizeof error,
                       .authority = (const uint8_t *)blue.cert,
                       .authority_len = strlen(blue.cert)};
    tally_replica *r;
    assert_result(tally_open(&o, &r), TALLY_OK);
    assert_result(create_account_of(r, 1), TALLY_NOT_ADMITTED);
    char *pem = certificate_for(blue.cert, blue.key, r, 0, 1);
    tally_close(r);
    o.certificate = (const uint8_t *)pem;
    o.certificate_len = strlen(pem);
    assert_result(tally_open(&o, &r), TALLY_OK);
    assert_result(create_account_of(r, 1), TALLY_OK);
    tally_close(r);
    /* neither given again: both are in the journal */
    tally_options bare = {.dir = dir, .sync_mode = TALLY_SYNC_COMMIT};
    assert_result(tally_open(&bare, &r), TALLY_OK);
    assert_result(create_account_of(r, 2), TALLY_OK);
    assert_result(tally_snapshot(r), TALLY_OK);
    tally_close(r);
    assert_result(tally_open(&bare, &r), TALLY_OK); /* from the snapshot */
    assert_result(create_account_of(r, 3), TALLY_OK);
    tally_admission info;
    assert_result(tally_admission_of(r, &info), TALLY_OK);
    assert_true(info.authority && info.admitted);
    /* a new member learns r's history, certificate and all, from the snapshot's replica */
    tally_replica *peer = member(&blue, 9, NULL, true);
    sync_pair(r, peer);
    assert_int_equal(tally_seen(peer, 8), 3);
    tally_close(peer);
    tally_close(r);
    /* another authority, or a certificate from it, does not open the directory */
    o.authority = (const uint8_t *)green.cert;
    o.authority_len = strlen(green.cert);
    o.certificate = NULL;
    assert_result(tally_open(&o, &r), TALLY_EINVAL);
    assert_non_null(strstr(error, "another authority"));
    /* nor may a cluster take an authority after its replicas wrote without one */
    char plain_dir[] = "/tmp/tally-admission-XXXXXX";
    assert_non_null(mkdtemp(plain_dir));
    tally_options plain = {.dir = plain_dir, .replica_id = 10, .sync_mode = TALLY_SYNC_COMMIT};
    assert_result(tally_open(&plain, &r), TALLY_OK);
    tally_replica *old = replica_new(11, NULL);
    assert_result(create_account_of(old, 5), TALLY_OK);
    sync_pair(old, r);
    tally_close(old);
    tally_close(r);
    plain.authority = (const uint8_t *)blue.cert;
    plain.authority_len = strlen(blue.cert);
    plain.error = error;
    plain.error_size = sizeof error;
    error[0] = '\0';
    assert_result(tally_open(&plain, &r), TALLY_EINVAL);
    assert_non_null(strstr(error, "no authority admitted"));
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s %s", dir, plain_dir);
    assert_int_equal(system(cmd), 0);
    tally_free(pem);
    cluster_free(&green);
    cluster_free(&blue);
}

/* In a cluster with an authority, a held replica is confirmed by an admitted member that holds
 * its history, with its signed answer, and by nobody else: not a member the authority has not
 * admitted, however much of the history it holds. */
static void a_held_member_is_confirmed_by_an_admitted_member_only(void **state) {
    (void)state;
    cluster blue = cluster_new("blue");
    char dir[] = "/tmp/tally-admission-XXXXXX";
    assert_non_null(mkdtemp(dir));
    tally_replica *r = open_in(dir, 8, blue.cert);
    char *pem = certificate_for(blue.cert, blue.key, r, 0, 1);
    assert_result(tally_set_certificate(r, (const uint8_t *)pem, strlen(pem)), TALLY_OK);
    tally_free(pem);
    assert_result(create_account_of(r, 1), TALLY_OK);
    tally_replica *admitted = member(&blue, 9, NULL, true),
                  *outsider = member(&blue, 10, NULL, false);
    sync_pair(r, admitted);
    sync_pair(r, outsider);
    tally_close(r);
    char copy[96], cmd[512];
    snprintf(copy, sizeof copy, "%s.copy", dir);
    snprintf(cmd, sizeof cmd, "cp -r %s %s && rm -rf %s && mv %s %s", dir, copy, dir, copy, dir);
    assert_int_equal(system(cmd), 0); /* restored */
    r = open_in(dir, 0, NULL);
    assert_int_equal(tally_held(r), TALLY_HOLD_MOVED);
    sync_pair(outsider, r); /* holds its history, but is no admitted member: no answer */
    assert_int_equal(tally_held(r), TALLY_HOLD_MOVED);
    sync_pair(admitted, r);
    assert_int_equal(tally_held(r), TALLY_HOLD_NONE);
    assert_result(create_account_of(r, 2), TALLY_OK);
    tally_close(r);
    tally_close(outsider);
    tally_close(admitted);
    remove_tree(dir);
    cluster_free(&blue);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(only_what_the_authority_admitted_writes_or_applies),
        cmocka_unit_test(a_certificate_ends_and_can_forbid_writing),
        cmocka_unit_test(a_durable_replica_keeps_its_admission),
        cmocka_unit_test(a_held_member_is_confirmed_by_an_admitted_member_only),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
