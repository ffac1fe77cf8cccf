/*  tier_worker.c — tier-worker: run a shell command for every ticket.

    tier-worker --router EP --level L1 [--department D]... [--capacity N]
                [--channel-capacity chat=3,phone=1] [--agent ID] [--bot]
                [--grace SECONDS] --exec CMD

    The protocol lives in tierworker.{h,c}; this file only runs handlers.
    Each ticket starts `/bin/sh -c CMD` with the ticket JSON on its stdin
    and TIER_TICKET_ID, TIER_LEVEL, TIER_AGENT, TIER_ATTEMPT in its
    environment. Its stdout is one JSON object saying what to do (resolve,
    escalate, release or defer, with an optional response first). The
    whole object is read and checked before anything is sent, so a handler
    that makes a mistake releases the ticket without a half-done result.
    The time forms of defer live in until.{h,c}.

    One thread, one poll: the worker socket, a signalfd (SIGCHLD for exits,
    SIGTERM/SIGINT for stopping) and the pipes of every running handler are
    waited on together, so a slow handler never delays heartbeats or the
    other tickets. Each handler runs in its own process group so that a
    revoke or the end of the grace period stops its whole pipeline.
*/
#include "tierworker.h"
#include "tierjson.h"
#include "until.h"

#include <cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#define DEFAULT_ROUTER    "tcp://127.0.0.1:5561"
#define ROUTER_ENV        "TIER_WORKERS"
#define DEFAULT_CAPACITY  1
#define CAPACITY_MAX      10000 //  children at once; beyond this a typo is likelier
#define DEFAULT_GRACE_S   10
#define CONFIRM_WAIT_MS   3000 //  after the grace period, wait this long for the router
#define MS_PER_S          1000
#define OUTPUT_MAX        (1024 * 1024) //  bytes of handler stdout we keep
#define READ_CHUNK        65536         //  bytes read from a pipe at once
#define SNIPPET_MAX       80            //  bytes of bad output quoted in a reason
#define REASON_MAX        256           //  bytes of a release reason we build
#define EXIT_USAGE        2
#define STOPPING_REASON   "worker stopping"
#define RELEASED_REASON   "released by handler" //  a release without a reason
#define DEFERRED_REASON   "deferred by handler" //  a defer without a reason
#define EPOCH_MS_MAX      9007199254740992.0    //  2^53: larger JSON numbers are not exact
#define SECONDS_LOOKALIKE 100000000000ULL       //  ms before 1973: likely seconds
#define UNTIL_TEXT_MAX    64                    //  bytes of a formatted time
#define SHELL             "/bin/sh"
#define ITEMS_FIXED       2 //  poll items before the pipes: worker socket, signalfd
#define OWN_VARS          4 //  environment variables we give each handler

//  Command-line options
typedef struct {
    const char *router;                      //  workers endpoint
    Tier__V1__Level level;                   //  our level
    char **departments;                      //  --department values, borrowed from argv
    size_t n_departments;                    //  entries in departments
    uint32_t capacity;                       //  most handlers at once
    tierworker_channel_capacity_t *channels; //  --channel-capacity limits
    size_t n_channels;                       //  entries in channels
    const char *agent;                       //  agent id, NULL = library default
    bool bot;                                //  automated worker
    double grace_s;                          //  seconds to let handlers finish on stop
    const char *exec;                        //  the handler command
    bool verbose;                            //  log more
} options_t;

//  A running handler
typedef struct {
    pid_t pid;             //  0 = slot free
    tierworker_job_t *job; //  the ticket it works on
    int in_fd;             //  its stdin, -1 once written or closed
    int out_fd;            //  its stdout, -1 at end of file
    char *input;           //  ticket JSON plus newline
    size_t input_len;      //  bytes in input
    size_t input_off;      //  bytes written so far
    char *output;          //  what it printed, up to OUTPUT_MAX
    size_t output_len;     //  bytes in output
    bool output_overflow;  //  it printed more than OUTPUT_MAX
    bool exited;           //  reaped
    int status;            //  waitpid status once reaped
} child_t;

//  The program's state
typedef struct {
    options_t *opt;        //  what the command line said
    tierworker_t *worker;  //  the protocol
    child_t *children;     //  capacity slots
    zmq_pollitem_t *items; //  ITEMS_FIXED + 2 per child
    int sig_fd;            //  signalfd for SIGCHLD, SIGTERM, SIGINT
    bool stopping;         //  SIGTERM/SIGINT seen: drain
    int64_t grace_end_ms;  //  when to stop waiting for handlers
    bool grace_over;       //  remaining handlers were stopped and released
    int64_t exit_ms;       //  when to exit even without confirmations
} app_t;

extern char **environ;

static const char *s_agent(app_t *app)
{
    return tierworker_agent(app->worker);
}

