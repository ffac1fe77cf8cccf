/*  metrics.c — see metrics.h.

    Reading order: the tables (bounds, SLA targets), the object, the verbs
    the server calls (events, queues, refusals, Redis), then the rendering,
    one function per family of series.
*/
#include "metrics.h"
#include "tierjson.h"

#include <czmq.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LEVELS       4  //  Tier__V1__Level values 0..3 (0: none)
#define CHANNELS     16 //  room for Tier__V1__Channel values
#define STATES       16 //  room for Tier__V1__TicketState values
#define AGENT_STATES 8  //  room for Tier__V1__AgentState values
#define KINDS        3  //  Tier__V1__EscalationKind values 0..2
#define ERROR_CODES  32 //  room for Tier__V1__ErrorCode values
#define BUCKETS_MAX  24 //  histogram buckets, +Inf included
#define MS_PER_S     1000.0
#define NUMBER_MAX   32 //  a formatted bound

//  Assignment latency: queued -> offered. Seconds to an hour: a bot farm
//  offers in milliseconds, a short-staffed night in tens of minutes.
static const double s_latency_bounds[] = {0.01, 0.05, 0.1, 0.25, 0.5, 1,    2.5, 5,
                                          10,   30,   60,  300,  900, 1800, 3600};
//  Resolution: created -> resolved, a second to a week (the seed's grades
//  speak of minutes for chat and days for e-mail).
static const double s_resolution_bounds[] = {1,    5,     30,    60,    300,    900,   1800,
                                             3600, 14400, 28800, 86400, 259200, 604800};
#define BOUNDS(a) (sizeof(a) / sizeof((a)[0]))

//  SLA targets, from the event's reason ("first response target missed",
//  "resolution target 80% used", "wait at this level ...", "promise
//  missed"): a fixed set, so that the label stays small.
typedef enum {
    SLA_FIRST_RESPONSE,
    SLA_RESOLUTION,
    SLA_WAIT,
    SLA_PROMISE,
    SLA_OTHER,
    SLA_TARGETS
} sla_target_t;
static const char *s_sla_names[SLA_TARGETS] = {"first_response", "resolution", "wait", "promise",
                                               "other"};
static const char *s_sla_words[SLA_TARGETS] = {"first response", "resolution", "wait", "promise",
                                               NULL};

typedef struct {
    uint64_t buckets[BUCKETS_MAX]; //  observations per bucket (not cumulative)
    uint64_t count;                //  observations
    double sum;                    //  of the observed values, seconds
} histogram_t;

typedef struct {
    int level;          //  Tier__V1__Level
    char *department;   //  "" = the level's general queue (owned)
    uint32_t depth;     //  tickets waiting
    uint64_t oldest_ms; //  queued_ms of the oldest, 0 if empty
} queue_t;

typedef struct {
    int level; //  the level it registered at
    int state; //  Tier__V1__AgentState
} agent_t;

struct _metrics_t {
    pthread_mutex_t mutex;              //  the server thread writes, the HTTP thread renders
    bool redis_up;                      //  the store is connected
    uint64_t created[LEVELS][CHANNELS]; //  by level at intake, channel
    uint64_t closed[STATES][CHANNELS];  //  by final state, channel
    uint64_t escalations[LEVELS][LEVELS][KINDS]; //  from, to, kind
    uint64_t sla_warnings[LEVELS][SLA_TARGETS];  //  by level, target
    uint64_t sla_breaches[LEVELS][SLA_TARGETS];  //  by level, target
    uint64_t rejected[ERROR_CODES];              //  by error code
    histogram_t assignment[LEVELS];              //  queued -> offered, by level
    histogram_t resolution[CHANNELS];            //  created -> resolved, by channel
    queue_t *queues;                             //  every queue seen (owned array)
    size_t queue_count, queue_room;              //  in use, allocated
    zhashx_t *agents;                            //  agent id -> agent_t (owned)
};

static void s_agent_free(void **item_p)
{
    free(*item_p);
    *item_p = NULL;
}

