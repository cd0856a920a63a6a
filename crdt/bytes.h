/*
 * crdt/bytes.h — bytes as every layer reads and writes them: fixed-width little-endian fields
 * (the one writer and reader of them), a growable byte buffer, and the comparison of a stored
 * checksum with a computed one.
 */
#ifndef TALLY_CRDT_BYTES_H
#define TALLY_CRDT_BYTES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Whether a stored checksum matches the computed one. A fuzzing build (TALLY_FUZZING, set by the
 * CMake option TALLY_FUZZ) accepts any, so that the fuzzer's mutations reach the decoders and
 * validation behind the checksums instead of stopping at the door; nothing else changes. */
#ifdef TALLY_FUZZING
#define CHECKSUM_OK(stored, computed) ((void)(stored), (void)(computed), 1)
#else
#define CHECKSUM_OK(stored, computed) ((stored) == (computed))
#endif

/* A growable byte buffer. */
typedef struct bytes {
    uint8_t *at;
    size_t len, capacity;
} bytes;

static inline void bytes_free(bytes *b) {
    free(b->at);
    b->at = NULL;
    b->len = b->capacity = 0;
}

/* Room for `more` further bytes. False when out of memory (or past SIZE_MAX / 2). */
static inline bool bytes_reserve(bytes *b, size_t more) {
    if (b->len + more <= b->capacity) {
        return true;
    }
    if (more > SIZE_MAX / 2 - b->len) {
        return false;
    }
    size_t capacity = b->capacity ? b->capacity : 256;
    while (capacity < b->len + more) {
        capacity *= 2;
    }
    uint8_t *at = realloc(b->at, capacity);
    if (at == NULL) {
        return false;
    }
    b->at = at;
    b->capacity = capacity;
    return true;
}

/* Little-endian fixed-width fields. On a little-endian machine (every one tally is built for
 * today) each is one unaligned load or store; the byte loops are the portable fallback. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define BYTES_LITTLE_ENDIAN 1
#else
#define BYTES_LITTLE_ENDIAN 0
#endif

static inline void put_u16le(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static inline uint16_t get_u16le(const uint8_t *p) {
    return (uint16_t)(p[0] | p[1] << 8);
}
static inline void put_u32le(uint8_t *p, uint32_t v) {
    if (BYTES_LITTLE_ENDIAN) {
        memcpy(p, &v, 4);
        return;
    }
    for (int i = 0; i < 4; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}
static inline void put_u64le(uint8_t *p, uint64_t v) {
    if (BYTES_LITTLE_ENDIAN) {
        memcpy(p, &v, 8);
        return;
    }
    for (int i = 0; i < 8; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}
static inline uint32_t get_u32le(const uint8_t *p) {
    uint32_t v = 0;
    if (BYTES_LITTLE_ENDIAN) {
        memcpy(&v, p, 4);
        return v;
    }
    for (int i = 0; i < 4; i++) {
        v |= (uint32_t)p[i] << (8 * i);
    }
    return v;
}
static inline uint64_t get_u64le(const uint8_t *p) {
    uint64_t v = 0;
    if (BYTES_LITTLE_ENDIAN) {
        memcpy(&v, p, 8);
        return v;
    }
    for (int i = 0; i < 8; i++) {
        v |= (uint64_t)p[i] << (8 * i);
    }
    return v;
}

#endif