static void s_say(app_t *app, const char *format, ...)
{
    char line[1024];
    va_list args;
    va_start(args, format);
    vsnprintf(line, sizeof line, format, args);
    va_end(args);
    fprintf(stderr, "tier-worker[%s]: %s\n", s_agent(app), line);
}

//  ---------------------------------------------------------------------
//  Command line

static void s_usage(FILE *out)
{
    fprintf(out,
            "usage: tier-worker [--router EP] --level L1|L2|L3 [--department D]...\n"
            "                   [--capacity N] [--channel-capacity CHANNEL=N[,...]]\n"
            "                   [--agent ID] [--bot] [--grace SECONDS] [--verbose] --exec CMD\n"
            "\n"
            "Serve tickets from tierd by running `/bin/sh -c CMD` for each one, with the\n"
            "ticket JSON on stdin and TIER_TICKET_ID, TIER_LEVEL, TIER_AGENT, TIER_ATTEMPT\n"
            "in the environment. CMD prints one JSON object:\n"
            "  {\"action\":\"resolve\",\"text\":\"...\"}\n"
            "  {\"action\":\"escalate\",\"level\":\"L2\",\"reason\":\"...\",\"notes\":\"...\"}\n"
            "  {\"action\":\"escalate\",\"department\":\"billing\",\"reason\":\"...\"}\n"
            "  {\"action\":\"release\",\"reason\":\"...\"}\n"
            "  {\"action\":\"defer\",\"until\":\"15:00\",\"reason\":\"call back at 15:00\"}\n"
            "Any action may add \"response\":\"...\" to answer the customer first, and\n"
            "\"awaiting_customer\":true with it when the response asks the customer\n"
            "something (the SLA clocks then pause until the customer writes again).\n"
            "defer hands the ticket back until a time promised to the customer; it\n"
            "returns then to this agent if connected, else to its level's queue.\n"
            "\"until\" is \"HH:MM\" or \"HH:MM:SS\" (local time, today or tomorrow if\n"
            "already past), \"+30m\" (from now; units s, m, h, d, e.g. \"+1h30m\"), an ISO\n"
            "8601 time (\"2026-11-22T15:00:00Z\", \"...+01:00\", no zone = local time) or a\n"
            "number of ms since the epoch; it must lie in the future. A non-zero exit,\n"
            "output that is not such an object, or a time that cannot be read releases\n"
            "the ticket with the reason, and nothing else is sent for it.\n"
            "\n"
            "  --router EP       workers endpoint (default $" ROUTER_ENV " or " DEFAULT_ROUTER ")\n"
            "  --level L         level served: L1, L2 or L3 (required)\n"
            "  --department D    a department served besides the general queue (repeatable)\n"
            "  --capacity N      tickets handled at once (default %d)\n"
            "  --channel-capacity CHANNEL=N[,...]\n"
            "                    at most N tickets of CHANNEL at once, within --capacity\n"
            "                    (e.g. chat=3,phone=1: three chats but one call; repeatable)\n"
            "  --agent ID        agent id (default <level>-<hostname>-<pid>)\n"
            "  --bot             register as an automated worker\n"
            "  --grace SECONDS   on SIGTERM, time left to running handlers (default %d)\n"
            "  --exec CMD        the handler command (required)\n"
            "  --verbose         log protocol traffic\n"
            "  --help            this text\n",
            DEFAULT_CAPACITY, DEFAULT_GRACE_S);
}

static int s_usage_error(const char *format, const char *value)
{
    fprintf(stderr, "tier-worker: ");
    fprintf(stderr, format, value);
    fprintf(stderr, "\n\n");
    s_usage(stderr);
    return -1;
}

static int s_parse_level(options_t *opt, const char *text)
{
    int value = 0;
    if (tierjson_enum_value(&tier__v1__level__descriptor, text, &value) == -1 ||
        value < TIER__V1__LEVEL__LEVEL_L1 || value > TIER__V1__LEVEL__LEVEL_L3)
        return s_usage_error("--level \"%s\" is not L1, L2 or L3", text);
    opt->level = (Tier__V1__Level) value;
    return 0;
}

static int s_parse_number(const char *text, double min, double max, double *value)
{
    char *end = NULL;
    errno = 0;
    *value = strtod(text, &end);
    if (errno || end == text || *end || *value < min || *value > max)
        return -1;
    return 0;
}

//  One "chat=3" of --channel-capacity. item is modified.
static int s_parse_channel(options_t *opt, char *item)
{
    char *equals = strchr(item, '=');
    double number = 0;
    int channel = 0;
    if (!equals)
        return s_usage_error("--channel-capacity \"%s\" is not CHANNEL=N", item);
    *equals = 0;
    if (tierjson_enum_value(&tier__v1__channel__descriptor, item, &channel) == -1 || !channel)
        return s_usage_error("--channel-capacity: \"%s\" is not a channel (chat, email, phone, "
                             "sms, whatsapp, social, web)",
                             item);
    for (size_t i = 0; i < opt->n_channels; i++)
        if (opt->channels[i].channel == (Tier__V1__Channel) channel)
            return s_usage_error("--channel-capacity: channel \"%s\" given twice", item);
    if (s_parse_number(equals + 1, 1, CAPACITY_MAX, &number) || number != (uint32_t) number)
        return s_usage_error("--channel-capacity: \"%s\" is not a whole number from 1 to 10000",
                             equals + 1);
    opt->channels[opt->n_channels].channel = (Tier__V1__Channel) channel;
    opt->channels[opt->n_channels++].capacity = (uint32_t) number;
    return 0;
}

