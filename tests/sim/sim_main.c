/*
 * sim_main.c — tally_sim: runs the simulator over a range of seeds.
 *
 * tally_sim [--seeds N] [--first S] [--seed S] [--replicas N] [--steps N] [--durable]
 *           [--admitted] [--verbose]
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sim.h"

int main(int argc, char **argv) {
    uint64_t first = 1, seeds = 300;
    sim_config cfg = {.replicas = 5, .steps = 1500};
    char dir[64];
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--seeds") && i + 1 < argc) {
            seeds = strtoull(argv[++i], NULL, 10);
        } else if (!strcmp(argv[i], "--seed") && i + 1 < argc) {
            first = strtoull(argv[++i], NULL, 10);
            seeds = 1;
        } else if (!strcmp(argv[i], "--first") && i + 1 < argc) {
            first = strtoull(argv[++i], NULL, 10);
        } else if (!strcmp(argv[i], "--replicas") && i + 1 < argc) {
            cfg.replicas = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--steps") && i + 1 < argc) {
            cfg.steps = (unsigned)atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--durable")) {
            cfg.durable = true;
        } else if (!strcmp(argv[i], "--admitted")) {
            cfg.admitted = true;
        } else if (!strcmp(argv[i], "--verbose")) {
            cfg.verbose = true;
        } else {
            fprintf(stderr, "usage: tally_sim [--seeds N] [--first S] [--seed S] [--replicas N] "
                            "[--steps N] [--durable] [--admitted] [--verbose]\n");
            return 2;
        }
    }
    if (cfg.replicas < 2 || cfg.replicas > 16) {
        fprintf(stderr, "tally_sim: --replicas must be 2..16\n");
        return 2;
    }
    if (cfg.durable) {
        snprintf(dir, sizeof dir, "/tmp/tally-sim-XXXXXX");
        if (mkdtemp(dir) == NULL) {
            perror("tally_sim: mkdtemp");
            return 1;
        }
        cfg.dir = dir;
    }
    for (uint64_t seed = first; seed < first + seeds; seed++) {
        cfg.seed = seed;
        sim_run(&cfg);
    }
    if (cfg.durable) {
        rmdir(dir);
    }
    sim_report(seeds, first, &cfg);
    return 0;
}
