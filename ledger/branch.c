/*
 * ledger/branch.c — the branches of a forked replica's history (branch.h).
 */
#include "ledger/branch.h"

#include <stdlib.h>
#include <string.h>

#include "crdt/bytes.h"
#include "crdt/id.h"

static const char branch_tag[16] = "tally branch v1";

uint64_t branch_id(crypto_ctx *c, uint64_t origin, const uint8_t first[CRYPTO_HASH]) {
    uint8_t in[16 + 8 + CRYPTO_HASH], out[CRYPTO_HASH];
    memcpy(in, branch_tag, 16);
    put_u64le(in + 16, origin);
    memcpy(in + 24, first, CRYPTO_HASH);
    if (!crypto_sha256(c, in, sizeof in, out)) {
        return 0;
    }
    uint64_t id = get_u64le(out);
    return id != 0 ? id : 1;
}

bool branch_in_lineage(const tally_replica *r, uint32_t ancestor, uint32_t label) {
    for (uint32_t i = label; i != NONE; i = r->origins.at[i].parent) {
        if (i == ancestor) {
            return true;
        }
    }
    return false;
}

uint32_t branch_next(const tally_replica *r, uint32_t real, uint32_t i) {
    if (i == NONE) {
        return real;
    }
    if (r->origins.at[real].branches == 0) {
        return NONE;
    }
    for (uint32_t j = i == real ? 0 : i + 1; j < r->origins.count; j++) {
        const origin_rec *b = &r->origins.at[j];
        if (j != real && b->of == real && origin_is_branch(b)) {
            return j;
        }
    }
    return NONE;
}

bool branch_find_run(const tally_replica *r, uint32_t real, uint64_t last,
                     const uint8_t hash[CRYPTO_HASH], uint32_t *holder, uint32_t *k) {
    for (uint32_t i = branch_next(r, real, NONE); i != NONE; i = branch_next(r, real, i)) {
        const origin_rec *o = &r->origins.at[i];
        uint32_t at = origin_run_at(o, last);
        if (at < o->runs.count && o->runs.at[at].last == last &&
            memcmp(o->runs.at[at].hash, hash, CRYPTO_HASH) == 0) {
            *holder = i;
            *k = at;
            return true;
        }
    }
    return false;
}

u128 branch_rights(const tally_replica *r, const rights *m, uint32_t holder) {
    u128 sum = {0, 0};
    for (uint32_t i = holder; i != NONE; i = r->origins.at[i].parent) {
        sum = u128_plus(sum, rights_get(m, i));
    }
    return sum;
}

/* --- moving ops between histories ---------------------------------------------------------- */

/* What the op at a log position did to its origin's rights on each account it touched: up to
 * two (account, net change) pairs; returns how many. */
static uint32_t op_rights(const tally_replica *r, uint32_t pos, uint32_t account[2], u128 net[2]) {
    const log_entry *j = &r->log.at[pos];
    if (j->kind == OP_GRANT) {
        const grant_rec *g = &r->grants.at[j->index];
        account[0] = g->account;
        net[0] = u128_negated(u128_of(g->amount));
        return 1;
    }
    if (j->kind == OP_OPEN) {
        return 0;
    }
    const transfer_rec *t = &r->transfers.at[j->index];
    bool pending = (t->flags & TALLY_TRANSFER_PENDING) != 0;
    uint64_t p = t->kind != OP_TRANSFER ? r->transfers.at[t->link].amount : 0;
    uint32_t n = 0;
    for (int side = 0; side < 2; side++) {
        uint32_t a = side == 0 ? t->debit : t->credit;
        uint64_t take, give;
        op_side_rights(&r->accounts.at[a], side == 0, t->kind, pending, p, t->amount, &take, &give);
        if (take != give) {
            account[n] = a;
            net[n] = u128_minus(u128_of(give), u128_of(take));
            n++;
        }
    }
    return n;
}

