// tierctl — the command line of tierd: submit and follow tickets, look at
// queues and agents, watch events.
//
//   tierctl [--router EP] [--events EP] [--timeout MS] [--json] CMD [ARGS]
//
// One function per command (s_cmd_*), each parsing its own options. Output
// is for people by default and one JSON object per line with --json (the
// forms of tierjson). Exit codes: 0 success, 1 the router refused, 2 usage
// error, 3 no answer within --timeout.
#include "tierclient.h"
#include "tierjson.h"

#include <ctype.h>
#include <czmq.h>
#include <getopt.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_ROUTER     "tcp://127.0.0.1:5560"
#define DEFAULT_EVENTS     "tcp://127.0.0.1:5562"
#define DEFAULT_TIMEOUT_MS 5000
#define CALL_TRIES         3 // tries per call within --timeout: survives a lost answer
#define DEFAULT_TOPIC      "all/"
#define SEQ_RESET_WINDOW   1000 // a seq this far below the last one: the router started over

#define EXIT_OK        0
#define EXIT_REFUSED   1
#define EXIT_USAGE     2
#define EXIT_NO_ANSWER 3
#define EXIT_CONTINUE  -1 // options_t.exit_code while parsing may go on

#define MS_PER_SECOND 1000ULL
#define MS_PER_MINUTE (60 * MS_PER_SECOND)
#define MS_PER_HOUR   (60 * MS_PER_MINUTE)
#define MS_PER_DAY    (24 * MS_PER_HOUR)
#define TEXT_MAX      64 // room for a formatted time, duration or place

struct command;

// What the global options asked for, and where parsing stands.
typedef struct {
    const char *router;            // clients endpoint (--router, $TIER_ROUTER)
    const char *events;            // events endpoint (--events, $TIER_EVENTS)
    int timeout_ms;                // total wait for an answer (--timeout)
    bool json;                     // print JSON (--json)
    const struct command *command; // the command being run
    int exit_code;                 // EXIT_CONTINUE, or how to exit now
} options_t;

typedef int(command_fn)(options_t *opts, int argc, char **argv);

typedef struct command {
    const char *name;    // what the user types
    command_fn *run;     // runs it; returns the exit code
    const char *usage;   // arguments and options, shown by CMD --help
    const char *summary; // one line for tierctl --help
} command_t;

// clang-format off
#define COMMON_OPTIONS {"json", no_argument, NULL, 'j'}, {"help", no_argument, NULL, 'h'}
#define END_OPTIONS    {NULL, 0, NULL, 0}
// clang-format on

// ---------------------------------------------------------------------------
// Usage and option parsing

static void s_print_usage(FILE *out);

static void s_command_usage(FILE *out, const command_t *cmd)
{
    fprintf(out, "usage: tierctl [global options] %s %s\n%s.\n", cmd->name, cmd->usage,
            cmd->summary);
}

// Reports a usage error of the current command and sets exit code 2.
static void s_usage_error(options_t *opts, const char *format, const char *detail)
{
    const char *name = opts->command ? opts->command->name : NULL;
    fprintf(stderr, "tierctl%s%s: ", name ? " " : "", name ? name : "");
    fprintf(stderr, format, detail);
    fprintf(stderr, " (see tierctl%s%s --help)\n", name ? " " : "", name ? name : "");
    opts->exit_code = EXIT_USAGE;
}

// The next option of the current command. Handles --json, --help and
// unknown options itself; returns -1 at the end or when opts->exit_code says
// to stop.
static int s_next_option(options_t *opts, int argc, char **argv, const struct option *longopts)
{
    while (opts->exit_code == EXIT_CONTINUE) {
        int c = getopt_long(argc, argv, ":h", longopts, NULL);
        if (c == 'j')
            opts->json = true;
        else if (c == 'h') {
            s_command_usage(stdout, opts->command);
            opts->exit_code = EXIT_OK;
        } else if (c == ':')
            s_usage_error(opts, "option %s needs a value", argv[optind - 1]);
        else if (c == '?')
            s_usage_error(opts, "unknown option %s", argv[optind - 1]);
        else
            return c;
    }
    return -1;
}

// Checks the number of arguments left after the options; -1 to stop.
static int s_expect_args(options_t *opts, int argc, char **argv, int min, int max)
{
    int count = argc - optind;
    if (opts->exit_code != EXIT_CONTINUE)
        return -1;
    if (count < min)
        s_usage_error(opts, "missing argument: %s", opts->command->usage);
    if (count > max)
        s_usage_error(opts, "unexpected argument \"%s\"", argv[optind + max]);
    return opts->exit_code == EXIT_CONTINUE ? 0 : -1;
}

// Parses a whole positive number; -1 if text is not one.
static long s_parse_count(const char *text)
{
    char *end;
    long value = strtol(text, &end, 10);
    return *text && !*end && value > 0 && value <= INT_MAX ? value : -1;
}

// Parses an enum option (--channel chat); a usage error lists the choices.
static void s_parse_enum(options_t *opts, const ProtobufCEnumDescriptor *d, const char *option,
                         const char *text, int *value)
{
    if (tierjson_enum_value(d, text, value) == 0 && *value != 0)
        return;
    fprintf(stderr, "tierctl %s: --%s \"%s\" is not one of:", opts->command->name, option, text);
    for (unsigned i = 0; i < d->n_values; i++)
        if (d->values[i].value)
            fprintf(stderr, " %s", tierjson_enum_name(d, d->values[i].value));
    fprintf(stderr, "\n");
    opts->exit_code = EXIT_USAGE;
}

// ---------------------------------------------------------------------------
// Formatting for people

// "12:03:04.120", local time.
static const char *s_clock(uint64_t ms, char *buffer)
{
    time_t seconds = (time_t) (ms / MS_PER_SECOND);
    struct tm tm;
    localtime_r(&seconds, &tm);
    size_t len = strftime(buffer, TEXT_MAX, "%H:%M:%S", &tm);
    snprintf(buffer + len, TEXT_MAX - len, ".%03u", (unsigned) (ms % MS_PER_SECOND));
    return buffer;
}

// "2024-11-22 12:03:04", local time; "-" for 0 (not yet).
static const char *s_date(uint64_t ms, char *buffer)
{
    if (!ms)
        return "-";
    time_t seconds = (time_t) (ms / MS_PER_SECOND);
    struct tm tm;
    localtime_r(&seconds, &tm);
    strftime(buffer, TEXT_MAX, "%Y-%m-%d %H:%M:%S", &tm);
    return buffer;
}

// "850ms", "12s", "5m03s", "2h05m", "3d04h".
static const char *s_duration(uint64_t ms, char *buffer)
{
    unsigned long long v = ms;
    if (v < MS_PER_SECOND)
        snprintf(buffer, TEXT_MAX, "%llums", v);
    else if (v < MS_PER_MINUTE)
        snprintf(buffer, TEXT_MAX, "%llus", v / MS_PER_SECOND);
    else if (v < MS_PER_HOUR)
        snprintf(buffer, TEXT_MAX, "%llum%02llus", v / MS_PER_MINUTE,
                 v % MS_PER_MINUTE / MS_PER_SECOND);
    else if (v < MS_PER_DAY)
        snprintf(buffer, TEXT_MAX, "%lluh%02llum", v / MS_PER_HOUR,
                 v % MS_PER_HOUR / MS_PER_MINUTE);
    else
        snprintf(buffer, TEXT_MAX, "%llud%02lluh", v / MS_PER_DAY, v % MS_PER_DAY / MS_PER_HOUR);
    return buffer;
}

