/*
 * net/frame.c — see frame.h.
 */
#include "net/frame.h"

#include <string.h>

#include <xxhash.h>

static uint64_t frame_sum(uint8_t type, const uint8_t *payload, size_t len) {
    return XXH3_64bits_withSeed(payload, len, (uint64_t)type << 32 | (uint64_t)len);
}

bool frame_put(bytes *out, uint8_t type, const uint8_t *payload, size_t len) {
    if (len > FRAME_PAYLOAD_MAX || !bytes_reserve(out, FRAME_HEADER + len)) {
        return false;
    }
    uint8_t *h = out->at + out->len;
    put_u32le(h, (uint32_t)len);
    h[4] = type;
    h[5] = h[6] = h[7] = 0;
    put_u64le(h + 8, frame_sum(type, payload, len));
    if (len > 0) {
        memcpy(h + FRAME_HEADER, payload, len);
    }
    out->len += FRAME_HEADER + len;
    return true;
}

void frame_reader_init(frame_reader *r) { memset(r, 0, sizeof *r); }

void frame_reader_free(frame_reader *r) {
    bytes_free(&r->buf);
    frame_reader_init(r);
}

bool frame_reader_feed(frame_reader *r, const uint8_t *data, size_t len) {
    if (r->bad || len == 0) {
        return true; /* a broken stream is not read any more */
    }
    if (r->consumed > 0) {
        /* drop what was handed out, so the buffer holds at most one frame and what follows */
        memmove(r->buf.at, r->buf.at + r->consumed, r->buf.len - r->consumed);
        r->buf.len -= r->consumed;
        r->consumed = 0;
    }
    if (!bytes_reserve(&r->buf, len)) {
        return false;
    }
    memcpy(r->buf.at + r->buf.len, data, len);
    r->buf.len += len;
    return true;
}

static frame_status broken(frame_reader *r, const char *why) {
    r->bad = true;
    r->why = why;
    return FRAME_BAD;
}

frame_status frame_reader_next(frame_reader *r, uint8_t *type, const uint8_t **payload,
                               size_t *len) {
    if (r->bad) {
        return FRAME_BAD;
    }
    size_t have = r->buf.len - r->consumed;
    if (have < FRAME_HEADER) {
        return FRAME_NEED_MORE;
    }
    const uint8_t *h = r->buf.at + r->consumed;
    uint32_t n = get_u32le(h);
    if (n > FRAME_PAYLOAD_MAX) {
        return broken(r, "a frame larger than the limit");
    }
    if (h[4] == 0 || h[4] > FRAME_TYPE_MAX || h[5] != 0 || h[6] != 0 || h[7] != 0) {
        return broken(r, "a frame of unknown type");
    }
    if (have < FRAME_HEADER + (size_t)n) {
        return FRAME_NEED_MORE;
    }
    if (!CHECKSUM_OK(get_u64le(h + 8), frame_sum(h[4], h + FRAME_HEADER, n))) {
        return broken(r, "a frame with a bad checksum");
    }
    *type = h[4];
    *payload = h + FRAME_HEADER;
    *len = n;
    r->consumed += FRAME_HEADER + (size_t)n;
    return FRAME_READY;
}
