/*  bench_workers.c — see bench_workers.h.

    Reading order: the parent side (spawn, read reports), then the worker
    process (bench_workers_main and its loop).
*/
#include "bench_workers.h"
#include "tierworker.h"

#include <czmq.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define REPORT_BUF        65536 //  bytes of unparsed report kept per process
#define READY_POLL_MS     100   //  wake-up while waiting for registrations
#define POLL_MAX_MS       1000  //  longest sleep of a worker process
#define REPORT_MS         10    //  longest a job report waits to share a write
#define SOCKETS_PER_AGENT 4     //  a reconnect opens the new socket before the old one is reaped
#define SOCKETS_HEADROOM  64    //  libzmq sockets beyond those of the agents
#define ARG_MAX_TEXT      32    //  bytes for a number in argv
#define AGENT_ID_MAX      128   //  bytes of an agent id
#define REAP_WAIT_MS      5000  //  SIGKILL a process that ignores SIGTERM this long
#define NS_PER_S          1000000000LL

typedef struct {
    pid_t pid;            //  the process
    int fd;               //  read end of its stdout
    char buf[REPORT_BUF]; //  bytes read, not parsed yet
    size_t used;          //  bytes in buf
    bool ready;           //  said R
    bool gone;            //  its pipe closed
} proc_t;

struct _bench_workers_t {
    proc_t *procs;        //  one per process
    int count;            //  entries in procs
    size_t jobs;          //  J lines since the last reset
    int64_t *latencies;   //  their latencies (>= 0 only)
    size_t latency_count; //  entries used
    size_t latency_size;  //  entries allocated
    bool failed;          //  a process said F or exited
};

static int64_t s_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t) ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

//  ---------------------------------------------------------------------------
//  Parent side

static int s_spawn(proc_t *proc, const char *exe, const bench_workers_config_t *config, int index)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) == -1)
        return -1;
    char count[ARG_MAX_TEXT], capacity[ARG_MAX_TEXT], prefix[AGENT_ID_MAX];
    snprintf(count, sizeof(count), "%d", config->per_proc);
    snprintf(capacity, sizeof(capacity), "%d", config->capacity);
    snprintf(prefix, sizeof(prefix), "%s-%d", config->agent_prefix, index);
    char *argv[] = {(char *) exe,
                    "worker",
                    "--endpoint",
                    (char *) config->endpoint,
                    "--count",
                    count,
                    "--capacity",
                    capacity,
                    "--level",
                    (char *) config->level,
                    "--agent-prefix",
                    prefix,
                    config->hold ? "--hold" : NULL,
                    NULL};
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
    int rc = posix_spawn(&proc->pid, exe, &actions, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&actions);
    close(fds[1]);
    if (rc != 0) {
        close(fds[0]);
        fprintf(stderr, "tier_bench: cannot start worker process: %s\n", strerror(rc));
        return -1;
    }
    fcntl(fds[0], F_SETFL, O_NONBLOCK);
    proc->fd = fds[0];
    return 0;
}

bench_workers_t *bench_workers_new(const char *exe, const bench_workers_config_t *config)
{
    bench_workers_t *self = calloc(1, sizeof(bench_workers_t));
    self->procs = calloc((size_t) config->procs, sizeof(proc_t));
    for (int i = 0; i < config->procs; i++) {
        if (s_spawn(&self->procs[i], exe, config, i)) {
            bench_workers_destroy(&self);
            return NULL;
        }
        self->count++;
    }
    return self;
}

static void s_reap(proc_t *proc)
{
    for (int waited = 0; waited < REAP_WAIT_MS; waited += 10) {
        if (waitpid(proc->pid, NULL, WNOHANG) != 0)
            return;
        usleep(10 * 1000);
    }
    kill(proc->pid, SIGKILL);
    waitpid(proc->pid, NULL, 0);
}

void bench_workers_destroy(bench_workers_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    bench_workers_t *self = *self_p;
    for (int i = 0; i < self->count; i++)
        kill(self->procs[i].pid, SIGTERM);
    for (int i = 0; i < self->count; i++) {
        s_reap(&self->procs[i]);
        close(self->procs[i].fd);
    }
    free(self->procs);
    free(self->latencies);
    free(self);
    *self_p = NULL;
}

