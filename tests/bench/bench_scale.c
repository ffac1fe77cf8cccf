/*  bench_scale.c — the scale and restart modes of tier_bench.

    scale: `agents` agents connected (in `procs` processes, capacity 1, each
    holding one ticket forever, so every agent is busy as in a full contact
    center), then a probe agent measures how long a freed slot takes to get
    its next offer (resolve sent -> offer received), first with about 100
    tickets queued, then with `queued`. Same cost at both depths = dispatch
    does not depend on the queue length. tierd's memory is read with the
    large queue and every agent connected.

    restart: Redis already holds `queued` tickets (run.sh fills it); start
    tierd (the command after --) and time, from the exec, the moment its
    workers port accepts connections, the probe's registration, and the
    probe's first offer.
*/
#include "bench.h"
#include "tierworker.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define SMALL_DEPTH      100    //  "with 100 tickets queued"
#define READY_TIMEOUT_MS 120000 //  1,000 agents registered
#define OFFER_TIMEOUT_MS 10000  //  a probe waits this long for an offer
#define DEPTH_TIMEOUT_MS 60000  //  the busy agents took their tickets
#define RESTART_WAIT_MS  60000  //  tierd up and offering after a restart
#define POLL_MS          100
#define STOP_WAIT_MS     10000 //  tierd stopping after SIGTERM
#define PROBE_POLL_MS    1     //  granularity of the restart milestones
#define PROCS_MAX        64    //  worker process pipes polled at once

static int64_t s_ms_since(int64_t start_ns)
{
    return (bench_now_ns() - start_ns) / BENCH_NS_PER_MS;
}

static double s_ms_between(int64_t start_ns, int64_t end_ns)
{
    return (double) (end_ns - start_ns) / BENCH_NS_PER_MS;
}

static tierworker_t *s_probe_new(const bench_options_t *options, const char *name)
{
    char agent[64];
    snprintf(agent, sizeof(agent), "bench%d-%s", (int) getpid(), name);
    tierworker_config_t config = {.agent_id = agent,
                                  .level = (Tier__V1__Level) options->level,
                                  .capacity = 1,
                                  .bot = true,
                                  .log_prefix = "tier_bench probe"};
    return tierworker_new(options->workers, &config);
}

//  The next offer to the probe, or NULL after timeout_ms.
static tierworker_job_t *s_next_offer(tierworker_t *probe, int timeout_ms)
{
    tierworker_job_t *job = NULL;
    int64_t deadline = bench_now_ns() + (int64_t) timeout_ms * BENCH_NS_PER_MS;
    while (!job && bench_now_ns() < deadline) {
        int rc = tierworker_poll(probe, POLL_MS, &job);
        if (rc == TIERWORKER_FATAL)
            return NULL;
    }
    return job;
}

//  ---------------------------------------------------------------------------
//  scale

typedef struct {
    bench_workers_t *busy;        //  the agents that keep one ticket each
    bench_submitter_t *submitter; //  fills the queue
    tierworker_t *probe;          //  measures offers
    tierworker_job_t *held;       //  the probe's current ticket, or NULL
    bench_ticket_t ticket;        //  rebuilt per submit
    long submitted;               //  tickets so far (numbers the next one)
} scale_t;

static long s_depth(scale_t *run, int level)
{
    Tier__V1__QueuesReply *reply = tierclient_queues(run->submitter->client);
    long depth = -1;
    for (size_t i = 0; reply && i < reply->n_queues; i++)
        if ((int) reply->queues[i]->level == level && !*reply->queues[i]->department)
            depth = reply->queues[i]->depth;
    if (reply)
        tier__v1__queues_reply__free_unpacked(reply, NULL);
    return depth;
}

static int s_fill(scale_t *run, long n, int window)
{
    int rc = bench_submitter_run(run->submitter, run->submitted, n, window);
    run->submitted += n;
    return rc;
}

