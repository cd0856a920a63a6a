/*
 * ledger/result.c — the names and messages of tally_result, from the one table in tally.h.
 */
#include "tally.h"

const char *tally_strerror(int result) {
    switch (result) {
#define TALLY_STRERROR_(name, message)                                                             \
    case TALLY_##name:                                                                             \
        return message;
        TALLY_RESULT_MAP(TALLY_STRERROR_)
#undef TALLY_STRERROR_
    }
    return "unknown result";
}

const char *tally_result_name(int result) {
    switch (result) {
#define TALLY_NAME_(name, message)                                                                 \
    case TALLY_##name:                                                                             \
        return #name;
        TALLY_RESULT_MAP(TALLY_NAME_)
#undef TALLY_NAME_
    }
    return "UNKNOWN";
}