static void s_add_latency(bench_workers_t *self, int64_t ns)
{
    if (self->latency_count == self->latency_size) {
        self->latency_size = self->latency_size ? 2 * self->latency_size : 4096;
        self->latencies = realloc(self->latencies, self->latency_size * sizeof(int64_t));
    }
    self->latencies[self->latency_count++] = ns;
}

static void s_report(bench_workers_t *self, proc_t *proc, const char *line)
{
    if (line[0] == 'R')
        proc->ready = true;
    else if (line[0] == 'J') {
        self->jobs++;
        long long ns = strtoll(line + 1, NULL, 10);
        if (ns >= 0)
            s_add_latency(self, ns);
    } else if (line[0] == 'N') {
        long count = strtol(line + 1, NULL, 10);
        if (count > 0)
            self->jobs += (size_t) count;
    } else if (line[0] == 'F') {
        fprintf(stderr, "tier_bench: worker process %d failed:%s\n", (int) proc->pid, line + 1);
        self->failed = true;
    }
}

//  Parses every complete line in proc->buf; keeps a partial last line.
static void s_parse(bench_workers_t *self, proc_t *proc)
{
    size_t start = 0;
    for (size_t i = 0; i < proc->used; i++)
        if (proc->buf[i] == '\n') {
            proc->buf[i] = 0;
            s_report(self, proc, proc->buf + start);
            start = i + 1;
        }
    memmove(proc->buf, proc->buf + start, proc->used - start);
    proc->used -= start;
}

//  Reads one pipe until it is empty: a read shorter than asked for means
//  it was (no extra read to hear EAGAIN).
static void s_read_proc(bench_workers_t *self, proc_t *proc)
{
    while (!proc->gone) {
        size_t room = sizeof(proc->buf) - proc->used - 1;
        ssize_t got = read(proc->fd, proc->buf + proc->used, room);
        if (got > 0) {
            proc->used += (size_t) got;
            s_parse(self, proc);
            if ((size_t) got < room)
                break;
        } else if (got == 0 || (errno != EAGAIN && errno != EINTR)) {
            fprintf(stderr, "tier_bench: worker process %d exited\n", (int) proc->pid);
            proc->gone = true;
            self->failed = true;
        } else if (errno == EAGAIN)
            break;
    }
}

int bench_workers_read(bench_workers_t *self)
{
    for (int i = 0; i < self->count; i++)
        s_read_proc(self, &self->procs[i]);
    return self->failed ? -1 : 0;
}

size_t bench_workers_pollfds(bench_workers_t *self, struct pollfd *fds, size_t max)
{
    size_t count = 0;
    for (int i = 0; i < self->count && count < max; i++)
        if (!self->procs[i].gone)
            fds[count++] = (struct pollfd){self->procs[i].fd, POLLIN, 0};
    return count;
}

int bench_workers_read_polled(bench_workers_t *self, const struct pollfd *fds, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        if (!fds[i].revents)
            continue;
        for (int p = 0; p < self->count; p++)
            if (self->procs[p].fd == fds[i].fd)
                s_read_proc(self, &self->procs[p]);
    }
    return self->failed ? -1 : 0;
}

int bench_workers_wait_ready(bench_workers_t *self, int timeout_ms)
{
    int64_t deadline = s_now_ns() + (int64_t) timeout_ms * 1000000;
    zmq_pollitem_t *items = calloc((size_t) self->count, sizeof(zmq_pollitem_t));
    int rc = -1;
    while (s_now_ns() < deadline) {
        size_t count = bench_workers_pollitems(self, items, (size_t) self->count);
        zmq_poll(items, (int) count, READY_POLL_MS);
        if (bench_workers_read(self))
            break;
        int ready = 0;
        for (int i = 0; i < self->count; i++)
            ready += self->procs[i].ready;
        if (ready == self->count) {
            rc = 0;
            break;
        }
    }
    if (rc && !self->failed)
        fprintf(stderr, "tier_bench: worker processes not registered within %d ms\n", timeout_ms);
    free(items);
    return rc;
}

size_t bench_workers_pollitems(bench_workers_t *self, zmq_pollitem_t *items, size_t max)
{
    size_t count = 0;
    for (int i = 0; i < self->count && count < max; i++)
        if (!self->procs[i].gone)
            items[count++] = (zmq_pollitem_t){NULL, self->procs[i].fd, ZMQ_POLLIN, 0};
    return count;
}

size_t bench_workers_jobs(bench_workers_t *self)
{
    return self->jobs;
}

