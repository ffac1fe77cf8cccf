/*  tier_bench.c — the tierd load generator: options, and the throughput,
    paced and fill modes. scale and restart live in bench_scale.c.

    It drives a running tierd through the client and worker libraries, as an
    integrator and its agents would; tests/bench/run.sh starts Redis, tierd
    and this program, and compares the figures with BullMQ's.

    Reading order: main, then each mode (bench_throughput, bench_paced,
    bench_fill) with the helpers above it.
*/
#include "bench.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_N          50000
#define DEFAULT_FILL_N     20000
#define DEFAULT_RATE       1000
#define DEFAULT_SECONDS    5
#define DEFAULT_PROCS      4
#define DEFAULT_CAPACITY   25
#define DEFAULT_WINDOW     1000
#define DEFAULT_FILL_BYTES 200 //  "Redis memory per queued ticket for a 200-byte ticket"
#define DEFAULT_AGENTS     1000
#define DEFAULT_QUEUED     100000
#define DEFAULT_PROBES     50
#define READY_TIMEOUT_MS   120000 //  worker processes registered
#define WARMUP_TRIES       10     //  warm-up tickets before giving up
#define WARMUP_WAIT_MS     1000   //  per warm-up ticket
#define WARMUP_PACED       20     //  stamped tickets before a paced run
#define STALL_MS           30000  //  no progress at all this long: fail
#define POLL_MS            100    //  longest sleep in a run loop
#define SETTLE_MS          1500   //  let Redis write its AOF buffer before reading memory
#define POLL_ITEMS_MAX     64     //  sockets and pipes polled together
#define PROGRESS_MS        250    //  progress line interval ($TIER_BENCH_PROGRESS)

//  ---------------------------------------------------------------------------
//  What a run loop waits on: the client, the events and the worker pipes,
//  in one poll(2) (zmq_poll would cost a non-blocking pass and a ZMQ_EVENTS
//  query per socket on top). A ZeroMQ socket is in it by its ZMQ_FD, which
//  wakes a sleeper only for what arrives after the socket was read until
//  EAGAIN. The events socket is read that far whenever it is read; the
//  client socket is read again before every wait, because the submits sent
//  since may have taken an answer's wake-up signal.

typedef struct {
    struct pollfd fds[POLL_ITEMS_MAX]; //  the poll set
    int count;                         //  entries used
} poll_set_t;

static int s_zmq_fd(void *socket)
{
    int fd = -1;
    size_t size = sizeof(fd);
    zmq_getsockopt(socket, ZMQ_FD, &fd, &size);
    return fd;
}

//  Waits up to timeout_ms for answers, events or worker reports (not at all
//  if answers came already) and reads them all. Returns 0, or -1 if a worker
//  process failed.
static int s_poll(poll_set_t *set, bench_submitter_t *submitter, bench_events_t *events,
                  bench_workers_t *workers, long timeout_ms)
{
    long got = 0;
    if (submitter)
        got += bench_submitter_read(submitter);
    if (events && !events->armed)
        got += bench_events_read(events);
    set->count = 0;
    int client = -1, stream = -1;
    if (submitter) {
        client = set->count;
        set->fds[set->count++] =
            (struct pollfd){s_zmq_fd(tierclient_socket(submitter->client)), POLLIN, 0};
    }
    if (events) {
        stream = set->count;
        set->fds[set->count++] = (struct pollfd){s_zmq_fd(events->handle), POLLIN, 0};
    }
    int pipes = set->count;
    if (workers)
        set->count += (int) bench_workers_pollfds(workers, set->fds + pipes,
                                                  (size_t) (POLL_ITEMS_MAX - pipes));
    if (poll(set->fds, (nfds_t) set->count, got ? 0 : (int) timeout_ms) <= 0)
        return 0;
    if (client >= 0 && set->fds[client].revents)
        bench_submitter_read(submitter);
    if (stream >= 0 && set->fds[stream].revents)
        bench_events_read(events);
    return workers
               ? bench_workers_read_polled(workers, set->fds + pipes, (size_t) (set->count - pipes))
               : 0;
}