metrics_t *metrics_new(void)
{
    metrics_t *self = calloc(1, sizeof(metrics_t));
    if (!self)
        return NULL;
    pthread_mutex_init(&self->mutex, NULL);
    self->agents = zhashx_new();
    zhashx_set_destructor(self->agents, s_agent_free);
    return self;
}

void metrics_destroy(metrics_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    metrics_t *self = *self_p;
    for (size_t i = 0; i < self->queue_count; i++)
        free(self->queues[i].department);
    free(self->queues);
    zhashx_destroy(&self->agents);
    pthread_mutex_destroy(&self->mutex);
    free(self);
    *self_p = NULL;
}

//  ---------------------------------------------------------------------------
//  Feeding

static bool s_in(int value, int limit)
{
    return value >= 0 && value < limit;
}

static void s_observe(histogram_t *h, const double *bounds, size_t count, double value)
{
    size_t i = 0;
    while (i < count && value > bounds[i])
        i++;
    h->buckets[i]++; //  i == count: only the +Inf bucket
    h->count++;
    h->sum += value;
}

//  Seconds from start_ms to at_ms, or -1 when start is unknown or later.
static double s_elapsed_s(uint64_t start_ms, uint64_t at_ms)
{
    return start_ms && at_ms >= start_ms ? (double) (at_ms - start_ms) / MS_PER_S : -1;
}

static sla_target_t s_sla_target(const char *reason)
{
    for (int i = 0; i < SLA_OTHER; i++)
        if (strstr(reason, s_sla_words[i]))
            return (sla_target_t) i;
    return SLA_OTHER;
}

static void s_set_queue(metrics_t *self, int level, const char *department, uint32_t depth,
                        uint64_t oldest_ms)
{
    queue_t *q = NULL;
    for (size_t i = 0; !q && i < self->queue_count; i++)
        if (self->queues[i].level == level && strcmp(self->queues[i].department, department) == 0)
            q = &self->queues[i];
    if (!q) {
        if (self->queue_count == self->queue_room) {
            size_t room = self->queue_room ? 2 * self->queue_room : 16;
            queue_t *grown = realloc(self->queues, room * sizeof(queue_t));
            if (!grown)
                return; //  out of memory: this queue goes unreported
            self->queues = grown;
            self->queue_room = room;
        }
        q = &self->queues[self->queue_count];
        q->level = level;
        q->department = strdup(department);
        if (!q->department)
            return;
        self->queue_count++;
    }
    q->depth = depth;
    q->oldest_ms = oldest_ms;
}

//  An agent's presence: the level comes with READY (registration); later
//  state changes keep it; GONE forgets the agent.
static void s_agent_event(metrics_t *self, const Tier__V1__Event *e)
{
    if (e->agent_state == TIER__V1__AGENT_STATE__AGENT_GONE) {
        zhashx_delete(self->agents, e->agent);
        return;
    }
    agent_t *agent = zhashx_lookup(self->agents, e->agent);
    if (!agent) {
        agent = calloc(1, sizeof(agent_t));
        if (!agent)
            return;
        zhashx_insert(self->agents, e->agent, agent);
    }
    if (e->level)
        agent->level = e->level;
    agent->state = e->agent_state;
}

