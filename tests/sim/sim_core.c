/*
 * sim.c — the deterministic multi-replica simulator.
 *
 * N replicas (default 5) in one process, driven by one seeded PRNG: a random workload (opens,
 * deposits from unbounded accounts, transfers among bounded accounts of both bound kinds,
 * pendings with posts, voids and timeouts, grants, rights requests answered by holders,
 * concurrent opens and duplicate transfer ids) and a random network (deltas dropped,
 * duplicated, reordered, truncated by max_bytes or by the wire, corrupted, replayed from stale
 * summaries; replicas split into groups that later heal).
 *
 * After every step the checker of design.md section 6 runs on every replica whose state
 * changed (an unchanged replica was checked already): no bounded account below zero, Σ rights
 * equal to the spendable amount, every balance equal to the sum of its ops, conservation per
 * ledger. At the end the network heals and every digest must be equal. A failure prints its
 * seed; `tally_sim --seed S --verbose` replays it exactly.
 *
 * With durable replicas (--durable) each has a directory, and a step may crash one: close it,
 * sometimes leave the remains of a torn write at its journal's end, and open it again, which
 * must bring back exactly what it had, with the same time left before each of its pendings
 * times out. Each replica's wall clock has its own skew, which now and then jumps back or
 * ahead by up to ten minutes. The same engine runs under libFuzzer (fuzz/fuzz_sim.c),
 * drawing its choices from the fuzzer's bytes instead of the PRNG.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crdt/bytes.h"
#include "crdt/cert.h"
#include "ledger/branch.h"
#include "ledger/chain.h"
#include "ledger/codec.h"
#include "ledger/journal.h"
#include "ledger/replica.h"
#include "sim.h"
#include "tally.h"

/* A fuzzing build accepts any checksum (ledger/codec.h), so a flipped bit there could forge a
 * valid-looking op, which no real network can: the simulator flips bits only where checksums
 * are checked, and cuts messages short everywhere. */
#ifdef TALLY_FUZZING
#define CHECKSUMS_CHECKED 0
#else
#define CHECKSUMS_CHECKED 1
#endif

#define REPLICAS_MAX 16
#define ACCOUNTS_MAX 64
#define QUEUE_MAX 64
#define PENDINGS_MAX 256

/* The source of every choice: splitmix64 from a seed, or the fuzzer's bytes (8 a draw; zeros,
 * and `exhausted`, once they run out). */
typedef struct rng {
    uint64_t s;
    const uint8_t *bytes;
    size_t len, at;
    bool exhausted;
} rng;

static uint64_t next(rng *g) {
    if (g->bytes != NULL) {
        uint64_t v = 0;
        for (int i = 0; i < 8; i++, g->at++) {
            v |= (uint64_t)(g->at < g->len ? g->bytes[g->at] : 0) << (8 * i);
        }
        g->exhausted = g->at >= g->len;
        return v;
    }
    uint64_t z = (g->s += 0x9e3779b97f4a7c15u); /* splitmix64 */
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}
static uint64_t below(rng *g, uint64_t n) {
    return n ? next(g) % n : 0;
}
static bool chance(rng *g, unsigned percent) {
    return below(g, 100) < percent;
}

typedef struct account_info {
    tally_id id;
    uint32_t ledger;
    uint16_t flags;
} account_info;

typedef struct message {
    int from, to;
    uint8_t *bytes;
    size_t len;
    bool tampered;
    bool parted; /* made across a fork neither side had found (parted) */
} message;

typedef struct clock_ctx {
    struct sim *sim;
    int64_t skew_ms;
} clock_ctx;

typedef struct sim {
    rng g;
    const sim_config *cfg;
    uint64_t seed;
    int n;
    unsigned steps;
    bool verbose;
    char dirs[REPLICAS_MAX][96];
    uint64_t now_ms;
    tally_replica *r[REPLICAS_MAX];
    clock_ctx clocks[REPLICAS_MAX];
    int group[REPLICAS_MAX];
    bool dirty[REPLICAS_MAX];
    uint8_t *stale_summary[REPLICAS_MAX];
    size_t stale_len[REPLICAS_MAX];
    account_info accounts[ACCOUNTS_MAX];
    int n_accounts;
    tally_id pendings[REPLICAS_MAX][PENDINGS_MAX];
    int n_pendings[REPLICAS_MAX];
    message queue[QUEUE_MAX];
    int n_queue;
    char *authority, *authority_key; /* --admitted: the cluster's authority, PEM */
    bool equivocated[REPLICAS_MAX];  /* an equivocator signed a second history as this one */
    bool backed_up[REPLICAS_MAX];    /* --durable: dirs[i].backup holds an older copy */
    uint32_t backup_hold[REPLICAS_MAX]; /* the hold that copy's mark keeps */
    uint64_t restores;
    uint64_t next_id;
    unsigned step;
} sim;

typedef struct totals {
    uint64_t debits_tried, refused_rights, refused_funds, requests, granted, ops, conflicts;
    uint64_t deltas, corrupt_rejected, forgeries_refused, forks_proven, restores, steps, copies;
    uint64_t parted_refused; /* deltas refused between replicas on two sides of a fork */
} totals;

static totals total;

static uint64_t sim_clock(void *ctx) {
    clock_ctx *c = ctx;
    int64_t t = (int64_t)c->sim->now_ms + c->skew_ms;
    return t < 0 ? 0 : (uint64_t)t;
}

static _Noreturn void stop(const sim *s) {
    fflush(stdout);
    if (s->cfg->bytes != NULL) {
        abort(); /* under the fuzzer: a finding */
    }
    fprintf(stderr, "sim: replay with: tally_sim --seed %" PRIu64 "%s%s --verbose\n", s->seed,
            s->cfg->durable ? " --durable" : "", s->cfg->admitted ? " --admitted" : "");
    exit(1);
}

static _Noreturn void fail(const sim *s, const char *what, int rc) {
    fprintf(stderr, "sim: FAILED seed %" PRIu64 " step %u: %s (%s)\n", s->seed, s->step, what,
            tally_result_name(rc));
    stop(s);
}

static _Noreturn void fail_replica(const sim *s, const char *what, int replica) {
    fprintf(stderr, "sim: FAILED seed %" PRIu64 " step %u: %s (replica %d)\n", s->seed, s->step,
            what, replica + 1);
    stop(s);
}