static bench_workers_t *s_start_workers(const bench_options_t *options, int procs, int per_proc,
                                        int capacity, bool hold, const char *role)
{
    char prefix[64];
    snprintf(prefix, sizeof(prefix), "bench%d-%s", (int) getpid(), role);
    bench_workers_config_t config = {options->workers,
                                     procs,
                                     per_proc,
                                     capacity,
                                     options->level == 3   ? "L3"
                                     : options->level == 2 ? "L2"
                                                           : "L1",
                                     hold,
                                     prefix};
    bench_workers_t *workers = bench_workers_new(options->exe, &config);
    if (workers && bench_workers_wait_ready(workers, READY_TIMEOUT_MS))
        bench_workers_destroy(&workers);
    return workers;
}

static void s_print_rss(const bench_options_t *options, const char *mode)
{
    if (options->tierd_pid)
        printf("tierd rss %s rss_mb=%.1f peak_rss_mb=%.1f\n", mode,
               bench_proc_mb(options->tierd_pid, "VmRSS:"),
               bench_proc_mb(options->tierd_pid, "VmHWM:"));
}

//  ---------------------------------------------------------------------------
//  throughput

//  One ticket all the way through, so that the workers, the event stream
//  and every connection are up before the clock starts. ZeroMQ's SUB joins
//  late: keep sending until a resolution shows up. Then only tickets with
//  higher ids (created after every warm-up ticket) count.
static int s_warm_up(bench_submitter_t *submitter, bench_events_t *events, bench_workers_t *workers,
                     bench_ticket_t *ticket)
{
    poll_set_t set;
    for (int try = 0; try < WARMUP_TRIES && !events->resolved; try++) {
        bench_ticket_next(ticket, -1 - try, false);
        if (bench_submitter_send(submitter, ticket, -1 - try))
            return -1;
        int64_t until = bench_now_ns() + WARMUP_WAIT_MS * BENCH_NS_PER_MS;
        while (bench_now_ns() < until && !events->resolved) {
            if (s_poll(&set, submitter, events, workers, POLL_MS))
                return -1;
        }
    }
    int64_t until = bench_now_ns() + STALL_MS * BENCH_NS_PER_MS;
    while (bench_submitter_in_flight(submitter) && bench_now_ns() < until)
        s_poll(&set, submitter, events, workers, POLL_MS);
    if (!events->resolved || bench_submitter_in_flight(submitter) || submitter->failed) {
        fprintf(stderr, "tier_bench: no ticket was resolved during the warm-up: are tierd's "
                        "workers and events endpoints right?\n");
        return -1;
    }
    for (long i = 0; i < submitter->acked; i++) {
        uint64_t id = strtoull(submitter->ids[i], NULL, 10);
        if (id >= events->first_counted)
            events->first_counted = id + 1;
    }
    bench_submitter_reset(submitter);
    events->resolved = 0;
    return 0;
}

typedef struct {
    bench_submitter_t *submitter; //  pipelined client, keeps ids
    bench_events_t *events;       //  counts resolutions
    bench_workers_t *workers;     //  resolve at once
    bench_redis_t *redis;         //  may be NULL
    bench_ticket_t ticket;        //  rebuilt per submit
    long redis_resolved;          //  resolved per Redis, when events were lost
} throughput_t;

//  With $TIER_BENCH_PROGRESS set, a line on stderr every PROGRESS_MS: how
//  the run advances (to see stalls that a final average hides).
static void s_progress(throughput_t *run, int64_t start, int64_t now)
{
    static int64_t next;
    static int enabled = -1;
    if (enabled < 0)
        enabled = getenv("TIER_BENCH_PROGRESS") != NULL;
    if (!enabled || now < next)
        return;
    next = now + PROGRESS_MS * BENCH_NS_PER_MS;
    fprintf(stderr, "tier_bench: %6.3f s: sent %ld acknowledged %ld offered %zu resolved %ld\n",
            (double) (now - start) / BENCH_NS_PER_S, run->submitter->sent, run->submitter->acked,
            bench_workers_jobs(run->workers), run->events->resolved);
}

