/*
 * test_crdt.c — the pure data types of crdt/.
 */
#include "support.h"

#include <stdlib.h>

#include "crdt/array.h"
#include "crdt/hlc.h"
#include "crdt/idmap.h"
#include "crdt/rights.h"
#include "crdt/u128.h"
#include "crdt/vclock.h"

static const tally_id *key_in(const void *ctx, uint32_t i) {
    return &((const tally_id *)ctx)[i];
}

static void idmap_finds_every_key_it_was_given(void **state) {
    (void)state;
    enum { N = 200000 };
    tally_id *keys = calloc(N, sizeof *keys);
    idmap m;
    idmap_init(&m, key_in, keys);
    assert_int_equal(idmap_get(&m, tid(1)), IDMAP_NONE);
    uint64_t seed = 7;
    for (uint32_t i = 0; i < N; i += 2) {
        keys[i] = tid(i / 2 + 1); /* sequential ids */
        keys[i + 1] = (tally_id){test_rand(&seed), test_rand(&seed) | 1};
        assert_true(idmap_put(&m, keys[i], i));
        assert_true(idmap_put(&m, keys[i + 1], i + 1));
    }
    assert_int_equal(m.count, N);
    /* load stays at or below 1/2 */
    assert_true((uint64_t)m.count * 2 <= (uint64_t)m.mask + 1);
    for (uint32_t i = 0; i < N; i++) {
        assert_int_equal(idmap_get(&m, keys[i]), i);
    }
    assert_int_equal(idmap_get(&m, tid(N)), IDMAP_NONE);
    idmap_clear(&m);
    assert_int_equal(idmap_get(&m, keys[0]), IDMAP_NONE);
    idmap_free(&m);
    free(keys);
}

/* Keys removed (one at a time, in an order unlike their inserting, many of them in runs that
 * wrap around the table's end) are gone, and every other key is still found: the keys after
 * a removed one shift back so that no probe stops short (crdt/idmap.c). */
static void idmap_removes_a_key_and_keeps_the_rest(void **state) {
    (void)state;
    enum { N = 4096 };
    tally_id *keys = calloc(N, sizeof *keys);
    idmap m;
    idmap_init(&m, key_in, keys);
    uint64_t seed = 11;
    for (uint32_t i = 0; i < N; i++) {
        keys[i] = (tally_id){test_rand(&seed), test_rand(&seed) | 1};
        assert_true(idmap_put(&m, keys[i], i));
    }
    assert_false(idmap_remove(&m, tid(N + 1)));
    for (uint32_t i = 0; i < N; i += 3) {
        assert_true(idmap_remove(&m, keys[(i * 7) % N]));
        assert_int_equal(idmap_get(&m, keys[(i * 7) % N]), IDMAP_NONE);
    }
    uint32_t kept = 0;
    for (uint32_t i = 0; i < N; i++) {
        bool removed = false;
        for (uint32_t k = 0; k < N && !removed; k += 3) {
            removed = (k * 7) % N == i;
        }
        assert_int_equal(idmap_get(&m, keys[i]), removed ? IDMAP_NONE : i);
        kept += !removed;
    }
    assert_int_equal(m.count, kept);
    idmap_free(&m);
    free(keys);
}

/* A random id whose hash puts it within `near` slots of the end of a table of `capacity` slots
 * (near == capacity: anywhere). */
static tally_id id_homed_near_end(uint64_t *seed, uint32_t capacity, uint32_t near) {
    for (;;) {
        *seed = *seed * 6364136223846793005u + 1442695040888963407u;
        tally_id id = {*seed | 1, *seed >> 7};
        if ((idmap_hash(id) & (capacity - 1)) >= capacity - near) {
            return id;
        }
    }
}

/* Growing rehashes the keys within the table itself; the hard cases are runs of keys that wrap
 * from the last slot to the first, before the growth and after it. Every key must still be
 * found, with its value, after growth by two and by four. */
