/*
 * fuzz_common.h — what the libFuzzer targets share: a seeded replica to aim at, and a scratch
 * directory for the targets that fuzz files.
 */
#ifndef TALLY_FUZZ_COMMON_H
#define TALLY_FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tally.h"

/* The harness's own expectations: a failed one is a finding, so it aborts (as libFuzzer wants). */
#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz: check failed at %s:%d: %s\n", __FILE__, __LINE__, #cond);      \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* A replica with accounts of every kind, posted and pending transfers, a post, a void, a grant,
 * and ops from three origins (ids 1, 2, 3), all in memory. The caller closes it. */
tally_replica *fuzz_seeded_replica(void);
/* A new in-memory replica with the given id (abort on failure). */
tally_replica *fuzz_replica(uint64_t id);
/* Everything `from` has that `to` lacks (abort on failure). */
void fuzz_sync(tally_replica *from, tally_replica *to);
/* A fresh scratch directory for this process (created once), emptied. */
const char *fuzz_scratch_dir(void);
/* Writes a whole file (abort on failure). */
void fuzz_write_file(const char *dir, const char *name, const uint8_t *data, size_t len);

#endif