//  Whether all n tickets are resolved. From the event stream while it has
//  no gap; once events were lost (a slow subscriber loses them, by design),
//  from Redis itself, checked at most every POLL_MS once every submit is in.
static bool s_all_resolved(throughput_t *run, long n, int64_t *checked_ns)
{
    if (!run->events->missed)
        return run->events->resolved >= n;
    if (!run->redis || run->submitter->acked < n || bench_now_ns() < *checked_ns)
        return false;
    if (*checked_ns == 0)
        fprintf(stderr, "tier_bench: %llu events missed; timing the end from Redis instead\n",
                (unsigned long long) run->events->missed);
    *checked_ns = bench_now_ns() + POLL_MS * BENCH_NS_PER_MS;
    run->redis_resolved = bench_redis_count_state(run->redis, run->submitter->ids, (size_t) n,
                                                  TIER__V1__TICKET_STATE__STATE_RESOLVED);
    return run->redis_resolved == n;
}

//  Submits n tickets keeping `window` in flight until all n are resolved.
//  Returns 0, or -1 on a stall or a refusal. The clock is read once a turn.
static int s_throughput_loop(throughput_t *run, const bench_options_t *options)
{
    long n = options->n, next = 0, progress = 0;
    int64_t progress_ns = bench_now_ns(), start = progress_ns, checked_ns = 0;
    poll_set_t set;
    while (!s_all_resolved(run, n, &checked_ns)) {
        while (next < n && bench_submitter_in_flight(run->submitter) < options->window) {
            bench_ticket_next(&run->ticket, next, false);
            if (bench_submitter_send(run->submitter, &run->ticket, next++))
                return -1;
        }
        if (s_poll(&set, run->submitter, run->events, run->workers, POLL_MS) ||
            run->submitter->failed)
            return -1;
        int64_t now = bench_now_ns();
        s_progress(run, start, now);
        long now_progress = run->submitter->acked + run->events->resolved + run->redis_resolved;
        if (now_progress != progress) {
            progress = now_progress;
            progress_ns = now;
        } else if (now - progress_ns > STALL_MS * BENCH_NS_PER_MS) {
            fprintf(stderr, "tier_bench: stalled: %ld acknowledged, %ld resolved of %ld\n",
                    run->submitter->acked, run->events->resolved, n);
            return -1;
        }
    }
    return 0;
}

static void s_print_redis_costs(const bench_info_t *before, const bench_info_t *after, long n)
{
    printf("tierd redis commands_per_lifecycle=%.2f fcalls_per_lifecycle=%.2f "
           "reads_per_lifecycle=%.3f net_in_bytes_per_lifecycle=%.0f\n",
           (double) (after->calls - before->calls) / n,
           (double) (after->fcalls - before->fcalls) / n,
           (double) (after->reads - before->reads) / n,
           (double) (after->net_input - before->net_input) / n);
}

//  Every submitted ticket must be RESOLVED in Redis, whatever the events said.
static int s_check_resolved(throughput_t *run, long n)
{
    long resolved = run->redis
                        ? bench_redis_count_state(run->redis, run->submitter->ids, (size_t) n,
                                                  TIER__V1__TICKET_STATE__STATE_RESOLVED)
                        : run->events->resolved;
    printf("tierd check submitted=%ld acknowledged=%ld resolved=%ld events_missed=%llu "
           "unavailable_retries=%ld\n",
           n, run->submitter->acked, resolved, (unsigned long long) run->events->missed,
           run->submitter->retried);
    return resolved == n && run->submitter->acked == n ? 0 : -1;
}