static void set_origin(tally_replica *r, uint32_t pos, uint32_t origin) {
    const log_entry *j = &r->log.at[pos];
    if (j->kind == OP_OPEN) {
        r->opens.at[j->index].origin = origin;
    } else if (j->kind == OP_GRANT) {
        r->grants.at[j->index].origin = origin;
    } else {
        r->transfers.at[j->index].origin = (uint16_t)origin;
    }
}

static bool transfer_dot_less(const tally_replica *r, uint32_t a, uint32_t b) {
    const transfer_rec *x = &r->transfers.at[a], *y = &r->transfers.at[b];
    return dot_less(r->origins.at[x->origin].id, x->seq, r->origins.at[y->origin].id, y->seq);
}

/* Puts the smallest dot of a transfer id's chain at its head again (invariant 3 of
 * replica.h), after the records' origins changed. */
static void transfer_chain_order(tally_replica *r, tally_id id) {
    uint32_t head = idmap_get(&r->transfer_map, id), least = head, before = NONE;
    for (uint32_t prev = head, i = r->transfers.at[head].next; i != NONE;
         prev = i, i = r->transfers.at[i].next) {
        if (transfer_dot_less(r, i, least)) {
            least = i;
            before = prev;
        }
    }
    if (least != head) {
        r->transfers.at[before].next = r->transfers.at[least].next;
        r->transfers.at[least].next = head;
        idmap_put(&r->transfer_map, id, least); /* replaces: cannot allocate */
    }
}

/* The winning OPEN of an incarnation, and the head of its id's chain, again. */
static void account_order(tally_replica *r, uint32_t ai) {
    account_rec *a = &r->accounts.at[ai];
    for (uint32_t oi = a->opens; oi != NONE; oi = r->opens.at[oi].next) {
        const open_rec *x = &r->opens.at[oi], *w = &r->opens.at[a->open];
        if (dot_less(r->origins.at[x->origin].id, x->seq, r->origins.at[w->origin].id, w->seq)) {
            a->open = oi;
        }
    }
    uint32_t head = idmap_get(&r->account_map, a->id), first = head, before = NONE;
    for (uint32_t prev = head, i = r->accounts.at[head].next; i != NONE;
         prev = i, i = r->accounts.at[i].next) {
        if (incarnation_before(r, i, first)) {
            first = i;
            before = prev;
        }
    }
    if (first != head) {
        r->accounts.at[before].next = r->accounts.at[first].next;
        r->accounts.at[first].next = head;
        idmap_put(&r->account_map, a->id, first); /* replaces: cannot allocate */
    }
}

/* A pending's link is its finish of the smallest dot; the others are in r->refinished. */
static void refinished_order(tally_replica *r) {
    for (uint32_t k = 0; k < r->refinished.count; k++) {
        uint32_t e = r->refinished.at[k], pi = r->transfers.at[e].link;
        transfer_rec *p = &r->transfers.at[pi];
        if (transfer_dot_less(r, e, p->link)) {
            r->refinished.at[k] = p->link;
            p->link = e;
        }
        p->state = finish_state(r->transfers.at[p->link].kind, r->transfers.at[p->link].expired);
    }
}

/* Makes room for moving ops after `after` of origins[from] to origins[to]. */
static bool move_reserve(tally_replica *r, uint32_t from, uint32_t to, uint64_t after) {
    origin_rec *f = &r->origins.at[from], *t = &r->origins.at[to];
    uint64_t n = f->seq - after;
    uint32_t k = origin_run_at(f, after + 1);
    if (!origin_reserve(t, (uint32_t)n) || !ARRAY_RESERVE(t->runs, f->runs.count - k)) {
        return false;
    }
    for (uint64_t s = after + 1; s <= f->seq; s++) {
        uint32_t account[2];
        u128 net[2];
        uint32_t m = op_rights(r, origin_position(f, s), account, net);
        for (uint32_t i = 0; i < m; i++) {
            if (!rights_reserve(&r->accounts.at[account[i]].rights, to) ||
                !rights_reserve(&r->accounts.at[account[i]].rights, from)) {
                return false;
            }
        }
    }
    return true;
}