//  "chat=3,phone=1"; repeated options add up.
static int s_parse_channels(options_t *opt, const char *arg)
{
    char *copy = strdup(arg), *save = NULL;
    if (!copy)
        return -1;
    int rc = *arg ? 0 : s_usage_error("--channel-capacity needs CHANNEL=N[,...]%s", "");
    for (char *item = strtok_r(copy, ",", &save); item && !rc; item = strtok_r(NULL, ",", &save))
        rc = s_parse_channel(opt, item);
    free(copy);
    return rc;
}

//  Handles one option. Returns 0, 1 for --help, -1 on a usage error.
static int s_parse_option(options_t *opt, int c, const char *arg)
{
    double number = 0;
    switch (c) {
    case 'r':
        opt->router = arg;
        return *arg ? 0 : s_usage_error("--router needs an endpoint%s", "");
    case 'l':
        return s_parse_level(opt, arg);
    case 'd':
        if (!*arg)
            return s_usage_error("--department needs a name%s", "");
        opt->departments[opt->n_departments++] = (char *) arg;
        return 0;
    case 'c':
        if (s_parse_number(arg, 1, CAPACITY_MAX, &number) || number != (uint32_t) number)
            return s_usage_error("--capacity \"%s\" is not a whole number from 1 to 10000", arg);
        opt->capacity = (uint32_t) number;
        return 0;
    case 'C':
        return s_parse_channels(opt, arg);
    case 'a':
        opt->agent = arg;
        return *arg ? 0 : s_usage_error("--agent needs an id%s", "");
    case 'b':
        opt->bot = true;
        return 0;
    case 'g':
        if (s_parse_number(arg, 0, 1e6, &opt->grace_s))
            return s_usage_error("--grace \"%s\" is not a number of seconds >= 0", arg);
        return 0;
    case 'e':
        opt->exec = arg;
        return *arg ? 0 : s_usage_error("--exec needs a command%s", "");
    case 'v':
        opt->verbose = true;
        return 0;
    case 'h':
        return 1;
    default:
        return -1;
    }
}

//  Returns 0, 1 for --help, -1 on a usage error.
static int s_parse_args(options_t *opt, int argc, char **argv)
{
    static const struct option longopts[] = {{"router", required_argument, NULL, 'r'},
                                             {"level", required_argument, NULL, 'l'},
                                             {"department", required_argument, NULL, 'd'},
                                             {"capacity", required_argument, NULL, 'c'},
                                             {"channel-capacity", required_argument, NULL, 'C'},
                                             {"agent", required_argument, NULL, 'a'},
                                             {"bot", no_argument, NULL, 'b'},
                                             {"grace", required_argument, NULL, 'g'},
                                             {"exec", required_argument, NULL, 'e'},
                                             {"verbose", no_argument, NULL, 'v'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    const char *env = getenv(ROUTER_ENV);
    opt->router = env && *env ? env : DEFAULT_ROUTER;
    opt->capacity = DEFAULT_CAPACITY;
    opt->grace_s = DEFAULT_GRACE_S;
    opt->departments = (char **) calloc((size_t) argc + 1, sizeof(char *));
    //  A channel may be named once, so there are never more limits than channels.
    opt->channels = (tierworker_channel_capacity_t *) calloc(tier__v1__channel__descriptor.n_values,
                                                             sizeof(tierworker_channel_capacity_t));
    if (!opt->departments || !opt->channels)
        return -1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "hv", longopts, NULL)) != -1) {
        if (c == '?')
            return s_usage_error("unknown option or missing value: %s", argv[optind - 1]);
        int rc = s_parse_option(opt, c, optarg ? optarg : "");
        if (rc)
            return rc;
    }
    if (optind < argc)
        return s_usage_error("unexpected argument \"%s\"", argv[optind]);
    if (!opt->level)
        return s_usage_error("%s", "--level is required (L1, L2 or L3)");
    if (!opt->exec)
        return s_usage_error("%s", "--exec is required");
    return 0;
}

//  ---------------------------------------------------------------------
//  Handlers: start

