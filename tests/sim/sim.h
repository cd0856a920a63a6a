/*
 * sim.h — the deterministic simulator's engine (sim_core.c), shared by the command-line runner
 * (sim_main.c) and the libFuzzer target (fuzz/fuzz_sim.c).
 */
#ifndef TALLY_SIM_H
#define TALLY_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sim_config {
    uint64_t seed;        /* the PRNG's seed, when bytes is NULL */
    const uint8_t *bytes; /* else every choice comes from these; the run ends when they do */
    size_t len;
    int replicas;         /* 2 .. 16 */
    unsigned steps;       /* the most steps */
    bool verbose;         /* print each step */
    bool durable;         /* replicas with directories under dir, and crashes */
    bool admitted;        /* a cluster with an authority, which admits every replica */
    const char *dir;
} sim_config;

/* One run. A violated invariant prints what and where and exits (abort() under the fuzzer). */
void sim_run(const sim_config *cfg);
/* Totals over every run so far. */
void sim_report(uint64_t seeds, uint64_t first, const sim_config *cfg);

#endif