/* Moves the ops of origins[from] after seq `after`, and its runs after it, to origins[to],
 * which holds ops up to `after` (or none, from there): as if they had been applied there.
 * move_reserve made room. */
static void move(tally_replica *r, uint32_t from, uint32_t to, uint64_t after) {
    origin_rec *f = &r->origins.at[from], *t = &r->origins.at[to];
    assert(t->seq == after && f->seq >= after);
    for (uint64_t s = after + 1; s <= f->seq; s++) {
        uint32_t pos = origin_position(f, s);
        uint32_t account[2];
        u128 net[2];
        uint32_t m = op_rights(r, pos, account, net);
        for (uint32_t i = 0; i < m; i++) {
            rights *held = &r->accounts.at[account[i]].rights;
            bool ok =
                rights_shift(held, from, u128_negated(net[i])) && rights_shift(held, to, net[i]);
            assert(ok && "reserved");
            (void)ok;
        }
        set_origin(r, pos, to);
        t->position[s - t->base - 1] = pos;
    }
    t->seq = f->seq;
    f->seq = after;
    uint32_t k = origin_run_at(f, after + 1);
    for (uint32_t i = k; i < f->runs.count; i++) {
        t->runs.at[t->runs.count++] = f->runs.at[i];
    }
    f->runs.count = k;
    for (uint32_t i = 0; i < r->origins.count; i++) {
        origin_rec *b = &r->origins.at[i];
        if (b->parent == from && b->base > after) {
            b->parent = to;
        }
    }
    /* what the origins' ids order */
    for (uint64_t s = after + 1; s <= t->seq; s++) {
        const log_entry *j = &r->log.at[origin_position(t, s)];
        if (j->kind == OP_OPEN) {
            account_order(r, r->opens.at[j->index].account);
        } else if (j->kind != OP_GRANT && !id_is_zero(r->transfers.at[j->index].id)) {
            transfer_chain_order(r, r->transfers.at[j->index].id);
        }
    }
    refinished_order(r);
}

/* The entry for a branch's id: one that holds no ops may be taken (a replica only heard of,
 * as a grant's receiver); NONE with *rc set otherwise. *was keeps what it was. */
static uint32_t branch_entry(tally_replica *r, uint64_t id, uint32_t real, int *rc,
                             struct branch_entry_was *was) {
    uint32_t i = replica_origin_find(r, id);
    was->made = i == NONE;
    if (i != NONE) {
        const origin_rec *o = &r->origins.at[i];
        bool empty =
            o->seq == o->base && o->runs.count == 0 && o->of == i && !o->keyed && o->branches == 0;
        *rc = empty && i != real && i != r->self ? TALLY_OK : TALLY_ECORRUPT;
        if (*rc != TALLY_OK) {
            return NONE;
        }
    } else if ((i = replica_origin_get(r, id)) == NONE) {
        *rc = r->origins.count >= REPLICA_ORIGINS_MAX ? TALLY_ETOOBIG : TALLY_ENOMEM;
        return NONE;
    }
    const origin_rec *o = &r->origins.at[i];
    was->index = i;
    was->keyed = o->keyed;
    was->of = o->of;
    was->parent = o->parent;
    was->base = o->base;
    was->seq = o->seq;
    memcpy(was->pub, o->pub, CRYPTO_KEY);
    memcpy(was->genesis, o->genesis, CRYPTO_HASH);
    *rc = TALLY_OK;
    return i;
}

/* Takes back what branch_open made of an entry: one it added goes again when it is the
 * table's last (so that a history none of whose ops applied leaves nothing behind); another
 * is as it was. */