static void s_ticket_event(metrics_t *self, const Tier__V1__Event *e)
{
    int level = s_in(e->level, LEVELS) ? e->level : 0;
    int channel = s_in(e->channel, CHANNELS) ? e->channel : 0;
    double seconds;
    switch (e->kind) {
    case TIER__V1__EVENT_KIND__EVENT_CREATED:
        self->created[level][channel]++;
        break;
    case TIER__V1__EVENT_KIND__EVENT_RESOLVED:
        if ((seconds = s_elapsed_s(e->created_ms, e->at_ms)) >= 0)
            s_observe(&self->resolution[channel], s_resolution_bounds, BOUNDS(s_resolution_bounds),
                      seconds);
        /* fall through */
    case TIER__V1__EVENT_KIND__EVENT_ABANDONED:
    case TIER__V1__EVENT_KIND__EVENT_DEAD:
        if (s_in(e->state, STATES))
            self->closed[e->state][channel]++;
        break;
    case TIER__V1__EVENT_KIND__EVENT_ESCALATED:
        if (s_in(e->from_level, LEVELS))
            self->escalations[e->from_level][level]
                             [e->from_level != e->level
                                  ? TIER__V1__ESCALATION_KIND__ESCALATION_HIERARCHICAL
                                  : TIER__V1__ESCALATION_KIND__ESCALATION_FUNCTIONAL]++;
        break;
    case TIER__V1__EVENT_KIND__EVENT_OFFERED:
        if ((seconds = s_elapsed_s(e->queued_ms, e->at_ms)) >= 0)
            s_observe(&self->assignment[level], s_latency_bounds, BOUNDS(s_latency_bounds),
                      seconds);
        break;
    case TIER__V1__EVENT_KIND__EVENT_SLA_WARNING:
        self->sla_warnings[level][s_sla_target(e->reason)]++;
        break;
    case TIER__V1__EVENT_KIND__EVENT_SLA_BREACH:
        self->sla_breaches[level][s_sla_target(e->reason)]++;
        break;
    default:
        break;
    }
}

void metrics_on_event(metrics_t *self, const Tier__V1__Event *event)
{
    pthread_mutex_lock(&self->mutex);
    if (event->kind == TIER__V1__EVENT_KIND__EVENT_QUEUE)
        s_set_queue(self, event->level, event->department, event->depth, event->oldest_ms);
    else if (event->kind == TIER__V1__EVENT_KIND__EVENT_AGENT)
        s_agent_event(self, event);
    else
        s_ticket_event(self, event);
    pthread_mutex_unlock(&self->mutex);
}

void metrics_set_queue(metrics_t *self, int level, const char *department, uint32_t depth,
                       uint64_t oldest_ms)
{
    pthread_mutex_lock(&self->mutex);
    s_set_queue(self, level, department, depth, oldest_ms);
    pthread_mutex_unlock(&self->mutex);
}

void metrics_rejected(metrics_t *self, int error_code)
{
    pthread_mutex_lock(&self->mutex);
    if (s_in(error_code, ERROR_CODES))
        self->rejected[error_code]++;
    pthread_mutex_unlock(&self->mutex);
}

void metrics_redis_up(metrics_t *self, bool up)
{
    pthread_mutex_lock(&self->mutex);
    self->redis_up = up;
    pthread_mutex_unlock(&self->mutex);
}

//  ---------------------------------------------------------------------------
//  Rendering: text format 0.0.4, one HELP and TYPE per family.

