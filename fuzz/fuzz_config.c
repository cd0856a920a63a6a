/*
 * fuzz_config.c — tallyd's JSON config, any bytes as the file's text.
 *
 * Properties: parsing succeeds or fails with a message; nothing leaks either way (LeakSanitizer);
 * settings that parse hold only what the keys allow (a sync mode of commit or none, an
 * anti-entropy period of 1 ms to 1 h, at most PEERS_MAX peers).
 */
#include "fuzz_common.h"
#include "net/cmd/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    settings s;
    memset(&s, 0, sizeof s);
    s.sync = TALLY_SYNC_COMMIT;
    char why[300] = "";
    bool ok = config_parse(&s, (const char *)data, size, "fuzz", why, sizeof why);
    if (ok) {
        FUZZ_CHECK(s.sync == TALLY_SYNC_COMMIT || s.sync == TALLY_SYNC_NONE);
        FUZZ_CHECK(s.anti_entropy_ms <= 3600000);
        FUZZ_CHECK(s.n_peers >= 0 && s.n_peers <= PEERS_MAX);
    } else {
        FUZZ_CHECK(why[0] != '\0');
    }
    config_free(&s);
    return 0;
}