static void entry_undo(tally_replica *r, struct branch_entry_was *was) {
    uint32_t i = was->index;
    if (i == NONE) {
        return;
    }
    origin_rec *o = &r->origins.at[i];
    if (origin_is_branch(o)) {
        r->origins.at[r->branch_made.real].branches--;
    }
    assert(o->seq == o->base && "none of its ops applied");
    o->runs.count = 0;
    if (was->made && i == r->origins.count - 1) {
        idmap_remove(&r->origin_map, o->key);
        array_free(o->position, o->capacity, sizeof *o->position);
        ARRAY_FREE(o->runs);
        free(o->cert);
        r->origins.count--;
    } else {
        o->keyed = was->keyed;
        o->of = was->of;
        o->parent = was->parent;
        o->base = was->base;
        o->seq = was->seq;
        memcpy(o->pub, was->pub, CRYPTO_KEY);
        memcpy(o->genesis, was->genesis, CRYPTO_HASH);
    }
    was->index = NONE;
}

static void become_branch(tally_replica *r, uint32_t i, uint32_t parent, uint64_t after,
                          const uint8_t leaves[CRYPTO_HASH]) {
    uint32_t real = r->origins.at[parent].of;
    origin_rec *b = &r->origins.at[i];
    r->origins.at[real].branches++;
    b->of = real;
    b->parent = parent;
    b->base = after;
    b->seq = after;
    b->keyed = true;
    memcpy(b->pub, r->origins.at[real].pub, CRYPTO_KEY);
    memcpy(b->genesis, leaves, CRYPTO_HASH);
}

int branch_open(tally_replica *r, uint32_t label, uint32_t k, uint64_t id, uint32_t *out) {
    const origin_rec *l = &r->origins.at[label];
    uint32_t real = l->of;
    uint64_t after = k == NONE ? l->base : l->runs.at[k].last;
    uint8_t leaves[CRYPTO_HASH];
    memcpy(leaves, k == NONE ? l->genesis : l->runs.at[k].hash, CRYPTO_HASH);
    uint32_t next = k == NONE ? 0 : k + 1;
    bool split = next < l->runs.count;
    uint64_t rest_id = 0;
    if (split) {
        uint8_t first[CRYPTO_HASH];
        memcpy(first, l->runs.at[next].hash, CRYPTO_HASH);
        if ((rest_id = branch_id(&r->crypto, r->origins.at[real].id, first)) == 0) {
            return TALLY_ENOMEM;
        }
    }
    if (r->origins.at[real].branches + 1u + split > BRANCHES_MAX) {
        return TALLY_FORKED;
    }
    struct branch_made *made = &r->branch_made;
    made->real = real;
    made->rest.index = made->branch.index = NONE;
    int rc = TALLY_OK;
    uint32_t rest = split ? branch_entry(r, rest_id, real, &rc, &made->rest) : NONE;
    uint32_t b = rc == TALLY_OK ? branch_entry(r, id, real, &rc, &made->branch) : NONE;
    if (rc == TALLY_OK && b == rest) {
        rc = TALLY_ECORRUPT; /* (two runs whose hashes make one id) */
        made->branch.index = NONE;
    }
    if (rc == TALLY_OK && split) {
        /* the rest of label's history past run k is a branch too, holding what it held */
        origin_rec *x = &r->origins.at[rest];
        x->base = after;
        x->seq = after;
        if (!move_reserve(r, label, rest, after)) {
            x->base = made->rest.base;
            x->seq = made->rest.seq;
            rc = TALLY_ENOMEM;
        } else {
            become_branch(r, rest, label, after, leaves);
            move(r, label, rest, after);
        }
    }
    if (rc != TALLY_OK) {
        entry_undo(r, &made->branch); /* the later one first: the table's last */
        entry_undo(r, &made->rest);
        return rc;
    }
    become_branch(r, b, label, after, leaves);
    *out = b;
    return TALLY_OK;
}

void branch_close(tally_replica *r, uint32_t branch) {
    struct branch_made *made = &r->branch_made;
    assert(made->branch.index == branch);
    (void)branch;
    uint32_t rest = made->rest.index;
    if (rest != NONE) {
        /* the split goes back: room was made for these when they moved out */
        uint32_t parent = r->origins.at[rest].parent;
        uint64_t base = r->origins.at[rest].base;
        bool ok = move_reserve(r, rest, parent, base);
        assert(ok && "the parent's tables held these ops");
        (void)ok;
        move(r, rest, parent, base);
    }
    entry_undo(r, &made->branch);
    entry_undo(r, &made->rest);
}

