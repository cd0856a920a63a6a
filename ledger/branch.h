/*
 * ledger/branch.h — past a fork: each history of a forked replica kept as a branch, so that
 * every replica converges on all of them (docs/design.md, "Past a fork").
 *
 * A replica X whose key signed two histories has, here, a tree of runs: each run chains to the
 * one before it. Where two runs chain to one run, the histories part: from there on each is a
 * **branch**, an entry of the origin table of its own, with an id made from X's id and the hash
 * of the branch's first run (so every replica names it alike), holding X's ops base + 1 .. seq
 * as that history has them. The ops before the parting stay X's (or the enclosing branch's).
 * Ops keep X's id on the wire and in the journal; only this replica's tables name the branch.
 *
 * Invariants (checked by replica_check):
 *   1. A branch's parent is X or another branch of X, and the branch leaves it after one of
 *      the parent's runs (base is that run's last seq; genesis its statement's hash). Two
 *      branches, or a branch and the rest of its parent, that leave one run start with
 *      different runs. A branch holds at least one op, or none of its entry is shown.
 *   2. Which history an op is in depends only on the runs here: a run's ops are X's as long as
 *      no other run chains to the run before it; from the first one that does, each history
 *      past it is a branch. Finding one moves the ops past the parting from the parent into a
 *      branch (branch_open), with their rights, as if they had been applied there.
 *   3. The rights a branch's op may spend are its history's: the sum of its own entry and its
 *      parents', up to X's (branch_rights). A branch's own entry may be below zero (modulo
 *      2^128, crdt/u128.h): what it spent of the rights X held where it left.
 */
#ifndef TALLY_LEDGER_BRANCH_H
#define TALLY_LEDGER_BRANCH_H

#include "ledger/replica.h"

/* The branches of one replica's history a replica keeps: a replica that signs more
 * histories than this has its further ones refused (TALLY_FORKED), and the damage each
 * history can do is bounded all the same (docs/design.md). */
#define BRANCHES_MAX 64

/* The id of the branch of origin whose first run's statement hashes to first: SHA-256 of a
 * tag, the origin and that hash, its first 8 bytes (never 0). 0 when out of memory. */
uint64_t branch_id(crypto_ctx *c, uint64_t origin, const uint8_t first[CRYPTO_HASH]);

/* The histories of origins[real], one after another: real itself (i NONE), then each of its
 * branches here (i the one before), then NONE. A replica with no branches is its whole
 * history. */
uint32_t branch_next(const tally_replica *r, uint32_t real, uint32_t i);

/* The run of origins[real]'s, in any of its histories here, that ends at last and whose
 * statement hashes to hash: run *k of origins[*holder]. False when there is none. */
bool branch_find_run(const tally_replica *r, uint32_t real, uint64_t last,
                     const uint8_t hash[CRYPTO_HASH], uint32_t *holder, uint32_t *k);

/* Whether the ops of origins[ancestor] come before those of origins[label] in label's
 * history: it is label, or one of the histories label continues. */
bool branch_in_lineage(const tally_replica *r, uint32_t ancestor, uint32_t label);

/* The rights of a bounded account origins[holder] may spend: its own, plus for a branch
 * those of each history it continues (invariant 3). Below zero only after a fork did damage
 * the branch could not cover (its own ops never do it: they are checked against this). */
u128 branch_rights(const tally_replica *r, const rights *m, uint32_t holder);

/* Makes origins[label]'s run k the end of its history: the ops and runs after it, and the
 * branches that leave those, go to a new branch of their own. Then adds an empty branch that
 * leaves the same run, with the given id (an entry of that id that holds no ops is taken
 * over); *out is its index. TALLY_FORKED when origins[label]'s replica has BRANCHES_MAX
 * branches here; TALLY_ENOMEM, TALLY_ETOOBIG (the origin table is full); TALLY_ECORRUPT when
 * an entry of that id holds ops. Nothing changes on error. */
int branch_open(tally_replica *r, uint32_t label, uint32_t k, uint64_t id, uint32_t *out);

/* Takes back the branch branch_open made last, none of whose ops applied, and the split it
 * made: the ops it moved go back to where they were. */
void branch_close(tally_replica *r, uint32_t branch);

/* Whether a finish of pending record pi is in origins[origin]'s history (it, or one it
 * continues): a POST or VOID there may not finish pi again, and pi was not open where the
 * history parted after it. */
bool branch_finished_in(const tally_replica *r, uint32_t pi, uint32_t origin);

/* What second finishes of pendings (each history of a forked replica may finish one made
 * before they parted) gave back on one side of an account: the pendings' amounts, which left
 * the pending sums with the first finish (docs/design.md, "Past a fork"). The spendable
 * amount counts it. */
u128 branch_given_again(const tally_replica *r, uint32_t account, bool debit_side);

/* Notes a second finish of a pending (by another branch of its origin's history) after it
 * was applied: the pending's link stays with the finish of the smaller dot. */
void branch_finished_again(tally_replica *r, uint32_t pi, uint32_t finish);

/* What the histories of origins[real] (a replica with branches) took on each account beyond
 * what it held, and the bound on that (docs/design.md, "Past a fork"), into taken[] and
 * bound[] (r->accounts.count each; bound zeroed by the caller): taken is the part below zero
 * of the replica's rights, all histories together, less what pendings gave back more than
 * once; bound sums, over each place the histories part, what the history held there (its
 * rights, branch_rights, and what its open pendings reserve) times the histories past it less
 * one. taken <= bound (the proof: design.md). Returns how many histories it has here. */
uint32_t branch_damage(const tally_replica *r, uint32_t real, u128 *taken, u128 *bound);

#endif
