/*
 * test_exports.c — the shared libraries export tally_ names and nothing else (jansson's
 * check-exports): internal modules stay internal, so applications cannot come to depend on them
 * and they cannot clash with an application's own symbols. And libtally, the core, needs no
 * libuv: an application with its own transport links it alone.
 */
#include "support.h"

#include <stdio.h>

/* Runs nm over a shared library; counts its exported symbols, failing on one without the
 * tally_ prefix, and the undefined ones that start with `undefined_prefix`. */
static void scan(const char *library, int *exported, const char *undefined_prefix, int *undefined) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "nm -D %s", library);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char line[512];
    *exported = *undefined = 0;
    while (fgets(line, sizeof line, p) != NULL) {
        char type, name[400];
        unsigned long long addr;
        if (sscanf(line, " U %399s", name) == 1) {
            *undefined += strncmp(name, undefined_prefix, strlen(undefined_prefix)) == 0;
            continue;
        }
        if (sscanf(line, "%llx %c %399s", &addr, &type, name) != 3) {
            continue;
        }
        if (type != 'T' && type != 'D' && type != 'B' && type != 'R') {
            continue;
        }
        if (strncmp(name, "tally_", 6) != 0) {
            fail_msg("%s exports a symbol without the tally_ prefix: %s", library, name);
        }
        (*exported)++;
    }
    assert_int_equal(pclose(p), 0);
}

static void only_tally_symbols_are_exported(void **state) {
    (void)state;
    int core, net, uv_in_core, uv_in_net;
    scan(TALLY_SHARED_PATH, &core, "uv_", &uv_in_core);
    scan(TALLY_NET_SHARED_PATH, &net, "uv_", &uv_in_net);
    assert_true(core >= 20); /* the whole public API but the node's is there */
    assert_true(net > core); /* and the node's too */
    assert_int_equal(uv_in_core, 0); /* the core links without libuv */
    assert_true(uv_in_net > 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(only_tally_symbols_are_exported),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