static void trace(const sim *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void trace(const sim *s, const char *fmt, ...) {
    if (!s->verbose) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    printf("[%u] ", s->step);
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
}

static tally_id fresh_id(sim *s) {
    tally_id id = {next(&s->g) | 1, ++s->next_id};
    return id;
}

static const account_info *pick_account(sim *s, uint32_t ledger, int kind) {
    /* kind: 0 any, 1 bounded only, 2 unbounded only */
    for (int tries = 0; tries < 32; tries++) {
        const account_info *a = &s->accounts[below(&s->g, (uint64_t)s->n_accounts)];
        bool bounded = (a->flags & ACCOUNT_BOUND_FLAGS) != 0;
        if (a->ledger == ledger && (kind == 0 || (kind == 1) == bounded)) {
            return a;
        }
    }
    return NULL;
}

static uint64_t amount(sim *s) {
    switch (below(&s->g, 4)) {
    case 0:
        return 1 + below(&s->g, 5);
    case 1:
        return 1 + below(&s->g, 100);
    case 2:
        return 1 + below(&s->g, 1000);
    default:
        return 1 + below(&s->g, 50);
    }
}

/* Whether replica `at` holds a proof that replica `of` (an index) signed two histories. */
static bool forked_at(const sim *s, int at, int of) {
    uint32_t i = replica_origin_find(s->r[at], (uint64_t)of + 1);
    return i != NONE && s->r[at]->origins.at[i].forked;
}

/* Results a local create may give in this workload; anything else is a bug. A replica an
 * equivocator signed a second history as, once it holds the proof, takes no writes. */
static void expect_create(const sim *s, int at, int rc) {
    switch (rc) {
    case TALLY_ORIGIN_FORKED:
        if (!forked_at(s, at, at) || !s->equivocated[at]) {
            fail(s, "a write refused as forked by a replica nobody equivocated as", rc);
        }
        return;
    case TALLY_ORIGIN_HELD:
        if (tally_held(s->r[at]) == TALLY_HOLD_NONE) {
            fail(s, "a write refused as held by a replica that is not", rc);
        }
        return;
    case TALLY_OK:
    case TALLY_EXISTS:
    case TALLY_EXISTS_WITH_DIFFERENT_FIELDS:
    case TALLY_EXCEEDS_CREDITS:
    case TALLY_EXCEEDS_DEBITS:
    case TALLY_INSUFFICIENT_RIGHTS:
    case TALLY_DEBIT_ACCOUNT_NOT_FOUND:
    case TALLY_CREDIT_ACCOUNT_NOT_FOUND:
    case TALLY_LEDGER_MISMATCH:
    case TALLY_ACCOUNT_AMBIGUOUS:
    case TALLY_PENDING_NOT_FOUND:
    case TALLY_PENDING_ALREADY_POSTED:
    case TALLY_PENDING_ALREADY_VOIDED:
    case TALLY_PENDING_EXPIRED:
    case TALLY_PENDING_NOT_HERE:
    case TALLY_NOT_FOUND:
    case TALLY_FLAGS_INVALID:
        return;
    default:
        fail(s, "unexpected result from a local write", rc);
    }
}

/* Whether rc is the refusal of a grant by `at` to `to` that a proof of a fork calls for: the
 * giver's own history forked (it writes nothing), or the receiver's (it is given nothing).
 * Either only where the proof is held, and only of a replica an equivocator played. */
static bool forked_refusal(const sim *s, int at, int to, int rc) {
    if (rc == TALLY_ORIGIN_FORKED || rc == TALLY_ORIGIN_HELD) {
        expect_create(s, at, rc);
        return true;
    }
    if (rc == TALLY_REPLICA_FORKED) {
        if (!forked_at(s, at, to) || !s->equivocated[to]) {
            fail(s, "a grant refused to a replica nobody equivocated as", rc);
        }
        return true;
    }
    return false;
}

/* Asks the richest holder in the same group for rights; the holder grants what it has. */
static void request_rights(sim *s, int at, tally_id account, uint64_t want) {
    tally_rights_entry holders[REPLICAS_MAX];
    size_t count = 0;
    if (tally_rights_holders(s->r[at], account, holders, REPLICAS_MAX, &count) != TALLY_OK) {
        return;
    }
    total.requests++;
    for (size_t i = 0; i < count && i < REPLICAS_MAX; i++) {
        int h = (int)holders[i].replica_id - 1;
        if (h == at || h < 0 || h >= s->n || s->group[h] != s->group[at] || chance(&s->g, 20)) {
            continue; /* unreachable, or it refuses */
        }
        uint64_t have = 0;
        tally_rights(s->r[h], account, (uint64_t)h + 1, &have);
        uint64_t give = have < want ? have : want;
        if (give == 0) {
            continue;
        }
        /* the asker is on the line: the holder vouches for it */
        tally_grant_request g = {account, (uint64_t)at + 1, give, 0, 0, TALLY_GRANT_TO_UNKNOWN};
        int rc = tally_grant_with(s->r[h], &g);
        if (!forked_refusal(s, h, at, rc) && rc != TALLY_OK && rc != TALLY_INSUFFICIENT_RIGHTS &&
            rc != TALLY_NOT_FOUND && rc != TALLY_ACCOUNT_AMBIGUOUS &&
            rc != TALLY_ACCOUNT_UNBOUNDED) {
            fail(s, "grant in answer to a request", rc);
        }
        if (rc == TALLY_OK) {
            s->dirty[h] = true;
            total.granted++;
            trace(s, "r%d grants r%d %" PRIu64, h + 1, at + 1, give);
        }
        return;
    }
}

static void note_debit_result(sim *s, int at, const tally_transfer *t, int rc) {
    total.debits_tried++;
    if (rc == TALLY_INSUFFICIENT_RIGHTS) {
        total.refused_rights++;
        /* Which side lacked rights: ask for the debit account's, else the credit's. */
        tally_balance b;
        tally_id need = t->debit_account_id;
        if (tally_lookup_balance(s->r[at], need, &b) == TALLY_OK && b.rights_here >= t->amount) {
            need = t->credit_account_id;
        }
        request_rights(s, at, need, t->amount);
    } else if (rc == TALLY_EXCEEDS_CREDITS || rc == TALLY_EXCEEDS_DEBITS) {
        total.refused_funds++;
    }
}

/* A transfer just created by id went, on each side, to the incarnation tally.h promises: the
 * bounds named, or else never one less restrictive than another of that id in its ledger (and
 * never a pick between both bounds). */
static void check_written_incarnations(sim *s, int at, const tally_transfer *t) {
    tally_transfer back;
    if (tally_lookup_transfer(s->r[at], t->id, &back) != TALLY_OK) {
        fail(s, "a transfer just created is not found", 0);
        return;
    }
    const tally_id ids[2] = {t->debit_account_id, t->credit_account_id};
    const uint16_t written[2] = {back.debit_bound, back.credit_bound};
    const uint16_t named[2] = {t->debit_bound, t->credit_bound};
    for (int side = 0; side < 2; side++) {
        if (t->flags & TALLY_TRANSFER_BOUNDS_NAMED) {
            if (written[side] != named[side]) {
                fail(s, "a transfer naming its incarnations wrote to another", 0);
            }
            continue;
        }
        tally_incarnation inc[8];
        size_t n = 0;
        (void)tally_incarnations(s->r[at], ids[side], inc, 8, &n);
        uint16_t bounds = 0;
        for (size_t k = 0; k < n && k < 8; k++) {
            bounds |= inc[k].account.ledger == t->ledger ? inc[k].account.flags & 3 : 0;
        }
        if ((written[side] == 0 && bounds != 0) || bounds == 3) {
            fail(s, "a write by id went to a less restrictive incarnation", 0);
        }
    }
}

static void do_transfer(sim *s, int at, const tally_id *debit, const tally_id *credit,
                        uint32_t ledger, uint16_t flags, uint32_t timeout_ms) {
    tally_transfer t;
    memset(&t, 0, sizeof t);
    t.id = fresh_id(s);
    t.debit_account_id = *debit;
    t.credit_account_id = *credit;
    t.amount = amount(s);
    t.ledger = ledger;
    t.code = (uint16_t)(1 + below(&s->g, 3));
    t.user_data = below(&s->g, 3);
    t.flags = flags;
    t.timeout_ms = timeout_ms;
    if (chance(&s->g, 5)) { /* now and then, name the incarnations (some do not exist) */
        t.flags |= TALLY_TRANSFER_BOUNDS_NAMED;
        t.debit_bound = (uint16_t)below(&s->g, 3);
        t.credit_bound = (uint16_t)below(&s->g, 3);
    }
    int rc = tally_create_transfer(s->r[at], &t);
    expect_create(s, at, rc);
    if (rc == TALLY_OK) {
        check_written_incarnations(s, at, &t);
    }
    trace(s, "r%d transfer %" PRIu64 " amount %" PRIu64 " flags %u: %s", at + 1, t.id.lo, t.amount,
          flags, tally_result_name(rc));
    note_debit_result(s, at, &t, rc);
    if (rc == TALLY_OK) {
        s->dirty[at] = true;
        if ((flags & TALLY_TRANSFER_PENDING) && s->n_pendings[at] < PENDINGS_MAX) {
            s->pendings[at][s->n_pendings[at]++] = t.id;
        }
    }
}

static void act_transfer(sim *s, int at, uint16_t flags) {
    uint32_t ledger = chance(&s->g, 85) ? 1 : 2;
    const account_info *d = pick_account(s, ledger, 0), *c = pick_account(s, ledger, 0);
    if (d == NULL || c == NULL || id_eq(d->id, c->id)) {
        return;
    }
    uint32_t timeout = (flags & TALLY_TRANSFER_PENDING) && chance(&s->g, 50)
                           ? (uint32_t)(1 + below(&s->g, 3000))
                           : 0;
    do_transfer(s, at, &d->id, &c->id, ledger, flags, timeout);
}

/* Money from the outside world: credits a DEBITS_MUST_NOT_EXCEED_CREDITS account from an
 * unbounded one, or debits a CREDITS_MUST_NOT_EXCEED_DEBITS account into one. */
static void act_deposit(sim *s, int at) {
    uint32_t ledger = chance(&s->g, 85) ? 1 : 2;
    const account_info *b = pick_account(s, ledger, 1), *u = pick_account(s, ledger, 2);
    if (b == NULL || u == NULL) {
        return;
    }
    if (b->flags & TALLY_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS) {
        do_transfer(s, at, &u->id, &b->id, ledger, 0, 0);
    } else {
        do_transfer(s, at, &b->id, &u->id, ledger, 0, 0);
    }
}

static void act_finish_pending(sim *s, int at) {
    if (s->n_pendings[at] == 0) {
        return;
    }
    int k = (int)below(&s->g, (uint64_t)s->n_pendings[at]);
    tally_transfer t;
    memset(&t, 0, sizeof t);
    t.id = fresh_id(s);
    t.pending_id = s->pendings[at][k];
    bool post = chance(&s->g, 60);
    t.flags = post ? TALLY_TRANSFER_POST_PENDING : TALLY_TRANSFER_VOID_PENDING;
    tally_transfer p;
    if (post && chance(&s->g, 40) &&
        tally_lookup_transfer(s->r[at], t.pending_id, &p) == TALLY_OK) {
        t.amount = 1 + below(&s->g, p.amount); /* a partial post */
    }
    int rc = tally_create_transfer(s->r[at], &t);
    expect_create(s, at, rc);
    trace(s, "r%d %s pending %" PRIu64 ": %s", at + 1, post ? "post" : "void", t.pending_id.lo,
          tally_result_name(rc));
    if (rc == TALLY_OK) {
        s->dirty[at] = true;
    }
    s->pendings[at][k] = s->pendings[at][--s->n_pendings[at]];
}

static void act_grant(sim *s, int at) {
    const account_info *a = pick_account(s, chance(&s->g, 85) ? 1 : 2, 1);
    int to = (int)below(&s->g, (uint64_t)s->n);
    if (a == NULL || to == at) {
        return;
    }
    uint64_t have = 0;
    tally_rights(s->r[at], a->id, (uint64_t)at + 1, &have);
    if (have == 0) {
        return;
    }
    uint64_t amount = 1 + below(&s->g, have);
    int rc = tally_grant(s->r[at], a->id, (uint64_t)to + 1, amount);
    if (forked_refusal(s, at, to, rc)) {
        return;
    }
    /* a receiver never heard from is refused, exactly then; the sim knows it is a member */
    if ((rc == TALLY_REPLICA_UNKNOWN) != (tally_seen(s->r[at], (uint64_t)to + 1) == 0 &&
                                          rc != TALLY_NOT_FOUND && rc != TALLY_ACCOUNT_AMBIGUOUS &&
                                          rc != TALLY_ACCOUNT_UNBOUNDED)) {
        fail(s, "grant to a replica never heard from", rc);
    }
    if (rc == TALLY_REPLICA_UNKNOWN && chance(&s->g, 50)) {
        tally_grant_request g = {a->id, (uint64_t)to + 1, amount, 0, 0, TALLY_GRANT_TO_UNKNOWN};
        rc = tally_grant_with(s->r[at], &g);
    }
    if (rc != TALLY_OK && rc != TALLY_NOT_FOUND && rc != TALLY_REPLICA_UNKNOWN &&
        rc != TALLY_ACCOUNT_AMBIGUOUS && rc != TALLY_ACCOUNT_UNBOUNDED) {
        fail(s, "grant of rights held", rc);
    }
    s->dirty[at] |= rc == TALLY_OK;
}

static void act_open(sim *s, int at) {
    if (s->n_accounts >= ACCOUNTS_MAX) {
        return;
    }
    account_info info;
    info.id = fresh_id(s);
    info.ledger = chance(&s->g, 85) ? 1 : 2;
    info.flags = (uint16_t)below(&s->g, 3);
    tally_account a = {info.id, below(&s->g, 2), info.ledger, 1, info.flags};
    int rc = tally_create_account(s->r[at], &a);
    if (rc == TALLY_ORIGIN_FORKED || rc == TALLY_ORIGIN_HELD) {
        expect_create(s, at, rc);
        return;
    }
    if (rc != TALLY_OK) {
        fail(s, "open of a fresh account", rc);
    }
    s->dirty[at] = true;
    s->accounts[s->n_accounts++] = info;
    trace(s, "r%d opens %" PRIu64 " (flags %u ledger %u)", at + 1, a.id.lo, a.flags, a.ledger);
    if (chance(&s->g, 30)) {
        /* Another replica opens the same id concurrently, maybe with other fields. */
        int other = (int)below(&s->g, (uint64_t)s->n);
        tally_account b = a;
        if (chance(&s->g, 60)) {
            b.flags = (uint16_t)below(&s->g, 3);
            b.ledger = chance(&s->g, 50) ? a.ledger : 3 - a.ledger;
            b.code = (uint16_t)(1 + below(&s->g, 2));
        }
        rc = tally_create_account(s->r[other], &b);
        if (rc == TALLY_ORIGIN_FORKED || rc == TALLY_ORIGIN_HELD) {
            expect_create(s, other, rc);
        } else if (rc != TALLY_OK && rc != TALLY_EXISTS &&
                   rc != TALLY_EXISTS_WITH_DIFFERENT_FIELDS) {
            fail(s, "concurrent open", rc);
        }
        s->dirty[other] = true;
        trace(s, "r%d and r%d open %" PRIu64 " (flags %u/%u ledger %u/%u): %s", at + 1, other + 1,
              a.id.lo, a.flags, b.flags, a.ledger, b.ledger, tally_result_name(rc));
    }
}

static void act_duplicate_id(sim *s) {
    /* Two replicas create one transfer id while they cannot see each other's. */
    int a = (int)below(&s->g, (uint64_t)s->n), b = (int)below(&s->g, (uint64_t)s->n);
    const account_info *d = pick_account(s, 1, 2), *c = pick_account(s, 1, 0);
    if (a == b || d == NULL || c == NULL || id_eq(d->id, c->id)) {
        return;
    }
    tally_transfer t;
    memset(&t, 0, sizeof t);
    t.id = fresh_id(s);
    t.debit_account_id = d->id;
    t.credit_account_id = c->id;
    t.amount = amount(s);
    t.ledger = 1;
    t.code = 1;
    for (int i = 0; i < 2; i++) {
        int at = i ? b : a;
        int rc = tally_create_transfer(s->r[at], &t);
        expect_create(s, at, rc);
        note_debit_result(s, at, &t, rc);
        s->dirty[at] |= rc == TALLY_OK;
    }
}

/* --- the network --------------------------------------------------------------------------- */

static void queue_push(sim *s, message m) {
    if (s->n_queue == QUEUE_MAX) {
        int k = (int)below(&s->g, QUEUE_MAX); /* a full network drops something */
        free(s->queue[k].bytes);
        s->queue[k] = m;
        return;
    }
    s->queue[s->n_queue++] = m;
}

static bool parted(const sim *s, int a, int b);

static void act_send(sim *s) {
    int from = (int)below(&s->g, (uint64_t)s->n), to = (int)below(&s->g, (uint64_t)s->n);
    if (from == to) {
        return;
    }
    uint8_t *summary;
    size_t summary_len;
    bool stale = s->stale_summary[to] != NULL && chance(&s->g, 15);
    if (stale) {
        summary = s->stale_summary[to];
        summary_len = s->stale_len[to];
    } else {
        int rc = tally_summary(s->r[to], &summary, &summary_len);
        if (rc != TALLY_OK) {
            fail(s, "summary", rc);
        }
        if (chance(&s->g, 20)) {
            free(s->stale_summary[to]);
            s->stale_summary[to] = malloc(summary_len);
            memcpy(s->stale_summary[to], summary, summary_len);
            s->stale_len[to] = summary_len;
        }
    }
    size_t max_bytes = chance(&s->g, 50) ? 0 : (size_t)below(&s->g, 600);
    message m = {from, to, NULL, 0, false, false};
    /* from a summary of before, the sides may have parted then */
    for (int x = 0; x < s->n && stale; x++) {
        m.parted |= s->equivocated[x];
    }
    m.parted |= parted(s, from, to);
    int rc = tally_delta(s->r[from], summary, summary_len, max_bytes, &m.bytes, &m.len);
    if (!stale) {
        tally_free(summary);
    }
    if (rc != TALLY_OK) {
        fail(s, "delta", rc);
    }
    if (chance(&s->g, 5) && m.len > 0) { /* the wire cuts it short */
        m.len = (size_t)below(&s->g, m.len);
        m.tampered = true;
    } else if (chance(&s->g, 5) && m.len > 0 && CHECKSUMS_CHECKED) { /* the wire flips a bit */
        m.bytes[below(&s->g, m.len)] ^= (uint8_t)(1u << below(&s->g, 8));
        m.tampered = true;
    }
    total.deltas++;
    queue_push(s, m);
}

static void act_deliver(sim *s) {
    if (s->n_queue == 0) {
        return;
    }
    int k = (int)below(&s->g, (uint64_t)s->n_queue); /* reordering: any message may be next */
    message m = s->queue[k];
    bool duplicate = chance(&s->g, 10);
    if (!duplicate) {
        s->queue[k] = s->queue[--s->n_queue];
    }
    if (s->group[m.from] == s->group[m.to] && !chance(&s->g, 10)) {
        int rc = tally_apply(s->r[m.to], m.bytes, m.len);
        trace(s, "deliver r%d -> r%d (%zu bytes%s): %s", m.from + 1, m.to + 1, m.len,
              m.tampered ? ", tampered" : "", tally_result_name(rc));
        if (rc == TALLY_ECORRUPT && m.tampered) {
            total.corrupt_rejected++;
        } else if (rc == TALLY_ECORRUPT && m.parted) {
            total.parted_refused++;
        } else if (rc != TALLY_OK) {
            fail(s, "apply of a delta", rc);
        }
        s->dirty[m.to] = true;
    }
    if (!duplicate) {
        free(m.bytes);
    }
}

/* A forger: a replica of its own that takes a victim's id (and, having no access to the
 * victim's key, a key of its own) writes ops as the victim from seq 1 and pushes them to a
 * replica that knows the victim, or to the victim itself. Nothing of it may apply. (Without an
 * authority, a replica that has never heard of the victim would take the forger's key: first
 * come; docs/design.md, "Whose ops these are".) In a cluster with an authority (--admitted) it
 * also pushes to replicas that never heard of the victim, sometimes with the victim's real
 * certificate in front of its run, or under an id nobody was given: nothing applies, and no
 * made-up id gets a place in the origin table. */
static void act_forge(sim *s) {
    int victim = (int)below(&s->g, (uint64_t)s->n), to = (int)below(&s->g, (uint64_t)s->n);
    bool admitted = s->authority != NULL;
    uint64_t id = admitted && chance(&s->g, 30) ? 1000 + s->step : (uint64_t)victim + 1;
    if (!admitted && tally_seen(s->r[to], id) == 0) {
        return;
    }
    uint32_t origins = s->r[to]->origins.count;
    tally_options o = {.replica_id = id, .clock_ms = sim_clock, .clock_ctx = &s->clocks[victim]};
    tally_replica *forger = NULL;
    uint8_t *summary = NULL, *delta = NULL;
    size_t summary_len = 0, delta_len = 0;
    if (tally_open(&o, &forger) != TALLY_OK) {
        fail(s, "the forger's replica", 0);
    }
    /* a key of its own, also where keys are made from ids (a fuzzing build): one that could
     * sign as the victim would not forge but fork, which is proven rather than refused */
    uint8_t seed[CRYPTO_SEED];
    memset(seed, 0x46, sizeof seed);
    put_u64le(seed, id);
    forger->origins.at[forger->self].keyed = false;
    if (!crypto_set_signer(&forger->crypto, seed) || chain_own_key(forger) != TALLY_OK ||
        tally_summary(forger, &summary, &summary_len) != TALLY_OK) {
        fail(s, "the forger's replica", 0);
    }
    tally_account mine = {fresh_id(s), 0, 1, 1, 0};
    const account_info *outside = pick_account(s, 1, 0);
    tally_account theirs = {outside->id, 0, 1, 1, 0};
    tally_transfer t = {.id = fresh_id(s),
                        .debit_account_id = outside->id,
                        .credit_account_id = mine.id,
                        .amount = 1 + below(&s->g, 1000),
                        .ledger = 1,
                        .code = 1};
    if (tally_create_account(forger, &mine) != TALLY_OK ||
        tally_create_account(forger, &theirs) != TALLY_OK ||
        tally_create_transfer(forger, &t) != TALLY_OK ||
        tally_delta(forger, summary, summary_len, 0, &delta, &delta_len) != TALLY_OK) {
        fail(s, "the forger's writes", 0);
    }
    uint32_t victim_at = replica_origin_find(s->r[victim], (uint64_t)victim + 1);
    if (admitted && id == (uint64_t)victim + 1 && chance(&s->g, 50) &&
        s->r[victim]->origins.at[victim_at].cert != NULL) {
        /* the victim's own certificate in front of the forged run: it names the victim's key */
        op cert;
        chain_admit_op(s->r[victim], victim_at, &cert);
        bytes spliced = {0};
        if (!bytes_reserve(&spliced, delta_len + CODEC_ADMIT_MAX + 64)) {
            fail(s, "out of memory", TALLY_ENOMEM);
        }
        memcpy(spliced.at, delta, 8);
        spliced.len = 8;
        block_enc enc;
        block_enc_init(&enc);
        if (!block_enc_begin(&enc, &spliced) || !block_enc_op(&enc, &spliced, &cert)) {
            fail(s, "out of memory", TALLY_ENOMEM);
        }
        block_enc_end(&enc, &spliced);
        block_enc_free(&enc);
        memcpy(spliced.at + spliced.len, delta + 8, delta_len - 8);
        spliced.len += delta_len - 8;
        tally_free(delta);
        delta = spliced.at;
        delta_len = spliced.len;
    }
    uint8_t before[16], after[16];
    tally_digest(s->r[to], before);
    int rc = tally_apply(s->r[to], delta, delta_len);
    tally_digest(s->r[to], after);
    trace(s, "a forger as r%" PRIu64 " pushes to r%d: %s", id, to + 1, tally_result_name(rc));
    bool refused = rc == TALLY_ECORRUPT || (admitted && rc == TALLY_NOT_ADMITTED);
    if (!refused || memcmp(before, after, 16) != 0) {
        fail_replica(s, "a forged op was taken", to);
    }
    /* a made-up id gets no place; an admitted victim's may, from its real certificate */
    if (admitted && id >= 1000 && s->r[to]->origins.count != origins) {
        fail_replica(s, "a made-up id took a place in the origin table", to);
    }
    total.forgeries_refused++;
    tally_free(summary);
    tally_free(delta);
    tally_close(forger);
}

/* Whether r holds a run of origin x's, in any of its histories, whose statement hashes to
 * hash, with all of its ops. */
static bool holds_run(const tally_replica *r, uint64_t x, const uint8_t hash[CRYPTO_HASH]) {
    for (uint32_t i = 0; i < r->origins.count; i++) {
        const origin_rec *o = &r->origins.at[i];
        for (uint32_t k = 0; k < o->runs.count && r->origins.at[o->of].id == x; k++) {
            if (o->runs.at[k].last <= o->seq &&
                memcmp(o->runs.at[k].hash, hash, CRYPTO_HASH) == 0) {
                return true;
            }
        }
    }
    return false;
}

/* An equivocator: someone with a victim's key (a copied directory, a stolen key) signs a second
 * history over a run of the victim's that a replica already holds, and pushes it there. The
 * replica keeps the proof and both histories (docs/design.md, "Past a fork"), and both spread
 * like any other runs: the victim, once it holds the proof, writes nothing more, no replica
 * gives it rights, and every replica still converges. Only past BRANCHES_MAX histories of one
 * replica is a further one refused (TALLY_FORKED). */
static void act_equivocate(sim *s) {
    int victim = (int)below(&s->g, (uint64_t)s->n), to = (int)below(&s->g, (uint64_t)s->n);
    tally_replica *v = s->r[victim];
    uint64_t vid = (uint64_t)victim + 1;
    const origin_rec *vo = &v->origins.at[v->self];
    if (to == victim || vo->forked || forked_at(s, to, victim) || vo->runs.count == 0) {
        return;
    }
    /* the last run of the victim's own history that `to` holds whole (in any of its histories
     * of the victim, if it holds several: a copy's too) */
    uint32_t k = vo->runs.count;
    while (k > 0 && !holds_run(s->r[to], vid, vo->runs.at[k - 1].hash)) {
        k--;
    }
    if (k == 0) {
        return;
    }
    k--;
    uint64_t first = chain_run_first(vo, k);
    op o;
    op_clear(&o);
    o.kind = OP_OPEN;
    o.origin = vid;
    o.seq = first;
    o.hlc = (s->now_ms << 16) + 7;
    o.u.account.id = fresh_id(s);
    o.u.account.ledger = 1;
    o.u.account.code = 1;
    uint8_t digest[CRYPTO_HASH], hash[CRYPTO_HASH], sig[CRYPTO_SIG];
    const uint8_t *prev = k == 0 ? vo->genesis : vo->runs.at[k - 1].hash;
    if (!chain_digest_ops(&v->crypto, &o, sizeof o, 1, digest) ||
        !chain_sign_run(&v->crypto, vid, first, first, prev, digest, hash, sig)) {
        fail(s, "the equivocator's run", TALLY_ENOMEM);
    }
    op sign;
    op_clear(&sign);
    sign.kind = OP_SIGN;
    sign.origin = vid;
    sign.u.sign.first = sign.u.sign.last = first;
    sign.u.sign.chain = k == 0 ? vo->pub : vo->runs.at[k - 1].hash;
    sign.u.sign.sig = sig;
    bytes d = {0};
    block_enc enc;
    block_enc_init(&enc);
    if (!bytes_reserve(&d, 8)) {
        fail(s, "out of memory", TALLY_ENOMEM);
    }
    memcpy(d.at, "TLYD\3\0\0\0", 8);
    d.len = 8;
    if (!block_enc_begin(&enc, &d) || !block_enc_op(&enc, &d, &o) ||
        !block_enc_op(&enc, &d, &sign)) {
        fail(s, "out of memory", TALLY_ENOMEM);
    }
    block_enc_end(&enc, &d);
    block_enc_free(&enc);
    s->equivocated[victim] = true;
    size_t before = s->r[to]->log.count;
    int rc = tally_apply(s->r[to], d.at, d.len);
    bytes_free(&d);
    trace(s, "an equivocator as r%d pushes a second history of its seq %" PRIu64 " to r%d: %s",
          victim + 1, first, to + 1, tally_result_name(rc));
    bool kept = rc == TALLY_OK && s->r[to]->log.count == before + 1;
    bool refused = rc == TALLY_FORKED && s->r[to]->log.count == before;
    if ((!kept && !refused) || !forked_at(s, to, victim)) {
        fail_replica(s, "a second history was not kept and proven", to);
    }
    total.forks_proven++;
    s->dirty[to] = true;
}

static void act_partition(sim *s) {
    if (chance(&s->g, 40)) {
        memset(s->group, 0, sizeof s->group); /* heal */
        trace(s, "partition heals");
        return;
    }
    int groups = 2 + (int)below(&s->g, 2);
    for (int i = 0; i < s->n; i++) {
        s->group[i] = (int)below(&s->g, (uint64_t)groups);
    }
    trace(s, "partition into %d groups", groups);
}

/* --- the checker --------------------------------------------------------------------------- */

/* Past a fork (docs/design.md): no bounded account is below its bound, counting only what its
 * pendings still reserve, by more than the bounds tally_fork_damage states for the forked
 * replicas together, and each reports no more taken than its bound. */
static void check_damage(const sim *s, int i) {
    const tally_replica *r = s->r[i];
    size_t n;
    if (tally_fork_damage(r, 0, NULL, 0, &n) != TALLY_OK) {
        fail_replica(s, "tally_fork_damage", i);
    }
    bool forked = false;
    for (uint32_t k = 0; k < r->origins.count; k++) {
        forked |= r->origins.at[k].branches > 0;
    }
    if (!forked) {
        if (n != 0) {
            fail_replica(s, "damage reported with no fork", i);
        }
        return;
    }
    u128 *bound = calloc((size_t)r->accounts.count + 1, sizeof *bound);
    u128 *taken = calloc((size_t)r->accounts.count + 1, sizeof *taken);
    u128 *all = calloc((size_t)r->accounts.count + 1, sizeof *all);
    if (bound == NULL || taken == NULL || all == NULL) {
        fail(s, "out of memory", TALLY_ENOMEM);
    }
    for (uint32_t x = 0; x < r->origins.count; x++) {
        if (r->origins.at[x].branches == 0) {
            continue;
        }
        memset(bound, 0, r->accounts.count * sizeof *bound);
        branch_damage(r, x, taken, bound);
        for (uint32_t a = 0; a < r->accounts.count; a++) {
            if (u128_cmp(taken[a], bound[a]) > 0) {
                fail_replica(s, "a fork took more than its bound", i);
            }
            all[a] = u128_plus(all[a], bound[a]);
        }
    }
    for (uint32_t a = 0; a < r->accounts.count; a++) {
        const account_rec *acct = &r->accounts.at[a];
        bool debits = acct->flags & TALLY_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS;
        if ((acct->flags & ACCOUNT_BOUND_FLAGS) == 0) {
            continue;
        }
        /* what the account can still spend, with only its open pendings reserved */
        u128 left = debits ? u128_minus(acct->credits_posted, acct->debits_posted)
                           : u128_minus(acct->debits_posted, acct->credits_posted);
        for (uint32_t t = 0; t < r->transfers.count; t++) {
            const transfer_rec *p = &r->transfers.at[t];
            if (p->kind == OP_TRANSFER && p->state == TALLY_PENDING_OPEN &&
                (p->flags & TALLY_TRANSFER_PENDING) && (debits ? p->debit : p->credit) == a) {
                left = u128_minus(left, u128_of(p->amount));
            }
        }
        if (u128_negative(left) && u128_cmp(u128_negated(left), all[a]) > 0) {
            fail_replica(s, "an account below its bound by more than its forks' bounds", i);
        }
    }
    free(bound);
    free(taken);
    free(all);
}

static void check_replica(const sim *s, int i) {
    if (!replica_check(s->r[i])) {
        fail_replica(s, "an invariant of design.md section 6 does not hold", i);
    }
    check_damage(s, i);
    /* Forks (docs/design.md, "The proof of a fork"): a proof held anywhere is of a replica an
     * equivocator played, never of an honest one. */
    for (uint32_t k = 0; k < s->r[i]->forks.count; k++) {
        uint64_t of = s->r[i]->origins.at[s->r[i]->forks.at[k].origin].id;
        if (of == 0 || of > (uint64_t)s->n || !s->equivocated[of - 1]) {
            fail_replica(s, "a proof of a fork of a replica nobody equivocated as", i);
        }
    }
    /* Admitted (docs/design.md, "Admission"): every origin whose runs are here has the
     * authority's certificate for exactly the key they are signed with (read again every 64th
     * step and at the end: a certificate is kept once and never changes, and reading one
     * costs as much as a hundred steps). */
    const tally_replica *r = s->r[i];
    bool deep = s->step % 64 == 0 || s->step >= s->steps;
    for (uint32_t k = 0; r->admission != NULL && k < r->origins.count; k++) {
        const origin_rec *o = &r->origins.at[k], *x = &r->origins.at[o->of]; /* a branch's */
        cert_replica c;
        if (o->runs.count > 0 &&
            (x->cert == NULL || memcmp(x->pub, o->pub, CRYPTO_KEY) != 0 ||
             (deep && (!cert_replica_read(x->cert, x->cert_len, &r->admission->authority, &c) ||
                       c.replica != x->id || memcmp(c.key, x->pub, CRYPTO_KEY) != 0)))) {
            fail_replica(s, "runs of an origin the authority did not admit under their key", i);
        }
    }
    /* The same from the outside: no bounded account below its bound, through the public API,
     * where no fork's histories are here (check_damage bounds it where they are). */
    bool forked = false;
    for (uint32_t k = 0; k < r->origins.count; k++) {
        forked |= r->origins.at[k].branches > 0;
    }
    for (int k = 0; k < s->n_accounts && !forked; k++) {
        tally_balance b;
        tally_account a;
        if (tally_lookup_account(s->r[i], s->accounts[k].id, &a) != TALLY_OK ||
            tally_lookup_balance(s->r[i], a.id, &b) != TALLY_OK) {
            continue;
        }
        if ((a.flags & TALLY_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS) &&
            b.debits_posted + b.debits_pending > b.credits_posted) {
            fail_replica(s, "an account went below its bound", i);
        }
        if ((a.flags & TALLY_ACCOUNT_CREDITS_MUST_NOT_EXCEED_DEBITS) &&
            b.credits_posted + b.credits_pending > b.debits_posted) {
            fail_replica(s, "an account went above its bound", i);
        }
    }
}

/* Whether replica a holds a run of origin x's, in any of its histories, that b does not. */
static bool has_run_not_in(const tally_replica *a, const tally_replica *b, uint64_t x) {
    for (uint32_t i = 0; i < a->origins.count; i++) {
        const origin_rec *o = &a->origins.at[i];
        if (a->origins.at[o->of].id != x) {
            continue;
        }
        for (uint32_t k = 0; k < o->runs.count; k++) {
            bool found = false;
            for (uint32_t j = 0; j < b->origins.count && !found; j++) {
                const origin_rec *p = &b->origins.at[j];
                for (uint32_t q = 0; q < p->runs.count && !found && b->origins.at[p->of].id == x;
                     q++) {
                    found = memcmp(p->runs.at[q].hash, o->runs.at[k].hash, CRYPTO_HASH) == 0;
                }
            }
            if (!found) {
                return true;
            }
        }
    }
    return false;
}

/* Whether replicas a and b hold histories of a replica an equivocator or a copy played that
 * part, each with runs the other lacks: until one sends the other its history (it does when
 * the other's head lies inside its own), each takes the other's head of that replica for a
 * continuation of its own, and a delta between them may hold ops that depend on ops of the
 * other side, refused (docs/design.md, "Past a fork"). */
static bool parted(const sim *s, int a, int b) {
    for (int x = 0; x < s->n; x++) {
        if (s->equivocated[x] && has_run_not_in(s->r[a], s->r[b], (uint64_t)x + 1) &&
            has_run_not_in(s->r[b], s->r[a], (uint64_t)x + 1)) {
            return true;
        }
    }
    return false;
}

static void sync_full(sim *s, int from, int to) {
    for (int round = 0; round < 1000; round++) {
        uint8_t *summary, *delta;
        size_t summary_len, delta_len;
        if (tally_summary(s->r[to], &summary, &summary_len) != TALLY_OK ||
            tally_delta(s->r[from], summary, summary_len, 0, &delta, &delta_len) != TALLY_OK) {
            fail(s, "sync at heal", 0);
        }
        bool parts = parted(s, from, to);
        int rc = tally_apply(s->r[to], delta, delta_len);
        tally_free(summary);
        tally_free(delta);
        if (rc == TALLY_ECORRUPT && parts) {
            return; /* the other way round finds the fork first */
        }
        if (rc != TALLY_OK) {
            fail(s, "apply at heal", rc);
        }
        if (delta_len <= 8) {
            return;
        }
    }
}

static void heal_and_compare(sim *s) {
    memset(s->group, 0, sizeof s->group);
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < s->n; i++) {
            for (int k = 0; k < s->n; k++) {
                if (i != k) {
                    sync_full(s, i, k);
                }
            }
        }
    }
    uint8_t first[16], d[16];
    tally_digest(s->r[0], first);
    for (int i = 0; i < s->n; i++) {
        /* a restored replica whose history its peers hold is confirmed by any of them (but a
         * forked one by none: nobody answers for a history proven double) */
        if (tally_held(s->r[i]) != TALLY_HOLD_NONE && !s->equivocated[i]) {
            fail_replica(s, "a restored replica was not confirmed once its peers synced", i);
        }
        check_replica(s, i);
        tally_digest(s->r[i], d);
        if (memcmp(first, d, 16) != 0) {
            fail_replica(s, "digests differ after the network healed", i);
        }
    }
    tally_stats st;
    tally_get_stats(s->r[0], &st);
    total.ops += st.ops;
    total.conflicts += st.conflicts;
}