//  Every busy agent took its ticket and the queue is `depth` deep.
static int s_wait_settled(scale_t *run, const bench_options_t *options, long depth)
{
    int64_t start = bench_now_ns();
    long now_depth = -1;
    while (s_ms_since(start) < DEPTH_TIMEOUT_MS) {
        zmq_pollitem_t items[PROCS_MAX];
        size_t count = bench_workers_pollitems(run->busy, items, PROCS_MAX);
        zmq_poll(items, (int) count, POLL_MS);
        if (bench_workers_read(run->busy))
            return -1;
        if (bench_workers_jobs(run->busy) < (size_t) options->agents)
            continue;
        if ((now_depth = s_depth(run, options->level)) == depth)
            return 0;
    }
    fprintf(stderr, "tier_bench: busy agents got %zu of %d tickets, queue depth %ld not %ld\n",
            bench_workers_jobs(run->busy), options->agents, now_depth, depth);
    return -1;
}

//  count offers to the probe: each timed from resolving the ticket it holds
//  (freeing its only slot) to the next offer. Latencies go to ns[].
static int s_probe_offers(scale_t *run, int count, int64_t *ns)
{
    for (int i = 0; i < count; i++) {
        int64_t start = bench_now_ns();
        if (run->held)
            tierworker_resolve(run->probe, run->held, "probe");
        run->held = s_next_offer(run->probe, OFFER_TIMEOUT_MS);
        if (!run->held) {
            fprintf(stderr, "tier_bench: probe got no offer within %d ms\n", OFFER_TIMEOUT_MS);
            return -1;
        }
        ns[i] = bench_now_ns() - start;
    }
    return 0;
}

static void s_print_offers(const bench_options_t *options, long depth, const int64_t *ns, int count)
{
    size_t n = (size_t) count;
    printf("tierd scale agents=%d queued=%ld offer_min_ms=%.3f offer_p50_ms=%.3f "
           "offer_p90_ms=%.3f offer_max_ms=%.3f probes=%d\n",
           options->agents + 1, depth, bench_percentile_ms(ns, n, 0),
           bench_percentile_ms(ns, n, 0.5), bench_percentile_ms(ns, n, 0.9),
           bench_percentile_ms(ns, n, 1), count);
}

static int s_scale_run(scale_t *run, const bench_options_t *options)
{
    int probes = options->probes;
    int64_t *ns = calloc((size_t) probes + 1, sizeof(int64_t));
    int rc = -1;
    //  One ticket per busy agent, SMALL_DEPTH to measure at and one per probe.
    long small = SMALL_DEPTH + probes;
    if (s_fill(run, options->agents + small, options->window) ||
        s_wait_settled(run, options, small))
        goto done;
    int64_t start = bench_now_ns();
    run->probe = s_probe_new(options, "probe");
    run->held = run->probe ? s_next_offer(run->probe, OFFER_TIMEOUT_MS) : NULL;
    if (!run->held)
        goto done;
    printf("tierd scale probe register_to_first_offer_ms=%.3f\n",
           s_ms_between(start, bench_now_ns()));
    if (s_probe_offers(run, probes, ns))
        goto done;
    s_print_offers(options, SMALL_DEPTH, ns, probes);
    long large = options->queued - SMALL_DEPTH + probes;
    if (s_fill(run, large, options->window))
        goto done;
    if (options->tierd_pid)
        printf("tierd scale agents=%d queued=%ld rss_mb=%.1f peak_rss_mb=%.1f\n",
               options->agents + 1, options->queued + probes,
               bench_proc_mb(options->tierd_pid, "VmRSS:"),
               bench_proc_mb(options->tierd_pid, "VmHWM:"));
    if (s_probe_offers(run, probes, ns))
        goto done;
    s_print_offers(options, options->queued, ns, probes);
    rc = 0;
done:
    free(ns);
    return rc;
}