// How long ago ms was, as a duration; "-" for 0 (never).
static const char *s_ago(uint64_t ms, char *buffer)
{
    uint64_t now = (uint64_t) zclock_time();
    if (!ms)
        return "-";
    return s_duration(now > ms ? now - ms : 0, buffer);
}

static const char *s_level(int level)
{
    return tierjson_enum_name(&tier__v1__level__descriptor, level);
}

// "L1", "L1/billing", "billing", or "(general)" when there is neither.
static const char *s_place(int level, const char *department, char *buffer)
{
    const char *name = s_level(level);
    bool has_department = department && *department;
    snprintf(buffer, TEXT_MAX, "%s%s%s", name, *name && has_department ? "/" : "",
             has_department ? department : "");
    return *buffer ? buffer : "(general)";
}

// Strings joined with sep, or "-" for none. Caller frees.
static char *s_join(char **items, size_t count, const char *sep)
{
    size_t size = 2;
    for (size_t i = 0; i < count; i++)
        size += strlen(items[i]) + strlen(sep);
    char *joined = calloc(1, size);
    if (!joined)
        return NULL;
    for (size_t i = 0; i < count; i++) {
        if (i)
            strcat(joined, sep);
        strcat(joined, items[i]);
    }
    if (!count)
        strcpy(joined, "-");
    return joined;
}

// Prints a tierjson tree as one line and deletes it.
static int s_print_json(cJSON *json)
{
    char *text = json ? cJSON_PrintUnformatted(json) : NULL;
    cJSON_Delete(json);
    if (!text) {
        fprintf(stderr, "tierctl: out of memory printing JSON\n");
        return EXIT_REFUSED;
    }
    printf("%s\n", text);
    free(text);
    fflush(stdout);
    return EXIT_OK;
}

// ---------------------------------------------------------------------------
// Talking to the router

// A client whose calls, with tries tries, take at most --timeout in all.
static tierclient_t *s_connect(options_t *opts, int tries)
{
    int per_try_ms = opts->timeout_ms / tries;
    tierclient_t *client = tierclient_new(opts->router, per_try_ms > 0 ? per_try_ms : 1);
    if (!client) {
        fprintf(stderr, "tierctl: cannot connect to \"%s\" (expected tcp://HOST:PORT)\n",
                opts->router);
        opts->exit_code = EXIT_USAGE;
        return NULL;
    }
    tierclient_set_retries(client, tries - 1);
    return client;
}

// Reports the client's last error; returns the exit code for it.
static int s_failed(options_t *opts, tierclient_t *client)
{
    int code = tierclient_errcode(client);
    if (code == TIERCLIENT_TIMEOUT) {
        fprintf(stderr, "tierctl: no answer from %s within %d ms — is tierd running?\n",
                opts->router, opts->timeout_ms);
        return EXIT_NO_ANSWER;
    }
    if (code == TIERCLIENT_FAILED)
        fprintf(stderr, "tierctl: %s\n", tierclient_errstr(client));
    else
        fprintf(stderr, "tierctl: %s: %s\n", tierclient_errname(client), tierclient_errstr(client));
    return EXIT_REFUSED;
}

// Ends a command that got a ticket (or not): prints it and frees everything.
static int s_finish_ticket(options_t *opts, tierclient_t *client, Tier__V1__Ticket *ticket,
                           void (*print)(const Tier__V1__Ticket *))
{
    int rc = EXIT_OK;
    if (!ticket)
        rc = s_failed(opts, client);
    else if (opts->json)
        rc = s_print_json(tierjson_ticket(ticket));
    else
        print(ticket);
    if (ticket)
        tier__v1__ticket__free_unpacked(ticket, NULL);
    tierclient_destroy(&client);
    return rc;
}

static void s_print_ok(const Tier__V1__Ticket *ticket)
{
    printf("ok\n");
}

// ---------------------------------------------------------------------------
// submit

// Applies one submit option to the ticket. Strings are borrowed from argv.
static void s_submit_option(options_t *opts, int c, Tier__V1__Ticket *t, Tier__V1__Customer *cu)
{
    int value = 0;
    switch (c) {
    case 's':
        t->subject = optarg;
        break;
    case 'b':
        t->body = optarg;
        break;
    case 'x':
        t->external_id = optarg;
        break;
    case 'u':
        cu->id = optarg;
        break;
    case 'n':
        cu->name = optarg;
        break;
    case 'e':
        cu->email = optarg;
        break;
    case 'p':
        cu->phone = optarg;
        break;
    case 'v':
        cu->vip = true;
        break;
    case 'd':
        t->department = optarg;
        break;
    case 't':
        t->tags[t->n_tags++] = optarg;
        break;
    case 'c':
        s_parse_enum(opts, &tier__v1__channel__descriptor, "channel", optarg, &value);
        t->channel = (Tier__V1__Channel) value;
        break;
    case 'r':
        s_parse_enum(opts, &tier__v1__priority__descriptor, "priority", optarg, &value);
        t->priority = (Tier__V1__Priority) value;
        break;
    case 'l':
        s_parse_enum(opts, &tier__v1__level__descriptor, "level", optarg, &value);
        t->level = (Tier__V1__Level) value;
        break;
    }
}

// {"id":"42","duplicate":false}
static cJSON *s_submitted_json(const char *id, bool duplicate)
{
    cJSON *json = cJSON_CreateObject();
    if (json && cJSON_AddStringToObject(json, "id", id) &&
        cJSON_AddBoolToObject(json, "duplicate", duplicate))
        return json;
    cJSON_Delete(json);
    return NULL;
}

static int s_cmd_submit(options_t *opts, int argc, char **argv)
{
    static const struct option longopts[] = {{"subject", required_argument, NULL, 's'},
                                             {"body", required_argument, NULL, 'b'},
                                             {"channel", required_argument, NULL, 'c'},
                                             {"external-id", required_argument, NULL, 'x'},
                                             {"customer", required_argument, NULL, 'u'},
                                             {"name", required_argument, NULL, 'n'},
                                             {"email", required_argument, NULL, 'e'},
                                             {"phone", required_argument, NULL, 'p'},
                                             {"vip", no_argument, NULL, 'v'},
                                             {"priority", required_argument, NULL, 'r'},
                                             {"level", required_argument, NULL, 'l'},
                                             {"department", required_argument, NULL, 'd'},
                                             {"tag", required_argument, NULL, 't'},
                                             COMMON_OPTIONS,
                                             END_OPTIONS};
    Tier__V1__Ticket ticket = TIER__V1__TICKET__INIT;
    Tier__V1__Customer customer = TIER__V1__CUSTOMER__INIT;
    ticket.customer = &customer;
    ticket.channel = TIER__V1__CHANNEL__CHANNEL_CHAT;
    ticket.priority = TIER__V1__PRIORITY__PRIORITY_NORMAL;
    ticket.level = TIER__V1__LEVEL__LEVEL_L1;
    char **tags = calloc((size_t) argc, sizeof(char *)); // no more tags than arguments
    if (!tags)
        return EXIT_REFUSED;
    ticket.tags = tags;
    int c;
    while ((c = s_next_option(opts, argc, argv, longopts)) != -1)
        s_submit_option(opts, c, &ticket, &customer);
    if (s_expect_args(opts, argc, argv, 0, 0) == 0 && !*ticket.subject)
        s_usage_error(opts, "%s", "--subject is required");
    if (opts->exit_code != EXIT_CONTINUE) {
        free(tags);
        return opts->exit_code;
    }
    tierclient_t *client = s_connect(opts, CALL_TRIES);
    char *id = NULL;
    bool duplicate = false;
    int rc = !client                                               ? opts->exit_code
             : tierclient_submit(client, &ticket, &id, &duplicate) ? s_failed(opts, client)
                                                                   : EXIT_OK;
    if (rc == EXIT_OK && opts->json)
        rc = s_print_json(s_submitted_json(id, duplicate));
    else if (rc == EXIT_OK)
        printf(duplicate ? "duplicate of %s\n" : "submitted %s\n", id);
    free(id);
    free(tags);
    tierclient_destroy(&client);
    return rc;
}

