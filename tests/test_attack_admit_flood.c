/*
 * test_attack_admit_flood.c — an attack an adversary found: ADMIT records alternating two valid
 * certificates were each journalled, growing the journal without bound for nothing learned. A
 * peer's certificate is now journalled only with the first run it admits, so resending any
 * number of them costs the disk nothing.
 */
#include "support.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "crdt/cert.h"
#include "ledger/chain.h"
#include "ledger/codec.h"
#include "ledger/replica.h"

static long long dir_bytes(const char *dir) {
    DIR *d = opendir(dir);
    struct dirent *e;
    long long total = 0;
    char path[512];
    while ((e = readdir(d)) != NULL) {
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
            total += st.st_size;
        }
    }
    closedir(d);
    return total;
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec / 1e9;
}

static void alternating_own_certificates_grow_the_journal_forever(void **state) {
    authority_dir *a = *state;
    const char *ca = a->cert, *cakey = a->key, *dir = a->dir;
    tally_replica *r = open_in(dir, 8, ca);
    char *pem[2] = {certificate_for(ca, cakey, r, 0, 1), certificate_for(ca, cakey, r, 0, 1)};
    assert_result(tally_set_certificate(r, (const uint8_t *)pem[1], strlen(pem[1])), TALLY_OK);
    uint8_t *der[2];
    size_t len[2];
    for (int i = 0; i < 2; i++) {
        assert_true(cert_der((const uint8_t *)pem[i], strlen(pem[i]), &der[i], &len[i]));
    }
    /* one block as full as it may be (4 MiB) of alternating records */
    size_t per = (CODEC_BLOCK_PAYLOAD_MAX - 64) / (len[0] + 12);
    op *ops = calloc(per, sizeof *ops);
    for (size_t i = 0; i < per; i++) {
        op_clear(&ops[i]);
        ops[i].kind = OP_ADMIT;
        ops[i].origin = 8;
        ops[i].u.admit.der = der[i % 2];
        ops[i].u.admit.len = (uint32_t)len[i % 2];
    }
    bytes d = {0};
    assert_true(bytes_reserve(&d, 8));
    memcpy(d.at, "TLYD\3\0\0\0", 8);
    d.len = 8;
    encode_block(ops, per, &d);
    long long before = dir_bytes(dir);
    uint32_t origins = r->origins.count;
    fprintf(stderr,
            "[attack] delta: %zu bytes, %zu ADMIT records; journal dir before: %lld bytes\n", d.len,
            per, before);
    for (int round = 1; round <= 5; round++) {
        double t0 = now_s();
        int rc = tally_apply(r, d.at, d.len);
        double t1 = now_s();
        fprintf(stderr, "[attack] apply #%d -> %s in %.2f s; journal dir now %lld bytes\n", round,
                tally_result_name(rc), t1 - t0, dir_bytes(dir));
    }
    long long after = dir_bytes(dir);
    assert_int_equal(r->origins.count, origins);
    fprintf(stderr, "[attack] grew by %lld bytes for nothing learned\n", after - before);
    /* the same bytes sent again teach nothing: a bounded replica's journal would not grow */
    assert_true(after - before < 1 << 20); /* nothing new: the journal does not grow */
    tally_close(r);
    bytes_free(&d);
    free(ops);
    for (int i = 0; i < 2; i++) {
        free(der[i]);
        tally_free(pem[i]);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(alternating_own_certificates_grow_the_journal_forever,
                                        authority_dir_setup, authority_dir_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
