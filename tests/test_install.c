/*
 * test_install.c — what `cmake --install` puts in place works for an application: a CMake
 * project finds tally with find_package (shared and static targets), and pkg-config gives the
 * flags to build against the installed header and library.
 */
#include "support.h"

#include <stdio.h>
#include <stdlib.h>

static int run(const char *cmd) {
    int rc = system(cmd);
    if (rc != 0) {
        print_error("command failed (%d): %s\n", rc, cmd);
    }
    return rc;
}

static void an_installed_tally_builds_and_runs_an_application(void **state) {
    (void)state;
    char dir[] = "/tmp/tally-install-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "cmake --install %s --prefix %s/prefix > /dev/null", TALLY_BUILD_DIR,
             dir);
    assert_int_equal(run(cmd), 0);
    snprintf(cmd, sizeof cmd,
             "cmake -S %s -B %s/app -DCMAKE_PREFIX_PATH=%s/prefix > /dev/null && "
             "cmake --build %s/app > /dev/null && LD_LIBRARY_PATH=%s/prefix/lib %s/app/app && "
             "%s/app/app_static",
             TALLY_INSTALL_TEST_DIR, dir, dir, dir, dir, dir, dir);
    assert_int_equal(run(cmd), 0);
    snprintf(cmd, sizeof cmd,
             "cc %s/main.c $(PKG_CONFIG_PATH=%s/prefix/lib/pkgconfig pkg-config --cflags --libs "
             "tally) -o %s/pc && LD_LIBRARY_PATH=%s/prefix/lib %s/pc",
             TALLY_INSTALL_TEST_DIR, dir, dir, dir, dir);
    assert_int_equal(run(cmd), 0);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(run(cmd), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(an_installed_tally_builds_and_runs_an_application),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