static int s_throughput_run(throughput_t *run, const bench_options_t *options)
{
    if (s_warm_up(run->submitter, run->events, run->workers, &run->ticket))
        return -1;
    bench_info_t before = {0}, after = {0};
    if (run->redis && bench_redis_info(run->redis, &before))
        return -1;
    int64_t start = bench_now_ns();
    int rc = s_throughput_loop(run, options);
    int64_t end = bench_now_ns();
    if (rc)
        return -1;
    if (run->redis && bench_redis_info(run->redis, &after))
        return -1;
    double seconds = (double) (end - start) / BENCH_NS_PER_S;
    printf("tierd throughput n=%ld lifecycles_per_s=%.0f seconds=%.3f\n", options->n,
           options->n / seconds, seconds);
    if (run->redis)
        s_print_redis_costs(&before, &after, options->n);
    s_print_rss(options, "throughput");
    return s_check_resolved(run, options->n);
}

int bench_throughput(const bench_options_t *options)
{
    throughput_t run = {0};
    bench_ticket_init(&run.ticket, options->level, options->ticket_bytes);
    run.workers = s_start_workers(options, options->procs, 1, options->capacity, false, "w");
    run.events = run.workers ? bench_events_new(options->events) : NULL;
    run.submitter = run.events ? bench_submitter_new(options->clients, true, &run.ticket) : NULL;
    if (run.submitter && options->redis_port)
        run.redis = bench_redis_new(options->redis_port, options->prefix);
    int rc = 1;
    if (run.submitter && (run.redis || !options->redis_port))
        rc = s_throughput_run(&run, options) ? 1 : 0;
    bench_redis_destroy(&run.redis);
    bench_submitter_destroy(&run.submitter);
    bench_events_destroy(&run.events);
    bench_workers_destroy(&run.workers);
    bench_ticket_fini(&run.ticket);
    return rc;
}

//  ---------------------------------------------------------------------------
//  paced

//  Waits until `count` jobs were reported since the last reset.
static int s_wait_jobs(bench_submitter_t *submitter, bench_workers_t *workers, size_t count,
                       int timeout_ms)
{
    poll_set_t set;
    int64_t deadline = bench_now_ns() + (int64_t) timeout_ms * BENCH_NS_PER_MS;
    while (bench_workers_jobs(workers) < count) {
        if (bench_now_ns() > deadline) {
            fprintf(stderr, "tier_bench: only %zu of %zu tickets reached a worker within %d ms\n",
                    bench_workers_jobs(workers), count, timeout_ms);
            return -1;
        }
        if (s_poll(&set, submitter, NULL, workers, POLL_MS) || submitter->failed)
            return -1;
    }
    return 0;
}

//  Sleeps until `due` (ns), answering replies and reports meanwhile.
static int s_sleep_until(int64_t due, bench_submitter_t *submitter, bench_workers_t *workers)
{
    poll_set_t set;
    int64_t left;
    while ((left = due - bench_now_ns()) > BENCH_NS_PER_MS) {
        if (s_poll(&set, submitter, NULL, workers, (long) (left / BENCH_NS_PER_MS)) ||
            submitter->failed)
            return -1;
    }
    if (left > 0) {
        struct timespec pause = {0, (long) left};
        nanosleep(&pause, NULL);
    }
    return 0;
}

//  $TIER_BENCH_DUMP names a file to get every latency (ns, arrival order).
static void s_dump(const int64_t *latencies, size_t count)
{
    const char *path = getenv("TIER_BENCH_DUMP");
    FILE *file = path && *path ? fopen(path, "w") : NULL;
    for (size_t i = 0; file && i < count; i++)
        fprintf(file, "%lld\n", (long long) latencies[i]);
    if (file)
        fclose(file);
}