static void s_close(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

static const char *s_own_vars[OWN_VARS] = {
    "TIER_TICKET_ID=", "TIER_LEVEL=", "TIER_AGENT=", "TIER_ATTEMPT="};

static bool s_is_own_var(const char *entry)
{
    for (int i = 0; i < OWN_VARS; i++)
        if (strncmp(entry, s_own_vars[i], strlen(s_own_vars[i])) == 0)
            return true;
    return false;
}

//  The parent's environment without our variables, then ours. The strings
//  of ours live in vars; the array is the caller's to free.
static char **s_child_env(app_t *app, tierworker_job_t *job, char vars[OWN_VARS][REASON_MAX])
{
    size_t n = 0;
    while (environ[n])
        n++;
    char **envp = (char **) calloc(n + OWN_VARS + 1, sizeof(char *));
    if (!envp)
        return NULL;
    size_t used = 0;
    for (size_t i = 0; i < n; i++)
        if (!s_is_own_var(environ[i]))
            envp[used++] = environ[i];
    snprintf(vars[0], REASON_MAX, "%s%s", s_own_vars[0], tierworker_job_id(job));
    snprintf(vars[1], REASON_MAX, "%s%s", s_own_vars[1],
             tierjson_enum_name(&tier__v1__level__descriptor, app->opt->level));
    snprintf(vars[2], REASON_MAX, "%s%s", s_own_vars[2], s_agent(app));
    snprintf(vars[3], REASON_MAX, "%s%u", s_own_vars[3], tierworker_job_attempt(job));
    for (int i = 0; i < OWN_VARS; i++)
        envp[used++] = vars[i];
    return envp;
}

//  posix_spawn instead of fork: the child must not run anything between
//  fork and exec in a process that has ZeroMQ threads, and the spawn
//  attributes give it a clean signal mask and its own process group.
static int s_spawn(app_t *app, child_t *child, int in_pipe[2], int out_pipe[2])
{
    char vars[OWN_VARS][REASON_MAX];
    char **envp = s_child_env(app, child->job, vars);
    if (!envp)
        return -1;
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, in_pipe[0], STDIN_FILENO);
    posix_spawn_file_actions_adddup2(&actions, out_pipe[1], STDOUT_FILENO);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t mask, dflt;
    sigemptyset(&mask);
    sigemptyset(&dflt);
    sigaddset(&dflt, SIGPIPE);
    sigaddset(&dflt, SIGTERM);
    sigaddset(&dflt, SIGINT);
    sigaddset(&dflt, SIGCHLD);
    posix_spawnattr_setsigmask(&attr, &mask);
    posix_spawnattr_setsigdefault(&attr, &dflt);
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
                                        POSIX_SPAWN_SETPGROUP);
    char *argv[] = {"sh", "-c", (char *) app->opt->exec, NULL};
    int rc = posix_spawn(&child->pid, SHELL, &actions, &attr, argv, envp);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    free(envp);
    if (rc) {
        child->pid = 0;
        errno = rc;
        return -1;
    }
    return 0;
}

static int s_pipes(int in_pipe[2], int out_pipe[2])
{
    if (pipe2(in_pipe, O_CLOEXEC) == -1)
        return -1;
    if (pipe2(out_pipe, O_CLOEXEC) == -1) {
        close(in_pipe[0]);
        close(in_pipe[1]);
        return -1;
    }
    fcntl(in_pipe[1], F_SETFL, O_NONBLOCK);
    fcntl(out_pipe[0], F_SETFL, O_NONBLOCK);
    return 0;
}

static char *s_ticket_input(tierworker_job_t *job, size_t *len)
{
    cJSON *json = tierjson_ticket(tierworker_job_ticket(job));
    char *text = json ? cJSON_PrintUnformatted(json) : NULL;
    cJSON_Delete(json);
    if (!text)
        return NULL;
    size_t size = strlen(text);
    char *input = (char *) realloc(text, size + 2);
    if (!input) {
        free(text);
        return NULL;
    }
    input[size] = '\n';
    input[size + 1] = 0;
    *len = size + 1;
    return input;
}

static int s_start_child(app_t *app, child_t *child, tierworker_job_t *job)
{
    memset(child, 0, sizeof *child);
    child->in_fd = child->out_fd = -1;
    child->job = job;
    child->input = s_ticket_input(job, &child->input_len);
    if (!child->input) {
        errno = ENOMEM;
        return -1;
    }
    int in_pipe[2], out_pipe[2];
    if (s_pipes(in_pipe, out_pipe) == -1)
        return -1;
    int rc = s_spawn(app, child, in_pipe, out_pipe);
    int saved = errno;
    close(in_pipe[0]);
    close(out_pipe[1]);
    child->in_fd = in_pipe[1];
    child->out_fd = out_pipe[0];
    errno = saved;
    return rc;
}

static void s_child_clear(child_t *child)
{
    s_close(&child->in_fd);
    s_close(&child->out_fd);
    free(child->input);
    free(child->output);
    memset(child, 0, sizeof *child);
    child->in_fd = child->out_fd = -1;
}

static child_t *s_free_slot(app_t *app)
{
    for (uint32_t i = 0; i < app->opt->capacity; i++)
        if (!app->children[i].pid && !app->children[i].job)
            return &app->children[i];
    return NULL;
}

