/*  bench.h — the tierd benchmark: its settings, its modes, and the load-side
    helpers they share (tickets, pipelined submits, the event count).

    tier_bench MODE [options]   (see s_usage in tier_bench.c)
      throughput  N tickets through the whole lifecycle, as fast as it goes
      paced       RATE tickets/s for SECONDS; submit -> worker latency
      fill        N tickets queued with nobody serving them; Redis bytes each
      scale       many connected agents; offer latency at two queue depths
      restart     start tierd (the command after --) over a full Redis; time
                  to the first offer
      worker      a worker process (started by the other modes)
*/
#ifndef BENCH_H_INCLUDED
#define BENCH_H_INCLUDED

#include "bench_redis.h"
#include "bench_workers.h"
#include "tierclient.h"

#include <czmq.h>
#include <stdbool.h>
#include <stdint.h>

#define BENCH_NS_PER_MS 1000000LL
#define BENCH_NS_PER_S  1000000000LL

typedef struct {
    const char *exe;     //  this program, to start worker processes
    const char *clients; //  tierd's clients endpoint
    const char *workers; //  tierd's workers endpoint
    const char *events;  //  tierd's events endpoint
    int redis_port;      //  0 = do not read Redis
    const char *prefix;  //  tierd's Redis key prefix
    int tierd_pid;       //  0 = do not read tierd's memory
    long n;              //  tickets (throughput, fill)
    int rate;            //  tickets per second (paced)
    int seconds;         //  duration (paced)
    int procs;           //  worker processes
    int capacity;        //  per agent (throughput, paced)
    int window;          //  submits in flight at most
    int ticket_bytes;    //  packed ticket size; 0 = the BullMQ baseline's ticket
    int level;           //  Tier__V1__Level of the submitted tickets
    int agents;          //  scale: connected agents
    long queued;         //  scale: the large depth; restart: tickets in Redis
    int probes;          //  scale: offers measured per depth
    char **tierd_argv;   //  restart: the tierd command line
} bench_options_t;

//  The modes; each returns the exit code.
int bench_throughput(const bench_options_t *options);
int bench_paced(const bench_options_t *options);
int bench_fill(const bench_options_t *options);
int bench_scale(const bench_options_t *options);
int bench_restart(const bench_options_t *options);

//  ---------------------------------------------------------------------------
//  Helpers (bench_util.c)

int64_t bench_now_ns(void); //  CLOCK_REALTIME, as the workers use

//  The value of p (0..1) in a sorted copy of values; 0 if count is 0.
double bench_percentile_ms(const int64_t *values, size_t count, double p);

//  A line of /proc/PID/status such as "VmHWM:" in MB, or -1.
double bench_proc_mb(int pid, const char *field);

//  One ticket, rebuilt for every submit without allocating or formatting.
typedef struct {
    Tier__V1__Ticket ticket;     //  what is sent
    Tier__V1__Customer customer; //  ticket.customer points here
    char external_id[64];        //  unique per submit: made by the benchmark
    size_t external_prefix;      //  bytes of "b<pid>-" at its start, written once
    char customer_id[32];        //  one customer per ticket
    char tag[32];                //  "t=<send time ns>"
    char *tags[1];               //  ticket.tags points here
    char *body;                  //  owned
} bench_ticket_t;

//  ticket_bytes 0: the baseline's ticket; else the body is padded so that the
//  packed ticket is about ticket_bytes long.
void bench_ticket_init(bench_ticket_t *self, int level, int ticket_bytes);
void bench_ticket_fini(bench_ticket_t *self);
//  Makes ticket number i; stamped: carry the send time in a tag.
void bench_ticket_next(bench_ticket_t *self, long i, bool stamped);

//  Pipelined submits with at most `window` unanswered. A submit answered
//  ERROR_UNAVAILABLE (Redis is down or slow, per the protocol: "retry the
//  same request") is sent again after RETRY_MS, as an integrator would; it
//  is the same ticket (same external_id), so it cannot be created twice.
typedef struct {
    tierclient_t *client;   //  owned
    bench_ticket_t *ticket; //  borrowed: rebuilt for resends
    long sent;              //  submits sent, resends included
    long answered;          //  answers of any kind
    long acked;             //  answered with success
    long failed;            //  answered with an error other than UNAVAILABLE
    long retried;           //  answered UNAVAILABLE, so sent again
    long *numbers;          //  ticket number of each request id
    size_t numbers_size;    //  entries allocated in numbers
    long *retry;            //  ticket numbers waiting to be sent again
    size_t retry_count;     //  entries used in retry
    size_t retry_size;      //  entries allocated in retry
    int64_t retry_at_ns;    //  when to send them
    char **ids;             //  ticket ids in answer order, or NULL: not kept
    long ids_size;          //  entries allocated in ids
    char *id_chunk;         //  where the ids' bytes go, one chunk after another
    size_t id_chunk_used;   //  bytes used in id_chunk
    size_t id_chunk_size;   //  bytes in id_chunk
} bench_submitter_t;

//  NULL if the client cannot be created. ticket is used to rebuild resends.
bench_submitter_t *bench_submitter_new(const char *endpoint, bool keep_ids, bench_ticket_t *ticket);
void bench_submitter_destroy(bench_submitter_t **self_p);
//  Sends ticket, made by bench_ticket_next(ticket, number, ...). 0 or -1.
int bench_submitter_send(bench_submitter_t *self, const bench_ticket_t *ticket, long number);
//  Reads every answer waiting, without blocking, and sends due resends.
//  Returns how many answers it read.
long bench_submitter_read(bench_submitter_t *self);
//  Forgets the answers counted and the ids kept so far (after a warm-up).
void bench_submitter_reset(bench_submitter_t *self);
//  Answers still owed, resends waiting included.
long bench_submitter_in_flight(const bench_submitter_t *self);
//  Submits tickets first .. first + n - 1 as fast as the router answers
//  (window in flight) and waits for every answer. Returns 0, or -1 if any
//  failed or nothing was answered for a long time.
int bench_submitter_run(bench_submitter_t *self, long first, long n, int window);

//  The event stream (topic all/), counting resolutions and missed events.
//  An event is not decoded: the three fields counted (seq, kind, ticket_id)
//  are read from its wire form, and the rest is skipped.
typedef struct {
    zsock_t *sub;           //  SUB, unlimited receive queue
    void *handle;           //  the libzmq socket of sub
    uint32_t seq_field;     //  tier.proto field numbers of Event.seq,
    uint32_t kind_field;    //  Event.kind
    uint32_t ticket_field;  //  and Event.ticket_id
    uint64_t last_seq;      //  0 before the first event
    uint64_t missed;        //  events skipped in seq (dropped by the PUB)
    uint64_t first_counted; //  resolutions of lower ticket ids are not counted
    long resolved;          //  EVENT_RESOLVED seen (of counted tickets)
    long undecodable;       //  event frames that were not an Event
    bool armed;             //  read until EAGAIN once: its ZMQ_FD wakes a poll(2)
} bench_events_t;

bench_events_t *bench_events_new(const char *endpoint);
void bench_events_destroy(bench_events_t **self_p);
//  Reads every event waiting, without blocking. Returns how many it read.
long bench_events_read(bench_events_t *self);

#endif
