#ifndef TALLY_TESTS_SUPPORT_H
#define TALLY_TESTS_SUPPORT_H
#include "tally.h"
#endif
