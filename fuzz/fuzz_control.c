/*
 * fuzz_control.c — tallyd's control requests: any bytes as one request line.
 *
 * Properties: every request gets exactly one reply, at once (no network here), and the reply
 * is a JSON object with "ok"; a reply with "ok": false names a tally_result in "error"; a
 * request that is a JSON object with an "id" gets that id back, equal, at the reply's top level
 * (no field of the reply takes its place); no number the reply writes itself is past 2^53 - 1,
 * where JavaScript's JSON.parse starts to round (ids and big amounts go out as strings); the
 * replica's invariants hold whatever the requests did.
 */
#include <jansson.h>

#include "fuzz_common.h"
#include "ledger/replica.h"
#include "net/cmd/control.h"

static int replies;
static json_t *request_id; /* the id of the request being answered, or NULL */

/* Every number in j, at any depth, is an integer from 0 to 2^53 - 1. */
static bool exact_in_javascript(json_t *j) {
    const char *key;
    json_t *v;
    size_t i;
    bool ok = true;
    if (json_is_real(j)) {
        return false;
    }
    if (json_is_integer(j)) {
        return json_integer_value(j) >= 0 && json_integer_value(j) < ((json_int_t)1 << 53);
    }
    json_object_foreach(j, key, v) {
        ok = ok && exact_in_javascript(v);
    }
    json_array_foreach(j, i, v) {
        ok = ok && exact_in_javascript(v);
    }
    return ok;
}

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
    json_t *id = json_object_get(j, "id");
    FUZZ_CHECK(request_id == NULL ? id == NULL : json_equal(id, request_id));
    json_object_del(j, "id"); /* the request's own, whatever numbers it holds */
    FUZZ_CHECK(exact_in_javascript(j));
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
                json_t *request = json_loadb((const char *)data + start, i - start,
                                             JSON_REJECT_DUPLICATES, NULL);
                request_id = json_object_get(request, "id");
                replies = 0;
                control_request(c, (const char *)data + start, i - start, on_reply, NULL);
                FUZZ_CHECK(replies == 1);
                json_decref(request);
                request_id = NULL;
            }
            start = i + 1;
        }
    }
    FUZZ_CHECK(replica_check(r));
    control_free(c);
    tally_close(r);
    return 0;
}