// ---------------------------------------------------------------------------
// show

static void s_print_history_entry(const Tier__V1__HistoryEntry *h)
{
    char at[TEXT_MAX], from[TEXT_MAX], to[TEXT_MAX];
    printf("  %s %-10s", s_clock(h->at_ms, at),
           tierjson_enum_name(&tier__v1__history_kind__descriptor, h->kind));
    if (h->from_level || h->to_level || *h->from_department || *h->to_department)
        printf(" %s -> %s ", s_place(h->from_level, h->from_department, from),
               s_place(h->to_level, h->to_department, to));
    bool has_text = *h->text, has_reason = *h->reason;
    if (*h->actor)
        printf(" %s%s", h->actor, has_text || has_reason ? ":" : "");
    if (has_text)
        printf(" %s", h->text);
    if (has_reason)
        printf(has_text ? " (%s)" : " %s", h->reason);
    printf("%s\n", h->automatic ? " [automatic]" : "");
}

// "Ana (c1) VIP ana@example.com +351...", leaving out what is empty.
static void s_print_customer(const Tier__V1__Customer *cu)
{
    bool named = *cu->name, known = *cu->id;
    printf("  customer  %s%s%s%s%s", named || known ? cu->name : "-", named && known ? " (" : "",
           cu->id, named && known ? ")" : "", cu->vip ? " VIP" : "");
    if (*cu->email)
        printf(" %s", cu->email);
    if (*cu->phone)
        printf(" %s", cu->phone);
    printf("\n");
}

static void s_print_ticket(const Tier__V1__Ticket *t)
{
    char place[TEXT_MAX], a[TEXT_MAX], b[TEXT_MAX], c[TEXT_MAX], d[TEXT_MAX];
    const Tier__V1__Customer *cu = t->customer;
    printf("ticket %s  %s  %s\n", t->id,
           tierjson_enum_name(&tier__v1__ticket_state__descriptor, t->state),
           s_place(t->level, t->department, place));
    printf("  subject   %s\n", t->subject);
    if (cu)
        s_print_customer(cu);
    printf("  channel   %s   priority %s   attempt %u\n",
           tierjson_enum_name(&tier__v1__channel__descriptor, t->channel),
           tierjson_enum_name(&tier__v1__priority__descriptor, t->priority), t->attempt);
    if (*t->agent)
        printf("  agent     %s\n", t->agent);
    char *tags = s_join(t->tags, t->n_tags, ", ");
    if (t->n_tags && tags)
        printf("  tags      %s\n", tags);
    free(tags);
    if (*t->external_id)
        printf("  external  %s\n", t->external_id);
    printf("  created   %s   queued %s\n", s_date(t->created_ms, a), s_date(t->queued_ms, b));
    printf("  first response %s   resolved %s\n", s_date(t->first_response_ms, c),
           s_date(t->resolved_ms, d));
    if (t->csat)
        printf("  csat      %u\n", t->csat);
    if (*t->body)
        printf("  body      %s\n", t->body);
    if (t->n_history)
        printf("history\n");
    for (size_t i = 0; i < t->n_history; i++)
        s_print_history_entry(t->history[i]);
}

static int s_cmd_show(options_t *opts, int argc, char **argv)
{
    static const struct option longopts[] = {COMMON_OPTIONS, END_OPTIONS};
    while (s_next_option(opts, argc, argv, longopts) != -1)
        ;
    if (s_expect_args(opts, argc, argv, 1, 1))
        return opts->exit_code;
    tierclient_t *client = s_connect(opts, CALL_TRIES);
    if (!client)
        return opts->exit_code;
    Tier__V1__Ticket *ticket = tierclient_get(client, argv[optind], true);
    return s_finish_ticket(opts, client, ticket, s_print_ticket);
}

// ---------------------------------------------------------------------------
// cancel, reply, rate

static int s_cmd_cancel(options_t *opts, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"reason", required_argument, NULL, 'r'}, COMMON_OPTIONS, END_OPTIONS};
    const char *reason = "";
    int c;
    while ((c = s_next_option(opts, argc, argv, longopts)) != -1)
        if (c == 'r')
            reason = optarg;
    if (s_expect_args(opts, argc, argv, 1, 1))
        return opts->exit_code;
    tierclient_t *client = s_connect(opts, CALL_TRIES);
    if (!client)
        return opts->exit_code;
    Tier__V1__Ticket *ticket = tierclient_cancel(client, argv[optind], reason);
    return s_finish_ticket(opts, client, ticket, s_print_ok);
}

static int s_cmd_reply(options_t *opts, int argc, char **argv)
{
    static const struct option longopts[] = {COMMON_OPTIONS, END_OPTIONS};
    while (s_next_option(opts, argc, argv, longopts) != -1)
        ;
    if (s_expect_args(opts, argc, argv, 2, 2))
        return opts->exit_code;
    tierclient_t *client = s_connect(opts, 1); // a message is never resent: give it all the time
    if (!client)
        return opts->exit_code;
    Tier__V1__Ticket *ticket = tierclient_message(client, argv[optind], argv[optind + 1]);
    return s_finish_ticket(opts, client, ticket, s_print_ok);
}

static int s_cmd_rate(options_t *opts, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"comment", required_argument, NULL, 'c'}, COMMON_OPTIONS, END_OPTIONS};
    const char *comment = "";
    int c;
    while ((c = s_next_option(opts, argc, argv, longopts)) != -1)
        if (c == 'c')
            comment = optarg;
    if (s_expect_args(opts, argc, argv, 2, 2))
        return opts->exit_code;
    // Range is the router's to judge (ERROR_BAD_RATING); here only "a number".
    char *end;
    unsigned long csat = strtoul(argv[optind + 1], &end, 10);
    if (*end || !*argv[optind + 1] || *argv[optind + 1] == '-') {
        s_usage_error(opts, "rating \"%s\" is not a number 1..5", argv[optind + 1]);
        return opts->exit_code;
    }
    tierclient_t *client = s_connect(opts, CALL_TRIES);
    if (!client)
        return opts->exit_code;
    Tier__V1__Ticket *ticket = tierclient_rate(client, argv[optind], (unsigned) csat, comment);
    return s_finish_ticket(opts, client, ticket, s_print_ok);
}

// ---------------------------------------------------------------------------
// queues, agents, snapshot

