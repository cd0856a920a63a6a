/*
 * test_attack_hold_stranger.c — an attack on holds an adversary found: a stranger outside the
 * cluster pulled the history from a member and answered a copied directory's challenge while
 * the original ran, so both wrote: a fork. In a cluster with an authority an answer now
 * counts only signed by an admitted member, with its certificate.
 */
#include "support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ledger/chain.h"
#include "ledger/replica.h"

static void a_stranger_confirms_a_copy(void **state) {
    authority_dir *a = *state;
    const char *ca = a->cert, *cakey = a->key, *dir = a->dir;
    tally_replica *r = open_in(dir, 8, ca);
    char *pem = certificate_for(ca, cakey, r, 0, 1);
    assert_result(tally_set_certificate(r, (const uint8_t *)pem, strlen(pem)), TALLY_OK);
    assert_result(create_account_of(r, 1), TALLY_OK);
    tally_options po = {
        .replica_id = 9, .authority = (const uint8_t *)ca, .authority_len = strlen(ca)};
    tally_replica *member;
    assert_result(tally_open(&po, &member), TALLY_OK);
    sync_pair(r, member);
    tally_close(r);
    char copy[128], cmd[300];
    snprintf(copy, sizeof copy, "%s.copy", dir);
    snprintf(cmd, sizeof cmd, "cp -r %s %s", dir, copy);
    assert_int_equal(system(cmd), 0);
    r = open_in(dir, 0, NULL); /* the original, alive */
    tally_options co = {.dir = copy, .sync_mode = TALLY_SYNC_COMMIT};
    tally_replica *c;
    assert_result(tally_open(&co, &c), TALLY_OK);
    fprintf(stderr, "[attack] copy held: %s\n", tally_hold_name((int)tally_held(c)));
    assert_int_equal(tally_held(c), TALLY_HOLD_MOVED);
    /* a stranger: no authority, no certificate, an id of its own; reads a member's delta */
    tally_replica *stranger = replica_new(666, NULL);
    assert_result(apply_from(member, stranger), TALLY_OK);
    /* and answers the copy's challenge */
    int rc = apply_from(stranger, c);
    fprintf(stderr, "[attack] stranger's delta to the copy -> %s; copy held now: %s\n",
            tally_result_name(rc), tally_hold_name((int)tally_held(c)));
    int w1 = create_account_of(c, 50), w2 = create_account_of(r, 51);
    fprintf(stderr, "[attack] copy writes -> %s, original writes -> %s\n", tally_result_name(w1),
            tally_result_name(w2));
    rc = apply_from(c, member);
    int rc2 = apply_from(r, member);
    fprintf(stderr,
            "[attack] member takes copy -> %s, original -> %s (FORKED: two histories of 8)\n",
            tally_result_name(rc), tally_result_name(rc2));
    tally_close(stranger);
    tally_close(member);
    tally_close(c);
    tally_close(r);
    remove_tree(copy);
    tally_free(pem);
    assert_result(w1, TALLY_ORIGIN_HELD); /* a stranger cannot confirm it */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(a_stranger_confirms_a_copy, authority_dir_setup,
                                        authority_dir_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
