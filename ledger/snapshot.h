/*
 * ledger/snapshot.h — writing and loading a replica's whole state (see snapshot.c).
 */
#ifndef TALLY_LEDGER_SNAPSHOT_H
#define TALLY_LEDGER_SNAPSHOT_H

#include <stddef.h>
#include <stdint.h>

#include "tally.h"

/* Writes r's state, as of journal position (segment, offset), to fd. TALLY_EIO, TALLY_ENOMEM. */
int snapshot_write(const tally_replica *r, int fd, uint64_t segment, uint64_t offset);
/* Loads a snapshot into r, which holds nothing yet, and returns the journal position it
 * reflects. TALLY_ECORRUPT for anything that does not check (r is then to be discarded). */
int snapshot_load(tally_replica *r, const uint8_t *buf, size_t len, uint64_t *segment,
                  uint64_t *offset);

#endif