const int64_t *bench_workers_latencies(bench_workers_t *self, size_t *count_p)
{
    *count_p = self->latency_count;
    return self->latencies;
}

void bench_workers_reset(bench_workers_t *self)
{
    self->jobs = 0;
    self->latency_count = 0;
}

//  ---------------------------------------------------------------------------
//  The worker process

typedef struct {
    const char *endpoint;     //  tierd's workers endpoint
    int count;                //  agents in this process
    int capacity;             //  per agent
    Tier__V1__Level level;    //  of every agent
    bool hold;                //  never finish a job
    const char *agent_prefix; //  agent ids: <prefix>-<n>
} worker_args_t;

static volatile sig_atomic_t s_stop;

static void s_on_signal(int sig)
{
    (void) sig;
    s_stop = 1;
}

static int s_worker_args(int argc, char **argv, worker_args_t *args)
{
    static const struct option options[] = {{"endpoint", required_argument, 0, 'e'},
                                            {"count", required_argument, 0, 'n'},
                                            {"capacity", required_argument, 0, 'c'},
                                            {"level", required_argument, 0, 'l'},
                                            {"hold", no_argument, 0, 'h'},
                                            {"agent-prefix", required_argument, 0, 'a'},
                                            {0, 0, 0, 0}};
    *args =
        (worker_args_t){"tcp://127.0.0.1:5561", 1, 1, TIER__V1__LEVEL__LEVEL_L1, false, "bench"};
    int opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        if (opt == 'e')
            args->endpoint = optarg;
        if (opt == 'n')
            args->count = atoi(optarg);
        if (opt == 'c')
            args->capacity = atoi(optarg);
        if (opt == 'l')
            args->level = (Tier__V1__Level) (optarg[0] == 'L' ? atoi(optarg + 1) : 0);
        if (opt == 'h')
            args->hold = true;
        if (opt == 'a')
            args->agent_prefix = optarg;
        if (opt == '?')
            return -1;
    }
    return args->count > 0 && args->capacity > 0 && args->level >= TIER__V1__LEVEL__LEVEL_L1 &&
                   args->level <= TIER__V1__LEVEL__LEVEL_L3
               ? 0
               : -1;
}

//  Job reports wait in stdout's buffer for up to REPORT_MS, so that many
//  wake-ups' worth leave in one write (and wake the benchmark once); jobs
//  without a send time are only counted, into one N line per write.
typedef struct {
    long unstamped;     //  jobs without a send time, not written yet
    int64_t pending_ms; //  when the oldest report not written yet was made, 0 = none
    int64_t now_ns;     //  receive time of this wake-up's jobs, 0 = not read yet
} reports_t;

//  The send time the submitter put in a "t=<ns>" tag: latency, or -1.
static int64_t s_latency(tierworker_job_t *job, reports_t *reports)
{
    const Tier__V1__Ticket *ticket = tierworker_job_ticket(job);
    size_t prefix = strlen(BENCH_TAG_PREFIX);
    for (size_t i = 0; i < ticket->n_tags; i++)
        if (strncmp(ticket->tags[i], BENCH_TAG_PREFIX, prefix) == 0) {
            if (!reports->now_ns)
                reports->now_ns = s_now_ns();
            return reports->now_ns - strtoll(ticket->tags[i] + prefix, NULL, 10);
        }
    return -1;
}

//  Writes the reports made so far if the oldest is REPORT_MS old (or now).
static void s_flush_reports(reports_t *reports, int64_t now_ms, bool now)
{
    if (!reports->pending_ms || (!now && now_ms - reports->pending_ms < REPORT_MS))
        return;
    if (reports->unstamped)
        printf("N %ld\n", reports->unstamped);
    fflush(stdout);
    reports->unstamped = 0;
    reports->pending_ms = 0;
}

//  Everything one agent has to do now. Returns -1 on a fatal error.
static int s_serve(tierworker_t *worker, bool hold, reports_t *reports, int64_t now_ms)
{
    tierworker_job_t *job;
    int rc;
    while ((rc = tierworker_poll(worker, 0, &job)) == TIERWORKER_JOB) {
        int64_t latency = s_latency(job, reports);
        if (latency >= 0)
            printf("J %lld\n", (long long) latency);
        else
            reports->unstamped++;
        if (!reports->pending_ms)
            reports->pending_ms = now_ms;
        if (!hold)
            tierworker_resolve(worker, job, "resolved by tier_bench");
    }
    if (rc == TIERWORKER_FATAL) {
        printf("F %s: %s\n", tierworker_agent(worker), tierworker_error(worker));
        return -1;
    }
    return 0;
}