/* --- one run ------------------------------------------------------------------------------- */

/* Empties and removes a replica's directory (only files in it, no subdirectories). */
static void remove_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (d == NULL) {
        return;
    }
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (e->d_name[0] != '.') {
            unlinkat(dirfd(d), e->d_name, 0);
        }
    }
    closedir(d);
    rmdir(dir);
}

static tally_replica *open_replica(sim *s, int i) {
    tally_options o = {.replica_id = (uint64_t)i + 1, .clock_ms = sim_clock,
                       .clock_ctx = &s->clocks[i]};
    char error[256] = "";
    if (s->cfg->durable) {
        o.dir = s->dirs[i];
        o.error = error;
        o.error_size = sizeof error;
    }
    if (s->authority != NULL) {
        o.authority = (const uint8_t *)s->authority;
        o.authority_len = strlen(s->authority);
    }
    tally_replica *r = NULL;
    int rc = tally_open(&o, &r);
    if (rc != TALLY_OK) {
        fprintf(stderr, "sim: %s\n", error);
        fail(s, "open", rc);
    }
    tally_admission a;
    if (s->authority != NULL && tally_admission_of(r, &a) == TALLY_OK && !a.admitted) {
        char *pem = NULL;
        rc = tally_certificate_issue((const uint8_t *)s->authority, strlen(s->authority),
                                     (const uint8_t *)s->authority_key, strlen(s->authority_key),
                                     o.replica_id, a.public_key, 0, 1, &pem);
        if (rc == TALLY_OK) {
            rc = tally_set_certificate(r, (const uint8_t *)pem, strlen(pem));
        }
        tally_free(pem);
        if (rc != TALLY_OK) {
            fail(s, "admitting a replica", rc);
        }
    }
    return r;
}

