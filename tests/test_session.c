/*
 * test_session.c — the frame codec and the peer session state machine, with no sockets: bytes
 * are carried between two sessions by hand.
 */
#include "support.h"

#include <stdio.h>
#include <stdlib.h>

#include "ledger/replica.h"
#include "net/frame.h"
#include "net/session.h"

#define DEBITS_BOUND TALLY_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS

static char last_log[512];
static void capture(void *ctx, int level, const char *message) {
    (void)ctx;
    (void)level;
    snprintf(last_log, sizeof last_log, "%s", message);
}

static session_config config(const char *cluster) {
    session_config c;
    memset(&c, 0, sizeof c);
    c.cluster = cluster;
    c.handshake_timeout_ms = 1000;
    c.idle_timeout_ms = 5000;
    c.ping_ms = 500;
    c.anti_entropy_ms = 2000;
    c.delta_bytes_max = 4096;
    c.out_high_water = 64 * 1024;
    c.log = capture;
    return c;
}

static void populate(tally_replica *r, uint64_t base, int n) {
    tally_account bank = account(1, 1, 0), a = account(2, 1, DEBITS_BOUND);
    (void)tally_create_account(r, &bank);
    (void)tally_create_account(r, &a);
    for (int i = 0; i < n; i++) {
        tally_transfer t = transfer(base + (uint64_t)i, 1, 2, 1 + (uint64_t)i % 9);
        assert_result(tally_create_transfer(r, &t), TALLY_OK);
    }
}

/* Carries a's output to b and b's to a until neither has anything to say. */
static void pump(session *a, session *b, uint64_t now) {
    for (int round = 0; round < 10000; round++) {
        if (a->out.len == 0 && b->out.len == 0) {
            return;
        }
        bytes ta = a->out, tb = b->out;
        memset(&a->out, 0, sizeof a->out);
        memset(&b->out, 0, sizeof b->out);
        session_receive(b, ta.at, ta.len, now);
        session_receive(a, tb.at, tb.len, now);
        bytes_free(&ta);
        bytes_free(&tb);
        session_push(a);
        session_push(b);
    }
    fail_msg("the sessions never went quiet");
}

