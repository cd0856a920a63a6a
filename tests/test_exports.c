/*
 * test_exports.c — the shared library exports tally_ names and nothing else (jansson's
 * check-exports): internal modules stay internal, so applications cannot come to depend on them
 * and they cannot clash with an application's own symbols.
 */
#include "support.h"

#include <stdio.h>

static void only_tally_symbols_are_exported(void **state) {
    (void)state;
    FILE *p = popen("nm -D --defined-only " TALLY_SHARED_PATH, "r");
    assert_non_null(p);
    char line[512];
    int exported = 0;
    while (fgets(line, sizeof line, p) != NULL) {
        char type, name[400];
        unsigned long long addr;
        if (sscanf(line, "%llx %c %399s", &addr, &type, name) != 3) {
            continue;
        }
        if (type != 'T' && type != 'D' && type != 'B' && type != 'R') {
            continue;
        }
        if (strncmp(name, "tally_", 6) != 0) {
            fail_msg("exported symbol without the tally_ prefix: %s", name);
        }
        exported++;
    }
    assert_int_equal(pclose(p), 0);
    assert_true(exported >= 20); /* the whole public API is there */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(only_tally_symbols_are_exported),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