/* The time left before each open pending of r's own times out, by transfer: out[k] is for
 * the k-th transfer record, UINT64_MAX where there is none. The clock is read first, as any
 * create call would. */
static uint64_t *time_left(tally_replica *r) {
    uint64_t *out = malloc((r->transfers.count + 1) * sizeof *out);
    if (out == NULL) {
        return NULL;
    }
    for (uint32_t k = 0; k < r->transfers.count; k++) {
        out[k] = UINT64_MAX;
    }
    (void)expiry_clock_read(r);
    for (uint32_t i = 0; i < r->expiries.count; i++) {
        const expiry *e = &r->expiries.at[i];
        if (r->transfers.at[e->transfer].state == TALLY_PENDING_OPEN) {
            int64_t left = steady_diff(e->deadline_ms, r->steady.now);
            out[e->transfer] = left > 0 ? (uint64_t)left : 0;
        }
    }
    return out;
}

/* Crashes a durable replica: closes it, sometimes leaves a torn write at the end of its
 * journal, opens it again, and checks that it has exactly what it had, with the same time
 * left on every pending (no time passes while it is closed). */
static void act_crash(sim *s, int at) {
    if (!s->cfg->durable) {
        return;
    }
    uint8_t before[16], after[16];
    tally_digest(s->r[at], before);
    uint32_t transfers = s->r[at]->transfers.count;
    uint64_t *left_before = time_left(s->r[at]);
    uint64_t segment = s->r[at]->journal->segment;
    tally_close(s->r[at]);
    if (chance(&s->g, 50)) {
        char path[160];
        snprintf(path, sizeof path, "%s/journal-%016" PRIx64 ".tly", s->dirs[at], segment);
        FILE *f = fopen(path, "ab");
        size_t n = 1 + (size_t)below(&s->g, 40);
        for (size_t k = 0; k < n && f != NULL; k++) {
            fputc((int)below(&s->g, 256), f);
        }
        if (f != NULL) {
            fclose(f);
        }
    }
    s->r[at] = open_replica(s, at);
    tally_digest(s->r[at], after);
    if (memcmp(before, after, 16) != 0) {
        fail_replica(s, "a crashed replica came back with another state", at);
    }
    uint64_t *left_after = time_left(s->r[at]);
    if (left_before == NULL || left_after == NULL) {
        fail(s, "out of memory", TALLY_ENOMEM);
    }
    /* records are in the order they were applied, before and after */
    if (s->r[at]->transfers.count != transfers ||
        memcmp(left_before, left_after, transfers * sizeof *left_before) != 0) {
        fail_replica(s, "a crashed replica came back with other timeouts", at);
    }
    free(left_before);
    free(left_after);
    trace(s, "r%d crashes and recovers", at + 1);
    s->dirty[at] = true;
}