static void idmap_growth_keeps_keys_whose_runs_wrap_around(void **state) {
    (void)state;
    enum { C = 256, KEYS = C / 2 };
    static tally_id keys[4 * KEYS];
    uint64_t seed = 42;
    for (int round = 0; round < 200; round++) {
        idmap m;
        idmap_init(&m, key_in, keys);
        assert_true(idmap_reserve(&m, KEYS));
        assert_int_equal(m.mask + 1, C);
        for (uint32_t i = 0; i < KEYS; i++) {
            /* a third near the end of the table now, a third near the end of the doubled one,
             * the rest anywhere; how many of each varies by round */
            uint32_t pick = (uint32_t)(i * 7 + (uint32_t)round) % 3;
            keys[i] = pick == 0   ? id_homed_near_end(&seed, C, 1u + (uint32_t)round % 16)
                      : pick == 1 ? id_homed_near_end(&seed, 2 * C, 1u + (uint32_t)round % 8)
                                  : id_homed_near_end(&seed, C, C);
            assert_int_equal(idmap_insert_hashed(&m, keys[i], idmap_hash(keys[i]), i), IDMAP_NONE);
        }
        uint32_t want = round % 2 ? 2 * C : 4 * C;
        assert_true(idmap_reserve(&m, idmap_room(want)));
        assert_int_equal(m.mask + 1, want);
        assert_int_equal(m.count, KEYS);
        for (uint32_t i = 0; i < KEYS; i++) {
            assert_int_equal(idmap_get(&m, keys[i]), i);
        }
        /* and it goes on working: more keys, another growth */
        for (uint32_t i = KEYS; i < 2 * KEYS; i++) {
            keys[i] = id_homed_near_end(&seed, want, 4);
            assert_true(idmap_put(&m, keys[i], i));
        }
        assert_true(idmap_reserve(&m, 2 * want));
        for (uint32_t i = 0; i < 2 * KEYS; i++) {
            assert_int_equal(idmap_get(&m, keys[i]), i);
        }
        idmap_free(&m);
    }
}

static void idmap_put_replaces_the_value_of_a_key(void **state) {
    (void)state;
    tally_id keys[3] = {tid(5), tid(6), tid(5)};
    idmap m;
    idmap_init(&m, key_in, keys);
    assert_true(idmap_put(&m, tid(5), 0));
    assert_true(idmap_put(&m, tid(5), 2)); /* keys[2] is the same id */
    assert_int_equal(m.count, 1);
    assert_int_equal(idmap_get(&m, tid(5)), 2);
    assert_true(idmap_reserve(&m, 1000));
    assert_int_equal(idmap_get(&m, tid(5)), 2);
    assert_int_equal(idmap_get(&m, tid(6)), IDMAP_NONE);
    idmap_free(&m);
}

/* idmap_put grows a full table to the next size, no further, and only for a key that is new:
 * replacing a value in a full table keeps the table (and so cannot fail for memory). */
static void idmap_put_doubles_a_full_table_and_replaces_without_growing(void **state) {
    (void)state;
    tally_id keys[10] = {{0, 0}};
    idmap m;
    idmap_init(&m, key_in, keys);
    for (uint32_t i = 0; i < 8; i++) { /* 8: the room of the first, 16-slot table */
        keys[i] = tid(100 + i);
        assert_true(idmap_put(&m, keys[i], i));
    }
    assert_int_equal(m.mask + 1, 16);
    assert_int_equal(m.count, idmap_room(16));
    keys[8] = tid(100); /* the same id as keys[0] */
    assert_true(idmap_put(&m, tid(100), 8));
    assert_int_equal(m.mask + 1, 16);
    assert_int_equal(idmap_get(&m, tid(100)), 8);
    keys[9] = tid(200);
    assert_true(idmap_put(&m, keys[9], 9));
    assert_int_equal(m.mask + 1, 32);
    for (uint32_t i = 1; i < 8; i++) {
        assert_int_equal(idmap_get(&m, keys[i]), i);
    }
    assert_int_equal(idmap_get(&m, tid(200)), 9);
    idmap_free(&m);
}