static void s_release(app_t *app, tierworker_job_t *job, const char *reason)
{
    s_say(app, "%s released: %s", tierworker_job_id(job), reason);
    tierworker_release(app->worker, job, reason);
}

static void s_on_job(app_t *app, tierworker_job_t *job)
{
    if (app->stopping) {
        s_release(app, job, STOPPING_REASON);
        return;
    }
    child_t *child = s_free_slot(app);
    if (!child) {
        s_release(app, job, "worker at capacity");
        return;
    }
    if (s_start_child(app, child, job) == -1) {
        char reason[REASON_MAX];
        snprintf(reason, sizeof reason, "cannot start handler: %s", strerror(errno));
        s_child_clear(child);
        s_release(app, job, reason);
        return;
    }
    tierworker_job_set_arg(job, child);
    if (app->opt->verbose)
        s_say(app, "%s started handler (pid %d)", tierworker_job_id(job), (int) child->pid);
}

//  ---------------------------------------------------------------------
//  Handlers: finish

//  What a handler decided, read from its JSON. Strings are borrowed from
//  the parsed output and live as long as it does.
typedef struct {
    const char *action;     //  "resolve", "escalate", "release" or "defer"
    const char *response;   //  answer to the customer first, NULL = none
    bool awaiting_customer; //  the response asks the customer something
    const char *text;       //  resolve: the resolution
    const char *level;      //  escalate: "L2", "" = not given
    int to_level;           //  escalate: level as a Tier__V1__Level value
    const char *department; //  escalate: "" = not given
    const char *reason;     //  escalate, release, defer
    const char *notes;      //  escalate: for the next agent
    uint64_t until_ms;      //  defer: when the ticket comes back, ms since the epoch
} decision_t;

//  Each reader below returns 0, or -1 with why set: the caller then
//  releases the ticket with why and sends nothing else for it.
#define S_REFUSE(why, ...) (snprintf(why, REASON_MAX, __VA_ARGS__), -1)

//  Reads a string member. Returns 0 (absent: *value = fallback), or -1 if
//  the member is there but not a string.
static int s_member(cJSON *root, const char *key, const char *fallback, const char **value)
{
    cJSON *item = cJSON_GetObjectItemCaseSensitive(root, key);
    *value = fallback;
    if (!item || cJSON_IsNull(item))
        return 0;
    if (!cJSON_IsString(item))
        return -1;
    *value = item->valuestring;
    return 0;
}

//  Reads a true/false member (absent: false). Returns 0, or -1 if it is
//  something else.
static int s_flag(cJSON *root, const char *key, bool *value)
{
    cJSON *item = cJSON_GetObjectItemCaseSensitive(root, key);
    *value = cJSON_IsTrue(item);
    return !item || cJSON_IsNull(item) || cJSON_IsBool(item) ? 0 : -1;
}

static int s_read_escalate(cJSON *root, decision_t *d, char *why)
{
    if (s_member(root, "level", "", &d->level) ||
        s_member(root, "department", "", &d->department) ||
        s_member(root, "reason", "", &d->reason) || s_member(root, "notes", "", &d->notes))
        return S_REFUSE(why, "handler output: escalate fields must be strings");
    if (tierjson_enum_value(&tier__v1__level__descriptor, d->level, &d->to_level) == -1)
        return S_REFUSE(why, "handler output: unknown level \"%s\"", d->level);
    if (!*d->reason)
        return S_REFUSE(why, "handler output: escalate needs a reason");
    return 0;
}

//  "until" as ms since the epoch: a JSON number, or one of the text forms
//  of until.h. It must lie in the future.
static int s_read_until(cJSON *root, decision_t *d, char *why)
{
    cJSON *item = cJSON_GetObjectItemCaseSensitive(root, "until");
    uint64_t now_ms = (uint64_t) zclock_time();
    if (!item || cJSON_IsNull(item))
        return S_REFUSE(why, "handler output: defer needs \"until\"");
    if (cJSON_IsNumber(item)) {
        double ms = item->valuedouble;
        if (ms < 1 || ms > EPOCH_MS_MAX || ms != (double) (uint64_t) ms)
            return S_REFUSE(why, "handler output: \"until\" %g is not a time in ms since the epoch",
                            ms);
        d->until_ms = (uint64_t) ms;
    } else if (!cJSON_IsString(item))
        return S_REFUSE(why, "handler output: \"until\" must be a string or a number");
    else if (until_parse(item->valuestring, now_ms, &d->until_ms))
        return S_REFUSE(why,
                        "handler output: \"until\" must be \"HH:MM\", \"+30m\", an ISO 8601 "
                        "time or ms since the epoch, not \"%s\"",
                        item->valuestring);
    if (d->until_ms <= now_ms)
        return S_REFUSE(why, "handler output: \"until\" is in the past%s",
                        d->until_ms < SECONDS_LOOKALIKE ? " (seconds instead of ms?)" : "");
    return 0;
}