/* Copies the files of directory `from` (no subdirectories) into a new directory `to`. */
static void copy_dir(const sim *s, const char *from, const char *to) {
    remove_dir(to);
    DIR *d = opendir(from);
    if (d == NULL || mkdir(to, 0755) != 0) {
        fail(s, "a backup's directory", 0);
    }
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.') {
            continue;
        }
        char a[300], b[300];
        snprintf(a, sizeof a, "%s/%s", from, e->d_name);
        snprintf(b, sizeof b, "%s/%s", to, e->d_name);
        FILE *in = fopen(a, "rb"), *out = fopen(b, "wb");
        if (in == NULL || out == NULL) {
            fail(s, "a backup's file", 0);
        }
        char buf[65536];
        for (size_t n; (n = fread(buf, 1, sizeof buf, in)) > 0;) {
            if (fwrite(buf, 1, n, out) != n) {
                fail(s, "a backup's file", 0);
            }
        }
        fclose(in);
        fclose(out);
    }
    closedir(d);
}

/* A backup and, later, its restore: a durable replica is closed, its directory copied aside and
 * opened again; some steps on, its directory is replaced with that copy, which lacks what it
 * wrote since (or, instead, a byte of its newest segment's last frame rots, and opening drops
 * the frame). It must come back held (it cannot tell whether peers hold ops of its own past
 * the backup, or the frame), refuse every write while held, send none of its own, and be
 * confirmed only by a peer that answers its challenge: which brings its lost ops back first,
 * so that its next write signs no seq twice. The restore comes after the replica's ops have
 * reached every replica, the case a hold settles alone (were a third replica to hold ops of it
 * that its confirmer lacked, the two would meet as a fork: convergence past a fork is still to
 * come). At every step no replica may hold a proof against it (check_replica). */
