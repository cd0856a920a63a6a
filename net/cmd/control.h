/*
 * net/cmd/control.h — tallyd's control requests: one JSON object in, one JSON object out.
 *
 * Applications that do not embed the library, and the `tally` command, talk to a tallyd over its
 * control port with newline-delimited JSON. This module only turns a request into calls on the
 * replica and the node and their results into a reply; it does no I/O (tallyd.c moves the
 * lines). docs/operations.md lists every request.
 *
 * 1. Every request gets exactly one reply, carrying the request's "id" if it had one: at once,
 *    or later (request_rights) through the reply callback, on the loop. The top level of a
 *    reply has no other "id": an account or a transfer comes back as an object of its own
 *    (under "account" or "transfer"), so the request's id never hides the object's.
 * 2. A request that is not JSON, names an unknown op or field, or has a bad value gets
 *    {"ok": false, "error": "<tally_result name>", "message": "..."}; nothing is dropped.
 * 3. Every id is read from a JSON integer, a decimal string or a "0x" hex string, and written
 *    as a string, so that no id passes through a JSON number that a reader may round (above
 *    2^53, JavaScript's JSON.parse does): 128-bit account and transfer ids as "0x" hex, 64-bit
 *    replica ids in decimal. Amounts and counts are JSON integers up to 2^53 - 1 and decimal
 *    strings above; they are read from either.
 */
#ifndef TALLY_NET_CONTROL_H
#define TALLY_NET_CONTROL_H

#include <stddef.h>

#include "tally.h"

/* The longest request line tallyd reads, and the most reply bytes it lets wait for one client,
 * so also the longest reply it can send: past either it closes the connection. The tally
 * command reads a reply of up to CONTROL_REPLY_BYTES_MAX bytes, its newline included, and
 * refuses a longer one rather than grow without end. */
#define CONTROL_LINE_BYTES_MAX (64u << 20)
#define CONTROL_REPLY_BYTES_MAX (64u << 20)

/* The names of account and of transfer flags, in requests and replies alike: entry k names the
 * flag 1 << k (TALLY_ACCOUNT_*, TALLY_TRANSFER_*). NULL-terminated. */
extern const char *const control_account_flags[];
extern const char *const control_transfer_flags[];

/* The most bytes a certificate or key file that tallyd and the tally command read may have. */
#define CONTROL_KEY_FILE_MAX 16384

/* A whole file of 1 to CONTROL_KEY_FILE_MAX bytes, NUL-terminated (freed by the caller), its
 * length in *len; NULL with errno set when it cannot be read (EFBIG: longer, ENODATA: empty). */
char *control_read_key_file(const char *path, size_t *len);

typedef struct control control;

/* A reply is a NUL-terminated JSON text without a newline; the callee copies it if it keeps it. */
typedef void (*control_reply_fn)(void *ctx, const char *json);

/* node may be NULL (a local directory, no network: request_rights is then refused). */
control *control_new(tally_replica *r, tally_node *node);
void control_free(control *c);
/* The connection behind ctx went away: answers still owed to it go nowhere. */
void control_forget(control *c, void *ctx);
/* Handles one request line. The reply goes to reply(ctx, ...), now or later. */
void control_request(control *c, const char *line, size_t len, control_reply_fn reply,
                     void *ctx);

#endif
