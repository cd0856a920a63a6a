/*
 * fuzz_sim.c — the simulator, steered by the fuzzer.
 *
 * Every choice the simulator makes (which replica acts, what it does, amounts, which messages
 * the network drops, duplicates, reorders, cuts or corrupts, partitions, crashes of durable
 * replicas) is drawn from the input bytes instead of a PRNG, so the fuzzer explores workloads and
 * fault schedules by coverage. The oracle is the simulator's checker: after every step the
 * invariants of design.md section 6 on every replica that changed, and at the end, after the
 * network heals, equal digests everywhere. The first byte picks 2-5 replicas and whether they
 * are durable.
 */
#include <unistd.h>

#include "fuzz_common.h"
#include "tests/sim/sim.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > 64 * 1024) {
        return 0;
    }
    sim_config cfg = {0};
    cfg.replicas = 2 + data[0] % 4;
    cfg.durable = (data[0] & 0x80) != 0;
    cfg.steps = 2000;
    cfg.bytes = data + 1;
    cfg.len = size - 1;
    cfg.verbose = getenv("TALLY_SIM_VERBOSE") != NULL; /* to replay a finding step by step */
    if (cfg.durable) {
        cfg.dir = fuzz_scratch_dir();
    }
    sim_run(&cfg);
    return 0;
}