static tierworker_t **s_workers_new(const worker_args_t *args)
{
    tierworker_t **workers = calloc((size_t) args->count, sizeof(tierworker_t *));
    for (int i = 0; i < args->count; i++) {
        char agent[AGENT_ID_MAX];
        snprintf(agent, sizeof(agent), "%s-%d", args->agent_prefix, i);
        tierworker_config_t config = {.agent_id = agent,
                                      .level = args->level,
                                      .capacity = (uint32_t) args->capacity,
                                      .bot = true,
                                      .log_prefix = "tier_bench worker"};
        workers[i] = tierworker_new(args->endpoint, &config);
        if (!workers[i]) {
            printf("F cannot create agent %s\n", agent);
            return workers;
        }
    }
    return workers;
}

static bool s_all_registered(tierworker_t **workers, int count)
{
    for (int i = 0; i < count; i++)
        if (!tierworker_registered(workers[i]))
            return false;
    return true;
}

//  Sleeps until an agent has input or a timer (or reports are due), then
//  serves those agents. due[] holds each agent's timer, read once before the
//  sleep. *now_ms is the time before the sleep, then after it.
static int s_turn(tierworker_t **workers, zmq_pollitem_t *items, int *due, int count, bool hold,
                  reports_t *reports, int64_t *now_ms)
{
    int64_t timeout = POLL_MAX_MS;
    if (reports->pending_ms)
        timeout = reports->pending_ms + REPORT_MS - *now_ms;
    for (int i = 0; i < count; i++) {
        items[i] = (zmq_pollitem_t){zsock_resolve(tierworker_sock(workers[i])), 0, ZMQ_POLLIN, 0};
        due[i] = tierworker_timeout(workers[i]);
        if (due[i] < timeout)
            timeout = due[i];
    }
    int64_t start = *now_ms;
    if (zmq_poll(items, count, timeout > 0 ? (long) timeout : 0) == -1 && errno != EINTR)
        return -1;
    *now_ms = zclock_mono();
    reports->now_ns = 0;
    for (int i = 0; i < count; i++)
        if ((items[i].revents & ZMQ_POLLIN) || due[i] <= *now_ms - start)
            if (s_serve(workers[i], hold, reports, *now_ms))
                return -1;
    return 0;
}

static int s_worker_loop(tierworker_t **workers, int count, bool hold)
{
    zmq_pollitem_t *items = calloc((size_t) count, sizeof(zmq_pollitem_t));
    int *due = calloc((size_t) count, sizeof(int));
    reports_t reports = {0, 0, 0};
    bool ready = false;
    int rc = 0;
    int64_t now_ms = zclock_mono();
    while (!s_stop && rc == 0) {
        rc = s_turn(workers, items, due, count, hold, &reports, &now_ms);
        if (!ready && s_all_registered(workers, count)) {
            ready = true;
            printf("R\n");
            fflush(stdout);
        }
        s_flush_reports(&reports, now_ms, false);
    }
    s_flush_reports(&reports, now_ms, true);
    free(due);
    free(items);
    return rc;
}

int bench_workers_main(int argc, char **argv)
{
    worker_args_t args;
    if (s_worker_args(argc, argv, &args)) {
        fprintf(stderr, "usage: tier_bench worker --endpoint EP [--count N] [--capacity N] "
                        "[--level L1] [--hold] [--agent-prefix P]\n");
        return 2;
    }
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() == 1)
        return 0; //  the benchmark is already gone
    zsys_handler_set(NULL);
    struct sigaction action = {.sa_handler = s_on_signal};
    sigaction(SIGTERM, &action, NULL);
    sigaction(SIGINT, &action, NULL);
    zsys_set_max_sockets((size_t) args.count * SOCKETS_PER_AGENT + SOCKETS_HEADROOM);
    tierworker_t **workers = s_workers_new(&args);
    int rc = 0;
    for (int i = 0; i < args.count; i++)
        if (!workers[i])
            rc = 1;
    if (rc == 0 && s_worker_loop(workers, args.count, args.hold))
        rc = 1;
    fflush(stdout);
    for (int i = 0; i < args.count; i++)
        tierworker_destroy(&workers[i]);
    free(workers);
    return rc;
}