static int s_read_defer(cJSON *root, decision_t *d, char *why)
{
    if (s_member(root, "reason", "", &d->reason))
        return S_REFUSE(why, "handler output: \"reason\" must be a string");
    if (!*d->reason)
        d->reason = DEFERRED_REASON;
    return s_read_until(root, d, why);
}

//  The members every action may carry, then the action's own.
static int s_read_decision(cJSON *root, decision_t *d, char *why)
{
    if (s_member(root, "action", NULL, &d->action) || !d->action)
        return S_REFUSE(why, "handler output has no \"action\"");
    if (s_member(root, "response", NULL, &d->response))
        return S_REFUSE(why, "handler output: \"response\" must be a string");
    if (s_flag(root, "awaiting_customer", &d->awaiting_customer))
        return S_REFUSE(why, "handler output: \"awaiting_customer\" must be true or false");
    if (d->awaiting_customer && !d->response)
        return S_REFUSE(why, "handler output: \"awaiting_customer\" needs a \"response\"");
    if (streq(d->action, "escalate"))
        return s_read_escalate(root, d, why);
    if (streq(d->action, "defer"))
        return s_read_defer(root, d, why);
    if (streq(d->action, "release")) {
        if (s_member(root, "reason", "", &d->reason))
            return S_REFUSE(why, "handler output: \"reason\" must be a string");
        if (!*d->reason)
            d->reason = RELEASED_REASON;
        return 0;
    }
    if (streq(d->action, "resolve")) {
        if (s_member(root, "text", "", &d->text))
            return S_REFUSE(why, "handler output: \"text\" must be a string");
        return 0;
    }
    return S_REFUSE(why, "handler output: unknown action \"%s\"", d->action);
}

static void s_escalate(app_t *app, tierworker_job_t *job, decision_t *d)
{
    const char *id = tierworker_job_id(job);
    if (*d->level && *d->department)
        s_say(app, "%s escalated to %s/%s", id, d->level, d->department);
    else if (*d->level || *d->department)
        s_say(app, "%s escalated to %s", id, *d->level ? d->level : d->department);
    else
        s_say(app, "%s escalated to the next level", id);
    tierworker_escalate(app->worker, job, (Tier__V1__Level) d->to_level, d->department, d->reason,
                        d->notes);
}

//  Carries out a decision that was read whole: nothing reaches the router
//  unless all of it made sense.
static void s_act(app_t *app, tierworker_job_t *job, decision_t *d)
{
    const char *id = tierworker_job_id(job);
    if (d->response)
        tierworker_respond_ex(app->worker, job, d->response, d->awaiting_customer);
    if (streq(d->action, "escalate"))
        s_escalate(app, job, d);
    else if (streq(d->action, "release"))
        s_release(app, job, d->reason);
    else if (streq(d->action, "defer")) {
        char until[UNTIL_TEXT_MAX];
        s_say(app, "%s deferred until %s: %s", id, until_format(d->until_ms, until, sizeof until),
              d->reason);
        tierworker_defer(app->worker, job, d->until_ms, d->reason);
    } else {
        s_say(app, "%s resolved", id);
        tierworker_resolve(app->worker, job, d->text);
    }
}

static void s_quote_output(child_t *child, const char *what, char *why)
{
    char snippet[SNIPPET_MAX + 1];
    size_t n = child->output_len < SNIPPET_MAX ? child->output_len : SNIPPET_MAX;
    for (size_t i = 0; i < n; i++)
        snippet[i] = child->output[i] == '\n' ? ' ' : child->output[i];
    snippet[n] = 0;
    snprintf(why, REASON_MAX, "%s: %s%s", what, n ? snippet : "(empty)",
             child->output_len > n ? "..." : "");
}

static void s_decide(app_t *app, child_t *child)
{
    char why[REASON_MAX] = "";
    tierworker_job_t *job = child->job;
    if (WIFSIGNALED(child->status))
        snprintf(why, sizeof why, "handler killed by signal %d", WTERMSIG(child->status));
    else if (WEXITSTATUS(child->status))
        snprintf(why, sizeof why, "handler exited %d", WEXITSTATUS(child->status));
    else if (child->output_overflow)
        snprintf(why, sizeof why, "handler output is larger than %d bytes", OUTPUT_MAX);
    else {
        const char *end = NULL;
        cJSON *root = cJSON_ParseWithLengthOpts(child->output ? child->output : "",
                                                child->output_len, &end, 0);
        while (root && end && end < child->output + child->output_len &&
               isspace((unsigned char) *end))
            end++;
        if (!root || end != child->output + child->output_len)
            s_quote_output(child, "handler output is not JSON", why);
        else if (!cJSON_IsObject(root))
            s_quote_output(child, "handler output is not a JSON object", why);
        else {
            decision_t decision = {0};
            if (s_read_decision(root, &decision, why) == 0)
                s_act(app, job, &decision);
        }
        cJSON_Delete(root);
    }
    if (*why)
        s_release(app, job, why);
}