bool branch_finished_in(const tally_replica *r, uint32_t pi, uint32_t origin) {
    const transfer_rec *p = &r->transfers.at[pi];
    if (p->link != NONE && branch_in_lineage(r, r->transfers.at[p->link].origin, origin)) {
        return true;
    }
    for (uint32_t k = 0; k < r->refinished.count; k++) {
        const transfer_rec *f = &r->transfers.at[r->refinished.at[k]];
        if (f->link == pi && branch_in_lineage(r, f->origin, origin)) {
            return true;
        }
    }
    return false;
}

u128 branch_given_again(const tally_replica *r, uint32_t account, bool debit_side) {
    u128 sum = {0, 0};
    for (uint32_t k = 0; k < r->refinished.count; k++) {
        const transfer_rec *p = &r->transfers.at[r->transfers.at[r->refinished.at[k]].link];
        if ((debit_side ? p->debit : p->credit) == account) {
            sum = u128_plus(sum, u128_of(p->amount));
        }
    }
    return sum;
}

void branch_finished_again(tally_replica *r, uint32_t pi, uint32_t finish) {
    (void)pi;
    r->refinished.at[ARRAY_PUSH(r->refinished)] = finish;
    refinished_order(r);
}

/* --- damage --------------------------------------------------------------------------------- */

/* Whether origins[i] is a branch that holds ops, or runs (one emptied again holds neither). */
static bool branch_held(const origin_rec *o) {
    return origin_is_branch(o) && (o->seq > o->base || o->runs.count > 0);
}

/* How many histories leave origins[w] (branches holding something whose parent it is). */
static uint32_t partings(const tally_replica *r, uint32_t w) {
    uint32_t children = 0;
    for (uint32_t k = 0; k < r->origins.count; k++) {
        children += r->origins.at[k].parent == w && branch_held(&r->origins.at[k]);
    }
    return children;
}


static void add_times(u128 *sum, u128 v, uint32_t times) {
    for (uint32_t k = 0; k < times; k++) {
        *sum = u128_plus(*sum, v);
    }
}

/* Adds a pending's amount, times times (negated: taken away), to the sums of the accounts
 * whose bound it is reserved on. */
static void on_reserved(const tally_replica *r, const transfer_rec *t, u128 *sums, uint32_t times,
                        bool negated) {
    u128 v = negated ? u128_negated(u128_of(t->amount)) : u128_of(t->amount);
    if (r->accounts.at[t->debit].flags & TALLY_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS) {
        add_times(&sums[t->debit], v, times);
    }
    if (r->accounts.at[t->credit].flags & TALLY_ACCOUNT_CREDITS_MUST_NOT_EXCEED_DEBITS) {
        add_times(&sums[t->credit], v, times);
    }
}

/* A pending t of a forked replica's, made before its histories part: each history past a
 * parting may finish it, giving back what it reserved again (a debt of its histories, in
 * taken), and what it reserves where a history parts while still open there counts as held
 * there (in bound). at[0..count) are the replica's histories, parts[] how many leave each. */
static void pending_damage(const tally_replica *r, uint32_t t, const uint32_t *at,
                           const uint32_t *parts, uint32_t count, u128 *taken, u128 *bound) {
    const transfer_rec *p = &r->transfers.at[t];
    uint32_t finishes = p->link != NONE;
    for (uint32_t k = 0; k < r->refinished.count; k++) {
        finishes += r->transfers.at[r->refinished.at[k]].link == t;
    }
    on_reserved(r, p, taken, finishes > 1 ? finishes - 1 : 0, true);
    for (uint32_t h = 0; h < count; h++) {
        if (parts[h] > 1 && branch_in_lineage(r, p->origin, at[h]) &&
            !branch_finished_in(r, t, at[h])) {
            on_reserved(r, p, bound, parts[h] - 1, false);
        }
    }
}

