/*  bench_workers.h — worker processes for the benchmark.

    Each process is this same program started as `tier_bench worker ...`: it
    holds one or more tierworker_t agents (one DEALER each), accepts every
    offer through the tierworker library and, depending on the mode, resolves
    the ticket at once or holds it forever (to keep an agent busy).

    A process reports to the benchmark on its stdout, one line per fact:
        R               every agent of this process is registered
        J <latency_ns>  a job arrived; latency since the send time the
                        submitter put in the ticket's "t=<ns>" tag
        N <count>       count jobs arrived that carry no send time
        F <text>        a fatal error; the process exits
    Job reports wait up to 10 ms to share one write (and one wake-up of the
    benchmark); R and F go at once. The benchmark reads these lines through
    bench_workers_read. Latencies are CLOCK_REALTIME differences: sender and
    worker share one machine; the receive time is read once per wake-up of
    the process, at its first stamped job.

    Ownership: bench_workers_destroy stops (SIGTERM) and reaps every process.
    Worker processes also die with the benchmark (PR_SET_PDEATHSIG).
*/
#ifndef BENCH_WORKERS_H_INCLUDED
#define BENCH_WORKERS_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <poll.h>
#include <stdint.h>
#include <zmq.h>

#define BENCH_TAG_PREFIX "t=" //  ticket tag carrying the send time in ns

typedef struct {
    const char *endpoint;     //  tierd's workers endpoint
    int procs;                //  worker processes
    int per_proc;             //  agents (sockets) per process
    int capacity;             //  capacity of each agent
    const char *level;        //  "L1", "L2" or "L3"
    bool hold;                //  keep every ticket instead of resolving it
    const char *agent_prefix; //  agent ids are <prefix>-<process>-<agent>
} bench_workers_config_t;

typedef struct _bench_workers_t bench_workers_t;

//  Starts the processes (exe is this program's path). NULL on failure.
bench_workers_t *bench_workers_new(const char *exe, const bench_workers_config_t *config);

//  SIGTERM, then reap every process. NULL-safe, nulls *self_p.
void bench_workers_destroy(bench_workers_t **self_p);

//  Reads reports until every process said R. Returns 0, or -1 on timeout or
//  when a process failed (said why on stderr).
int bench_workers_wait_ready(bench_workers_t *self, int timeout_ms);

//  Puts one poll item per process pipe into items (at most max). Returns
//  how many. Call bench_workers_read when any is readable.
size_t bench_workers_pollitems(bench_workers_t *self, zmq_pollitem_t *items, size_t max);

//  Reads whatever the processes reported so far, without blocking.
//  Returns 0, or -1 if a process failed or exited.
int bench_workers_read(bench_workers_t *self);

//  Puts one pollfd per process pipe into fds (at most max). Returns how many.
size_t bench_workers_pollfds(bench_workers_t *self, struct pollfd *fds, size_t max);

//  bench_workers_read, but only the pipes that fds (made by
//  bench_workers_pollfds, then given to poll) show readable: no system call
//  for a silent process.
int bench_workers_read_polled(bench_workers_t *self, const struct pollfd *fds, size_t count);

//  Jobs reported since the last reset.
size_t bench_workers_jobs(bench_workers_t *self);

//  Latencies (ns) reported since the last reset, in arrival order. Borrowed.
const int64_t *bench_workers_latencies(bench_workers_t *self, size_t *count_p);

//  Forgets jobs and latencies reported so far.
void bench_workers_reset(bench_workers_t *self);

//  The worker process itself: `tier_bench worker` with argv after "worker".
//  Returns the process exit code.
int bench_workers_main(int argc, char **argv);

#endif
