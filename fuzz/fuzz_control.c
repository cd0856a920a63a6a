/*
 * fuzz_control.c — tallyd's control requests: any bytes as one request line.
 *
 * Properties: every request gets exactly one reply, at once (no network here), and the reply
 * is a JSON object with "ok"; a reply with "ok": false names a tally_result in "error"; the
 * replica's invariants hold whatever the requests did.
 */
#include <jansson.h>

#include "fuzz_common.h"
#include "ledger/replica.h"
#include "net/control.h"

static int replies;

static void on_reply(void *ctx, const char *json) {
    (void)ctx;
    replies++;
    json_error_t err;
    json_t *j = json_loads(json, 0, &err);
    FUZZ_CHECK(j != NULL && json_is_object(j));
    json_t *ok = json_object_get(j, "ok");
    FUZZ_CHECK(json_is_boolean(ok));
    if (json_is_false(ok)) {
        FUZZ_CHECK(json_is_string(json_object_get(j, "error")));
    }
    json_decref(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    tally_replica *r = fuzz_seeded_replica();
    control *c = control_new(r, NULL);
    FUZZ_CHECK(c != NULL);
    /* lines of the input, each a request */
    size_t start = 0;
    for (size_t i = 0; i <= size; i++) {
        if (i == size || data[i] == '\n') {
            if (i > start) {
                replies = 0;
                control_request(c, (const char *)data + start, i - start, on_reply, NULL);
                FUZZ_CHECK(replies == 1);
            }
            start = i + 1;
        }
    }
    FUZZ_CHECK(replica_check(r));
    control_free(c);
    tally_close(r);
    return 0;
}
