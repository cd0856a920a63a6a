/*
 * test_config.c — what operators type: "host:port" addresses (net/addr.c, read the same way
 * by the node, tallyd and the tally command) and tallyd's settings (net/cmd/config.c), where a
 * flag and a config key of one setting must accept exactly the same values.
 */
#include "support.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "net/addr.h"
#include "net/cmd/config.h"

typedef struct addr_case {
    const char *text;
    int result;
    const char *host;
    unsigned port;
} addr_case;

static void addresses_are_read_one_way(void **state) {
    (void)state;
    static const addr_case cases[] = {
        {"127.0.0.1:7400", TALLY_OK, "127.0.0.1", 7400},
        {"localhost:0", TALLY_OK, "localhost", 0},
        {"db-1.example.org:65535", TALLY_OK, "db-1.example.org", 65535},
        {"[::1]:7400", TALLY_OK, "::1", 7400},
        {"[fe80::1]:00080", TALLY_OK, "fe80::1", 80},
        {"::1:7400", TALLY_EINVAL, "", 0}, /* a bare IPv6 literal: where does the port begin? */
        {"host:65536", TALLY_EINVAL, "", 0},
        {"host:123456", TALLY_EINVAL, "", 0},
        {"host:+80", TALLY_EINVAL, "", 0},
        {"host:-1", TALLY_EINVAL, "", 0},
        {"host:80 ", TALLY_EINVAL, "", 0},
        {"host:", TALLY_EINVAL, "", 0},
        {":80", TALLY_EINVAL, "", 0},
        {"host", TALLY_EINVAL, "", 0},
        {"[]:80", TALLY_EINVAL, "", 0},
        {"[::1:80", TALLY_EINVAL, "", 0},
        {"", TALLY_EINVAL, "", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        net_addr a;
        int rc = net_addr_parse(cases[i].text, &a);
        if (rc != cases[i].result) {
            print_error("\"%s\"\n", cases[i].text);
        }
        assert_result(rc, cases[i].result);
        assert_string_equal(a.host, cases[i].host);
        assert_int_equal(a.port, cases[i].port);
    }
    net_addr a;
    assert_result(net_addr_parse(NULL, &a), TALLY_EINVAL);
    char longest[NET_ADDR_MAX + 1];
    memset(longest, 'a', sizeof longest);
    memcpy(longest + NET_ADDR_MAX - 6, ":7400", 6); /* NET_ADDR_MAX - 1 characters */
    assert_result(net_addr_parse(longest, &a), TALLY_OK);
    memset(longest, 'a', sizeof longest);
    memcpy(longest + NET_ADDR_MAX - 5, ":7400", 6);
    assert_result(net_addr_parse(longest, &a), TALLY_EINVAL);
}

static void literals_names_and_listen_addresses(void **state) {
    (void)state;
    struct sockaddr_storage sa;
    assert_result(net_addr_listen("localhost:7400", &sa), TALLY_OK);
    const struct sockaddr_in *in = (const struct sockaddr_in *)&sa;
    assert_int_equal(sa.ss_family, AF_INET);
    assert_int_equal(ntohs(in->sin_port), 7400);
    assert_int_equal(ntohl(in->sin_addr.s_addr), INADDR_LOOPBACK);
    assert_result(net_addr_listen("[::1]:7401", &sa), TALLY_OK);
    assert_int_equal(sa.ss_family, AF_INET6);
    assert_int_equal(ntohs(((const struct sockaddr_in6 *)&sa)->sin6_port), 7401);
    assert_result(net_addr_listen("example.org:7400", &sa), TALLY_EINVAL); /* not a literal */
    assert_result(net_addr_listen("[localhost]:7400", &sa), TALLY_EINVAL);
    assert_result(net_addr_listen("1.2.3:7400", &sa), TALLY_EINVAL);
    static const struct {
        const char *text;
        bool name;
    } names[] = {
        {"db-1.example.org:1", true},
        {"localhost:1", true},
        {"1.2.3:1", false},
        {"-db.example:1", false},
        {"db-.example:1", false},
        {"db..example:1", false},
        {"db_1:1", false},
        {"[::1]:1", false},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        net_addr a;
        assert_result(net_addr_parse(names[i].text, &a), TALLY_OK);
        assert_int_equal(net_addr_is_name(&a), names[i].name);
    }
}

/* Applies one value to a fresh settings through a flag or through a config key; answers
 * whether it was taken, and the settings' digest of it in *got. */
static bool take(const char *flag, const char *key, const char *text, const char *json,
                 bool by_flag, char *got, size_t got_size) {
    settings s;
    config_init(&s);
    char why[300] = "";
    bool ok;
    if (by_flag) {
        ok = config_flag(&s, flag, text, why, sizeof why);
    } else {
        char doc[256];
        snprintf(doc, sizeof doc, "{\"%s\": %s}", key, json);
        ok = config_parse(&s, doc, strlen(doc), "test", why, sizeof why);
    }
    if (!ok) {
        assert_non_null(strstr(why, by_flag ? flag : key)); /* the message names it */
    }
    snprintf(got, got_size, "%s|%s|%s|%s|%s|%s|%d|%s|%d|%d|%llu|%llu|%llu|%llu",
             s.data ? s.data : "", s.listen ? s.listen : "", s.control ? s.control : "",
             s.cluster ? s.cluster : "", s.authority ? s.authority : "",
             s.certificate ? s.certificate : "",
             s.n_peers, s.n_peers > 0 ? s.peers[0] : "", (int)s.sync, (int)s.restored,
             (unsigned long long)s.anti_entropy_ms, (unsigned long long)s.rights_reserve,
             (unsigned long long)s.capacity_accounts, (unsigned long long)s.capacity_transfers);
    config_free(&s);
    return ok;
}

/* Every setting, through its flag and its config key, with values in and out of its range:
 * the two take the same values to the same settings. */
static void a_flag_and_its_config_key_take_the_same_values(void **state) {
    (void)state;
    static const struct {
        const char *flag, *key, *text, *json;
        bool ok;
    } cases[] = {
        {"--data", "data", "/var/lib/tally", "\"/var/lib/tally\"", true},
        {"--data", "data", "", "\"\"", false},
        {"--listen", "listen", "0.0.0.0:7400", "\"0.0.0.0:7400\"", true},
        {"--control", "control", "127.0.0.1:7401", "\"127.0.0.1:7401\"", true},
        {"--cluster", "cluster", "blue", "\"blue\"", true},
        {"--authority", "authority", "/etc/tally/authority.pem", "\"/etc/tally/authority.pem\"",
         true},
        {"--authority", "authority", "", "\"\"", false},
        {"--certificate", "certificate", "/etc/tally/1234.pem", "\"/etc/tally/1234.pem\"", true},
        {"--certificate", "certificate", "", "7", false},
        {"--peer", "peers", "10.0.0.2:7400", "[\"10.0.0.2:7400\"]", true},
        {"--sync", "sync", "none", "\"none\"", true},
        {"--sync", "sync", "sometimes", "\"sometimes\"", false},
        {"--restored", "restored", "yes", "true", true},
        {"--restored", "restored", "no", "false", true},
        {"--restored", "restored", "new", "\"new\"", true},
        {"--restored", "restored", "maybe", "\"yes\"", false},
        {"--restored", "restored", "true", "\"no\"", false},
        {"--anti-entropy-ms", "anti_entropy_ms", "1", "1", true},
        {"--anti-entropy-ms", "anti_entropy_ms", "3600000", "3600000", true},
        {"--anti-entropy-ms", "anti_entropy_ms", "0", "0", false},
        {"--anti-entropy-ms", "anti_entropy_ms", "3600001", "3600001", false},
        {"--anti-entropy-ms", "anti_entropy_ms", "-3", "-3", false},
        {"--rights-reserve", "rights_reserve", "0", "0", true},
        {"--rights-reserve", "rights_reserve", "9223372036854775807", "9223372036854775807", true},
        {"--rights-reserve", "rights_reserve", "-1", "-1", false},
        {"--rights-reserve", "rights_reserve", "1.5", "1.5", false},
        {"--capacity-accounts", "capacity_accounts", "100", "100", true},
        {"--capacity-accounts", "capacity_accounts", "lots", "\"lots\"", false},
        {"--capacity-transfers", "capacity_transfers", "10000", "10000", true},
        {"--capacity-transfers", "capacity_transfers", " 5", "\" 5\"", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char by_flag[512], by_key[512];
        bool flag_ok = take(cases[i].flag, cases[i].key, cases[i].text, cases[i].json, true,
                            by_flag, sizeof by_flag);
        bool key_ok = take(cases[i].flag, cases[i].key, cases[i].text, cases[i].json, false, by_key,
                           sizeof by_key);
        if (flag_ok != cases[i].ok || key_ok != cases[i].ok || strcmp(by_flag, by_key) != 0) {
            print_error("%s %s / \"%s\": %s\n", cases[i].flag, cases[i].text, cases[i].key,
                        cases[i].json);
        }
        assert_int_equal(flag_ok, cases[i].ok);
        assert_int_equal(key_ok, cases[i].ok);
        assert_string_equal(by_flag, by_key);
    }
    char why[300];
    settings s;
    config_init(&s);
    assert_false(config_flag(&s, "--frobnicate", "1", why, sizeof why));
    assert_non_null(strstr(why, "--frobnicate"));
    for (int i = 0; i < PEERS_MAX; i++) {
        assert_true(config_flag(&s, "--peer", "10.0.0.2:7400", why, sizeof why));
    }
    assert_false(config_flag(&s, "--peer", "10.0.0.2:7400", why, sizeof why)); /* one too many */
    assert_int_equal(s.n_peers, PEERS_MAX);
    config_free(&s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(addresses_are_read_one_way),
        cmocka_unit_test(literals_names_and_listen_addresses),
        cmocka_unit_test(a_flag_and_its_config_key_take_the_same_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