static void act_backup_or_restore(sim *s, int at) {
    if (!s->cfg->durable) {
        return;
    }
    char backup[128];
    snprintf(backup, sizeof backup, "%s.backup", s->dirs[at]);
    if (!s->backed_up[at] || chance(&s->g, 30)) {
        s->backup_hold[at] = s->r[at]->hold;
        tally_close(s->r[at]);
        copy_dir(s, s->dirs[at], backup);
        s->r[at] = open_replica(s, at);
        s->backed_up[at] = true;
        trace(s, "r%d is backed up", at + 1);
        return;
    }
    for (int i = 0; i < s->n; i++) {
        if (i != at) {
            sync_full(s, at, i); /* its ops reach every replica */
        }
    }
    uint64_t segment = s->r[at]->journal->segment;
    uint32_t was = s->r[at]->hold; /* a hold's first reason stays until it is lifted */
    tally_close(s->r[at]);
    bool rot = chance(&s->g, 40);
    if (rot) {
        /* bit rot in its newest segment's last bytes: a whole frame that does not check (its
         * last byte is never left zero, which would read as a write that did not land) */
        char path[160];
        snprintf(path, sizeof path, "%s/journal-%016" PRIx64 ".tly", s->dirs[at], segment);
        FILE *f = fopen(path, "r+b");
        if (f == NULL || fseek(f, 0, SEEK_END) != 0) {
            fail(s, "the newest segment", 0);
        }
        long size = ftell(f);
        long off = size - 1 - (long)below(&s->g, 8);
        if (off > 32) { /* past the segment's header: some frame is there */
            fseek(f, off, SEEK_SET);
            int b = fgetc(f);
            uint8_t mask = (uint8_t)(1 + below(&s->g, 255));
            if (off == size - 1 && (b ^ mask) == 0) {
                mask ^= 1;
            }
            fseek(f, off, SEEK_SET);
            fputc(b ^ mask, f);
        } else {
            rot = false;
        }
        fclose(f);
    }
    if (!rot) {
        remove_dir(s->dirs[at]);
        copy_dir(s, backup, s->dirs[at]);
    }
    s->r[at] = open_replica(s, at);
    /* its sessions start again: what was in flight to it, made for what it had, is dropped,
     * and no summary of it from before is replayed */
    for (int k = 0; k < s->n_queue;) {
        if (s->queue[k].to == at) {
            free(s->queue[k].bytes);
            s->queue[k] = s->queue[--s->n_queue];
        } else {
            k++;
        }
    }
    free(s->stale_summary[at]);
    s->stale_summary[at] = NULL;
    trace(s, "r%d is %s: %s", at + 1,
          rot ? "opened after bit rot in its last frame" : "restored from its backup",
          tally_hold_name((int)tally_held(s->r[at])));
    /* a hold's first reason stays until it is lifted: the live directory's, for a rotted frame;
     * the backup's, for a restore */
    uint32_t kept = rot ? was : s->backup_hold[at];
    tally_hold want = kept != 0 ? (tally_hold)kept : rot ? TALLY_HOLD_DAMAGED : TALLY_HOLD_MOVED;
    if (s->r[at]->hold != (uint32_t)want) {
        fail_replica(
            s, rot ? "a rotted frame dropped without a hold" : "a restored directory was not held",
            at);
    }
    uint8_t *summary, *delta;
    size_t summary_len, delta_len;
    tally_replica *fresh = NULL;
    tally_options o = {.replica_id = 999};
    if (tally_open(&o, &fresh) != TALLY_OK ||
        tally_summary(fresh, &summary, &summary_len) != TALLY_OK ||
        tally_delta(s->r[at], summary, summary_len, 0, &delta, &delta_len) != TALLY_OK ||
        tally_apply(fresh, delta, delta_len) != TALLY_OK) {
        fail(s, "a held replica's delta", 0);
    }
    if (tally_seen(fresh, (uint64_t)at + 1) != 0) {
        fail_replica(s, "a held replica sent ops of its own", at);
    }
    tally_free(summary);
    tally_free(delta);
    tally_close(fresh);
    s->restores++;
    total.restores++;
    s->dirty[at] = true;
}