static void s_print_queues(const Tier__V1__QueuesReply *reply)
{
    int width = (int) strlen("DEPARTMENT");
    for (size_t i = 0; i < reply->n_queues; i++) {
        int len = (int) strlen(reply->queues[i]->department);
        width = len > width ? len : width;
    }
    printf("LEVEL  %-*s  DEPTH  OLDEST WAIT\n", width, "DEPARTMENT");
    for (size_t i = 0; i < reply->n_queues; i++) {
        const Tier__V1__QueueInfo *q = reply->queues[i];
        char wait[TEXT_MAX];
        printf("%-5s  %-*s  %5u  %s\n", s_level(q->level), width,
               *q->department ? q->department : "(general)", q->depth,
               q->depth ? s_duration(q->oldest_wait_ms, wait) : "-");
    }
}

static int s_cmd_queues(options_t *opts, int argc, char **argv)
{
    static const struct option longopts[] = {COMMON_OPTIONS, END_OPTIONS};
    while (s_next_option(opts, argc, argv, longopts) != -1)
        ;
    if (s_expect_args(opts, argc, argv, 0, 0))
        return opts->exit_code;
    tierclient_t *client = s_connect(opts, CALL_TRIES);
    if (!client)
        return opts->exit_code;
    Tier__V1__QueuesReply *reply = tierclient_queues(client);
    int rc = reply ? EXIT_OK : s_failed(opts, client);
    if (reply && opts->json) {
        cJSON *json = cJSON_CreateObject();
        cJSON *queues = json ? cJSON_AddArrayToObject(json, "queues") : NULL;
        for (size_t i = 0; queues && i < reply->n_queues; i++)
            cJSON_AddItemToArray(queues, tierjson_queue_info(reply->queues[i]));
        rc = s_print_json(json);
    } else if (reply)
        s_print_queues(reply);
    if (reply)
        tier__v1__queues_reply__free_unpacked(reply, NULL);
    tierclient_destroy(&client);
    return rc;
}

// The length s_join would give items joined with a one-character separator.
static int s_joined_length(char **items, size_t count)
{
    size_t len = count ? count - 1 : 1;
    for (size_t i = 0; i < count; i++)
        len += strlen(items[i]);
    return (int) len;
}

static int s_max(int a, int b)
{
    return a > b ? a : b;
}

// Prints the agents table, the id and departments columns as wide as needed.
static void s_print_agents(Tier__V1__AgentInfo **agents, size_t count)
{
    int id_width = (int) strlen("AGENT"), departments_width = (int) strlen("DEPARTMENTS");
    for (size_t i = 0; i < count; i++) {
        id_width = s_max(id_width, (int) strlen(agents[i]->id));
        departments_width = s_max(
            departments_width, s_joined_length(agents[i]->departments, agents[i]->n_departments));
    }
    if (!count) {
        printf("no agents connected\n");
        return;
    }
    printf("%-*s  LEVEL  STATE     KIND    LOAD   LAST SEEN  %-*s  TICKETS\n", id_width, "AGENT",
           departments_width, "DEPARTMENTS");
    for (size_t i = 0; i < count; i++) {
        const Tier__V1__AgentInfo *a = agents[i];
        char load[TEXT_MAX], seen[TEXT_MAX];
        snprintf(load, sizeof load, "%u/%u", a->load, a->capacity);
        char *departments = s_join(a->departments, a->n_departments, ",");
        char *tickets = s_join(a->tickets, a->n_tickets, " ");
        printf("%-*s  %-5s  %-8s  %-6s  %-5s  %-9s  %-*s  %s\n", id_width, a->id, s_level(a->level),
               tierjson_enum_name(&tier__v1__agent_state__descriptor, a->state),
               a->bot ? "bot" : "person", load, s_ago(a->last_seen_ms, seen), departments_width,
               departments ? departments : "", tickets ? tickets : "");
        free(departments);
        free(tickets);
    }
}

static cJSON *s_agents_json(Tier__V1__AgentsReply *reply)
{
    cJSON *json = cJSON_CreateObject();
    cJSON *agents = json ? cJSON_AddArrayToObject(json, "agents") : NULL;
    for (size_t i = 0; agents && i < reply->n_agents; i++)
        cJSON_AddItemToArray(agents, tierjson_agent_info(reply->agents[i]));
    return json;
}

static int s_cmd_agents(options_t *opts, int argc, char **argv)
{
    static const struct option longopts[] = {COMMON_OPTIONS, END_OPTIONS};
    while (s_next_option(opts, argc, argv, longopts) != -1)
        ;
    if (s_expect_args(opts, argc, argv, 0, 0))
        return opts->exit_code;
    tierclient_t *client = s_connect(opts, CALL_TRIES);
    if (!client)
        return opts->exit_code;
    Tier__V1__AgentsReply *reply = tierclient_agents(client);
    int rc = reply ? EXIT_OK : s_failed(opts, client);
    if (reply && opts->json)
        rc = s_print_json(s_agents_json(reply));
    else if (reply)
        s_print_agents(reply->agents, reply->n_agents);
    if (reply)
        tier__v1__agents_reply__free_unpacked(reply, NULL);
    tierclient_destroy(&client);
    return rc;
}

static void s_print_snapshot(const Tier__V1__SnapshotReply *s)
{
    printf("as of event %llu\n", (unsigned long long) s->seq);
    size_t waiting = 0;
    for (size_t i = 0; i < s->n_queues; i++) {
        const Tier__V1__QueueContents *q = s->queues[i];
        char place[TEXT_MAX], wait[TEXT_MAX];
        if (!q->n_tickets)
            continue; // a lead wants to see where work is, not every empty queue
        waiting += q->n_tickets;
        printf("%s: %zu waiting\n", s_place(q->level, q->department, place), q->n_tickets);
        for (size_t j = 0; j < q->n_tickets; j++) {
            const Tier__V1__QueuedTicket *t = q->tickets[j];
            printf("  %-8s %-6s %-8s %8s  %s\n", t->id,
                   tierjson_enum_name(&tier__v1__priority__descriptor, t->priority),
                   tierjson_enum_name(&tier__v1__channel__descriptor, t->channel),
                   s_ago(t->queued_ms, wait), t->subject);
        }
    }
    if (!waiting)
        printf("no tickets waiting\n");
    printf("\n");
    s_print_agents(s->agents, s->n_agents);
}

static int s_cmd_snapshot(options_t *opts, int argc, char **argv)
{
    static const struct option longopts[] = {COMMON_OPTIONS, END_OPTIONS};
    while (s_next_option(opts, argc, argv, longopts) != -1)
        ;
    if (s_expect_args(opts, argc, argv, 0, 0))
        return opts->exit_code;
    tierclient_t *client = s_connect(opts, CALL_TRIES);
    if (!client)
        return opts->exit_code;
    Tier__V1__SnapshotReply *reply = tierclient_snapshot(client);
    int rc = reply ? EXIT_OK : s_failed(opts, client);
    if (reply && opts->json)
        rc = s_print_json(tierjson_snapshot(reply));
    else if (reply)
        s_print_snapshot(reply);
    if (reply)
        tier__v1__snapshot_reply__free_unpacked(reply, NULL);
    tierclient_destroy(&client);
    return rc;
}

// ---------------------------------------------------------------------------
// dead, requeue