static void idmap_insert_keeps_the_value_already_there(void **state) {
    (void)state;
    tally_id keys[3] = {tid(5), tid(6), tid(5)};
    idmap m;
    idmap_init(&m, key_in, keys);
    assert_true(idmap_reserve(&m, 3));
    assert_int_equal(idmap_insert_hashed(&m, tid(5), idmap_hash(tid(5)), 0), IDMAP_NONE);
    assert_int_equal(idmap_insert_hashed(&m, tid(6), idmap_hash(tid(6)), 1), IDMAP_NONE);
    /* keys[2] is the same id as keys[0]: the map answers with 0 and keeps it */
    assert_int_equal(idmap_insert_hashed(&m, tid(5), idmap_hash(tid(5)), 2), 0);
    assert_int_equal(m.count, 2);
    assert_int_equal(idmap_get(&m, tid(5)), 0);
    assert_int_equal(idmap_get_hashed(&m, tid(6), idmap_hash(tid(6))), 1);
    idmap_free(&m);
}

static void u128_sums_carry_and_refuse_to_go_negative(void **state) {
    (void)state;
    u128 a = {0, UINT64_MAX};
    u128_add(&a, 1);
    assert_int_equal(a.hi, 1);
    assert_int_equal(a.lo, 0);
    assert_int_equal(u128_sat64(a), UINT64_MAX);
    assert_true(u128_sub(&a, 1));
    assert_int_equal(a.hi, 0);
    assert_int_equal(a.lo, UINT64_MAX);
    u128 small = {0, 3};
    assert_false(u128_sub(&small, 4));
    assert_int_equal(small.lo, 3);
    assert_true(u128_add_fits64(small, UINT64_MAX - 3));
    assert_false(u128_add_fits64(small, UINT64_MAX - 2));
    u128 x = {1, 0}, y = {0, 1};
    u128 d = u128_minus(x, y);
    assert_int_equal(d.hi, 0);
    assert_int_equal(d.lo, UINT64_MAX);
    assert_int_equal(u128_cmp(u128_plus(d, y), x), 0);
}

static void rights_hold_no_zero_entries_and_never_go_negative(void **state) {
    (void)state;
    rights m;
    rights_init(&m);
    assert_true(rights_add(&m, 1, 10));
    assert_true(rights_add(&m, 2, 5));
    assert_true(rights_add(&m, 1, 1));
    assert_int_equal(rights_get(&m, 1).lo, 11);
    assert_int_equal(rights_sum(&m).lo, 16);
    assert_false(rights_take(&m, 2, 6));
    assert_int_equal(rights_get(&m, 2).lo, 5);
    assert_false(rights_take(&m, 3, 1)); /* holds nothing */
    assert_true(rights_take(&m, 2, 5));
    assert_int_equal(m.count, 1); /* an amount that reaches zero is removed */
    assert_true(rights_take(&m, 3, 0));
    assert_true(rights_add(&m, 4, 0));
    assert_int_equal(m.count, 1);
    rights_free(&m);
}

/* An account that ~65,000 replicas hold rights on: each holder is found after a probe or
 * two, not a scan of all of them, and the map agrees with a plain model through adds, takes
 * and removals in random order. */
static void rights_lookups_stay_short_among_65536_holders(void **state) {
    (void)state;
    enum { HOLDERS = 65536 };
    rights m;
    rights_init(&m);
    uint64_t *model = calloc(HOLDERS, sizeof *model);
    assert_non_null(model);
    uint64_t seed = 42;
    for (uint32_t h = 0; h < HOLDERS; h++) {
        assert_true(rights_reserve(&m, h));
        assert_true(rights_add(&m, h, 1 + h % 7));
        model[h] = 1 + h % 7;
    }
    uint64_t probes = 0, worst = 0;
    for (uint32_t h = 0; h < HOLDERS; h++) {
        uint32_t p = rights_probes(&m, h);
        probes += p;
        worst = p > worst ? p : worst;
    }
    assert_true(probes < 3 * (uint64_t)HOLDERS); /* a linear scan averages 32,768 */
    assert_true(worst < 64);
    for (int step = 0; step < 400000; step++) {
        uint32_t h = (uint32_t)(test_rand(&seed) % HOLDERS);
        uint64_t amount = 1 + test_rand(&seed) % 4;
        if (test_rand(&seed) % 2) {
            assert_true(rights_add(&m, h, amount));
            model[h] += amount;
        } else {
            assert_int_equal(rights_take(&m, h, amount), model[h] >= amount);
            model[h] -= model[h] >= amount ? amount : 0;
        }
        if (step % 997 == 0) {
            uint32_t k = (uint32_t)(test_rand(&seed) % HOLDERS);
            assert_int_equal(rights_get(&m, k).lo, model[k]);
        }
    }
    uint32_t nonzero = 0;
    for (uint32_t h = 0; h < HOLDERS; h++) {
        assert_int_equal(rights_get(&m, h).lo, model[h]);
        nonzero += model[h] != 0;
    }
    assert_int_equal(m.count, nonzero); /* invariant 1: no entry holds zero */
    for (uint32_t h = 0; h < HOLDERS; h++) {
        assert_true(rights_take(&m, h, model[h]));
    }
    assert_int_equal(m.count, 0);
    assert_true(rights_add(&m, 5, 1));
    assert_int_equal(rights_get(&m, 5).lo, 1);
    free(model);
    rights_free(&m);
}

