/*
 * crdt/u128.h — exact 128-bit unsigned sums for the PN-counters of an account.
 *
 * Why 128 bits: every replica checks its own writes against 64-bit limits, but writes made
 * concurrently on several replicas are only summed when they meet. Two replicas may each credit
 * an account with 2^63 while cut off; the merged sum is 2^64. Sums kept exact in 128 bits stay
 * commutative (the order ops arrive in cannot change them), which a saturating or wrapping
 * 64-bit sum would not. The public API reports 64-bit values and TALLY_OVERFLOW beyond.
 *
 * 1. u128_add never wraps while fewer than 2^64 additions of 64-bit amounts are made.
 * 2. u128_sub refuses (returns false, changes nothing) rather than going below zero.
 */
#ifndef TALLY_CRDT_U128_H
#define TALLY_CRDT_U128_H

#include <stdbool.h>
#include <stdint.h>

typedef struct u128 {
    uint64_t hi, lo;
} u128;

static inline void u128_add(u128 *a, uint64_t b) {
    uint64_t lo = a->lo + b;
    a->hi += lo < a->lo;
    a->lo = lo;
}

static inline bool u128_sub(u128 *a, uint64_t b) {
    if (a->hi == 0 && a->lo < b) {
        return false;
    }
    a->hi -= a->lo < b;
    a->lo -= b;
    return true;
}

/* a + b fits in 64 bits (hi stays zero). */
static inline bool u128_add_fits64(u128 a, uint64_t b) {
    return a.hi == 0 && a.lo + b >= a.lo;
}

static inline bool u128_ge64(u128 a, uint64_t b) {
    return a.hi != 0 || a.lo >= b;
}

static inline int u128_cmp(u128 a, u128 b) {
    if (a.hi != b.hi) {
        return a.hi < b.hi ? -1 : 1;
    }
    return a.lo < b.lo ? -1 : (a.lo > b.lo);
}

static inline bool u128_is_zero(u128 a) {
    return (a.hi | a.lo) == 0;
}

/* a - b for a >= b, as u128. */
static inline u128 u128_minus(u128 a, u128 b) {
    u128 r = {a.hi - b.hi - (a.lo < b.lo), a.lo - b.lo};
    return r;
}

static inline u128 u128_plus(u128 a, u128 b) {
    u128 r = {a.hi + b.hi, a.lo + b.lo};
    r.hi += r.lo < a.lo;
    return r;
}

/* Read as two's complement: a sum that may be below zero (a branch's rights, ledger/branch.c,
 * and the sums of an account a fork's branches both finished a pending of) is kept modulo
 * 2^128, and below zero when its top bit is set. */
static inline bool u128_negative(u128 a) {
    return (a.hi >> 63) != 0;
}
static inline u128 u128_of(uint64_t a) {
    u128 r = {0, a};
    return r;
}
static inline u128 u128_negated(u128 a) {
    u128 zero = {0, 0};
    return u128_minus(zero, a);
}

/* The value, or UINT64_MAX if it does not fit. */
static inline uint64_t u128_sat64(u128 a) {
    return a.hi ? UINT64_MAX : a.lo;
}

#endif