// The dead-letter table, the department column as wide as needed.
static void s_print_dead(const Tier__V1__DeadLettersReply *reply)
{
    if (!reply->n_tickets) {
        printf("no dead letters\n");
        return;
    }
    int id_width = (int) strlen("ID"), department_width = (int) strlen("DEPARTMENT");
    for (size_t i = 0; i < reply->n_tickets; i++) {
        id_width = s_max(id_width, (int) strlen(reply->tickets[i]->id));
        department_width = s_max(department_width, (int) strlen(reply->tickets[i]->department));
    }
    printf("%-*s  LEVEL  %-*s  ATTEMPTS  SUBJECT\n", id_width, "ID", department_width,
           "DEPARTMENT");
    for (size_t i = 0; i < reply->n_tickets; i++) {
        const Tier__V1__Ticket *t = reply->tickets[i];
        printf("%-*s  %-5s  %-*s  %8u  %s\n", id_width, t->id, s_level(t->level), department_width,
               *t->department ? t->department : "-", t->attempt, t->subject);
    }
}

// {"tickets":[ticket json...]}
static cJSON *s_dead_json(const Tier__V1__DeadLettersReply *reply)
{
    cJSON *json = cJSON_CreateObject();
    cJSON *tickets = json ? cJSON_AddArrayToObject(json, "tickets") : NULL;
    for (size_t i = 0; tickets && i < reply->n_tickets; i++)
        cJSON_AddItemToArray(tickets, tierjson_ticket(reply->tickets[i]));
    return json;
}

static int s_cmd_dead(options_t *opts, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"limit", required_argument, NULL, 'n'}, COMMON_OPTIONS, END_OPTIONS};
    long limit = 0; // 0: the router's default
    int c;
    while ((c = s_next_option(opts, argc, argv, longopts)) != -1)
        if (c == 'n' && (limit = s_parse_count(optarg)) < 0)
            s_usage_error(opts, "--limit \"%s\" is not a positive number", optarg);
    if (s_expect_args(opts, argc, argv, 0, 0))
        return opts->exit_code;
    tierclient_t *client = s_connect(opts, CALL_TRIES);
    if (!client)
        return opts->exit_code;
    Tier__V1__DeadLettersReply *reply = tierclient_dead_letters(client, (unsigned) limit);
    int rc = reply ? EXIT_OK : s_failed(opts, client);
    if (reply && opts->json)
        rc = s_print_json(s_dead_json(reply));
    else if (reply)
        s_print_dead(reply);
    if (reply)
        tier__v1__dead_letters_reply__free_unpacked(reply, NULL);
    tierclient_destroy(&client);
    return rc;
}

static int s_cmd_requeue(options_t *opts, int argc, char **argv)
{
    static const struct option longopts[] = {{"reason", required_argument, NULL, 'r'},
                                             {"level", required_argument, NULL, 'l'},
                                             {"department", required_argument, NULL, 'd'},
                                             COMMON_OPTIONS,
                                             END_OPTIONS};
    const char *reason = "", *department = "";
    int level = 0, c;
    while ((c = s_next_option(opts, argc, argv, longopts)) != -1) {
        if (c == 'r')
            reason = optarg;
        if (c == 'd')
            department = optarg;
        if (c == 'l')
            s_parse_enum(opts, &tier__v1__level__descriptor, "level", optarg, &level);
    }
    if (s_expect_args(opts, argc, argv, 1, 1) == 0 && !*reason)
        s_usage_error(opts, "%s", "--reason is required (it is kept in the ticket's history)");
    if (opts->exit_code == EXIT_CONTINUE && *department && !level)
        s_usage_error(opts, "%s", "--department needs --level (the queue is level/department)");
    if (opts->exit_code != EXIT_CONTINUE)
        return opts->exit_code;
    tierclient_t *client = s_connect(opts, CALL_TRIES);
    if (!client)
        return opts->exit_code;
    Tier__V1__Ticket *ticket =
        tierclient_requeue(client, argv[optind], (Tier__V1__Level) level, department, reason);
    return s_finish_ticket(opts, client, ticket, s_print_ok);
}

// ---------------------------------------------------------------------------
// rules test

#define STDIN_CHUNK 4096      // bytes read from stdin at once
#define STDIN_MAX   (1 << 20) // a ticket larger than this is a mistake

// All of stdin, NUL-terminated, or NULL with a usage error. Caller frees.
static char *s_read_stdin(options_t *opts)
{
    size_t size = 0;
    char *text = NULL;
    while (size <= STDIN_MAX) {
        char *grown = realloc(text, size + STDIN_CHUNK + 1);
        if (!grown)
            break;
        text = grown;
        size_t n = fread(text + size, 1, STDIN_CHUNK, stdin);
        size += n;
        text[size] = '\0';
        if (n < STDIN_CHUNK && (feof(stdin) || ferror(stdin)))
            break;
    }
    if (text && !ferror(stdin) && size <= STDIN_MAX)
        return text;
    s_usage_error(opts, "%s",
                  size > STDIN_MAX ? "the ticket on stdin is larger than 1 MiB"
                                   : "cannot read the ticket from stdin");
    free(text);
    return NULL;
}

// The ticket JSON on stdin, read into *ticket with submit's defaults for a
// missing channel, priority and level. Returns the JSON the ticket borrows
// its strings from (caller deletes it after tierjson_ticket_clear), or NULL
// with a usage error.
static cJSON *s_read_ticket(options_t *opts, Tier__V1__Ticket *ticket)
{
    char *text = s_read_stdin(opts);
    if (!text)
        return NULL;
    const char *end = NULL;
    cJSON *json = cJSON_ParseWithOpts(text, &end, true);
    if (!json) {
        char near[TEXT_MAX];
        snprintf(near, sizeof near, "%s", end && *end ? end : "the end");
        s_usage_error(opts, "the ticket on stdin is not JSON: error near \"%s\"", near);
    } else if (tierjson_ticket_from(json, ticket)) {
        s_usage_error(opts, "the ticket on stdin: %s", tierjson_error());
        cJSON_Delete(json);
        json = NULL;
    }
    free(text);
    if (!json)
        return NULL;
    if (!cJSON_HasObjectItem(json, "channel"))
        ticket->channel = TIER__V1__CHANNEL__CHANNEL_CHAT;
    if (!cJSON_HasObjectItem(json, "priority"))
        ticket->priority = TIER__V1__PRIORITY__PRIORITY_NORMAL;
    if (!cJSON_HasObjectItem(json, "level"))
        ticket->level = TIER__V1__LEVEL__LEVEL_L1;
    return json;
}

// "due in 5m00s", or "no target" for 0.
static const char *s_due(uint64_t ms, char *buffer)
{
    char duration[TEXT_MAX];
    if (!ms)
        return "no target";
    snprintf(buffer, TEXT_MAX, "due in %s", s_duration(ms, duration));
    return buffer;
}

static void s_print_rules_test(const Tier__V1__RulesTestReply *r)
{
    static const Tier__V1__Ticket empty = TIER__V1__TICKET__INIT;
    const Tier__V1__Ticket *t = r->ticket ? r->ticket : &empty;
    char place[TEXT_MAX], first[TEXT_MAX], resolution[TEXT_MAX];
    int width = 0;
    for (size_t i = 0; i < r->n_hits; i++)
        width = s_max(width, (int) strlen(r->hits[i]->rule));
    printf(r->n_hits ? "rules fired:\n" : "no rule fired\n");
    for (size_t i = 0; i < r->n_hits; i++)
        printf("  %-*s  %s\n", width, r->hits[i]->rule, r->hits[i]->action);
    char *tags = s_join(t->tags, t->n_tags, ", ");
    printf("would go to %s\n", s_place(t->level, t->department, place));
    printf("  priority        %s\n",
           tierjson_enum_name(&tier__v1__priority__descriptor, t->priority));
    printf("  tags            %s\n", tags ? tags : "");
    printf("  SLA policy      %s\n", *r->sla_policy ? r->sla_policy : "-");
    printf("  first response  %s\n", s_due(r->first_response_due_ms, first));
    printf("  resolution      %s\n", s_due(r->resolution_due_ms, resolution));
    free(tags);
}

