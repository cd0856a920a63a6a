/* What the three benchmarks share: a seeded splitmix64 generator and a monotonic clock.
 * Each benchmark defines BENCH_SEED before including this, so their streams differ. */
#ifndef TALLY_BENCH_UTIL_H
#define TALLY_BENCH_UTIL_H

#include <stdint.h>
#include <time.h>

#ifndef BENCH_SEED
#error "define BENCH_SEED before including bench_util.h"
#endif

static uint64_t rng_state = BENCH_SEED;

static uint64_t rnd(void) {
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#endif
