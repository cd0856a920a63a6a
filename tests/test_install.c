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

/* The core (libtally, package tally) and the core with the sync node (libtally-net, package
 * tally-net), each shared and static, through find_package and through pkg-config. */
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
             "%s/app/app_static && LD_LIBRARY_PATH=%s/prefix/lib %s/app/app_net && "
             "%s/app/app_net_static",
             TALLY_INSTALL_TEST_DIR, dir, dir, dir, dir, dir, dir, dir, dir, dir);
    assert_int_equal(run(cmd), 0);
    /* the core application links no libuv, shared or static */
    snprintf(cmd, sizeof cmd, "! ldd %s/app/app | grep -q libuv && ! nm %s/app/app_static | "
             "grep -q ' uv_'", dir, dir);
    assert_int_equal(run(cmd), 0);
    const char *packages[][2] = {{"main.c", "tally"}, {"net_main.c", "tally-net"}};
    for (int k = 0; k < 2; k++) {
        snprintf(cmd, sizeof cmd,
                 "cc %s/%s $(PKG_CONFIG_PATH=%s/prefix/lib/pkgconfig pkg-config --cflags --libs "
                 "%s) -o %s/pc && LD_LIBRARY_PATH=%s/prefix/lib %s/pc",
                 TALLY_INSTALL_TEST_DIR, packages[k][0], dir, packages[k][1], dir, dir, dir);
        assert_int_equal(run(cmd), 0);
    }
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(run(cmd), 0);
}

/* The library builds alone: without the tests and the programs no jansson is looked for, and
 * without TALLY_NET no libuv; the core then builds and exports what it should. */
static void the_core_builds_without_jansson_or_libuv(void **state) {
    (void)state;
    char dir[] = "/tmp/tally-core-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "cmake -S %s -B %s -DCMAKE_BUILD_TYPE=Release -DTALLY_TESTS=OFF -DTALLY_NET=OFF "
             "> /dev/null && ! grep -q '^pkgcfg_lib_JANSSON\\|^pkgcfg_lib_LIBUV' %s/CMakeCache.txt && "
             "cmake --build %s -j 1 > /dev/null && nm -D %s/libtally.so | grep -q ' T tally_open' "
             "&& ! nm -D %s/libtally.so | grep -q 'tally_node_start'",
             TALLY_SOURCE_DIR, dir, dir, dir, dir, dir);
    assert_int_equal(run(cmd), 0);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(run(cmd), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(an_installed_tally_builds_and_runs_an_application),
        cmocka_unit_test(the_core_builds_without_jansson_or_libuv),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
