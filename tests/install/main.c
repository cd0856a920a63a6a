#include <stdio.h>
#include <tally.h>
int main(void) { tally_options o = {0}; tally_replica *r; int rc = tally_open(&o, &r); printf("%s %d\n", tally_result_name(rc), tally_replica_id(r) != 0); tally_close(r); return rc; }
