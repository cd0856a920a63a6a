/*
 * test_attack_renew.c — failures an adversary found in TALLY_OPEN_AS_NEW: a directory given with
 * a trailing slash, and every name to keep the old files under taken, left the replica held
 * (RENEWED) although nothing was renewed. The path is now taken without its trailing slashes,
 * the name is chosen first, and only the kept files are held, once the swap is done.
 */
#include "support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ledger/replica.h"

static void check_left_renewed(const char *dir, const char *label) {
    tally_options o = {.dir = dir, .sync_mode = TALLY_SYNC_COMMIT};
    tally_replica *r;
    assert_result(tally_open(&o, &r), TALLY_OK);
    fprintf(stderr, "[attack] %s: after the failed AS_NEW: id %llu, held %s, write -> %s\n", label,
            (unsigned long long)tally_replica_id(r), tally_hold_name((int)tally_held(r)),
            tally_result_name(create_account_of(r, 77)));
    tally_hold h = tally_held(r);
    tally_close(r);
    /* a failed renewal should leave the replica as it was (not held) */
    assert_int_equal(h, TALLY_HOLD_NONE); /* nothing was renewed: nothing is held */
}

static void trailing_slash(void **state) {
    (void)state;
    char dir[] = "/tmp/tally-attack-XXXXXX";
    assert_non_null(mkdtemp(dir));
    tally_options o = {.dir = dir, .replica_id = 5, .sync_mode = TALLY_SYNC_COMMIT};
    tally_replica *r;
    assert_result(tally_open(&o, &r), TALLY_OK);
    assert_result(create_account_of(r, 1), TALLY_OK);
    tally_close(r);
    char slash[64], error[512] = "";
    snprintf(slash, sizeof slash, "%s/", dir);
    tally_options n = {.dir = slash,
                       .sync_mode = TALLY_SYNC_COMMIT,
                       .flags = TALLY_OPEN_AS_NEW,
                       .error = error,
                       .error_size = sizeof error};
    int rc = tally_open(&n, &r);
    fprintf(stderr, "[attack] AS_NEW on \"%s\" -> %s: %s\n", slash, tally_result_name(rc), error);
    /* the path without its slash: renewed, the old files kept beside it, held */
    assert_result(rc, TALLY_OK);
    assert_int_not_equal(tally_replica_id(r), 5);
    assert_int_equal(tally_held(r), TALLY_HOLD_NONE);
    tally_close(r);
    char kept[96];
    snprintf(kept, sizeof kept, "%s.replica-5", dir);
    r = open_in(kept, 0, NULL);
    assert_int_equal(tally_replica_id(r), 5);
    assert_int_equal(tally_held(r), TALLY_HOLD_RENEWED);
    tally_close(r);
    remove_tree(kept);
    remove_tree(dir);
}

static void kept_names_taken(void **state) {
    (void)state;
    char dir[] = "/tmp/tally-attack-XXXXXX";
    assert_non_null(mkdtemp(dir));
    tally_options o = {.dir = dir, .replica_id = 6, .sync_mode = TALLY_SYNC_COMMIT};
    tally_replica *r;
    assert_result(tally_open(&o, &r), TALLY_OK);
    assert_result(create_account_of(r, 1), TALLY_OK);
    tally_close(r);
    char p[128];
    for (int k = 0; k < 1000; k++) {
        if (k == 0) {
            snprintf(p, sizeof p, "%s.replica-6", dir);
        } else {
            snprintf(p, sizeof p, "%s.replica-6-%d", dir, k);
        }
        assert_int_equal(mkdir(p, 0700), 0);
    }
    char error[512] = "";
    tally_options n = {.dir = dir,
                       .sync_mode = TALLY_SYNC_COMMIT,
                       .flags = TALLY_OPEN_AS_NEW,
                       .error = error,
                       .error_size = sizeof error};
    int rc = tally_open(&n, &r);
    fprintf(stderr, "[attack] AS_NEW with the kept names taken -> %s: %s\n", tally_result_name(rc),
            error);
    assert_result(rc, TALLY_EIO); /* refused, and nothing changed */
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s.replica-6*", dir);
    assert_int_equal(system(cmd), 0);
    check_left_renewed(dir, "names taken");
    remove_tree(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(trailing_slash),
        cmocka_unit_test(kept_names_taken),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