static int s_cmd_rules(options_t *opts, int argc, char **argv)
{
    static const struct option longopts[] = {COMMON_OPTIONS, END_OPTIONS};
    while (s_next_option(opts, argc, argv, longopts) != -1)
        ;
    if (s_expect_args(opts, argc, argv, 1, 1))
        return opts->exit_code;
    if (strcmp(argv[optind], "test") != 0) {
        s_usage_error(opts, "unknown rules command \"%s\" (there is: test)", argv[optind]);
        return opts->exit_code;
    }
    Tier__V1__Ticket ticket;
    cJSON *json = s_read_ticket(opts, &ticket);
    if (!json)
        return opts->exit_code;
    tierclient_t *client = s_connect(opts, CALL_TRIES);
    Tier__V1__RulesTestReply *reply = client ? tierclient_rules_test(client, &ticket) : NULL;
    int rc = !client ? opts->exit_code : reply ? EXIT_OK : s_failed(opts, client);
    if (reply && opts->json)
        rc = s_print_json(tierjson_rules_test(reply));
    else if (reply)
        s_print_rules_test(reply);
    if (reply)
        tier__v1__rules_test_reply__free_unpacked(reply, NULL);
    tierclient_destroy(&client);
    tierjson_ticket_clear(&ticket);
    cJSON_Delete(json);
    return rc;
}

// ---------------------------------------------------------------------------
// report

#define MS_PER_WEEK     (7 * MS_PER_DAY)
#define PERCENT         100.0
#define SINCE_TEXT      "24h"                // --since default, as the router's own default range
#define TENTHS_BELOW_MS (10 * MS_PER_SECOND) // durations shown with tenths of a second

static const char *s_groupings[] = {"channel", "level", "department", "agent", "hour", "day"};
#define GROUPINGS (sizeof s_groupings / sizeof s_groupings[0])

// "90s", "30m", "24h", "7d", "2w" (a bare number is seconds) in ms; 0 if not one.
static uint64_t s_parse_since(const char *text)
{
    static const struct {
        const char *suffix;
        uint64_t ms;
    } units[] = {{"", MS_PER_SECOND}, {"s", MS_PER_SECOND}, {"m", MS_PER_MINUTE},
                 {"h", MS_PER_HOUR},  {"d", MS_PER_DAY},    {"w", MS_PER_WEEK}};
    char *end;
    if (!isdigit((unsigned char) *text))
        return 0;
    unsigned long long count = strtoull(text, &end, 10);
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (strcmp(end, units[i].suffix) == 0 && count <= UINT64_MAX / units[i].ms)
            return count * units[i].ms;
    return 0;
}

// Adds the scalar fields of a report row under their tier.proto names, so
// a field added to ReportRow shows without code here. false: out of memory.
static bool s_add_report_fields(cJSON *json, const Tier__V1__ReportRow *row, bool with_key)
{
    const ProtobufCMessageDescriptor *d = row->base.descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        const char *member = (const char *) row + f->offset;
        cJSON *item = NULL;
        if (f->label == PROTOBUF_C_LABEL_REPEATED || (!with_key && strcmp(f->name, "key") == 0))
            continue;
        if (f->type == PROTOBUF_C_TYPE_DOUBLE)
            item = cJSON_CreateNumber(*(const double *) member);
        else if (f->type == PROTOBUF_C_TYPE_UINT64)
            item = cJSON_CreateNumber((double) *(const uint64_t *) member);
        else if (f->type == PROTOBUF_C_TYPE_UINT32)
            item = cJSON_CreateNumber(*(const uint32_t *) member);
        else if (f->type == PROTOBUF_C_TYPE_STRING)
            item = cJSON_CreateString(*(char *const *) member ? *(char *const *) member : "");
        else
            continue;
        if (!item || !cJSON_AddItemToObject(json, f->name, item)) {
            cJSON_Delete(item);
            return false;
        }
    }
    return true;
}

// {"since_ms","until_ms","by", the total's fields, "rows":[{"key", fields}]}
static cJSON *s_report_json(const Tier__V1__ReportReply *r)
{
    static const Tier__V1__ReportRow empty = TIER__V1__REPORT_ROW__INIT;
    cJSON *json = cJSON_CreateObject();
    bool ok = json && cJSON_AddNumberToObject(json, "since_ms", (double) r->since_ms) &&
              cJSON_AddNumberToObject(json, "until_ms", (double) r->until_ms) &&
              cJSON_AddStringToObject(json, "by", r->by) &&
              s_add_report_fields(json, r->total ? r->total : &empty, false);
    cJSON *rows = ok ? cJSON_AddArrayToObject(json, "rows") : NULL;
    for (size_t i = 0; rows && i < r->n_rows; i++) {
        cJSON *row = cJSON_CreateObject();
        if (!row || !s_add_report_fields(row, r->rows[i], true) ||
            !cJSON_AddItemToArray(rows, row)) {
            cJSON_Delete(row);
            rows = NULL;
        }
    }
    if (!rows) {
        cJSON_Delete(json);
        return NULL;
    }
    return json;
}

// "42%", or "-" when there is nothing to take a share of.
static const char *s_share(double rate, bool any, char *buffer)
{
    if (!any)
        return "-";
    snprintf(buffer, TEXT_MAX, "%.0f%%", rate * PERCENT);
    return buffer;
}

// A mean or percentile in seconds as a duration ("1.4s" below ten seconds,
// where a team lead still reads tenths), or "-" without data.
static const char *s_seconds(double seconds, bool any, char *buffer)
{
    uint64_t ms = (uint64_t) (seconds * MS_PER_SECOND + 0.5);
    if (!any)
        return "-";
    if (ms < MS_PER_SECOND || ms >= TENTHS_BELOW_MS)
        return s_duration(ms, buffer);
    snprintf(buffer, TEXT_MAX, "%.1fs", seconds);
    return buffer;
}

static void s_print_report_row(const Tier__V1__ReportRow *r, const char *key, int width)
{
    char frt[TEXT_MAX], response[TEXT_MAX], resolution[TEXT_MAX], p50[TEXT_MAX], p90[TEXT_MAX];
    char abandoned[TEXT_MAX], one_touch[TEXT_MAX], self[TEXT_MAX], escalated[TEXT_MAX];
    char csat[2 * TEXT_MAX], share[TEXT_MAX], sla[TEXT_MAX];
    bool resolved = r->resolved > 0, any = r->created || r->resolved || r->escalated;
    if (r->ratings)
        snprintf(csat, sizeof csat, "%s (%llu)", s_share(r->csat, true, share),
                 (unsigned long long) r->ratings);
    else
        snprintf(csat, sizeof csat, "-");
    printf("%-*s  %7llu  %8llu  %5s  %7s  %8s  %10s  %7s  %7s  %7s  %4s  %5s  %9s  %4s  %s\n",
           width, key, (unsigned long long) r->created, (unsigned long long) r->resolved,
           s_share(r->abandonment_rate, r->created > 0, abandoned),
           s_seconds(r->frt_seconds, r->responded > 0, frt),
           s_seconds(r->response_seconds, r->response_seconds > 0, response),
           s_seconds(r->resolution_seconds, resolved, resolution),
           s_seconds(r->resolution_p50_seconds, resolved, p50),
           s_seconds(r->resolution_p90_seconds, resolved, p90),
           s_share(r->one_touch_rate, resolved, one_touch),
           s_share(r->self_service_rate, resolved, self),
           s_share(r->escalation_rate, any, escalated), csat,
           s_share(r->sla_attainment, r->sla_responses > 0, sla), *r->grade ? r->grade : "-");
}