static int s_paced_run(bench_submitter_t *submitter, bench_workers_t *workers,
                       bench_ticket_t *ticket, const bench_options_t *options)
{
    for (long i = 0; i < WARMUP_PACED; i++) {
        bench_ticket_next(ticket, -1 - i, true);
        if (bench_submitter_send(submitter, ticket, -1 - i))
            return -1;
    }
    if (s_wait_jobs(submitter, workers, WARMUP_PACED, STALL_MS))
        return -1;
    bench_workers_reset(workers);
    long total = (long) options->rate * options->seconds;
    int64_t start = bench_now_ns(), interval = BENCH_NS_PER_S / options->rate;
    for (long i = 0; i < total; i++) {
        if (s_sleep_until(start + i * interval, submitter, workers))
            return -1;
        bench_ticket_next(ticket, i, true);
        if (bench_submitter_send(submitter, ticket, i))
            return -1;
    }
    if (s_wait_jobs(submitter, workers, (size_t) total, STALL_MS))
        return -1;
    size_t count;
    const int64_t *latencies = bench_workers_latencies(workers, &count);
    s_dump(latencies, count);
    printf("tierd paced rate=%d p50_ms=%.3f p99_ms=%.3f p999_ms=%.3f max_ms=%.3f n=%zu "
           "unavailable_retries=%ld\n",
           options->rate, bench_percentile_ms(latencies, count, 0.50),
           bench_percentile_ms(latencies, count, 0.99),
           bench_percentile_ms(latencies, count, 0.999), bench_percentile_ms(latencies, count, 1.0),
           count, submitter->retried);
    return 0;
}

int bench_paced(const bench_options_t *options)
{
    if (options->rate <= 0 || options->seconds <= 0) {
        fprintf(stderr, "tier_bench: paced needs --rate and --seconds above 0\n");
        return 2;
    }
    bench_ticket_t ticket;
    bench_ticket_init(&ticket, options->level, options->ticket_bytes);
    bench_workers_t *workers =
        s_start_workers(options, options->procs, 1, options->capacity, false, "p");
    bench_submitter_t *submitter =
        workers ? bench_submitter_new(options->clients, false, &ticket) : NULL;
    int rc = submitter && s_paced_run(submitter, workers, &ticket, options) == 0 ? 0 : 1;
    if (rc == 0)
        s_print_rss(options, "paced");
    bench_submitter_destroy(&submitter);
    bench_workers_destroy(&workers);
    bench_ticket_fini(&ticket);
    return rc;
}

//  ---------------------------------------------------------------------------
//  fill

static void s_sleep_ms(int ms)
{
    struct timespec pause = {ms / 1000, (long) (ms % 1000) * BENCH_NS_PER_MS};
    while (nanosleep(&pause, &pause) == -1 && errno == EINTR)
        ;
}

static int s_fill_run(bench_submitter_t *submitter, bench_redis_t *redis, bench_ticket_t *ticket,
                      const bench_options_t *options)
{
    bench_info_t before = {0}, after = {0};
    if (redis && bench_redis_info(redis, &before))
        return -1;
    int64_t start = bench_now_ns();
    if (bench_submitter_run(submitter, 0, options->n, options->window))
        return -1;
    double seconds = (double) (bench_now_ns() - start) / BENCH_NS_PER_S;
    printf("tierd submit n=%ld acks_per_s=%.0f\n", options->n, options->n / seconds);
    if (!redis)
        return 0;
    s_sleep_ms(SETTLE_MS);
    if (bench_redis_info(redis, &after))
        return -1;
    double bytes = (double) ((int64_t) (after.used_memory - after.aof_buffer) -
                             (int64_t) (before.used_memory - before.aof_buffer));
    printf("tierd memory n=%ld ticket_bytes=%zu redis_bytes_per_ticket=%.0f\n", options->n,
           tier__v1__ticket__get_packed_size(&ticket->ticket), bytes / options->n);
    return 0;
}

