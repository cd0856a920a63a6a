/*
 * crdt/guard.h — the checks that stay on in every build.
 *
 * assert() states an invariant of the library's own; Release builds compile it out. GUARD is for
 * the few whose breaking would write outside an array or loop for ever: it stays on, and stops
 * the process before the write (a trap), since going on would corrupt memory that may not be
 * the library's. Each one is a library bug, never bad input: input from outside gets a
 * tally_result long before it could reach one.
 */
#ifndef TALLY_CRDT_GUARD_H
#define TALLY_CRDT_GUARD_H

/* An expression: GUARD(i < n), then the write. */
#define GUARD(cond) ((void)(__builtin_expect(!!(cond), 1) ? 0 : (__builtin_trap(), 0)))

#endif
