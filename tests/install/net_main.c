#include <stdio.h>
#include <tally.h>
#include <uv.h>
static void stopped(void *ctx) { *(int *)ctx = 1; }
int main(void) {
    tally_options o = {0};
    tally_replica *r;
    int rc = tally_open(&o, &r);
    uv_loop_t loop;
    uv_loop_init(&loop);
    tally_node_options no = {.listen = "127.0.0.1:0"};
    tally_node *n = NULL;
    if (rc == TALLY_OK) {
        rc = tally_node_start(&loop, r, &no, &n);
    }
    int done = 0, port = tally_node_port(n);
    tally_node_stop(n, stopped, &done);
    uv_run(&loop, UV_RUN_DEFAULT);
    printf("%s %d %d\n", tally_result_name(rc), port > 0, done);
    uv_loop_close(&loop);
    tally_close(r);
    return rc == TALLY_OK && port > 0 && done ? 0 : 1;
}