static void frames_round_trip_and_bad_streams_are_refused(void **state) {
    (void)state;
    bytes out = {0};
    uint8_t payload[300];
    for (size_t i = 0; i < sizeof payload; i++) {
        payload[i] = (uint8_t)i;
    }
    assert_true(frame_put(&out, FRAME_PING, payload, 8));
    assert_true(frame_put(&out, FRAME_DELTA, payload, sizeof payload));
    frame_reader r;
    frame_reader_init(&r);
    /* fed a byte at a time, frames come out whole */
    uint8_t type;
    const uint8_t *p;
    size_t n;
    int frames = 0;
    for (size_t i = 0; i < out.len; i++) {
        assert_true(frame_reader_feed(&r, out.at + i, 1));
        while (frame_reader_next(&r, &type, &p, &n) == FRAME_READY) {
            assert_int_equal(type, frames == 0 ? FRAME_PING : FRAME_DELTA);
            assert_int_equal(n, frames == 0 ? 8 : sizeof payload);
            assert_memory_equal(p, payload, n);
            frames++;
        }
    }
    assert_int_equal(frames, 2);
    frame_reader_free(&r);
    /* a flipped bit anywhere in a frame breaks the stream for good */
    for (size_t bit = 0; bit < (FRAME_HEADER + 8) * 8; bit++) {
        out.at[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        frame_reader_init(&r);
        assert_true(frame_reader_feed(&r, out.at, out.len));
        frame_status st = frame_reader_next(&r, &type, &p, &n);
        assert_true(st == FRAME_BAD || st == FRAME_NEED_MORE);
        frame_reader_free(&r);
        out.at[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    /* an oversized frame is refused from its header alone */
    uint8_t huge[FRAME_HEADER] = {0};
    put_u32le(huge, FRAME_PAYLOAD_MAX + 1);
    huge[4] = FRAME_DELTA;
    frame_reader_init(&r);
    assert_true(frame_reader_feed(&r, huge, sizeof huge));
    assert_int_equal(frame_reader_next(&r, &type, &p, &n), FRAME_BAD);
    assert_non_null(strstr(r.why, "larger"));
    frame_reader_free(&r);
    bytes_free(&out);
}

static void two_sessions_bring_their_replicas_together(void **state) {
    (void)state;
    session_config cfg = config("test");
    tally_replica *ra = replica_new(1, NULL), *rb = replica_new(2, NULL);
    populate(ra, 1000, 300);
    populate(rb, 5000, 200);
    session a, b;
    assert_true(session_init(&a, ra, &cfg, 0));
    assert_true(session_init(&b, rb, &cfg, 0));
    pump(&a, &b, 1);
    assert_int_equal(a.state, SESSION_READY);
    assert_int_equal(b.state, SESSION_READY);
    assert_int_equal(a.peer_id, 2);
    assert_converged(ra, rb);
    assert_true(a.frames_out >= 4); /* hello, summary, and deltas of at most 4 KiB each */
    /* a later local write is pushed without anything else */
    tally_transfer t = transfer(9000, 1, 2, 5);
    assert_result(tally_create_transfer(ra, &t), TALLY_OK);
    uint64_t sent_before = a.ops_out;
    session_push(&a);
    pump(&a, &b, 2);
    assert_int_equal(a.ops_out, sent_before + 1); /* exactly the new op, nothing echoed */
    assert_converged(ra, rb);
    session_free(&a);
    session_free(&b);
    tally_close(ra);
    tally_close(rb);
}

/* docs/protocol.md: a SUMMARY is merged into the sent vector. One that crosses deltas still
 * in flight (it was made before they arrived) must not make them be sent again. */
static void a_summary_crossing_deltas_in_flight_does_not_resend_them(void **state) {
    (void)state;
    session_config cfg = config("test");
    tally_replica *ra = replica_new(1, NULL), *rb = replica_new(2, NULL);
    populate(ra, 1000, 10);
    session a, b;
    assert_true(session_init(&a, ra, &cfg, 0));
    assert_true(session_init(&b, rb, &cfg, 0));
    pump(&a, &b, 1);
    assert_converged(ra, rb);
    populate(ra, 2000, 50);
    uint64_t before = a.ops_out;
    session_push(&a);
    assert_int_equal(a.ops_out, before + 50);
    bytes in_flight = a.out;
    memset(&a.out, 0, sizeof a.out);
    session_tick(&b, 1 + cfg.anti_entropy_ms); /* b's periodic summary, made before they land */
    bytes stale = b.out;
    memset(&b.out, 0, sizeof b.out);
    assert_true(stale.len > 0);
    session_receive(&a, stale.at, stale.len, 1 + cfg.anti_entropy_ms);
    session_push(&a);
    assert_int_equal(a.ops_out, before + 50); /* nothing sent twice */
    session_receive(&b, in_flight.at, in_flight.len, 1 + cfg.anti_entropy_ms);
    bytes_free(&in_flight);
    bytes_free(&stale);
    pump(&a, &b, 2 + cfg.anti_entropy_ms);
    assert_converged(ra, rb);
    assert_int_equal(a.ops_out, before + 50);
    assert_int_equal(a.state, SESSION_READY);
    session_free(&a);
    session_free(&b);
    tally_close(ra);
    tally_close(rb);
}

static void a_peer_from_another_cluster_is_refused_with_a_reason(void **state) {
    (void)state;
    session_config ca = config("alpha"), cb = config("beta");
    tally_replica *ra = replica_new(1, NULL), *rb = replica_new(2, NULL);
    session a, b;
    assert_true(session_init(&a, ra, &ca, 0));
    assert_true(session_init(&b, rb, &cb, 0));
    pump(&a, &b, 1);
    assert_int_equal(a.state, SESSION_CLOSED);
    assert_int_equal(b.state, SESSION_CLOSED);
    assert_non_null(strstr(a.reason, "cluster"));
    assert_non_null(strstr(last_log, "closed"));
    session_free(&a);
    session_free(&b);
    tally_close(ra);
    tally_close(rb);
}

static void a_replica_does_not_sync_with_itself(void **state) {
    (void)state;
    session_config cfg = config("test");
    tally_replica *ra = replica_new(1, NULL), *same = replica_new(1, NULL);
    session a, b;
    assert_true(session_init(&a, ra, &cfg, 0));
    assert_true(session_init(&b, same, &cfg, 0));
    pump(&a, &b, 1);
    assert_int_equal(a.state, SESSION_CLOSED);
    assert_non_null(strstr(a.reason, "itself"));
    session_free(&a);
    session_free(&b);
    tally_close(ra);
    tally_close(same);
}

static void an_unsupported_protocol_version_is_refused(void **state) {
    (void)state;
    session_config cfg = config("test");
    tally_replica *r = replica_new(1, NULL);
    session s;
    /* version 1 (before RIGHTS_ANSWER carried its GRANT's seq) and version 2 (0.2's, before
     * signed runs) are refused with a reason */
    for (uint8_t version = 1; version <= 2; version++) {
        assert_true(session_init(&s, r, &cfg, 0));
        uint8_t hello[2 + 8 + 1 + 4] = {version, 0, 9, 0, 0, 0, 0, 0, 0, 0, 4, 't', 'e', 's', 't'};
        bytes in = {0};
        assert_true(frame_put(&in, FRAME_HELLO, hello, sizeof hello));
        session_receive(&s, in.at, in.len, 1);
        assert_int_equal(s.state, SESSION_CLOSED);
        char want[16];
        snprintf(want, sizeof want, "version %u", version);
        assert_non_null(strstr(s.reason, want));
        bytes_free(&in);
        session_free(&s);
    }
    tally_close(r);
}

static void garbage_and_early_frames_close_the_session(void **state) {
    (void)state;
    session_config cfg = config("test");
    tally_replica *r = replica_new(1, NULL);
    session s;
    assert_true(session_init(&s, r, &cfg, 0));
    uint8_t junk[64];
    memset(junk, 0xAB, sizeof junk);
    session_receive(&s, junk, sizeof junk, 1);
    assert_int_equal(s.state, SESSION_CLOSED);
    session_free(&s);
    /* a delta before the handshake */
    assert_true(session_init(&s, r, &cfg, 0));
    bytes in = {0};
    uint8_t empty_delta[8] = {'T', 'L', 'Y', 'D', 1, 0, 0, 0};
    assert_true(frame_put(&in, FRAME_DELTA, empty_delta, sizeof empty_delta));
    session_receive(&s, in.at, in.len, 1);
    assert_int_equal(s.state, SESSION_CLOSED);
    assert_non_null(strstr(s.reason, "before the handshake"));
    bytes_free(&in);
    session_free(&s);
    tally_close(r);
}

static void a_silent_peer_times_out(void **state) {
    (void)state;
    session_config cfg = config("test");
    tally_replica *r = replica_new(1, NULL);
    session s;
    assert_true(session_init(&s, r, &cfg, 100));
    session_tick(&s, 100 + cfg.handshake_timeout_ms - 1);
    assert_int_equal(s.state, SESSION_HANDSHAKE);
    session_tick(&s, 100 + cfg.handshake_timeout_ms);
    assert_int_equal(s.state, SESSION_CLOSED);
    assert_non_null(strstr(s.reason, "handshake"));
    session_free(&s);
    tally_close(r);
}

static void a_peer_that_does_not_read_gets_no_more_than_the_high_water_mark(void **state) {
    (void)state;
    session_config cfg = config("test");
    cfg.out_high_water = 16 * 1024;
    tally_replica *ra = replica_new(1, NULL), *rb = replica_new(2, NULL);
    populate(ra, 1000, 5000); /* far more than 16 KiB of deltas */
    session a, b;
    assert_true(session_init(&a, ra, &cfg, 0));
    assert_true(session_init(&b, rb, &cfg, 0));
    /* b's hello and summary reach a; a's output is never read */
    session_receive(&a, b.out.at, b.out.len, 1);
    b.out.len = 0;
    for (int i = 0; i < 50; i++) {
        session_push(&a);
        session_tick(&a, 2 + (uint64_t)i);
    }
    assert_true(a.out.len <= cfg.out_high_water + cfg.delta_bytes_max + 64);
    /* once it reads, the rest follows */
    pump(&a, &b, 100);
    assert_converged(ra, rb);
    session_free(&a);
    session_free(&b);
    tally_close(ra);
    tally_close(rb);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(frames_round_trip_and_bad_streams_are_refused),
        cmocka_unit_test(two_sessions_bring_their_replicas_together),
        cmocka_unit_test(a_summary_crossing_deltas_in_flight_does_not_resend_them),
        cmocka_unit_test(a_peer_from_another_cluster_is_refused_with_a_reason),
        cmocka_unit_test(a_replica_does_not_sync_with_itself),
        cmocka_unit_test(an_unsupported_protocol_version_is_refused),
        cmocka_unit_test(garbage_and_early_frames_close_the_session),
        cmocka_unit_test(a_silent_peer_times_out),
        cmocka_unit_test(a_peer_that_does_not_read_gets_no_more_than_the_high_water_mark),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