static void vclock_keeps_entries_sorted_and_merges_to_the_maximum(void **state) {
    (void)state;
    vclock a, b;
    vclock_init(&a);
    vclock_init(&b);
    assert_true(vclock_set(&a, 30, 3));
    assert_true(vclock_set(&a, 10, 1));
    assert_true(vclock_set(&a, 20, 2));
    assert_int_equal(a.entries[0].origin, 10);
    assert_int_equal(a.entries[2].origin, 30);
    assert_int_equal(vclock_get(&a, 20), 2);
    assert_int_equal(vclock_get(&a, 25), 0);
    assert_true(vclock_set(&b, 20, 7));
    assert_true(vclock_set(&b, 40, 1));
    assert_false(vclock_leq(&a, &b));
    assert_true(vclock_merge(&a, &b));
    assert_int_equal(vclock_get(&a, 20), 7);
    assert_int_equal(vclock_get(&a, 40), 1);
    assert_true(vclock_leq(&b, &a));
    assert_true(vclock_set(&a, 40, 0));
    assert_int_equal(vclock_get(&a, 40), 0);
    assert_int_equal(a.count, 3);
    vclock_free(&a);
    vclock_free(&b);
}

/* The steady clock adds up the wall clock's forward steps: a jump back makes it stand still,
 * and it then moves on with the wall clock from where it stood. One step counts at most
 * STEADY_STEP_MAX, and the clock counts on past 2^64, where steady_diff still orders it. */
static void steady_clock_moves_only_forward(void **state) {
    (void)state;
    steady s;
    steady_start(&s, 1000);
    assert_int_equal(steady_read(&s, 1500), 1500);
    assert_int_equal(steady_read(&s, 200), 1500); /* a year back, say */
    assert_int_equal(steady_read(&s, 700), 2000);
    assert_int_equal(steady_read(&s, 700), 2000);
    assert_int_equal(steady_read(&s, UINT64_MAX), 2000 + STEADY_STEP_MAX);
    assert_int_equal(steady_read(&s, 5), 2000 + STEADY_STEP_MAX);
    steady_start(&s, UINT64_MAX - 5);
    assert_int_equal(s.now, HLC_MS_LAST);
    s.now = UINT64_MAX - 10; /* as after ~2^32 wild readings */
    s.wall_last = 1000;
    uint64_t before = s.now;
    assert_int_equal(steady_read(&s, 1020), 9); /* past 2^64: counts on */
    assert_true(steady_diff(s.now, before) == 20);
    assert_true(steady_diff(before, s.now) == -20);
    assert_true(steady_diff(5, 5) == 0);
    assert_true(steady_diff(UINT64_C(1) << 63, 0) == INT64_MIN);
    assert_true(steady_diff(0, (UINT64_C(1) << 63) + 1) == INT64_MAX);
    hlc h = {hlc_from_ms(100)};
    hlc_restore(&h, hlc_from_ms(UINT64_C(1) << 40)); /* its own stamp, far ahead: taken */
    assert_true(hlc_tick(&h, 100) > hlc_from_ms(UINT64_C(1) << 40));
    hlc_observe(&h, hlc_from_ms(UINT64_C(1) << 45), 100); /* a peer's, far ahead: not */
    assert_true(hlc_tick(&h, 100) < hlc_from_ms(UINT64_C(1) << 45));
}