static void s_print_report(const Tier__V1__ReportReply *r, const char *since)
{
    static const Tier__V1__ReportRow empty = TIER__V1__REPORT_ROW__INIT;
    char from[TEXT_MAX], to[TEXT_MAX];
    int width = (int) strlen(*r->by ? r->by : "total");
    for (size_t i = 0; i < r->n_rows; i++)
        width = s_max(width, (int) strlen(r->rows[i]->key));
    printf("service levels of the last %s: %s to %s%s%s\n\n", since, s_date(r->since_ms, from),
           s_date(r->until_ms, to), *r->by ? ", by " : "", r->by);
    char header[TEXT_MAX];
    snprintf(header, sizeof header, "%s", *r->by ? r->by : "total");
    for (char *c = header; *c; c++)
        *c = (char) toupper((unsigned char) *c);
    printf("%-*s  %7s  %8s  %5s  %7s  %8s  %10s  %7s  %7s  %7s  %4s  %5s  %9s  %4s  %s\n", width,
           header, "CREATED", "RESOLVED", "ABAND", "FRT", "RESPONSE", "RESOLUTION", "P50", "P90",
           "1-TOUCH", "SELF", "ESCAL", "CSAT", "SLA", "GRADE");
    for (size_t i = 0; i < r->n_rows; i++)
        s_print_report_row(r->rows[i], r->rows[i]->key, width);
    if (r->n_rows)
        printf("\n");
    s_print_report_row(r->total ? r->total : &empty, "TOTAL", width);
    printf(
        "\nFRT: mean first response. RESOLUTION: mean; P50, P90 estimated from buckets. "
        "ABAND: of created.\n1-TOUCH, SELF (resolved by a bot alone): of resolved. ESCAL: of "
        "assignments. CSAT: 4-5\nratings of all ratings (how many). SLA: first responses "
        "within target. GRADE: the seed's,\nby channel; the total's is its weakest channel's.\n");
}

static int s_cmd_report(options_t *opts, int argc, char **argv)
{
    static const struct option longopts[] = {{"since", required_argument, NULL, 's'},
                                             {"by", required_argument, NULL, 'b'},
                                             COMMON_OPTIONS,
                                             END_OPTIONS};
    const char *since = SINCE_TEXT, *by = "";
    int c;
    while ((c = s_next_option(opts, argc, argv, longopts)) != -1) {
        if (c == 's' && !s_parse_since(since = optarg))
            s_usage_error(opts, "--since \"%s\" is not a duration like 30m, 24h, 7d or 2w", optarg);
        if (c == 'b')
            by = optarg;
    }
    bool known = false;
    for (size_t i = 0; i < GROUPINGS; i++)
        known = known || strcmp(by, s_groupings[i]) == 0;
    if (opts->exit_code == EXIT_CONTINUE && *by && !known)
        s_usage_error(opts, "--by \"%s\" is not channel, level, department, agent, hour or day",
                      by);
    if (s_expect_args(opts, argc, argv, 0, 0))
        return opts->exit_code;
    tierclient_t *client = s_connect(opts, CALL_TRIES);
    if (!client)
        return opts->exit_code;
    uint64_t now = (uint64_t) zclock_time(), range = s_parse_since(since);
    Tier__V1__ReportReply *reply = tierclient_report(client, now > range ? now - range : 1, 0, by);
    int rc = reply ? EXIT_OK : s_failed(opts, client);
    if (reply && opts->json)
        rc = s_print_json(s_report_json(reply));
    else if (reply)
        s_print_report(reply, since);
    if (reply)
        tier__v1__report_reply__free_unpacked(reply, NULL);
    tierclient_destroy(&client);
    return rc;
}

// ---------------------------------------------------------------------------
// watch

static void s_print_event(const Tier__V1__Event *e)
{
    char at[TEXT_MAX], place[TEXT_MAX], from[TEXT_MAX], wait[TEXT_MAX];
    printf("%s #%llu %-10s", s_clock(e->at_ms, at), (unsigned long long) e->seq,
           tierjson_enum_name(&tier__v1__event_kind__descriptor, e->kind));
    if (*e->ticket_id)
        printf(" %s", e->ticket_id);
    if (e->from_level || *e->from_department)
        printf(" %s ->", s_place(e->from_level, e->from_department, from));
    if (e->level || *e->department)
        printf(" %s", s_place(e->level, e->department, place));
    if (e->kind == TIER__V1__EVENT_KIND__EVENT_QUEUE)
        printf(" depth %u%s%s", e->depth, e->oldest_ms ? " oldest " : "",
               e->oldest_ms ? s_ago(e->oldest_ms, wait) : "");
    if (e->channel)
        printf(" %s", tierjson_enum_name(&tier__v1__channel__descriptor, e->channel));
    if (e->priority)
        printf(" %s", tierjson_enum_name(&tier__v1__priority__descriptor, e->priority));
    if (*e->agent)
        printf(" agent %s", e->agent);
    if (e->agent_state)
        printf(" %s", tierjson_enum_name(&tier__v1__agent_state__descriptor, e->agent_state));
    if (e->attempt)
        printf(" attempt %u", e->attempt);
    if (e->csat)
        printf(" csat %u", e->csat);
    if (*e->reason)
        printf(": %s", e->reason);
    printf("\n");
    fflush(stdout);
}

// Opens a SUB socket on the events endpoint with the topics in argv[optind..].
static zsock_t *s_subscribe(options_t *opts, int argc, char **argv)
{
    zsock_t *sub = zsock_new(ZMQ_SUB);
    if (!sub || zsock_attach(sub, opts->events, false)) {
        fprintf(stderr, "tierctl: cannot connect to events endpoint \"%s\"\n", opts->events);
        opts->exit_code = EXIT_USAGE;
        zsock_destroy(&sub);
        return NULL;
    }
    for (int i = optind; i < argc; i++)
        zsock_set_subscribe(sub, argv[i]);
    if (optind == argc)
        zsock_set_subscribe(sub, DEFAULT_TOPIC);
    return sub;
}

// True when an event with this seq was shown already (it comes once per topic).
static bool s_seen(uint64_t seq, uint64_t *last_seq)
{
    bool restarted = *last_seq > seq && *last_seq - seq > SEQ_RESET_WINDOW;
    if (seq <= *last_seq && !restarted)
        return true;
    *last_seq = seq;
    return false;
}

// The next event, skipping (with a word on stderr) what is not one; NULL
// when interrupted. Caller frees with tier__v1__event__free_unpacked.
static Tier__V1__Event *s_recv_event(options_t *opts, zsock_t *sub)
{
    zmsg_t *msg;
    while ((msg = zmsg_recv(sub))) {
        zframe_t *frame = zmsg_last(msg); // [topic][event]
        Tier__V1__Event *event =
            zmsg_size(msg) == 2
                ? tier__v1__event__unpack(NULL, zframe_size(frame), zframe_data(frame))
                : NULL;
        zmsg_destroy(&msg);
        if (event)
            return event;
        fprintf(stderr, "tierctl: dropped a message from %s that is not an event\n", opts->events);
    }
    return NULL;
}