static void s_family(FILE *out, const char *name, const char *type, const char *help)
{
    fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

//  A label value with \, " and newline escaped.
static void s_value(FILE *out, const char *text)
{
    for (const char *c = text; *c; c++) {
        if (*c == '\\' || *c == '"')
            fprintf(out, "\\%c", *c);
        else if (*c == '\n')
            fputs("\\n", out);
        else
            fputc(*c, out);
    }
}

static const char *s_level(int level)
{
    return tierjson_enum_name(&tier__v1__level__descriptor, level);
}

static const char *s_channel(int channel)
{
    return tierjson_enum_name(&tier__v1__channel__descriptor, channel);
}

//  Channels the proto knows, from 1: the label values of every channel series.
static bool s_channel_known(int channel)
{
    return channel > 0 &&
           protobuf_c_enum_descriptor_get_value(&tier__v1__channel__descriptor, channel) != NULL;
}

static void s_queues(metrics_t *self, FILE *out, int64_t now_ms)
{
    s_family(out, "tier_queue_depth", "gauge", "Tickets waiting in a queue.");
    for (size_t i = 0; i < self->queue_count; i++) {
        fprintf(out, "tier_queue_depth{level=\"%s\",department=\"", s_level(self->queues[i].level));
        s_value(out, self->queues[i].department);
        fprintf(out, "\"} %u\n", self->queues[i].depth);
    }
    s_family(out, "tier_queue_oldest_age_seconds", "gauge",
             "How long the oldest ticket of a queue has waited in it; 0 when empty.");
    for (size_t i = 0; i < self->queue_count; i++) {
        const queue_t *q = &self->queues[i];
        double age = q->depth ? s_elapsed_s(q->oldest_ms, (uint64_t) now_ms) : 0;
        fprintf(out, "tier_queue_oldest_age_seconds{level=\"%s\",department=\"", s_level(q->level));
        s_value(out, q->department);
        fprintf(out, "\"} %.3f\n", age > 0 ? age : 0);
    }
}

static void s_agents(metrics_t *self, FILE *out)
{
    uint64_t count[LEVELS][AGENT_STATES] = {{0}};
    for (agent_t *a = zhashx_first(self->agents); a; a = zhashx_next(self->agents))
        if (s_in(a->level, LEVELS) && s_in(a->state, AGENT_STATES))
            count[a->level][a->state]++;
    s_family(out, "tier_agents", "gauge", "Agents connected to this router, by level and state.");
    for (int level = 1; level < LEVELS; level++)
        for (int state = TIER__V1__AGENT_STATE__AGENT_READY;
             state <= TIER__V1__AGENT_STATE__AGENT_DRAINING; state++)
            fprintf(out, "tier_agents{level=\"%s\",state=\"%s\"} %llu\n", s_level(level),
                    tierjson_enum_name(&tier__v1__agent_state__descriptor, state),
                    (unsigned long long) count[level][state]);
}

static void s_tickets(metrics_t *self, FILE *out)
{
    static const int closed_states[] = {TIER__V1__TICKET_STATE__STATE_RESOLVED,
                                        TIER__V1__TICKET_STATE__STATE_ABANDONED,
                                        TIER__V1__TICKET_STATE__STATE_DEAD};
    s_family(out, "tier_tickets_created_total", "counter",
             "Tickets accepted by intake, by the level they were queued at and channel.");
    for (int level = 1; level < LEVELS; level++)
        for (int channel = 1; channel < CHANNELS; channel++)
            if (s_channel_known(channel))
                fprintf(out, "tier_tickets_created_total{level=\"%s\",channel=\"%s\"} %llu\n",
                        s_level(level), s_channel(channel),
                        (unsigned long long) self->created[level][channel]);
    s_family(out, "tier_tickets_closed_total", "counter",
             "Tickets that reached an outcome: resolved, abandoned (cancelled by the customer) or "
             "dead (delivered too many times).");
    for (size_t i = 0; i < BOUNDS(closed_states); i++)
        for (int channel = 1; channel < CHANNELS; channel++)
            if (s_channel_known(channel))
                fprintf(out, "tier_tickets_closed_total{state=\"%s\",channel=\"%s\"} %llu\n",
                        tierjson_enum_name(&tier__v1__ticket_state__descriptor, closed_states[i]),
                        s_channel(channel),
                        (unsigned long long) self->closed[closed_states[i]][channel]);
}

static void s_escalations(metrics_t *self, FILE *out)
{
    s_family(out, "tier_escalations_total", "counter",
             "Escalations by the level they left, the level they went to and kind "
             "(hierarchical: up a level; functional: to a department).");
    for (int from = 1; from < LEVELS; from++)
        for (int to = 1; to < LEVELS; to++)
            for (int kind = 1; kind < KINDS; kind++) {
                uint64_t n = self->escalations[from][to][kind];
                bool usual = kind == TIER__V1__ESCALATION_KIND__ESCALATION_HIERARCHICAL
                                 ? to > from
                                 : to == from;
                if (n || usual)
                    fprintf(out, "tier_escalations_total{from=\"%s\",to=\"%s\",kind=\"%s\"} %llu\n",
                            s_level(from), s_level(to),
                            tierjson_enum_name(&tier__v1__escalation_kind__descriptor, kind),
                            (unsigned long long) n);
            }
}

static void s_sla(FILE *out, const char *name, const char *help, uint64_t counts[][SLA_TARGETS])
{
    s_family(out, name, "counter", help);
    for (int level = 1; level < LEVELS; level++)
        for (int target = 0; target < SLA_TARGETS; target++)
            fprintf(out, "%s{level=\"%s\",reason=\"%s\"} %llu\n", name, s_level(level),
                    s_sla_names[target], (unsigned long long) counts[level][target]);
}

static void s_rejected(metrics_t *self, FILE *out)
{
    s_family(out, "tier_rejected_messages_total", "counter",
             "Client requests and worker messages refused, by error code.");
    const ProtobufCEnumDescriptor *d = &tier__v1__error_code__descriptor;
    for (unsigned i = 0; i < d->n_values; i++) {
        int code = d->values[i].value;
        if (code > 0 && code < ERROR_CODES)
            fprintf(out, "tier_rejected_messages_total{reason=\"%s\"} %llu\n",
                    tierjson_enum_name(d, code), (unsigned long long) self->rejected[code]);
    }
}

//  A bound as Prometheus writes it: "0.25", "3600", never "3.6e+03".
static const char *s_bound(double bound, char *buffer)
{
    if (bound == (double) (long long) bound)
        snprintf(buffer, NUMBER_MAX, "%lld", (long long) bound);
    else
        snprintf(buffer, NUMBER_MAX, "%g", bound);
    return buffer;
}

static void s_histogram(FILE *out, const char *name, const char *label, const char *value,
                        const histogram_t *h, const double *bounds, size_t count)
{
    char buffer[NUMBER_MAX];
    uint64_t cumulative = 0;
    for (size_t i = 0; i < count; i++) {
        cumulative += h->buckets[i];
        fprintf(out, "%s_bucket{%s=\"%s\",le=\"%s\"} %llu\n", name, label, value,
                s_bound(bounds[i], buffer), (unsigned long long) cumulative);
    }
    fprintf(out, "%s_bucket{%s=\"%s\",le=\"+Inf\"} %llu\n", name, label, value,
            (unsigned long long) h->count);
    fprintf(out, "%s_sum{%s=\"%s\"} %.3f\n", name, label, value, h->sum);
    fprintf(out, "%s_count{%s=\"%s\"} %llu\n", name, label, value, (unsigned long long) h->count);
}

static void s_histograms(metrics_t *self, FILE *out)
{
    s_family(out, "tier_assignment_latency_seconds", "histogram",
             "From entering a queue to being offered to an agent, by level.");
    for (int level = 1; level < LEVELS; level++)
        s_histogram(out, "tier_assignment_latency_seconds", "level", s_level(level),
                    &self->assignment[level], s_latency_bounds, BOUNDS(s_latency_bounds));
    s_family(out, "tier_resolution_seconds", "histogram",
             "From creation to resolution, by channel.");
    for (int channel = 1; channel < CHANNELS; channel++)
        if (s_channel_known(channel))
            s_histogram(out, "tier_resolution_seconds", "channel", s_channel(channel),
                        &self->resolution[channel], s_resolution_bounds,
                        BOUNDS(s_resolution_bounds));
}

char *metrics_render(metrics_t *self, int64_t now_ms)
{
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&text, &size);
    if (!out)
        return NULL;
    pthread_mutex_lock(&self->mutex);
    s_family(out, "tier_redis_up", "gauge",
             "1 when this router owns its Redis prefix with its state loaded (it works), else 0 "
             "(Redis down, standby, loading).");
    fprintf(out, "tier_redis_up %d\n", self->redis_up ? 1 : 0);
    s_queues(self, out, now_ms);
    s_agents(self, out);
    s_tickets(self, out);
    s_escalations(self, out);
    s_sla(out, "tier_sla_warnings_total",
          "SLA targets near (warning share used), by level and target.", self->sla_warnings);
    s_sla(out, "tier_sla_breaches_total", "SLA targets missed, by level and target.",
          self->sla_breaches);
    s_rejected(self, out);
    s_histograms(self, out);
    pthread_mutex_unlock(&self->mutex);
    if (fclose(out) != 0) {
        free(text);
        return NULL;
    }
    return text;
}
