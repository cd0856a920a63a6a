/*
 * fuzz_session.c — a peer session fed any byte stream, as a hostile peer would send it.
 *
 * The session runs against a replica holding a state; the input is fed in chunks whose sizes
 * come from its first byte, with ticks in between. Properties: no crash, leak or undefined
 * behaviour; the replica's invariants hold whatever was applied; the session's unsent output
 * never passes the high-water mark by more than one frame, however much the "peer" asks for;
 * once closed, it stays closed and says why.
 */
#include "fuzz_common.h"
#include "ledger/replica.h"
#include "net/session.h"

static tally_replica *seeded;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    seeded = fuzz_seeded_replica();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) {
        return 0;
    }
    session_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.cluster = "test";
    cfg.handshake_timeout_ms = 1000;
    cfg.idle_timeout_ms = 5000;
    cfg.ping_ms = 100;
    cfg.anti_entropy_ms = 300;
    cfg.delta_bytes_max = 512;
    cfg.out_high_water = 2048;
    cfg.rights_throttle_ms = 100;
    tally_replica *r = fuzz_replica(1);
    fuzz_sync(seeded, r);
    session s;
    FUZZ_CHECK(session_init(&s, r, &cfg, 0));
    size_t chunk = 1 + data[0] % 64, at = 1;
    uint64_t now = 1;
    bool closed = false;
    while (at < size) {
        size_t n = size - at < chunk ? size - at : chunk;
        session_receive(&s, data + at, n, now);
        at += n;
        now += 37;
        session_tick(&s, now);
        FUZZ_CHECK(s.out.len <= cfg.out_high_water + FRAME_HEADER + 4096);
        if (closed) {
            FUZZ_CHECK(s.state == SESSION_CLOSED);
        }
        if (s.state == SESSION_CLOSED) {
            closed = true;
            FUZZ_CHECK(s.reason[0] != '\0');
        }
        s.out.len = 0; /* the transport sent it */
    }
    FUZZ_CHECK(replica_check(r));
    session_free(&s);
    tally_close(r);
    return 0;
}
