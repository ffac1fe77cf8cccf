/*  bench_redis.h — what the benchmark reads from Redis directly.

    The benchmark never changes Redis: it reads INFO counters before and
    after a run (to count the commands a lifecycle costs and the memory a
    queued ticket takes) and, after a run, the state of every ticket it
    submitted (to prove each one was resolved).
*/
#ifndef BENCH_REDIS_H_INCLUDED
#define BENCH_REDIS_H_INCLUDED

#include <stddef.h>
#include <stdint.h>

//  Counters from INFO; differences between two snapshots are what a run cost.
typedef struct {
    uint64_t calls;       //  every command, including those a function ran (commandstats)
    uint64_t fcalls;      //  FCALL and FCALL_RO: the router's function calls
    uint64_t reads;       //  total_reads_processed: read events, >= round trips
    uint64_t net_input;   //  total_net_input_bytes
    uint64_t used_memory; //  used_memory, bytes
    uint64_t aof_buffer;  //  mem_aof_buffer, bytes (not ticket data)
} bench_info_t;

typedef struct _bench_redis_t bench_redis_t;

//  Connects to 127.0.0.1:port. prefix is tierd's key prefix ("tier:").
//  Returns NULL (and says why on stderr) if Redis cannot be reached.
bench_redis_t *bench_redis_new(int port, const char *prefix);

//  Closes the connection and nulls *self_p. NULL-safe.
void bench_redis_destroy(bench_redis_t **self_p);

//  Fills *info from INFO commandstats, stats and memory. The INFO commands
//  themselves are left out of calls. Returns 0 or -1.
int bench_redis_info(bench_redis_t *self, bench_info_t *info);

//  How many of the tickets ids[0..count) are in state `state` (a
//  Tier__V1__TicketState value), read with pipelined HGETs. -1 on error.
long bench_redis_count_state(bench_redis_t *self, char *const *ids, size_t count, int state);

#endif