//  ---------------------------------------------------------------------
//  Handlers: I/O and exits

static void s_write_input(child_t *child)
{
    while (child->in_fd >= 0 && child->input_off < child->input_len) {
        ssize_t n = write(child->in_fd, child->input + child->input_off,
                          child->input_len - child->input_off);
        if (n > 0)
            child->input_off += (size_t) n;
        else if (n == -1 && errno == EAGAIN)
            return;
        else if (n == -1 && errno != EINTR)
            break; //  EPIPE: the handler does not read its input; fine
    }
    s_close(&child->in_fd);
}

static void s_read_output(child_t *child)
{
    char chunk[READ_CHUNK];
    while (child->out_fd >= 0) {
        ssize_t n = read(child->out_fd, chunk, sizeof chunk);
        if (n == -1 && errno == EINTR)
            continue;
        if (n == -1 && errno == EAGAIN)
            return;
        if (n <= 0) {
            s_close(&child->out_fd);
            return;
        }
        if (child->output_len + (size_t) n > OUTPUT_MAX) {
            child->output_overflow = true;
            continue;
        }
        char *grown = (char *) realloc(child->output, child->output_len + (size_t) n + 1);
        if (!grown) {
            child->output_overflow = true;
            continue;
        }
        child->output = grown;
        memcpy(child->output + child->output_len, chunk, (size_t) n);
        child->output_len += (size_t) n;
        child->output[child->output_len] = 0;
    }
}

static void s_reap(app_t *app)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (uint32_t i = 0; i < app->opt->capacity; i++)
            if (app->children[i].pid == pid) {
                app->children[i].exited = true;
                app->children[i].status = status;
            }
    }
}

//  A child is done once it exited and its stdout reached end of file.
static void s_finish_children(app_t *app)
{
    for (uint32_t i = 0; i < app->opt->capacity; i++) {
        child_t *child = &app->children[i];
        if (!child->pid || !child->exited || child->out_fd >= 0)
            continue;
        s_decide(app, child);
        s_child_clear(child);
    }
}

//  Stop a handler whose ticket is gone or whose time is up. The slot is
//  free at once; the process is reaped whenever it exits.
static void s_kill_child(child_t *child)
{
    if (child->pid && !child->exited)
        kill(-child->pid, SIGTERM);
    s_child_clear(child);
}

static void s_on_revoke(tierworker_job_t *job, const char *reason, void *arg)
{
    app_t *app = (app_t *) arg;
    child_t *child = (child_t *) tierworker_job_arg(job);
    s_say(app, "%s revoked: %s", tierworker_job_id(job), reason);
    if (child)
        s_kill_child(child);
    tierworker_release(app->worker, job, reason);
}

//  ---------------------------------------------------------------------
//  Stopping

static void s_on_signals(app_t *app)
{
    struct signalfd_siginfo info;
    while (read(app->sig_fd, &info, sizeof info) == (ssize_t) sizeof info) {
        if (info.ssi_signo == SIGCHLD)
            continue; //  reaped below, once for all
        int64_t now = zclock_mono();
        if (app->stopping) {
            s_say(app, "second signal: ending the grace period now");
            app->grace_end_ms = now;
            continue;
        }
        app->stopping = true;
        app->grace_end_ms = now + (int64_t) (app->opt->grace_s * MS_PER_S);
        app->exit_ms = app->grace_end_ms + CONFIRM_WAIT_MS;
        s_say(app, "stopping: draining, %g s grace for running handlers", app->opt->grace_s);
        tierworker_drain(app->worker);
    }
    s_reap(app);
}

static void s_end_grace(app_t *app)
{
    app->grace_over = true;
    for (uint32_t i = 0; i < app->opt->capacity; i++) {
        child_t *child = &app->children[i];
        if (!child->job)
            continue;
        tierworker_job_t *job = child->job;
        s_kill_child(child);
        s_release(app, job, STOPPING_REASON);
    }
}

static size_t s_running(app_t *app)
{
    size_t running = 0;
    for (uint32_t i = 0; i < app->opt->capacity; i++)
        running += app->children[i].job != NULL;
    return running;
}

//  Returns true when it is time to exit.
static bool s_stop_check(app_t *app)
{
    if (!app->stopping)
        return false;
    int64_t now = zclock_mono();
    if (!app->grace_over && now >= app->grace_end_ms)
        s_end_grace(app);
    if (!s_running(app) && tierworker_idle(app->worker))
        return true;
    if (now >= app->exit_ms) {
        s_say(app, "router did not confirm everything in time; exiting anyway");
        return true;
    }
    return false;
}

//  ---------------------------------------------------------------------
//  The loop