int bench_fill(const bench_options_t *options)
{
    bench_ticket_t ticket;
    bench_ticket_init(&ticket, options->level, options->ticket_bytes);
    bench_submitter_t *submitter = bench_submitter_new(options->clients, false, &ticket);
    bench_redis_t *redis = submitter && options->redis_port
                               ? bench_redis_new(options->redis_port, options->prefix)
                               : NULL;
    int rc = 1;
    if (submitter && (redis || !options->redis_port))
        rc = s_fill_run(submitter, redis, &ticket, options) ? 1 : 0;
    if (rc == 0)
        s_print_rss(options, "fill");
    bench_redis_destroy(&redis);
    bench_submitter_destroy(&submitter);
    bench_ticket_fini(&ticket);
    return rc;
}

//  ---------------------------------------------------------------------------
//  Options and main

static void s_usage(FILE *out)
{
    fprintf(out,
            "usage: tier_bench MODE [options] [-- tierd command (restart)]\n"
            "modes: throughput, paced, fill, scale, restart (see tests/bench/run.sh)\n"
            "  --clients EP --workers EP --events EP   tierd's endpoints (tierd's defaults)\n"
            "  --redis-port P     read INFO and ticket states from this Redis (default: don't)\n"
            "  --prefix P         tierd's key prefix (tier:)\n"
            "  --tierd-pid PID    report tierd's memory from /proc/PID/status\n"
            "  -n N               tickets (throughput %d, fill %d)\n"
            "  --rate R --seconds S   paced load (%d/s for %d s)\n"
            "  --procs W --capacity C   worker processes and capacity per agent (%d, %d)\n"
            "  --window K         submits in flight (%d)\n"
            "  --ticket-bytes B   packed ticket size; 0 = the BullMQ baseline's ticket\n"
            "                     (throughput, paced: 0; fill, scale: %d)\n"
            "  --level L1|L2|L3   level of the submitted tickets (L1)\n"
            "  --agents A --queued Q --probes K   scale: agents, large depth, offers timed\n"
            "                     (%d, %d, %d); restart: --queued = tickets in Redis\n",
            DEFAULT_N, DEFAULT_FILL_N, DEFAULT_RATE, DEFAULT_SECONDS, DEFAULT_PROCS,
            DEFAULT_CAPACITY, DEFAULT_WINDOW, DEFAULT_FILL_BYTES, DEFAULT_AGENTS, DEFAULT_QUEUED,
            DEFAULT_PROBES);
}

static long s_number(const char *text, long min, const char *what)
{
    char *end;
    errno = 0;
    long value = strtol(text, &end, 10);
    if (errno || *end || value < min || value > INT_MAX) {
        fprintf(stderr, "tier_bench: %s \"%s\" is not a number >= %ld\n", what, text, min);
        exit(2);
    }
    return value;
}

static void s_defaults(bench_options_t *o, const char *mode)
{
    bool fill = strcmp(mode, "fill") == 0, scale = strcmp(mode, "scale") == 0;
    *o = (bench_options_t){.clients = "tcp://127.0.0.1:5560",
                           .workers = "tcp://127.0.0.1:5561",
                           .events = "tcp://127.0.0.1:5562",
                           .prefix = "tier:",
                           .n = fill ? DEFAULT_FILL_N : DEFAULT_N,
                           .rate = DEFAULT_RATE,
                           .seconds = DEFAULT_SECONDS,
                           .procs = DEFAULT_PROCS,
                           .capacity = DEFAULT_CAPACITY,
                           .window = DEFAULT_WINDOW,
                           .ticket_bytes = fill || scale ? DEFAULT_FILL_BYTES : 0,
                           .level = TIER__V1__LEVEL__LEVEL_L1,
                           .agents = DEFAULT_AGENTS,
                           .queued = DEFAULT_QUEUED,
                           .probes = DEFAULT_PROBES};
}

