/*
 * test_attack_snapshot_admit.c — an attack an adversary found: a snapshot with a forger's runs,
 * the authority's certificate spliced into it and its checksum recomputed, opened under the
 * authority, and the forger's later runs applied. Opening now checks that every origin whose
 * runs are here is admitted under their key.
 */
#include "support.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "crdt/bytes.h"
#include "crdt/cert.h"
#include "ledger/replica.h"

static void a_spliced_snapshot_admits_a_forger(void **state) {
    authority_dir *a = *state;
    const char *ca = a->cert, *dir = a->dir;
    tally_options o = {.dir = dir, .replica_id = 8, .sync_mode = TALLY_SYNC_COMMIT};
    tally_replica *r;
    assert_result(tally_open(&o, &r), TALLY_OK);
    tally_replica *forger = replica_new(77, NULL); /* never admitted by anyone */
    assert_result(create_account_of(forger, 1), TALLY_OK);
    sync_pair(forger, r);
    assert_result(tally_snapshot(r), TALLY_OK);
    tally_close(r);
    /* splice the authority's certificate into the snapshot's admission section */
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[512] = "";
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, "snapshot-", 9) == 0) {
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        }
    }
    closedir(d);
    assert_true(path[0] != '\0');
    FILE *f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc((size_t)n + 4096);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    /* tail: u32 authority len (0), u32 certs (0), u32 second finishes (0), u64 checksum */
    assert_int_equal(get_u32le(buf + n - 20), 0);
    assert_int_equal(get_u32le(buf + n - 16), 0);
    assert_int_equal(get_u32le(buf + n - 12), 0);
    uint8_t *der;
    size_t der_len;
    assert_true(cert_der((const uint8_t *)ca, strlen(ca), &der, &der_len));
    size_t at = (size_t)n - 20;
    put_u32le(buf + at, (uint32_t)der_len);
    memcpy(buf + at + 4, der, der_len);
    put_u32le(buf + at + 4 + der_len, 0);
    put_u32le(buf + at + 8 + der_len, 0);
    size_t len = at + 12 + der_len;
    put_u64le(buf + len, XXH3_64bits(buf, len));
    len += 8;
    int fd = open(path, O_WRONLY | O_TRUNC);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, buf, len), (ssize_t)len);
    close(fd);
    free(der);
    free(buf);
    /* opens under the authority, with the forger's key for 77 and no certificate for it */
    char error[256] = "";
    o.authority = (const uint8_t *)ca;
    o.authority_len = strlen(ca);
    o.error = error;
    o.error_size = sizeof error;
    int rc = tally_open(&o, &r);
    /* refused: origin 77's runs are here with no certificate from the authority */
    assert_result(rc, TALLY_ECORRUPT);
    assert_non_null(strstr(error, "did not admit"));
    tally_close(forger);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(a_spliced_snapshot_admits_a_forger, authority_dir_setup,
                                        authority_dir_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