uint32_t branch_damage(const tally_replica *r, uint32_t real, u128 *taken, u128 *bound) {
    uint32_t n = r->accounts.count, histories = 0;
    /* its histories here: the replica and its branches, and where they part (at most
     * BRANCHES_MAX + 1) */
    uint32_t at[BRANCHES_MAX + 1], parts[BRANCHES_MAX + 1], count = 0;
    for (uint32_t w = branch_next(r, real, NONE); w != NONE && count <= BRANCHES_MAX;
         w = branch_next(r, real, w)) {
        if (w == real || branch_held(&r->origins.at[w])) {
            at[count] = w;
            parts[count++] = partings(r, w);
        }
    }
    /* the rights of all its histories together, and of each where histories part */
    for (uint32_t i = 0; i < n; i++) {
        taken[i] = rights_get(&r->accounts.at[i].rights, real);
    }
    for (uint32_t h = 0; h < count; h++) {
        uint32_t w = at[h], k = parts[h];
        histories += k == 0;
        for (uint32_t i = 0; i < n; i++) {
            const rights *m = &r->accounts.at[i].rights;
            taken[i] = u128_plus(taken[i], w != real ? rights_get(m, w) : u128_of(0));
            if (k > 1) {
                add_times(&bound[i], branch_rights(r, m, w), k - 1);
            }
        }
    }
    /* pendings made before a parting: each history past it may finish them, giving back what
     * they reserved again; what they reserve there counts as held there */
    for (uint32_t h = 0; h < count; h++) {
        const origin_rec *o = &r->origins.at[at[h]];
        for (uint64_t seq = o->base + 1; seq <= o->seq; seq++) {
            const log_entry *j = &r->log.at[origin_position(o, seq)];
            if (j->kind == OP_TRANSFER &&
                (r->transfers.at[j->index].flags & TALLY_TRANSFER_PENDING)) {
                pending_damage(r, j->index, at, parts, count, taken, bound);
            }
        }
    }
    for (uint32_t i = 0; i < n; i++) {
        taken[i] = u128_negative(taken[i]) ? u128_negated(taken[i]) : u128_of(0);
    }
    return histories;
}

int tally_fork_damage(const tally_replica *r, size_t first, tally_damage *out, size_t cap,
                      size_t *count) {
    if (count != NULL) {
        *count = 0;
    }
    if (r == NULL || count == NULL || (out == NULL && cap > 0)) {
        return TALLY_EINVAL;
    }
    size_t n = 0;
    u128 *taken = calloc((size_t)r->accounts.count + 1, sizeof *taken);
    u128 *bound = calloc((size_t)r->accounts.count + 1, sizeof *bound);
    if (taken == NULL || bound == NULL) {
        free(taken);
        free(bound);
        return TALLY_ENOMEM;
    }
    for (uint32_t x = 0; x < r->origins.count; x++) {
        if (r->origins.at[x].branches == 0) {
            continue;
        }
        memset(bound, 0, r->accounts.count * sizeof *bound);
        uint32_t histories = branch_damage(r, x, taken, bound);
        for (uint32_t i = 0; i < r->accounts.count; i++) {
            const account_rec *a = &r->accounts.at[i];
            if (u128_is_zero(taken[i])) {
                continue;
            }
            if (n >= first && n - first < cap) {
                tally_damage *d = &out[n - first];
                memset(d, 0, sizeof *d);
                d->replica_id = r->origins.at[x].id;
                d->account_id = a->id;
                d->ledger = a->ledger;
                d->flags = a->flags;
                d->histories = histories;
                d->taken = u128_sat64(taken[i]);
                d->bound = u128_sat64(bound[i]);
            }
            n++;
        }
    }
    free(taken);
    free(bound);
    *count = n;
    return TALLY_OK;
}