static void s_option(bench_options_t *o, int opt, const char *arg)
{
    switch (opt) {
    case 'c':
        o->clients = arg;
        break;
    case 'w':
        o->workers = arg;
        break;
    case 'e':
        o->events = arg;
        break;
    case 'r':
        o->redis_port = (int) s_number(arg, 1, "--redis-port");
        break;
    case 'x':
        o->prefix = arg;
        break;
    case 'p':
        o->tierd_pid = (int) s_number(arg, 1, "--tierd-pid");
        break;
    case 'n':
        o->n = s_number(arg, 1, "-n");
        break;
    case 'R':
        o->rate = (int) s_number(arg, 1, "--rate");
        break;
    case 'S':
        o->seconds = (int) s_number(arg, 1, "--seconds");
        break;
    case 'W':
        o->procs = (int) s_number(arg, 1, "--procs");
        break;
    case 'C':
        o->capacity = (int) s_number(arg, 1, "--capacity");
        break;
    case 'K':
        o->window = (int) s_number(arg, 1, "--window");
        break;
    case 'B':
        o->ticket_bytes = (int) s_number(arg, 0, "--ticket-bytes");
        break;
    case 'L':
        o->level = arg[0] == 'L' ? (int) s_number(arg + 1, 1, "--level") : 0;
        break;
    case 'A':
        o->agents = (int) s_number(arg, 1, "--agents");
        break;
    case 'Q':
        o->queued = s_number(arg, 1, "--queued");
        break;
    case 'P':
        o->probes = (int) s_number(arg, 1, "--probes");
        break;
    default:
        s_usage(stderr);
        exit(2);
    }
}

static void s_parse(bench_options_t *o, int argc, char **argv)
{
    static const struct option options[] = {{"clients", required_argument, 0, 'c'},
                                            {"workers", required_argument, 0, 'w'},
                                            {"events", required_argument, 0, 'e'},
                                            {"redis-port", required_argument, 0, 'r'},
                                            {"prefix", required_argument, 0, 'x'},
                                            {"tierd-pid", required_argument, 0, 'p'},
                                            {"rate", required_argument, 0, 'R'},
                                            {"seconds", required_argument, 0, 'S'},
                                            {"procs", required_argument, 0, 'W'},
                                            {"capacity", required_argument, 0, 'C'},
                                            {"window", required_argument, 0, 'K'},
                                            {"ticket-bytes", required_argument, 0, 'B'},
                                            {"level", required_argument, 0, 'L'},
                                            {"agents", required_argument, 0, 'A'},
                                            {"queued", required_argument, 0, 'Q'},
                                            {"probes", required_argument, 0, 'P'},
                                            {0, 0, 0, 0}};
    int opt;
    optind = 2; //  after the mode
    while ((opt = getopt_long(argc, argv, "n:", options, NULL)) != -1)
        s_option(o, opt, optarg);
    if (o->level < TIER__V1__LEVEL__LEVEL_L1 || o->level > TIER__V1__LEVEL__LEVEL_L3) {
        fprintf(stderr, "tier_bench: --level is L1, L2 or L3\n");
        exit(2);
    }
    o->tierd_argv = optind < argc ? argv + optind : NULL;
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0) {
        s_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "worker") == 0)
        return bench_workers_main(argc - 1, argv + 1);
    bench_options_t options;
    s_defaults(&options, argv[1]);
    s_parse(&options, argc, argv);
    char exe[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    exe[len > 0 ? len : 0] = 0;
    options.exe = exe;
    zsys_handler_set(NULL); //  SIGINT/SIGTERM end the program at once
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *mode = argv[1];
    if (strcmp(mode, "throughput") == 0)
        return bench_throughput(&options);
    if (strcmp(mode, "paced") == 0)
        return bench_paced(&options);
    if (strcmp(mode, "fill") == 0)
        return bench_fill(&options);
    if (strcmp(mode, "scale") == 0)
        return bench_scale(&options);
    if (strcmp(mode, "restart") == 0)
        return bench_restart(&options);
    fprintf(stderr, "tier_bench: unknown mode \"%s\"\n", mode);
    s_usage(stderr);
    return 2;
}
