/*
 * net/frame.h — the frames tally peers exchange over a byte stream (TCP).
 *
 *     offset size
 *     0      4    payload length, little-endian (0 .. FRAME_PAYLOAD_MAX)
 *     4      1    type (frame_type)
 *     5      3    zero
 *     8      8    XXH3-64 of the payload, seeded with (type << 32 | length)
 *     16     ...  payload
 *
 * The decoder is a pure state machine fed bytes as they arrive (hiredis' reader): it never
 * does I/O, never holds more than one frame, and refuses, for good, a stream with a bad
 * header, an oversized frame or a bad checksum. docs/protocol.md has every frame's payload.
 */
#ifndef TALLY_NET_FRAME_H
#define TALLY_NET_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crdt/bytes.h"

#define FRAME_HEADER 16
#define FRAME_PAYLOAD_MAX (UINT32_C(8) << 20)

typedef enum frame_type {
    FRAME_HELLO = 1,   /* version u16, replica id u64, cluster name (u8 length, bytes) */
    FRAME_REFUSE = 2,  /* reason u8, message (u8 length, bytes); then the sender closes */
    FRAME_SUMMARY = 3, /* a tally summary */
    FRAME_DELTA = 4,   /* a tally delta */
    FRAME_PING = 5,    /* nonce u64 */
    FRAME_PONG = 6,    /* the nonce it answers */
    FRAME_RIGHTS_ASK = 7,   /* request id u64, account id (16), amount u64 */
    FRAME_RIGHTS_ANSWER = 8, /* request id u64, result u8, amount granted u64 */
} frame_type;
#define FRAME_TYPE_MAX FRAME_RIGHTS_ANSWER

/* Appends a frame to out. False when out of memory or the payload is too large. */
bool frame_put(bytes *out, uint8_t type, const uint8_t *payload, size_t len);

typedef enum frame_status {
    FRAME_NEED_MORE = 0, /* no whole frame yet */
    FRAME_READY = 1,     /* a frame is in (type, payload, len) until the next call */
    FRAME_BAD = 2,       /* the stream is broken; nothing more will be read from it */
} frame_status;

typedef struct frame_reader {
    bytes buf;       /* unconsumed input */
    size_t consumed; /* bytes of buf already handed out */
    bool bad;
    const char *why; /* for FRAME_BAD */
} frame_reader;

void frame_reader_init(frame_reader *r);
void frame_reader_free(frame_reader *r);
/* Adds input. False when out of memory. */
bool frame_reader_feed(frame_reader *r, const uint8_t *data, size_t len);
/* The next frame, if a whole one is buffered. The payload points into the reader's buffer and
 * stays valid until the next call of frame_reader_next or frame_reader_feed. */
frame_status frame_reader_next(frame_reader *r, uint8_t *type, const uint8_t **payload,
                               size_t *len);
/* Bytes buffered and not yet handed out. */
static inline size_t frame_reader_pending(const frame_reader *r) {
    return r->buf.len - r->consumed;
}

#endif