/* A copy of a replica's data (a directory copied to a second machine, a backup restored while
 * the original runs): the same id and key and everything it holds. It spends all the rights it
 * holds on every bounded account, as the original may too, and pushes that history to one
 * replica, from where it spreads like any other (docs/design.md, "Past a fork"). The victim
 * is forked from then on; every replica must converge, and no account may end below its bound
 * by more than tally_fork_damage's bound (check_replica). */
static void act_clone(sim *s) {
    int victim = (int)below(&s->g, (uint64_t)s->n), to = (int)below(&s->g, (uint64_t)s->n);
    tally_replica *v = s->r[victim];
    if (to == victim || replica_held(v) || v->origins.at[v->self].forked ||
        v->origins.at[v->self].branches > 0) {
        return;
    }
    tally_options o = {
        .replica_id = (uint64_t)victim + 1, .clock_ms = sim_clock, .clock_ctx = &s->clocks[victim]};
    if (s->authority != NULL) {
        o.authority = (const uint8_t *)s->authority;
        o.authority_len = strlen(s->authority);
    }
    tally_replica *copy = NULL;
    uint8_t seed[CRYPTO_SEED];
    size_t seed_len = sizeof seed;
    if (tally_open(&o, &copy) != TALLY_OK ||
        EVP_PKEY_get_raw_private_key(v->crypto.signer, seed, &seed_len) != 1 ||
        !crypto_set_signer(&copy->crypto, seed)) {
        fail(s, "a copy of a replica", 0);
    }
    copy->origins.at[copy->self].keyed = false; /* it has signed nothing: it takes the key */
    if (chain_own_key(copy) != TALLY_OK) {
        fail(s, "a copy of a replica", 0);
    }
    tally_admission a;
    if (s->authority != NULL && tally_admission_of(copy, &a) == TALLY_OK && !a.admitted) {
        char *pem = NULL;
        int rc = tally_certificate_issue(
            (const uint8_t *)s->authority, strlen(s->authority), (const uint8_t *)s->authority_key,
            strlen(s->authority_key), o.replica_id, a.public_key, 0, 1, &pem);
        if (rc != TALLY_OK || tally_set_certificate(copy, (const uint8_t *)pem, strlen(pem)) != 0) {
            fail(s, "admitting a copy", rc);
        }
        tally_free(pem);
    }
    uint8_t *summary, *delta;
    size_t summary_len, delta_len;
    int rc = TALLY_OK;
    if (tally_summary(copy, &summary, &summary_len) != TALLY_OK ||
        tally_delta(v, summary, summary_len, 0, &delta, &delta_len) != TALLY_OK ||
        (rc = tally_apply(copy, delta, delta_len)) != TALLY_OK) {
        fail(s, "a copy of a replica", rc);
    }
    tally_free(summary);
    tally_free(delta);
    int spent = 0;
    for (int k = 0; k < s->n_accounts; k++) {
        const account_info *b = &s->accounts[k];
        const account_info *u = pick_account(s, b->ledger, 2);
        tally_balance bal;
        if (b->flags == 0 || u == NULL || tally_lookup_balance(copy, b->id, &bal) != TALLY_OK ||
            bal.rights_here == 0) {
            continue;
        }
        tally_transfer t;
        memset(&t, 0, sizeof t);
        t.id = fresh_id(s);
        bool debits = b->flags & TALLY_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS;
        t.debit_account_id = debits ? b->id : u->id;
        t.credit_account_id = debits ? u->id : b->id;
        t.ledger = b->ledger;
        t.code = 1;
        t.amount = bal.rights_here;
        spent += tally_create_transfer(copy, &t) == TALLY_OK;
    }
    if (spent == 0) {
        tally_close(copy);
        return;
    }
    s->equivocated[victim] = true;
    if (tally_summary(s->r[to], &summary, &summary_len) != TALLY_OK ||
        tally_delta(copy, summary, summary_len, 0, &delta, &delta_len) != TALLY_OK) {
        fail(s, "the copy's delta", 0);
    }
    rc = tally_apply(s->r[to], delta, delta_len);
    tally_free(summary);
    tally_free(delta);
    trace(s, "a copy of r%d spends %d accounts' rights and pushes to r%d: %s", victim + 1, spent,
          to + 1, tally_result_name(rc));
    if (rc != TALLY_OK && rc != TALLY_FORKED) {
        fail_replica(s, "a copy's history was not kept", to);
    }
    total.copies++;
    s->dirty[to] = true;
    tally_close(copy);
}