int bench_scale(const bench_options_t *options)
{
    if (options->agents % options->procs || options->queued <= SMALL_DEPTH) {
        fprintf(stderr,
                "tier_bench: scale needs --agents divisible by --procs and --queued "
                "above %d\n",
                SMALL_DEPTH);
        return 2;
    }
    scale_t run = {0};
    bench_ticket_init(&run.ticket, options->level, options->ticket_bytes);
    char prefix[64];
    snprintf(prefix, sizeof(prefix), "bench%d-busy", (int) getpid());
    const char *level = options->level == 3 ? "L3" : options->level == 2 ? "L2" : "L1";
    bench_workers_config_t config = {
        options->workers, options->procs, options->agents / options->procs, 1, level, true, prefix};
    run.busy = bench_workers_new(options->exe, &config);
    if (run.busy && bench_workers_wait_ready(run.busy, READY_TIMEOUT_MS))
        bench_workers_destroy(&run.busy);
    run.submitter = run.busy ? bench_submitter_new(options->clients, false, &run.ticket) : NULL;
    int rc = run.submitter && s_scale_run(&run, options) == 0 ? 0 : 1;
    tierworker_destroy(&run.probe);
    bench_submitter_destroy(&run.submitter);
    bench_workers_destroy(&run.busy);
    bench_ticket_fini(&run.ticket);
    return rc;
}

//  ---------------------------------------------------------------------------
//  restart

//  True once something accepts TCP connections on the endpoint's port.
static bool s_accepting(const char *endpoint)
{
    const char *colon = strrchr(endpoint, ':');
    if (!colon)
        return false;
    struct sockaddr_in addr = {.sin_family = AF_INET,
                               .sin_port = htons((uint16_t) atoi(colon + 1))};
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool up = fd >= 0 && connect(fd, (struct sockaddr *) &addr, sizeof(addr)) == 0;
    if (fd >= 0)
        close(fd);
    return up;
}

static void s_stop(pid_t pid)
{
    kill(pid, SIGTERM);
    for (int waited = 0; waited < STOP_WAIT_MS; waited += POLL_MS) {
        if (waitpid(pid, NULL, WNOHANG) != 0)
            return;
        usleep(POLL_MS * 1000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

//  From tierd's exec to its first offer: the milestones, in ms.
typedef struct {
    double accepting;  //  workers port open
    double registered; //  probe's Register acknowledged
    double offered;    //  probe's first offer
} milestones_t;

static int s_time_restart(const bench_options_t *options, int64_t start, milestones_t *m)
{
    while (!s_accepting(options->workers)) {
        if (s_ms_since(start) > RESTART_WAIT_MS)
            return -1;
        usleep(PROBE_POLL_MS * 1000);
    }
    m->accepting = s_ms_between(start, bench_now_ns());
    tierworker_t *probe = s_probe_new(options, "restart");
    tierworker_job_t *job = NULL;
    while (probe && !job && s_ms_since(start) < RESTART_WAIT_MS) {
        if (tierworker_poll(probe, PROBE_POLL_MS, &job) == TIERWORKER_FATAL)
            break;
        if (!m->registered && tierworker_registered(probe))
            m->registered = s_ms_between(start, bench_now_ns());
    }
    if (job)
        m->offered = s_ms_between(start, bench_now_ns());
    tierworker_destroy(&probe);
    return job ? 0 : -1;
}

//  tierd dies with us (PR_SET_PDEATHSIG): nothing outlives an interrupted run.
//  No ZeroMQ context exists yet, so forking is safe.
static pid_t s_start_tierd(char **argv)
{
    pid_t parent = getpid(), pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent)
            _exit(1);
        execvp(argv[0], argv);
        fprintf(stderr, "tier_bench: cannot start %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    if (pid < 0)
        fprintf(stderr, "tier_bench: fork failed: %s\n", strerror(errno));
    return pid;
}

int bench_restart(const bench_options_t *options)
{
    if (!options->tierd_argv) {
        fprintf(stderr, "tier_bench: restart needs the tierd command after --\n");
        return 2;
    }
    int64_t start = bench_now_ns();
    pid_t pid = s_start_tierd(options->tierd_argv);
    if (pid < 0)
        return 1;
    milestones_t m = {0};
    int rc = s_time_restart(options, start, &m);
    if (rc == 0)
        printf("tierd restart queued=%ld first_offer_ms=%.1f port_open_ms=%.1f "
               "registered_ms=%.1f rss_mb=%.1f\n",
               options->queued, m.offered, m.accepting, m.registered, bench_proc_mb(pid, "VmRSS:"));
    else
        fprintf(stderr, "tier_bench: no offer within %d ms of starting tierd\n", RESTART_WAIT_MS);
    s_stop(pid);
    return rc ? 1 : 0;
}