static size_t s_build_items(app_t *app)
{
    size_t n = 0;
    app->items[n++] =
        (zmq_pollitem_t){zsock_resolve(tierworker_sock(app->worker)), 0, ZMQ_POLLIN, 0};
    app->items[n++] = (zmq_pollitem_t){NULL, app->sig_fd, ZMQ_POLLIN, 0};
    for (uint32_t i = 0; i < app->opt->capacity; i++) {
        child_t *child = &app->children[i];
        if (child->in_fd >= 0)
            app->items[n++] = (zmq_pollitem_t){NULL, child->in_fd, ZMQ_POLLOUT, 0};
        if (child->out_fd >= 0)
            app->items[n++] = (zmq_pollitem_t){NULL, child->out_fd, ZMQ_POLLIN, 0};
    }
    return n;
}

static long s_wait_ms(app_t *app)
{
    int64_t wait = tierworker_timeout(app->worker);
    if (app->stopping) {
        int64_t now = zclock_mono();
        int64_t next = app->grace_over ? app->exit_ms : app->grace_end_ms;
        if (next - now < wait)
            wait = next - now;
    }
    return wait < 0 ? 0 : (long) wait;
}

static void s_service_children(app_t *app)
{
    for (uint32_t i = 0; i < app->opt->capacity; i++) {
        child_t *child = &app->children[i];
        if (child->in_fd >= 0)
            s_write_input(child);
        if (child->out_fd >= 0)
            s_read_output(child);
    }
}

//  Returns 0 to go on, 1 to exit cleanly, -1 on a fatal protocol error.
static int s_turn(app_t *app)
{
    size_t n = s_build_items(app);
    if (zmq_poll(app->items, (int) n, s_wait_ms(app)) == -1 && errno != EINTR) {
        s_say(app, "cannot poll: %s", zmq_strerror(errno));
        return -1;
    }
    s_on_signals(app);
    s_service_children(app);
    s_finish_children(app);
    tierworker_job_t *job;
    int rc;
    while ((rc = tierworker_poll(app->worker, 0, &job)) == TIERWORKER_JOB)
        s_on_job(app, job);
    if (rc == TIERWORKER_FATAL)
        return -1; //  the library logged why
    return s_stop_check(app) ? 1 : 0;
}

//  Signals arrive through a signalfd, so they must be blocked before
//  ZeroMQ starts its threads (which inherit the mask).
static int s_signals(app_t *app)
{
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    if (sigprocmask(SIG_BLOCK, &mask, NULL) == -1)
        return -1;
    signal(SIGPIPE, SIG_IGN);
    app->sig_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    return app->sig_fd == -1 ? -1 : 0;
}

static int s_setup(app_t *app, options_t *opt)
{
    app->opt = opt;
    app->sig_fd = -1;
    if (s_signals(app) == -1) {
        fprintf(stderr, "tier-worker: cannot set up signals: %s\n", strerror(errno));
        return -1;
    }
    zsys_handler_set(NULL); //  czmq must not install its own SIGINT handler
    app->children = (child_t *) calloc(opt->capacity, sizeof(child_t));
    app->items =
        (zmq_pollitem_t *) calloc(ITEMS_FIXED + 2 * (size_t) opt->capacity, sizeof(zmq_pollitem_t));
    if (!app->children || !app->items)
        return -1;
    for (uint32_t i = 0; i < opt->capacity; i++)
        app->children[i].in_fd = app->children[i].out_fd = -1;
    tierworker_config_t cfg = {.agent_id = opt->agent,
                               .level = opt->level,
                               .departments = opt->departments,
                               .n_departments = opt->n_departments,
                               .capacity = opt->capacity,
                               .channel_capacity = opt->channels,
                               .n_channel_capacity = opt->n_channels,
                               .bot = opt->bot,
                               .on_revoke = s_on_revoke,
                               .revoke_arg = app,
                               .log_prefix = "tier-worker",
                               .verbose = opt->verbose};
    app->worker = tierworker_new(opt->router, &cfg);
    return app->worker ? 0 : -1;
}

static void s_teardown(app_t *app)
{
    for (uint32_t i = 0; app->children && i < app->opt->capacity; i++)
        s_kill_child(&app->children[i]);
    tierworker_destroy(&app->worker);
    free(app->children);
    free(app->items);
    if (app->sig_fd >= 0)
        close(app->sig_fd);
}

int main(int argc, char **argv)
{
    options_t opt = {0};
    int rc = s_parse_args(&opt, argc, argv);
    if (rc) {
        if (rc > 0)
            s_usage(stdout);
        free(opt.departments);
        free(opt.channels);
        return rc > 0 ? EXIT_SUCCESS : EXIT_USAGE;
    }
    app_t app = {0};
    if (s_setup(&app, &opt) == 0) {
        s_say(&app, "serving %s at %s, capacity %u", opt.router,
              tierjson_enum_name(&tier__v1__level__descriptor, opt.level), opt.capacity);
        while ((rc = s_turn(&app)) == 0)
            ;
    } else
        rc = -1;
    s_teardown(&app);
    free(opt.departments);
    free(opt.channels);
    return rc < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