static void setup(sim *s) {
    for (int i = 0; i < s->n; i++) {
        s->clocks[i].sim = s;
        s->clocks[i].skew_ms = (int64_t)below(&s->g, 10000) - 5000;
        if (s->cfg->durable) {
            snprintf(s->dirs[i], sizeof s->dirs[i], "%s/r%d", s->cfg->dir, i + 1);
            remove_dir(s->dirs[i]);
        }
        s->r[i] = open_replica(s, i);
    }
    /* Unbounded accounts (the outside world) on both ledgers, and bounded ones of both kinds. */
    static const uint16_t kinds[] = {0, 0, 1, 1, 1, 1, 2, 2, 2, 0, 1, 2};
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        account_info info = {fresh_id(s), k >= 9 ? 2u : 1u, kinds[k]};
        tally_account a = {info.id, 0, info.ledger, 1, info.flags};
        if (tally_create_account(s->r[below(&s->g, (uint64_t)s->n)], &a) != TALLY_OK) {
            fail(s, "setup open", 0);
        }
        s->accounts[s->n_accounts++] = info;
    }
    for (int i = 0; i < s->n; i++) {
        for (int k = 0; k < s->n; k++) {
            if (i != k) {
                sync_full(s, i, k);
            }
        }
    }
    for (int i = 0; i < s->n; i++) {
        sync_full(s, s->n - 1, i);
        sync_full(s, i, 0);
    }
}

void sim_run(const sim_config *cfg) {
    sim *s = calloc(1, sizeof *s);
    s->cfg = cfg;
    s->seed = cfg->seed;
    s->g.s = cfg->seed * 0x2545F4914F6CDD1Du + 1;
    s->g.bytes = cfg->bytes;
    s->g.len = cfg->len;
    s->n = cfg->replicas;
    s->steps = cfg->steps;
    s->verbose = cfg->verbose;
    s->now_ms = 1700000000000u;
    int n = s->n;
    if (cfg->admitted &&
        tally_authority_create("sim", &s->authority, &s->authority_key) != TALLY_OK) {
        fail(s, "the cluster's authority", 0);
    }
    setup(s);
    for (s->step = 0; s->step < s->steps && !s->g.exhausted; s->step++) {
        int at = (int)below(&s->g, (uint64_t)n);
        unsigned roll = (unsigned)below(&s->g, 100);
        if (roll < 22) {
            act_transfer(s, at, 0);
        } else if (roll < 32) {
            act_deposit(s, at);
        } else if (roll < 40) {
            act_transfer(s, at, TALLY_TRANSFER_PENDING);
        } else if (roll < 46) {
            act_finish_pending(s, at);
        } else if (roll < 50) {
            act_grant(s, at);
        } else if (roll < 52) {
            act_open(s, at);
        } else if (roll < 53) {
            act_duplicate_id(s);
        } else if (roll < 72) {
            act_send(s);
        } else if (roll < 92) {
            act_deliver(s);
        } else if (roll < 94) {
            act_partition(s);
        } else if (roll < 95) {
            act_crash(s, at);
        } else if (roll < 96) {
            act_forge(s);
        } else if (roll == 96 && chance(&s->g, 10)) {
            act_equivocate(s);
        } else if (roll == 97 && chance(&s->g, 20)) {
            act_backup_or_restore(s, at);
        } else if (roll == 98 && chance(&s->g, 4)) {
            act_clone(s);
        } else {
            s->now_ms += below(&s->g, 2000);
            if (chance(&s->g, 10)) {
                int64_t jump = (int64_t)below(&s->g, 20 * 60 * 1000 + 1) - 10 * 60 * 1000;
                s->clocks[at].skew_ms += jump;
                trace(s, "r%d's wall clock jumps %+" PRId64 " ms", at + 1, jump);
            }
            uint64_t voided = 0;
            int rc = tally_expire(s->r[at], &voided);
            if (rc == TALLY_ORIGIN_FORKED || rc == TALLY_ORIGIN_HELD) {
                expect_create(s, at, rc);
            } else if (rc != TALLY_OK) {
                fail(s, "expire", rc);
            }
            s->dirty[at] |= voided > 0;
        }
        for (int i = 0; i < n; i++) {
            if (s->dirty[i]) {
                check_replica(s, i);
                s->dirty[i] = false;
            }
        }
    }
    heal_and_compare(s);
    total.steps += s->step;
    for (int i = 0; i < s->n_queue; i++) {
        free(s->queue[i].bytes);
    }
    for (int i = 0; i < n; i++) {
        free(s->stale_summary[i]);
        tally_close(s->r[i]);
        if (cfg->durable) {
            char backup[128];
            snprintf(backup, sizeof backup, "%s.backup", s->dirs[i]);
            remove_dir(s->dirs[i]);
            remove_dir(backup);
        }
    }
    tally_free(s->authority);
    tally_free(s->authority_key);
    free(s);
}

void sim_report(uint64_t seeds, uint64_t first, const sim_config *cfg) {
    printf("sim: %" PRIu64 " seeds (%" PRIu64 "..%" PRIu64 "), %d %s%s replicas, %u steps each: "
           "no violation\n",
           seeds, first, first + seeds - 1, cfg->replicas, cfg->durable ? "durable" : "in-memory",
           cfg->admitted ? " admitted" : "", cfg->steps);
    printf("sim: %" PRIu64 " ops converged, %" PRIu64 " deltas (%" PRIu64
           " tampered ones rejected), %" PRIu64 " conflicts listed, %" PRIu64
           " forgeries refused, %" PRIu64 " equivocations proven, %" PRIu64
           " copies that spent (%" PRIu64 " deltas refused across a fork not yet found), %" PRIu64
           " restores held\n",
           total.ops, total.deltas, total.corrupt_rejected, total.conflicts,
           total.forgeries_refused, total.forks_proven, total.copies, total.parted_refused,
           total.restores);
    printf("sim: debits attempted %" PRIu64 ": refused for lack of local rights while the "
           "account had the funds %" PRIu64 " (%.1f%%), for lack of funds %" PRIu64
           "; rights requests %" PRIu64 ", granted %" PRIu64 "\n",
           total.debits_tried, total.refused_rights,
           total.debits_tried ? 100.0 * (double)total.refused_rights / (double)total.debits_tried
                              : 0.0,
           total.refused_funds, total.requests, total.granted);
}