static void hlc_is_monotonic_whatever_the_wall_clock_does(void **state) {
    (void)state;
    hlc h = {0};
    uint64_t t1 = hlc_tick(&h, 1000);
    uint64_t t2 = hlc_tick(&h, 1000);
    uint64_t t3 = hlc_tick(&h, 500); /* the wall clock went back */
    assert_true(t1 < t2 && t2 < t3);
    assert_int_equal(HLC_MS(t1), 1000);
    uint64_t t4 = hlc_tick(&h, 2000);
    assert_int_equal(t4, hlc_from_ms(2000));
    hlc_observe(&h, hlc_from_ms(2500), 2000);
    assert_true(hlc_tick(&h, 2000) > hlc_from_ms(2500));
}

static void hlc_ignores_a_peer_clock_far_in_the_future(void **state) {
    (void)state;
    hlc h = {0};
    hlc_tick(&h, 1000);
    hlc_observe(&h, hlc_from_ms(1000 + HLC_DRIFT_MS_MAX + 1), 1000);
    assert_true(HLC_MS(hlc_tick(&h, 1000)) == 1000);
    h.last = UINT64_MAX;
    assert_int_equal(hlc_tick(&h, 0), UINT64_MAX); /* saturates, never wraps */
}

/* A wall clock past what 48 bits of milliseconds hold reads as the last one, whose counter
 * still orders 65,536 stamps before the clock stays at its end. */
static void hlc_counts_on_past_the_last_millisecond(void **state) {
    (void)state;
    hlc h = {0};
    uint64_t before = hlc_tick(&h, 1000);
    uint64_t first = hlc_tick(&h, (UINT64_C(1) << 48) + 5);
    assert_true(first > before);
    assert_int_equal(HLC_MS(first), HLC_MS_LAST);
    uint64_t prev = first;
    for (int i = 1; i < 65536; i++) {
        uint64_t t = hlc_tick(&h, UINT64_MAX);
        assert_true(t > prev);
        prev = t;
    }
    assert_int_equal(prev, UINT64_MAX);
    assert_int_equal(hlc_tick(&h, 1000), UINT64_MAX);
}

static void array_reserve_doubles_and_stops_at_its_limit(void **state) {
    (void)state;
    ARRAY(uint64_t) a = {NULL, 0, 0};
    assert_true(ARRAY_RESERVE_MAX(a, 1, 100));
    assert_int_equal(a.capacity, 16);
    a.count = 16;
    assert_true(ARRAY_RESERVE_MAX(a, 1, 100));
    assert_int_equal(a.capacity, 32);
    a.count = 32;
    assert_true(ARRAY_RESERVE_MAX(a, 60, 100));
    assert_int_equal(a.capacity, 100); /* capped at the limit */
    a.count = 100;
    uint64_t *before = a.at;
    assert_false(ARRAY_RESERVE_MAX(a, 1, 100));
    assert_ptr_equal(a.at, before); /* unchanged on failure */
    assert_int_equal(a.capacity, 100);
    free(a.at);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(array_reserve_doubles_and_stops_at_its_limit),
        cmocka_unit_test(idmap_finds_every_key_it_was_given),
        cmocka_unit_test(idmap_removes_a_key_and_keeps_the_rest),
        cmocka_unit_test(idmap_growth_keeps_keys_whose_runs_wrap_around),
        cmocka_unit_test(idmap_put_replaces_the_value_of_a_key),
        cmocka_unit_test(idmap_put_doubles_a_full_table_and_replaces_without_growing),
        cmocka_unit_test(idmap_insert_keeps_the_value_already_there),
        cmocka_unit_test(u128_sums_carry_and_refuse_to_go_negative),
        cmocka_unit_test(rights_hold_no_zero_entries_and_never_go_negative),
        cmocka_unit_test(rights_lookups_stay_short_among_65536_holders),
        cmocka_unit_test(vclock_keeps_entries_sorted_and_merges_to_the_maximum),
        cmocka_unit_test(hlc_is_monotonic_whatever_the_wall_clock_does),
        cmocka_unit_test(steady_clock_moves_only_forward),
        cmocka_unit_test(hlc_ignores_a_peer_clock_far_in_the_future),
        cmocka_unit_test(hlc_counts_on_past_the_last_millisecond),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