static int s_cmd_watch(options_t *opts, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"count", required_argument, NULL, 'n'}, COMMON_OPTIONS, END_OPTIONS};
    long count = -1; // events to show before exiting; -1 = until interrupted
    int c;
    while ((c = s_next_option(opts, argc, argv, longopts)) != -1)
        if (c == 'n' && (count = s_parse_count(optarg)) < 0)
            s_usage_error(opts, "--count \"%s\" is not a positive number", optarg);
    if (opts->exit_code != EXIT_CONTINUE)
        return opts->exit_code;
    zsock_t *sub = s_subscribe(opts, argc, argv);
    if (!sub)
        return opts->exit_code;
    uint64_t last_seq = 0;
    Tier__V1__Event *event;
    while (count != 0 && (event = s_recv_event(opts, sub))) {
        if (!s_seen(event->seq, &last_seq)) {
            if (opts->json)
                s_print_json(tierjson_event(event));
            else
                s_print_event(event);
            if (count > 0)
                count--;
        }
        tier__v1__event__free_unpacked(event, NULL);
    }
    zsock_destroy(&sub);
    return EXIT_OK;
}

// ---------------------------------------------------------------------------
// main

static const command_t s_commands[] = {
    {"submit", s_cmd_submit,
     "--subject S [--body B] [--channel chat] [--external-id X]\n"
     "       [--customer ID] [--name N] [--email E] [--phone P] [--vip]\n"
     "       [--priority normal] [--level L1] [--department D] [--tag T]...",
     "Submit a ticket; prints its id (\"duplicate of ID\" if --external-id was known)"},
    {"show", s_cmd_show, "ID", "Show a ticket with its history"},
    {"cancel", s_cmd_cancel, "ID [--reason R]", "Cancel a ticket for the customer"},
    {"reply", s_cmd_reply, "ID TEXT", "Add a message from the customer to a ticket"},
    {"rate", s_cmd_rate, "ID N [--comment C]", "Rate a ticket, N from 1 to 5"},
    {"queues", s_cmd_queues, "", "List the queues with their depth and oldest wait"},
    {"agents", s_cmd_agents, "", "List the agents with their load and state"},
    {"snapshot", s_cmd_snapshot, "", "Show every queue's tickets and the agents"},
    {"dead", s_cmd_dead, "[--limit N]",
     "List dead letters (tickets delivered too often), most recent first"},
    {"requeue", s_cmd_requeue, "ID --reason R [--level L] [--department D]",
     "Put a dead letter back in a queue, its attempts reset"},
    {"rules", s_cmd_rules,
     "test < TICKET.json\n"
     "TICKET.json is a ticket in the JSON form of tierctl show --json (subject, body,\n"
     "channel, priority, level, department, tags, customer{id,name,vip,email,phone},\n"
     "external_id; missing channel, priority and level default as in submit);\n"
     "nothing is submitted",
     "Show which intake rules fire for a ticket and where it would go"},
    {"report", s_cmd_report,
     "[--since 24h] [--by channel|level|department|agent|hour|day]\n"
     "--since is a duration back from now: 30m, 24h, 7d, 2w; --by adds a row per\n"
     "group (hour: of the day, local time; day: local date) to the total",
     "Service levels: response and resolution times, rates, CSAT, grades"},
    {"watch", s_cmd_watch,
     "[TOPIC]... [--count N]\n"
     "TOPIC is all/ (the default), level/L1/, dept/NAME/, ticket/ID/ or agent/ID/;\n"
     "with --count, exit after N events",
     "Print events as they happen"},
};
#define COMMAND_COUNT (sizeof s_commands / sizeof s_commands[0])

static void s_print_usage(FILE *out)
{
    fprintf(out,
            "usage: tierctl [--router EP] [--events EP] [--timeout MS] [--json] COMMAND ...\n"
            "\n"
            "  --router EP   tierd clients endpoint ($TIER_ROUTER, default " DEFAULT_ROUTER ")\n"
            "  --events EP   tierd events endpoint ($TIER_EVENTS, default " DEFAULT_EVENTS ")\n"
            "  --timeout MS  how long to wait for an answer (default 5000)\n"
            "  --json        print JSON, one object per line\n"
            "\ncommands:\n");
    for (size_t i = 0; i < COMMAND_COUNT; i++)
        fprintf(out, "  %-9s %s\n", s_commands[i].name, s_commands[i].summary);
    fprintf(out, "\n'tierctl COMMAND --help' explains a command. Exit codes: 0 ok, 1 the router "
                 "refused,\n2 usage error, 3 no answer within --timeout.\n");
}

// Parses the global options; returns the index of the command or -1.
static int s_parse_globals(options_t *opts, int argc, char **argv)
{
    static const struct option longopts[] = {{"router", required_argument, NULL, 'r'},
                                             {"events", required_argument, NULL, 'e'},
                                             {"timeout", required_argument, NULL, 't'},
                                             COMMON_OPTIONS,
                                             END_OPTIONS};
    int c;
    while (opts->exit_code == EXIT_CONTINUE &&
           (c = getopt_long(argc, argv, "+:h", longopts, NULL)) != -1) {
        if (c == 'r')
            opts->router = optarg;
        if (c == 'e')
            opts->events = optarg;
        if (c == 'j')
            opts->json = true;
        if (c == 't' && (opts->timeout_ms = (int) s_parse_count(optarg)) < 0)
            s_usage_error(opts, "--timeout \"%s\" is not a positive number of ms", optarg);
        if (c == 'h')
            s_print_usage(stdout);
        if (c == 'h')
            opts->exit_code = EXIT_OK;
        if (c == ':')
            s_usage_error(opts, "option %s needs a value", argv[optind - 1]);
        if (c == '?')
            s_usage_error(opts, "unknown option %s", argv[optind - 1]);
    }
    if (opts->exit_code != EXIT_CONTINUE)
        return -1;
    if (optind < argc)
        return optind;
    s_print_usage(stderr);
    opts->exit_code = EXIT_USAGE;
    return -1;
}

int main(int argc, char **argv)
{
    options_t opts = {getenv("TIER_ROUTER"), getenv("TIER_EVENTS"), DEFAULT_TIMEOUT_MS, false, NULL,
                      EXIT_CONTINUE};
    if (!opts.router || !*opts.router)
        opts.router = DEFAULT_ROUTER;
    if (!opts.events || !*opts.events)
        opts.events = DEFAULT_EVENTS;
    opterr = 0; // we say what was wrong ourselves, naming the command
    int first = s_parse_globals(&opts, argc, argv);
    if (first < 0)
        return opts.exit_code;
    for (size_t i = 0; i < COMMAND_COUNT; i++) {
        if (strcmp(argv[first], s_commands[i].name) == 0) {
            opts.command = &s_commands[i];
            optind = 0; // glibc: start over, with argv[0] = the command
            return s_commands[i].run(&opts, argc - first, argv + first);
        }
    }
    fprintf(stderr, "tierctl: unknown command \"%s\" (see tierctl --help)\n", argv[first]);
    return EXIT_USAGE;
}
