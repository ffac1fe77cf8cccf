/*  server.c — see server.h.

    Reading order: s_turn (one loop turn), then the client handlers, the
    worker handlers, the store callbacks (s_on_*), and the cron.
*/
#include "server.h"
#include "dispatch.h"
#include "events.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "notify.h"
#include "report.h"
#include "rules.h"
#include "sla.h"
#include "store.h"
#include "ticket.h"

#include <czmq.h>
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <time.h>

#define BATCH_MAX            512     //  messages read per socket per turn
#define CRON_MS              100     //  periodic work interval
#define DEPTH_REFRESH_MS     5000    //  re-read every queue depth from Redis
#define ROLLUP_MS            3600000 //  roll KPI minutes an idle system left into hours
#define ROLLUP_MINUTES       10      //  minutes rolled up per call, at most
#define STATUS_MS            1000    //  systemd STATUS= line
#define TIMERS_PER_CRON      1000    //  due timers handled per cron
#define RENEWALS_PER_CALL    256     //  agents per presence renewal call
#define LEASE_HEARTBEATS     2       //  Redis agent lease, in liveness periods
#define RESULT_TEXT_MAX      65536
#define SEND_QUEUE_MAX       1000000 //  messages queued per peer before ZeroMQ drops
#define REJECT_LOG_PER_SEC   20      //  bad input is counted always, logged up to this
#define DEAD_LETTERS_DEFAULT 100

//  What a store call was for, so its callback knows how to answer.
typedef enum {
    OP_SUBMIT,
    OP_GET,
    OP_CANCEL,
    OP_MESSAGE,
    OP_RATE,
    OP_QUEUES,
    OP_AGENTS,
    OP_SNAPSHOT,
    OP_REGISTER,
    OP_RESULT,
    OP_DRAIN,
    OP_ASSIGN,
    OP_AGENT_LOST,
    OP_HEARTBEAT,
    OP_TIMERS,
    OP_DEPTHS,
    OP_DEAD_LETTERS,
    OP_REQUEUE,
    OP_RULES_TEST,
    OP_FOLLOWUP,
    OP_REPORT,
    OP_ROLLUP,
    OP_RESEND,
} op_t;

typedef struct {
    server_t *server;         //  back pointer
    op_t op;                  //  what the call was for
    zmsg_t *envelope;         //  routing frames to answer on (owned), or NULL
    uint64_t request_id;      //  to echo
    bool with_history;        //  get: include history
    char *agent;              //  worker calls: its agent id (owned)
    uint32_t asked;           //  assign: tickets asked for
    worker_spec_t spec;       //  register: what to add on success
    char **departments;       //  register: owned copies for spec
    Tier__V1__Ticket *ticket; //  rules test: the ticket tested (owned)
} call_t;

struct _server_t {
    config_t *config;       //  borrowed
    zsock_t *clients;       //  ROUTER for integrators
    zsock_t *workers;       //  ROUTER for workers
    events_t *events;       //  PUB
    store_t *store;         //  Redis
    dispatch_t *dispatch;   //  workers and plan
    rules_t *rules;         //  intake rules (never NULL)
    metrics_t *metrics;     //  what GET /metrics shows
    http_t *http;           //  serves /metrics; NULL when [metrics] listen = off
    int64_t next_rollup_ms; //  next tier_rollup call
    int64_t now_ms;         //  clock of the current turn
    int64_t next_cron_ms, next_depths_ms, next_status_ms;
    uint64_t received;                                              //  messages read
    uint64_t rejected[TIER__V1__ERROR_CODE__ERROR_BAD_REQUEST + 1]; //  by code
    int64_t reject_log_second; //  rate limit of bad-input log lines
    int reject_logged;
};

static volatile sig_atomic_t s_stop, s_hangup;

static void s_on_signal(int sig)
{
    if (sig == SIGHUP)
        s_hangup = 1;
    else
        s_stop = 1;
}

static int64_t s_clock_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

//  ---------------------------------------------------------------------------
//  Sending

static void s_send_packed(zsock_t *sock, zmsg_t *envelope, const ProtobufCMessage *message)
{
    size_t size = protobuf_c_message_get_packed_size(message);
    zframe_t *frame = zframe_new(NULL, size);
    protobuf_c_message_pack(message, zframe_data(frame));
    zmsg_t *msg = zmsg_dup(envelope);
    zmsg_append(msg, &frame);
    zmsg_send(&msg, sock);
}

static void s_client_reply(server_t *self, zmsg_t *envelope, Tier__V1__ClientReply *reply)
{
    s_send_packed(self->clients, envelope, &reply->base);
}

static void s_worker_send(server_t *self, zmsg_t *envelope, Tier__V1__RouterMessage *message)
{
    s_send_packed(self->workers, envelope, &message->base);
}

static zmsg_t *s_envelope_of(zframe_t *identity)
{
    zmsg_t *envelope = zmsg_new();
    zmsg_append(envelope, &(zframe_t *){zframe_dup(identity)});
    return envelope;
}

//  ---------------------------------------------------------------------------
//  Errors: every refusal is counted, logged (rate-limited) and answered.

static const char *s_code_name(int code)
{
    const ProtobufCEnumValue *v =
        protobuf_c_enum_descriptor_get_value(&tier__v1__error_code__descriptor, code);
    return v ? v->name + strlen("ERROR_") : "UNKNOWN";
}

static const char *s_hint(int code)
{
    switch (code) {
    case TIER__V1__ERROR_CODE__ERROR_BAD_MESSAGE:
        return "send one frame holding a packed message of this socket's type (tier.proto)";
    case TIER__V1__ERROR_CODE__ERROR_TOO_LARGE:
        return "shorten the body or raise [router] max_message_bytes";
    case TIER__V1__ERROR_CODE__ERROR_UNSUPPORTED_VERSION:
        return "send protocol_version 1";
    case TIER__V1__ERROR_CODE__ERROR_MISSING_FIELD:
        return "fill in the field named in the reason";
    case TIER__V1__ERROR_CODE__ERROR_UNKNOWN_LEVEL:
        return "use L1, L2 or L3";
    case TIER__V1__ERROR_CODE__ERROR_UNKNOWN_DEPARTMENT:
        return "use a department from [router] departments, or none";
    case TIER__V1__ERROR_CODE__ERROR_UNKNOWN_CHANNEL:
        return "use chat, email, phone, sms, whatsapp, social or web";
    case TIER__V1__ERROR_CODE__ERROR_BAD_RATING:
        return "rate from 1 to 5";
    case TIER__V1__ERROR_CODE__ERROR_UNKNOWN_TICKET:
        return "check the ticket id";
    case TIER__V1__ERROR_CODE__ERROR_INVALID_STATE:
        return "get the ticket to see its state";
    case TIER__V1__ERROR_CODE__ERROR_STALE:
        return "drop the ticket; do not retry";
    case TIER__V1__ERROR_CODE__ERROR_NOT_REGISTERED:
        return "send Register, then retry";
    case TIER__V1__ERROR_CODE__ERROR_UNAVAILABLE:
        return "retry later with the same request (it is safe)";
    default:
        return "";
    }
}

static void s_count_reject(server_t *self, int code, const char *who, const char *reason)
{
    if (code > 0 && code <= TIER__V1__ERROR_CODE__ERROR_BAD_REQUEST)
        self->rejected[code]++;
    metrics_rejected(self->metrics, code);
    int64_t second = self->now_ms / 1000;
    if (second != self->reject_log_second) {
        self->reject_log_second = second;
        self->reject_logged = 0;
    }
    if (self->reject_logged++ < REJECT_LOG_PER_SEC)
        log_warning("refused %s: %s: %s", who, s_code_name(code), reason);
}

static void s_client_error(server_t *self, zmsg_t *envelope, uint64_t request_id, int code,
                           const char *reason)
{
    if (code != TIER__V1__ERROR_CODE__ERROR_UNAVAILABLE)
        s_count_reject(self, code, "client request", reason);
    Tier__V1__Error error = TIER__V1__ERROR__INIT;
    error.code = (Tier__V1__ErrorCode) code;
    error.reason = (char *) reason;
    error.hint = (char *) s_hint(code);
    Tier__V1__ClientReply reply = TIER__V1__CLIENT_REPLY__INIT;
    reply.request_id = request_id;
    reply.error = &error;
    s_client_reply(self, envelope, &reply);
}

static void s_worker_error(server_t *self, zmsg_t *envelope, uint64_t request_id, int code,
                           const char *reason)
{
    if (code != TIER__V1__ERROR_CODE__ERROR_UNAVAILABLE &&
        code != TIER__V1__ERROR_CODE__ERROR_STALE)
        s_count_reject(self, code, "worker message", reason);
    Tier__V1__Error error = TIER__V1__ERROR__INIT;
    error.code = (Tier__V1__ErrorCode) code;
    error.reason = (char *) reason;
    error.hint = (char *) s_hint(code);
    Tier__V1__RouterMessage message = TIER__V1__ROUTER_MESSAGE__INIT;
    message.request_id = request_id;
    message.error = &error;
    s_worker_send(self, envelope, &message);
}

//  ---------------------------------------------------------------------------
//  Store calls

static void s_on_result(void *arg, const store_result_t *result);

static call_t *s_call_new(server_t *self, op_t op, zmsg_t *envelope, uint64_t request_id)
{
    call_t *call = calloc(1, sizeof(call_t));
    call->server = self;
    call->op = op;
    call->envelope = envelope ? zmsg_dup(envelope) : NULL;
    call->request_id = request_id;
    return call;
}

static void s_call_destroy(call_t **call_p)
{
    call_t *call = *call_p;
    zmsg_destroy(&call->envelope);
    free(call->agent);
    for (size_t i = 0; i < call->spec.department_count; i++)
        free(call->departments[i]);
    free(call->departments);
    zframe_destroy(&call->spec.identity);
    if (call->ticket)
        tier__v1__ticket__free_unpacked(call->ticket, NULL);
    free(call);
    *call_p = NULL;
}

static void s_call_end(server_t *self, call_t *call)
{
    store_call_end(self->store, s_on_result, call);
}

//  Every state change comes back with its events: apply them to the
//  dispatch picture, then publish them.
static void s_apply_events(server_t *self, const store_result_t *result)
{
    size_t count = result->events ? result->events->elements : 0;
    for (size_t i = 0; i < count; i++) {
        Tier__V1__Event event;
        events_decode(result->events->element[i], result->seq_last - count + 1 + i, result->now_ms,
                      &event);
        dispatch_on_event(self->dispatch, &event);
        metrics_on_event(self->metrics, &event);
        events_publish(self->events, &event);
    }
}

//  ---------------------------------------------------------------------------
//  Client requests

static int s_validate_placement(int level, const char *department, const config_t *config,
                                char *reason, size_t size)
{
    if (level < 0 || level > TIER__V1__LEVEL__LEVEL_L3) {
        snprintf(reason, size, "level %d is not L1, L2 or L3", level);
        return TIER__V1__ERROR_CODE__ERROR_UNKNOWN_LEVEL;
    }
    if (*department && config_department(config, department) < 0) {
        snprintf(reason, size, "department \"%.64s\" is not configured", department);
        return TIER__V1__ERROR_CODE__ERROR_UNKNOWN_DEPARTMENT;
    }
    return 0;
}

static int s_validate_ticket(server_t *self, const Tier__V1__Ticket *t, char *reason, size_t size)
{
    if (!t) {
        snprintf(reason, size, "submit has no ticket");
        return TIER__V1__ERROR_CODE__ERROR_MISSING_FIELD;
    }
    const char *s = t->subject;
    while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
        s++;
    if (!*s) {
        snprintf(reason, size, "ticket subject is empty");
        return TIER__V1__ERROR_CODE__ERROR_MISSING_FIELD;
    }
    if (t->channel < TIER__V1__CHANNEL__CHANNEL_CHAT ||
        t->channel > TIER__V1__CHANNEL__CHANNEL_WEB) {
        snprintf(reason, size, "channel %d is not a known channel", t->channel);
        return TIER__V1__ERROR_CODE__ERROR_UNKNOWN_CHANNEL;
    }
    if (t->priority < 0 || t->priority > TIER__V1__PRIORITY__PRIORITY_URGENT) {
        snprintf(reason, size, "priority %d is not low, normal, high or urgent", t->priority);
        return TIER__V1__ERROR_CODE__ERROR_BAD_REQUEST;
    }
    return s_validate_placement(t->level, t->department, self->config, reason, size);
}

//  The SLA arguments of tier_submit: due times and targets of the policy.
static void s_sla_args(server_t *self, const Tier__V1__Ticket *t, const rules_outcome_t *out)
{
    const sla_t *sla = self->config->sla;
    const sla_targets_t *targets = sla_targets(sla, out->sla_policy, out->priority);
    store_arg_u64(self->store, (uint64_t) targets->first_response_ms);
    store_arg_u64(self->store, (uint64_t) targets->resolution_ms);
    for (int level = 1; level <= SLA_LEVELS; level++)
        store_arg_u64(self->store, (uint64_t) targets->wait_ms[level]);
    store_arg_u64(self->store, (uint64_t) sla_warn_percent(sla));
    store_arg_u64(self->store, targets->action);
    int64_t vip = t->customer && t->customer->vip ? sla_vip_boost_ms(sla) : 0;
    store_arg_u64(self->store, (uint64_t) (vip + sla_priority_boost_ms(sla, out->priority)));
    char boosts[128];
    snprintf(boosts, sizeof(boosts), "%lld,%lld,%lld,%lld",
             (long long) sla_priority_boost_ms(sla, 1), (long long) sla_priority_boost_ms(sla, 2),
             (long long) sla_priority_boost_ms(sla, 3), (long long) sla_priority_boost_ms(sla, 4));
    store_arg_str(self->store, boosts);
}

//  Rules on customer history travel with the intake, to be checked in Redis.
static void s_history_rule_args(server_t *self, const rules_outcome_t *out, bool actions)
{
    store_arg_u64(self->store, out->history_count);
    for (size_t i = 0; i < out->history_count; i++) {
        const rule_history_t *rule = out->history[i];
        store_arg_str(self->store, rule->name);
        store_arg_u64(self->store, (uint64_t) rule->contacts);
        store_arg_u64(self->store, (uint64_t) rule->window_ms);
        store_arg_u64(self->store, rule->escalated_before);
        if (actions) {
            store_arg_u64(self->store, (uint64_t) rule->level);
            store_arg_str(self->store, rule->department ? rule->department : "");
        }
    }
}

//  Queue a validated ticket: rules decide where, the policy sets the clocks.
//  `clear_timer` names a timer to drop with the intake (follow-ups), or "".
static void s_intake(server_t *self, const Tier__V1__Ticket *t, const char *clear_timer,
                     call_t *call)
{
    rules_outcome_t out;
    rules_apply(self->rules, t, &out);
    Tier__V1__Ticket stored = *t;
    stored.n_tags = out.tag_count;
    stored.tags = (char **) out.tags;
    uint8_t *content = NULL;
    size_t content_size = 0;
    if (ticket_pack_content(&stored, &content, &content_size)) {
        s_on_result(call, &(store_result_t){.code = TIER__V1__ERROR_CODE__ERROR_INTERNAL,
                                            .reason = "out of memory"});
        return;
    }
    char *created = ticket_history_entry(self->now_ms, TIER__V1__HISTORY_KIND__HISTORY_CREATED,
                                         "customer", t->subject, NULL, false);
    store_call_begin(self->store, "tier_submit", self->now_ms);
    store_arg_str(self->store, t->external_id);
    store_arg_u64(self->store, (uint64_t) out.level);
    store_arg_str(self->store, out.department);
    store_arg_u64(self->store, (uint64_t) out.priority);
    store_arg_u64(self->store, t->channel);
    store_arg_u64(self->store, t->customer && t->customer->vip);
    store_arg_str(self->store, t->customer ? t->customer->id : "");
    store_arg_str(self->store, t->subject);
    store_arg_bin(self->store, content, content_size);
    s_sla_args(self, t, &out);
    store_arg_str(self->store, clear_timer);
    char business[64];
    store_arg_str(self->store, sla_business_spec(self->config->sla, business, sizeof(business)));
    store_arg_u64(self->store, 1);
    store_arg_str(self->store, created);
    store_arg_u64(self->store, out.hit_count);
    for (size_t i = 0; i < out.hit_count; i++) {
        store_arg_str(self->store, out.hits[i].rule);
        store_arg_str(self->store, out.hits[i].action);
    }
    s_history_rule_args(self, &out, true);
    s_call_end(self, call);
    dispatch_expect(self->dispatch, out.level, out.department);
    free(created);
    free(content);
}

static void s_submit(server_t *self, zmsg_t *envelope, uint64_t request_id,
                     const Tier__V1__SubmitRequest *submit)
{
    char reason[256];
    int code = s_validate_ticket(self, submit->ticket, reason, sizeof(reason));
    if (code) {
        s_client_error(self, envelope, request_id, code, reason);
        return;
    }
    s_intake(self, submit->ticket, "", s_call_new(self, OP_SUBMIT, envelope, request_id));
}

//  A copy of a ticket that the call owns (the request is freed before the
//  reply comes).
static Tier__V1__Ticket *s_ticket_copy(const Tier__V1__Ticket *t)
{
    size_t size = tier__v1__ticket__get_packed_size(t);
    uint8_t *bytes = malloc(size + 1);
    tier__v1__ticket__pack(t, bytes);
    Tier__V1__Ticket *copy = tier__v1__ticket__unpack(NULL, size, bytes);
    free(bytes);
    return copy;
}

//  tierctl rules test: the content rules here, the history rules in Redis.
static void s_rules_test(server_t *self, zmsg_t *envelope, uint64_t request_id,
                         const Tier__V1__RulesTestRequest *req)
{
    char reason[256];
    int code = s_validate_ticket(self, req->ticket, reason, sizeof(reason));
    if (code) {
        s_client_error(self, envelope, request_id, code, reason);
        return;
    }
    call_t *call = s_call_new(self, OP_RULES_TEST, envelope, request_id);
    call->ticket = s_ticket_copy(req->ticket);
    rules_outcome_t out;
    rules_apply(self->rules, call->ticket, &out);
    store_call_begin(self->store, "tier_rules_history", self->now_ms);
    store_arg_str(self->store, call->ticket->customer ? call->ticket->customer->id : "");
    s_history_rule_args(self, &out, false);
    s_call_end(self, call);
}

//  A call about one ticket: fn(id, extra...). `extra` ends with NULL.
static void s_by_id(server_t *self, zmsg_t *envelope, uint64_t request_id, op_t op, const char *fn,
                    const char *id, const char *const *extra, bool with_history)
{
    if (!id || !*id) {
        s_client_error(self, envelope, request_id, TIER__V1__ERROR_CODE__ERROR_MISSING_FIELD,
                       "ticket id is empty");
        return;
    }
    store_call_begin(self->store, fn, self->now_ms);
    store_arg_str(self->store, id);
    for (; extra && *extra; extra++)
        store_arg_str(self->store, *extra);
    call_t *call = s_call_new(self, op, envelope, request_id);
    call->agent = strdup(id); //  the ticket id, to read it back after a change
    call->with_history = with_history;
    s_call_end(self, call);
}

static void s_requeue(server_t *self, zmsg_t *envelope, uint64_t request_id,
                      const Tier__V1__RequeueRequest *req)
{
    char reason[256];
    int code =
        s_validate_placement(req->level, req->department, self->config, reason, sizeof(reason));
    if (!code && !*req->reason) {
        code = TIER__V1__ERROR_CODE__ERROR_MISSING_FIELD;
        snprintf(reason, sizeof(reason), "requeue needs a reason (it is kept in history)");
    }
    if (code) {
        s_client_error(self, envelope, request_id, code, reason);
        return;
    }
    char level[4];
    snprintf(level, sizeof(level), "%d", req->level);
    s_by_id(self, envelope, request_id, OP_REQUEUE, "tier_requeue", req->id,
            (const char *[]){level, req->department, req->reason, NULL}, true);
}

static void s_queue_names_call(server_t *self, op_t op, zmsg_t *envelope, uint64_t request_id,
                               const char *fn)
{
    size_t count;
    char *const *names = dispatch_queue_names(self->dispatch, &count);
    store_call_begin(self->store, fn, self->now_ms);
    for (size_t i = 0; i < count; i++)
        store_arg_str(self->store, names[i]);
    s_call_end(self, s_call_new(self, op, envelope, request_id));
}

static void s_client_request(server_t *self, zmsg_t *envelope, Tier__V1__ClientRequest *req)
{
    uint64_t id = req->request_id;
    char rating[4];
    switch (req->body_case) {
    case TIER__V1__CLIENT_REQUEST__BODY_SUBMIT:
        s_submit(self, envelope, id, req->submit);
        break;
    case TIER__V1__CLIENT_REQUEST__BODY_GET: {
        s_by_id(self, envelope, id, OP_GET, "tier_get", req->get->id, NULL, req->get->with_history);
        break;
    }
    case TIER__V1__CLIENT_REQUEST__BODY_CANCEL:
        s_by_id(self, envelope, id, OP_CANCEL, "tier_cancel", req->cancel->id,
                (const char *[]){
                    *req->cancel->reason ? req->cancel->reason : "cancelled by the customer", NULL},
                true);
        break;
    case TIER__V1__CLIENT_REQUEST__BODY_MESSAGE:
        if (!*req->message->text)
            s_client_error(self, envelope, id, TIER__V1__ERROR_CODE__ERROR_MISSING_FIELD,
                           "message text is empty");
        else
            s_by_id(self, envelope, id, OP_MESSAGE, "tier_message", req->message->id,
                    (const char *[]){req->message->text, NULL}, true);
        break;
    case TIER__V1__CLIENT_REQUEST__BODY_RATE:
        if (req->rate->csat < 1 || req->rate->csat > 5) {
            char reason[64];
            snprintf(reason, sizeof(reason), "rating %u is outside 1..5", req->rate->csat);
            s_client_error(self, envelope, id, TIER__V1__ERROR_CODE__ERROR_BAD_RATING, reason);
            break;
        }
        snprintf(rating, sizeof(rating), "%u", req->rate->csat);
        s_by_id(self, envelope, id, OP_RATE, "tier_rate", req->rate->id,
                (const char *[]){rating, req->rate->comment, NULL}, true);
        break;
    case TIER__V1__CLIENT_REQUEST__BODY_QUEUES:
        s_queue_names_call(self, OP_QUEUES, envelope, id, "tier_queues");
        break;
    case TIER__V1__CLIENT_REQUEST__BODY_AGENTS:
        store_call_begin(self->store, "tier_agents", self->now_ms);
        s_call_end(self, s_call_new(self, OP_AGENTS, envelope, id));
        break;
    case TIER__V1__CLIENT_REQUEST__BODY_SNAPSHOT:
        s_queue_names_call(self, OP_SNAPSHOT, envelope, id, "tier_snapshot");
        break;
    case TIER__V1__CLIENT_REQUEST__BODY_DEAD_LETTERS:
        store_call_begin(self->store, "tier_dead_letters", self->now_ms);
        store_arg_u64(self->store,
                      req->dead_letters->limit ? req->dead_letters->limit : DEAD_LETTERS_DEFAULT);
        s_call_end(self, s_call_new(self, OP_DEAD_LETTERS, envelope, id));
        break;
    case TIER__V1__CLIENT_REQUEST__BODY_REQUEUE:
        s_requeue(self, envelope, id, req->requeue);
        break;
    case TIER__V1__CLIENT_REQUEST__BODY_REPORT: {
        char reason[256];
        int code =
            report_call_begin(self->store, req->report, self->now_ms, reason, sizeof(reason));
        if (code)
            s_client_error(self, envelope, id, code, reason);
        else
            s_call_end(self, s_call_new(self, OP_REPORT, envelope, id));
        break;
    }
    case TIER__V1__CLIENT_REQUEST__BODY_RULES_TEST:
        s_rules_test(self, envelope, id, req->rules_test);
        break;
    default:
        s_client_error(self, envelope, id, TIER__V1__ERROR_CODE__ERROR_BAD_MESSAGE,
                       "request has no body this router knows");
    }
}

//  ---------------------------------------------------------------------------
//  Worker messages

static uint32_t s_lease_ms(const server_t *self)
{
    return (uint32_t) (LEASE_HEARTBEATS * self->config->liveness * self->config->heartbeat_ms);
}

static int s_validate_register(server_t *self, const Tier__V1__Register *reg, char *reason,
                               size_t size)
{
    if (!*reg->agent_id) {
        snprintf(reason, size, "register has an empty agent_id");
        return TIER__V1__ERROR_CODE__ERROR_MISSING_FIELD;
    }
    if (reg->level < TIER__V1__LEVEL__LEVEL_L1 || reg->level > TIER__V1__LEVEL__LEVEL_L3) {
        snprintf(reason, size, "worker level %d is not L1, L2 or L3", reg->level);
        return TIER__V1__ERROR_CODE__ERROR_UNKNOWN_LEVEL;
    }
    for (size_t i = 0; i < reg->n_departments; i++)
        if (config_department(self->config, reg->departments[i]) < 0) {
            snprintf(reason, size, "department \"%.64s\" is not configured", reg->departments[i]);
            return TIER__V1__ERROR_CODE__ERROR_UNKNOWN_DEPARTMENT;
        }
    if (reg->capacity < 1) {
        snprintf(reason, size, "capacity must be at least 1");
        return TIER__V1__ERROR_CODE__ERROR_BAD_REQUEST;
    }
    return 0;
}

static void s_register(server_t *self, zmsg_t *envelope, zframe_t *identity, uint64_t rid,
                       const Tier__V1__Register *reg)
{
    char reason[256];
    int code = s_validate_register(self, reg, reason, sizeof(reason));
    if (code) {
        s_worker_error(self, envelope, rid, code, reason);
        return;
    }
    call_t *call = s_call_new(self, OP_REGISTER, envelope, rid);
    call->agent = strdup(reg->agent_id);
    call->departments = calloc(reg->n_departments + 1, sizeof(char *));
    char depts[CONFIG_DEPARTMENTS_MAX * 65] = "";
    for (size_t i = 0; i < reg->n_departments; i++) {
        call->departments[i] = strdup(reg->departments[i]);
        snprintf(depts + strlen(depts), sizeof(depts) - strlen(depts), "%s%s", i ? "," : "",
                 reg->departments[i]);
    }
    call->spec = (worker_spec_t){.agent = call->agent,
                                 .identity = zframe_dup(identity),
                                 .level = reg->level,
                                 .departments = (const char **) call->departments,
                                 .department_count = reg->n_departments,
                                 .capacity = reg->capacity,
                                 .bot = reg->bot};
    store_call_begin(self->store, "tier_register", self->now_ms);
    store_arg_str(self->store, reg->agent_id);
    store_arg_u64(self->store, reg->level);
    store_arg_str(self->store, depts);
    store_arg_u64(self->store, reg->capacity);
    store_arg_u64(self->store, reg->bot);
    store_arg_u64(self->store, s_lease_ms(self));
    store_arg_u64(self->store, reg->n_held);
    for (size_t i = 0; i < reg->n_held; i++) {
        store_arg_str(self->store, reg->held[i]->ticket_id);
        store_arg_u64(self->store, reg->held[i]->attempt);
    }
    char limits[256] = "";
    for (size_t i = 0; i < reg->n_channel_capacity; i++)
        snprintf(limits + strlen(limits), sizeof(limits) - strlen(limits), "%s%d:%u", i ? "," : "",
                 reg->channel_capacity[i]->channel, reg->channel_capacity[i]->capacity);
    store_arg_str(self->store, limits);
    s_call_end(self, call);
}

//  Accept, Respond, Resolve, Escalate and Release share their first fields.
static void s_result_begin(server_t *self, const char *fn, const char *agent, const char *ticket_id,
                           uint32_t attempt, uint64_t rid)
{
    store_call_begin(self->store, fn, self->now_ms);
    store_arg_str(self->store, agent);
    store_arg_str(self->store, ticket_id);
    store_arg_u64(self->store, attempt);
    store_arg_u64(self->store, rid);
}

static void s_result_end(server_t *self, zmsg_t *envelope, uint64_t rid, const char *agent)
{
    call_t *call = s_call_new(self, OP_RESULT, envelope, rid);
    call->agent = strdup(agent);
    s_call_end(self, call);
}

static int s_validate_escalate(server_t *self, const Tier__V1__Escalate *esc, char *reason,
                               size_t size)
{
    if (!*esc->reason) {
        snprintf(reason, size, "an escalation needs a reason");
        return TIER__V1__ERROR_CODE__ERROR_MISSING_FIELD;
    }
    return s_validate_placement(esc->to_level, esc->to_department, self->config, reason, size);
}

static bool s_ticket_named(server_t *self, zmsg_t *envelope, uint64_t rid, const char *id)
{
    if (id && *id)
        return true;
    s_worker_error(self, envelope, rid, TIER__V1__ERROR_CODE__ERROR_MISSING_FIELD,
                   "ticket_id is empty");
    return false;
}

static void s_result(server_t *self, zmsg_t *envelope, const char *agent,
                     Tier__V1__WorkerMessage *msg)
{
    uint64_t rid = msg->request_id;
    char reason[256];
    switch (msg->body_case) {
    case TIER__V1__WORKER_MESSAGE__BODY_ACCEPT:
        if (!s_ticket_named(self, envelope, rid, msg->accept->ticket_id))
            return;
        s_result_begin(self, "tier_accept", agent, msg->accept->ticket_id, msg->accept->attempt,
                       rid);
        break;
    case TIER__V1__WORKER_MESSAGE__BODY_RESPOND:
        if (!s_ticket_named(self, envelope, rid, msg->respond->ticket_id))
            return;
        s_result_begin(self, "tier_respond", agent, msg->respond->ticket_id, msg->respond->attempt,
                       rid);
        store_arg_str(self->store, msg->respond->text);
        store_arg_u64(self->store, msg->respond->awaiting_customer);
        break;
    case TIER__V1__WORKER_MESSAGE__BODY_RESOLVE:
        if (!s_ticket_named(self, envelope, rid, msg->resolve->ticket_id))
            return;
        s_result_begin(self, "tier_resolve", agent, msg->resolve->ticket_id, msg->resolve->attempt,
                       rid);
        store_arg_str(self->store, msg->resolve->text);
        for (int level = 1; level <= CONFIG_LEVELS; level++)
            store_arg_u64(self->store, (uint64_t) self->config->followup_ms[level]);
        break;
    case TIER__V1__WORKER_MESSAGE__BODY_ESCALATE: {
        const Tier__V1__Escalate *esc = msg->escalate;
        int code = s_validate_escalate(self, esc, reason, sizeof(reason));
        if (code) {
            s_worker_error(self, envelope, rid, code, reason);
            return;
        }
        if (!s_ticket_named(self, envelope, rid, esc->ticket_id))
            return;
        s_result_begin(self, "tier_escalate", agent, esc->ticket_id, esc->attempt, rid);
        store_arg_u64(self->store, esc->to_level);
        store_arg_str(self->store, esc->to_department);
        store_arg_str(self->store, esc->reason);
        store_arg_str(self->store, esc->notes);
        break;
    }
    case TIER__V1__WORKER_MESSAGE__BODY_DEFER:
        if (!s_ticket_named(self, envelope, rid, msg->defer->ticket_id))
            return;
        if (!*msg->defer->reason || msg->defer->until_ms == 0) {
            s_worker_error(self, envelope, rid, TIER__V1__ERROR_CODE__ERROR_MISSING_FIELD,
                           "a deferral needs until_ms and a reason (the promise)");
            return;
        }
        s_result_begin(self, "tier_defer", agent, msg->defer->ticket_id, msg->defer->attempt, rid);
        store_arg_u64(self->store, msg->defer->until_ms);
        store_arg_str(self->store, msg->defer->reason);
        break;
    case TIER__V1__WORKER_MESSAGE__BODY_RELEASE:
        if (!s_ticket_named(self, envelope, rid, msg->release->ticket_id))
            return;
        s_result_begin(self, "tier_release", agent, msg->release->ticket_id, msg->release->attempt,
                       rid);
        store_arg_str(self->store,
                      *msg->release->reason ? msg->release->reason : "released by the agent");
        break;
    default:
        return;
    }
    s_result_end(self, envelope, rid, agent);
}

static void s_worker_message(server_t *self, zmsg_t *envelope, zframe_t *identity,
                             Tier__V1__WorkerMessage *msg)
{
    uint64_t rid = msg->request_id;
    if (msg->body_case == TIER__V1__WORKER_MESSAGE__BODY_REGISTER) {
        s_register(self, envelope, identity, rid, msg->register_);
        return;
    }
    worker_t *worker = dispatch_by_identity(self->dispatch, identity);
    if (!worker) {
        s_worker_error(self, envelope, rid, TIER__V1__ERROR_CODE__ERROR_NOT_REGISTERED,
                       "this connection has not registered (or the router restarted)");
        return;
    }
    worker_seen(worker, self->now_ms);
    if (msg->body_case == TIER__V1__WORKER_MESSAGE__BODY_HEARTBEAT) {
        Tier__V1__RouterMessage pong = TIER__V1__ROUTER_MESSAGE__INIT;
        pong.request_id = rid;
        s_worker_send(self, envelope, &pong);
    } else if (msg->body_case == TIER__V1__WORKER_MESSAGE__BODY_DRAIN) {
        worker_set_state(self->dispatch, worker, TIER__V1__AGENT_STATE__AGENT_DRAINING);
        store_call_begin(self->store, "tier_agent_state", self->now_ms);
        store_arg_str(self->store, worker_agent(worker));
        store_arg_u64(self->store, TIER__V1__AGENT_STATE__AGENT_DRAINING);
        s_call_end(self, s_call_new(self, OP_DRAIN, envelope, rid));
    } else if (msg->body_case == TIER__V1__WORKER_MESSAGE__BODY__NOT_SET)
        s_worker_error(self, envelope, rid, TIER__V1__ERROR_CODE__ERROR_BAD_MESSAGE,
                       "worker message has no body");
    else
        s_result(self, envelope, worker_agent(worker), msg);
}

//  ---------------------------------------------------------------------------
//  Store callbacks: answer the caller from the reply.

static void s_reply_ticket(server_t *self, call_t *call, const redisReply *record)
{
    ticket_view_t view;
    if (ticket_view_init(&view, record, call->with_history)) {
        s_client_error(self, call->envelope, call->request_id, TIER__V1__ERROR_CODE__ERROR_INTERNAL,
                       "ticket record is malformed");
        return;
    }
    Tier__V1__ClientReply reply = TIER__V1__CLIENT_REPLY__INIT;
    reply.request_id = call->request_id;
    reply.body_case = TIER__V1__CLIENT_REPLY__BODY_TICKET;
    reply.ticket = &view.ticket;
    s_client_reply(self, call->envelope, &reply);
    ticket_view_fini(&view);
}

static void s_on_dead_letters(server_t *self, call_t *call, const store_result_t *result)
{
    size_t count = result->payload ? result->payload->elements : 0, kept = 0;
    ticket_view_t *views = calloc(count + 1, sizeof(ticket_view_t));
    Tier__V1__Ticket **tickets = calloc(count + 1, sizeof(Tier__V1__Ticket *));
    for (size_t i = 0; i < count; i++)
        if (ticket_view_init(&views[kept], result->payload->element[i], false) == 0) {
            tickets[kept] = &views[kept].ticket;
            kept++;
        }
    Tier__V1__DeadLettersReply dead = TIER__V1__DEAD_LETTERS_REPLY__INIT;
    dead.n_tickets = kept;
    dead.tickets = tickets;
    Tier__V1__ClientReply reply = TIER__V1__CLIENT_REPLY__INIT;
    reply.request_id = call->request_id;
    reply.body_case = TIER__V1__CLIENT_REPLY__BODY_DEAD_LETTERS;
    reply.dead_letters = &dead;
    s_client_reply(self, call->envelope, &reply);
    for (size_t i = 0; i < kept; i++)
        ticket_view_fini(&views[i]);
    free(views);
    free(tickets);
}

//  Add the history rules Redis says fire to a rules outcome, as hits.
static size_t s_history_hits(rules_outcome_t *out, const redisReply *fired, Tier__V1__RuleHit *hits,
                             char (*actions)[RULE_ACTION_MAX], size_t max)
{
    size_t count = 0;
    for (size_t i = 0; fired && i < fired->elements && count < max; i++)
        for (size_t r = 0; r < out->history_count; r++) {
            const rule_history_t *rule = out->history[r];
            if (strcmp(rule->name, store_str(fired->element[i])) != 0)
                continue;
            if (rule->level > out->level)
                out->level = rule->level;
            if (rule->department && !*out->department)
                out->department = rule->department;
            snprintf(actions[count], RULE_ACTION_MAX, "%s%s%s%s", rule->level ? "level " : "",
                     rules_level_name(rule->level),
                     !rule->department ? ""
                     : rule->level     ? ", department "
                                       : "department ",
                     rule->department ? rule->department : "");
            tier__v1__rule_hit__init(&hits[count]);
            hits[count].rule = (char *) rule->name;
            hits[count].action = actions[count];
            count++;
            break;
        }
    return count;
}

static void s_on_rules_test(server_t *self, call_t *call, const store_result_t *result)
{
    rules_outcome_t out;
    rules_apply(self->rules, call->ticket, &out);
    Tier__V1__RuleHit hits[2 * RULES_HITS_MAX], *hit_ptrs[2 * RULES_HITS_MAX];
    char actions[RULES_HITS_MAX][RULE_ACTION_MAX];
    size_t count = out.hit_count;
    for (size_t i = 0; i < out.hit_count; i++) {
        tier__v1__rule_hit__init(&hits[i]);
        hits[i].rule = (char *) out.hits[i].rule;
        hits[i].action = out.hits[i].action;
    }
    count += s_history_hits(&out, result->payload, hits + count, actions, RULES_HITS_MAX);
    for (size_t i = 0; i < count; i++)
        hit_ptrs[i] = &hits[i];
    Tier__V1__Ticket *t = call->ticket;
    size_t own_tags = t->n_tags;
    char **own = t->tags;
    char *own_department = t->department;
    t->level = (Tier__V1__Level) out.level;
    t->department = (char *) out.department;
    t->priority = (Tier__V1__Priority) out.priority;
    t->n_tags = out.tag_count;
    t->tags = (char **) out.tags;
    const sla_targets_t *targets = sla_targets(self->config->sla, out.sla_policy, out.priority);
    Tier__V1__RulesTestReply test = TIER__V1__RULES_TEST_REPLY__INIT;
    test.n_hits = count;
    test.hits = hit_ptrs;
    test.ticket = t;
    test.sla_policy = (char *) out.sla_policy;
    test.first_response_due_ms = (uint64_t) targets->first_response_ms;
    test.resolution_due_ms = (uint64_t) targets->resolution_ms;
    Tier__V1__ClientReply reply = TIER__V1__CLIENT_REPLY__INIT;
    reply.request_id = call->request_id;
    reply.body_case = TIER__V1__CLIENT_REPLY__BODY_RULES_TEST;
    reply.rules_test = &test;
    s_client_reply(self, call->envelope, &reply);
    //  Give the ticket back its own tags so that freeing it frees only those;
    //  the department may point into the rules: give it back its own too.
    t->n_tags = own_tags;
    t->tags = own;
    t->department = own_department;
}

static void s_on_submit(server_t *self, call_t *call, const store_result_t *result)
{
    Tier__V1__SubmitReply submitted = TIER__V1__SUBMIT_REPLY__INIT;
    submitted.id = (char *) store_str(store_elem(result->payload, 0));
    submitted.duplicate = store_u64(store_elem(result->payload, 1)) != 0;
    Tier__V1__ClientReply reply = TIER__V1__CLIENT_REPLY__INIT;
    reply.request_id = call->request_id;
    reply.body_case = TIER__V1__CLIENT_REPLY__BODY_SUBMITTED;
    reply.submitted = &submitted;
    s_client_reply(self, call->envelope, &reply);
}

static void s_revoke(server_t *self, const char *agent, const char *ticket_id, uint32_t attempt,
                     const char *reason)
{
    worker_t *worker = dispatch_by_agent(self->dispatch, agent);
    if (!worker)
        return;
    Tier__V1__Revoke revoke = TIER__V1__REVOKE__INIT;
    revoke.ticket_id = (char *) ticket_id;
    revoke.attempt = attempt;
    revoke.reason = (char *) reason;
    Tier__V1__RouterMessage message = TIER__V1__ROUTER_MESSAGE__INIT;
    message.body_case = TIER__V1__ROUTER_MESSAGE__BODY_REVOKE;
    message.revoke = &revoke;
    zmsg_t *envelope = s_envelope_of(worker_identity(worker));
    s_worker_send(self, envelope, &message);
    zmsg_destroy(&envelope);
}

//  Cancel, message and rate answer with the ticket as it is now: read it.
static void s_read_back(server_t *self, call_t *call)
{
    store_call_begin(self->store, "tier_get", self->now_ms);
    store_arg_str(self->store, call->agent);
    call_t *get = s_call_new(self, OP_GET, call->envelope, call->request_id);
    get->with_history = true;
    s_call_end(self, get);
}

static void s_on_report(server_t *self, call_t *call, const store_result_t *result)
{
    Tier__V1__ReportReply *report = report_reply_new(result->payload, &self->config->grades);
    if (!report) {
        s_client_error(self, call->envelope, call->request_id, TIER__V1__ERROR_CODE__ERROR_INTERNAL,
                       "report payload is malformed");
        return;
    }
    Tier__V1__ClientReply reply = TIER__V1__CLIENT_REPLY__INIT;
    reply.request_id = call->request_id;
    reply.body_case = TIER__V1__CLIENT_REPLY__BODY_REPORT;
    reply.report = report;
    s_client_reply(self, call->envelope, &reply);
    report_reply_destroy(&report);
}

static void s_on_queues(server_t *self, call_t *call, const store_result_t *result)
{
    size_t count = result->payload->elements;
    Tier__V1__QueueInfo *infos = calloc(count + 1, sizeof(Tier__V1__QueueInfo));
    Tier__V1__QueueInfo **ptrs = calloc(count + 1, sizeof(Tier__V1__QueueInfo *));
    for (size_t i = 0; i < count; i++) {
        const redisReply *q = result->payload->element[i];
        const char *name = store_str(store_elem(q, 0));
        tier__v1__queue_info__init(&infos[i]);
        infos[i].level = (Tier__V1__Level) (name[0] - '0');
        infos[i].department = (char *) (strchr(name, ':') ? strchr(name, ':') + 1 : "");
        infos[i].depth = (uint32_t) store_u64(store_elem(q, 1));
        infos[i].oldest_ms = store_u64(store_elem(q, 2));
        if (infos[i].oldest_ms && (int64_t) infos[i].oldest_ms < self->now_ms)
            infos[i].oldest_wait_ms = (uint64_t) self->now_ms - infos[i].oldest_ms;
        ptrs[i] = &infos[i];
        if (call->op == OP_DEPTHS)
            dispatch_set_depth(self->dispatch, infos[i].level, infos[i].department, infos[i].depth);
        metrics_set_queue(self->metrics, infos[i].level, infos[i].department, infos[i].depth,
                          infos[i].oldest_ms);
    }
    if (call->op == OP_QUEUES) {
        Tier__V1__QueuesReply queues = TIER__V1__QUEUES_REPLY__INIT;
        queues.n_queues = count;
        queues.queues = ptrs;
        Tier__V1__ClientReply reply = TIER__V1__CLIENT_REPLY__INIT;
        reply.request_id = call->request_id;
        reply.body_case = TIER__V1__CLIENT_REPLY__BODY_QUEUES;
        reply.queues = &queues;
        s_client_reply(self, call->envelope, &reply);
    }
    free(ptrs);
    free(infos);
}

//  AgentInfo list built from tier_agents / tier_snapshot payloads. Strings
//  are borrowed from the reply, except split department names.
typedef struct {
    Tier__V1__AgentInfo *infos; //  array
    Tier__V1__AgentInfo **ptrs; //  for protobuf-c
    char **departments;         //  split copies, one buffer per agent
    size_t count;
} agents_view_t;

static const char *s_hash_field(const redisReply *hash, const char *name)
{
    for (size_t i = 0; i + 1 < (hash ? hash->elements : 0); i += 2)
        if (strcmp(store_str(hash->element[i]), name) == 0)
            return store_str(hash->element[i + 1]);
    return "";
}

static void s_agent_info(Tier__V1__AgentInfo *info, const redisReply *entry, char **buffer)
{
    const redisReply *hash = store_elem(entry, 1), *held = store_elem(entry, 2);
    tier__v1__agent_info__init(info);
    info->id = (char *) store_str(store_elem(entry, 0));
    info->level = (Tier__V1__Level) atoi(s_hash_field(hash, "level"));
    info->capacity = (uint32_t) atoi(s_hash_field(hash, "cap"));
    info->bot = atoi(s_hash_field(hash, "bot")) != 0;
    info->state = (Tier__V1__AgentState) atoi(s_hash_field(hash, "state"));
    info->last_seen_ms = strtoull(s_hash_field(hash, "seen"), NULL, 10);
    info->load = held ? (uint32_t) held->elements : 0;
    info->n_tickets = info->load;
    info->tickets = calloc(info->load + 1, sizeof(char *));
    for (size_t i = 0; i < info->load; i++)
        info->tickets[i] = (char *) store_str(held->element[i]);
    //  "billing,sales" -> two strings; the copy lives in *buffer.
    *buffer = strdup(s_hash_field(hash, "depts"));
    info->departments = calloc(CONFIG_DEPARTMENTS_MAX + 1, sizeof(char *));
    char *save = NULL;
    for (char *d = strtok_r(*buffer, ",", &save); d && info->n_departments < CONFIG_DEPARTMENTS_MAX;
         d = strtok_r(NULL, ",", &save))
        info->departments[info->n_departments++] = d;
}

static void s_agents_view(agents_view_t *view, const redisReply *list)
{
    view->count = list && list->type == REDIS_REPLY_ARRAY ? list->elements : 0;
    view->infos = calloc(view->count + 1, sizeof(Tier__V1__AgentInfo));
    view->ptrs = calloc(view->count + 1, sizeof(Tier__V1__AgentInfo *));
    view->departments = calloc(view->count + 1, sizeof(char *));
    for (size_t i = 0; i < view->count; i++) {
        s_agent_info(&view->infos[i], list->element[i], &view->departments[i]);
        view->ptrs[i] = &view->infos[i];
    }
}

static void s_agents_view_fini(agents_view_t *view)
{
    for (size_t i = 0; i < view->count; i++) {
        free(view->infos[i].tickets);
        free(view->infos[i].departments);
        free(view->departments[i]);
    }
    free(view->infos);
    free(view->ptrs);
    free(view->departments);
}

static void s_on_agents(server_t *self, call_t *call, const store_result_t *result)
{
    agents_view_t view;
    s_agents_view(&view, result->payload);
    Tier__V1__AgentsReply agents = TIER__V1__AGENTS_REPLY__INIT;
    agents.n_agents = view.count;
    agents.agents = view.ptrs;
    Tier__V1__ClientReply reply = TIER__V1__CLIENT_REPLY__INIT;
    reply.request_id = call->request_id;
    reply.body_case = TIER__V1__CLIENT_REPLY__BODY_AGENTS;
    reply.agents = &agents;
    s_client_reply(self, call->envelope, &reply);
    s_agents_view_fini(&view);
}

static void s_queue_contents(Tier__V1__QueueContents *queue, const redisReply *entry)
{
    const char *name = store_str(store_elem(entry, 0));
    const redisReply *tickets = store_elem(entry, 1);
    tier__v1__queue_contents__init(queue);
    queue->level = (Tier__V1__Level) (name[0] - '0');
    queue->department = (char *) (strchr(name, ':') ? strchr(name, ':') + 1 : "");
    size_t count = tickets ? tickets->elements : 0;
    Tier__V1__QueuedTicket *items = calloc(count + 1, sizeof(Tier__V1__QueuedTicket));
    queue->tickets = calloc(count + 1, sizeof(Tier__V1__QueuedTicket *));
    for (size_t i = 0; i < count; i++) {
        const redisReply *fields = store_elem(tickets->element[i], 1);
        tier__v1__queued_ticket__init(&items[i]);
        items[i].id = (char *) store_str(store_elem(tickets->element[i], 0));
        items[i].priority = (Tier__V1__Priority) store_u64(store_elem(fields, 0));
        items[i].channel = (Tier__V1__Channel) store_u64(store_elem(fields, 1));
        items[i].queued_ms = store_u64(store_elem(fields, 2));
        items[i].subject = (char *) store_str(store_elem(fields, 3));
        queue->tickets[i] = &items[i];
    }
    queue->n_tickets = count;
    if (!count)
        free(items); //  otherwise freed through tickets[0]
}

static void s_on_snapshot(server_t *self, call_t *call, const store_result_t *result)
{
    const redisReply *queues = store_elem(result->payload, 0);
    size_t count = queues ? queues->elements : 0;
    Tier__V1__QueueContents *contents = calloc(count + 1, sizeof(Tier__V1__QueueContents));
    Tier__V1__QueueContents **ptrs = calloc(count + 1, sizeof(Tier__V1__QueueContents *));
    for (size_t i = 0; i < count; i++) {
        s_queue_contents(&contents[i], queues->element[i]);
        ptrs[i] = &contents[i];
    }
    agents_view_t agents;
    s_agents_view(&agents, store_elem(result->payload, 1));
    Tier__V1__SnapshotReply snapshot = TIER__V1__SNAPSHOT_REPLY__INIT;
    snapshot.seq = result->seq_last;
    snapshot.n_queues = count;
    snapshot.queues = ptrs;
    snapshot.n_agents = agents.count;
    snapshot.agents = agents.ptrs;
    Tier__V1__ClientReply reply = TIER__V1__CLIENT_REPLY__INIT;
    reply.request_id = call->request_id;
    reply.body_case = TIER__V1__CLIENT_REPLY__BODY_SNAPSHOT;
    reply.snapshot = &snapshot;
    s_client_reply(self, call->envelope, &reply);
    s_agents_view_fini(&agents);
    for (size_t i = 0; i < count; i++) {
        if (contents[i].n_tickets)
            free(contents[i].tickets[0]); //  the items array
        free(contents[i].tickets);
    }
    free(contents);
    free(ptrs);
}

static void s_on_register(server_t *self, call_t *call, const store_result_t *result)
{
    const redisReply *kept = store_elem(result->payload, 0);
    const redisReply *stale = store_elem(result->payload, 1);
    call->spec.held = kept ? (uint32_t) kept->elements / 2 : 0;
    dispatch_register(self->dispatch, &call->spec, self->now_ms);
    size_t stale_count = stale ? stale->elements / 2 : 0;
    Tier__V1__Held *held = calloc(stale_count + 1, sizeof(Tier__V1__Held));
    Tier__V1__Held **ptrs = calloc(stale_count + 1, sizeof(Tier__V1__Held *));
    for (size_t i = 0; i < stale_count; i++) {
        tier__v1__held__init(&held[i]);
        held[i].ticket_id = (char *) store_str(stale->element[2 * i]);
        held[i].attempt = (uint32_t) store_u64(stale->element[2 * i + 1]);
        ptrs[i] = &held[i];
    }
    Tier__V1__Registered registered = TIER__V1__REGISTERED__INIT;
    registered.heartbeat_ms = (uint32_t) self->config->heartbeat_ms;
    registered.offer_timeout_ms = (uint32_t) self->config->offer_timeout_ms;
    registered.liveness = (uint32_t) self->config->liveness;
    registered.n_stale = stale_count;
    registered.stale = ptrs;
    Tier__V1__RouterMessage message = TIER__V1__ROUTER_MESSAGE__INIT;
    message.request_id = call->request_id;
    message.body_case = TIER__V1__ROUTER_MESSAGE__BODY_REGISTERED;
    message.registered = &registered;
    s_worker_send(self, call->envelope, &message);
    log_info("agent %s registered at L%d, capacity %u, holding %u", call->agent, call->spec.level,
             call->spec.capacity, call->spec.held);
    free(held);
    free(ptrs);
}

static void s_on_done(server_t *self, call_t *call, const store_result_t *result)
{
    Tier__V1__Done done = TIER__V1__DONE__INIT;
    done.state = (Tier__V1__TicketState) store_u64(store_elem(result->payload, 0));
    Tier__V1__RouterMessage message = TIER__V1__ROUTER_MESSAGE__INIT;
    message.request_id = call->request_id;
    message.body_case = TIER__V1__ROUTER_MESSAGE__BODY_DONE;
    message.done = &done;
    s_worker_send(self, call->envelope, &message);
}

//  Send one offer (a ticket record from store.lua) to a worker.
//  made_ms: when Redis made it (the call's time), which starts its deadline.
static void s_send_offer(server_t *self, worker_t *worker, const redisReply *record,
                         int64_t made_ms)
{
    ticket_view_t view;
    if (ticket_view_init(&view, record, true)) {
        log_error("a ticket record for %s is malformed; the offer will time out and the "
                  "ticket go to another agent",
                  worker_agent(worker));
        return;
    }
    Tier__V1__Offer offer = TIER__V1__OFFER__INIT;
    offer.ticket = &view.ticket;
    offer.deadline_ms = (uint64_t) (made_ms + self->config->offer_timeout_ms);
    Tier__V1__RouterMessage message = TIER__V1__ROUTER_MESSAGE__INIT;
    message.body_case = TIER__V1__ROUTER_MESSAGE__BODY_OFFER;
    message.offer = &offer;
    zmsg_t *envelope = s_envelope_of(worker_identity(worker));
    s_worker_send(self, envelope, &message);
    zmsg_destroy(&envelope);
    ticket_view_fini(&view);
}

//  Offer what tier_assign handed to the worker, with the whole history.
static void s_on_assign(server_t *self, call_t *call, const store_result_t *result)
{
    worker_t *worker = dispatch_by_agent(self->dispatch, call->agent);
    size_t count = result->payload ? result->payload->elements : 0;
    for (size_t i = 0; worker && i < count; i++)
        s_send_offer(self, worker, result->payload->element[i], result->now_ms);
}

//  After a reconnect: the agent's true load, and the offers lost batches
//  made in Redis but whose replies never came, sent (again).
static void s_on_resend(server_t *self, call_t *call, const store_result_t *result)
{
    worker_t *worker = dispatch_by_agent(self->dispatch, call->agent);
    if (!worker)
        return;
    dispatch_set_held(self->dispatch, call->agent,
                      (uint32_t) store_u64(store_elem(result->payload, 0)));
    const redisReply *records = store_elem(result->payload, 1);
    size_t count = records ? records->elements : 0;
    for (size_t i = 0; i < count; i++)
        s_send_offer(self, worker, records->element[i], result->now_ms);
    if (count)
        log_notice("agent %s: %zu offers sent again after the redis reconnect", call->agent, count);
}

static void s_resend_held(server_t *self)
{
    for (worker_t *w = dispatch_first(self->dispatch); w; w = dispatch_next(self->dispatch)) {
        store_call_begin(self->store, "tier_held", self->now_ms);
        store_arg_str(self->store, worker_agent(w));
        call_t *call = s_call_new(self, OP_RESEND, NULL, 0);
        call->agent = strdup(worker_agent(w));
        s_call_end(self, call);
    }
}

//  Resolved tickets whose level asks for a follow-up: a new ticket, so that
//  somebody checks the customer is satisfied. Idempotent on its external id.
static void s_followup(server_t *self, const redisReply *record)
{
    ticket_view_t view;
    if (ticket_view_init(&view, record, false))
        return;
    const Tier__V1__Ticket *done = &view.ticket;
    char external[128], subject[512], body[256], timer[64];
    snprintf(external, sizeof(external), "followup:%s", done->id);
    snprintf(subject, sizeof(subject), "Follow-up: %s", done->subject);
    snprintf(body, sizeof(body),
             "Check that the customer is satisfied with the resolution "
             "of ticket %s.",
             done->id);
    snprintf(timer, sizeof(timer), "u:%s", done->id);
    char *tags[] = {"follow-up"};
    Tier__V1__Ticket t = TIER__V1__TICKET__INIT;
    t.external_id = external;
    t.channel = done->channel;
    t.customer = done->customer;
    t.subject = subject;
    t.body = body;
    t.n_tags = 1;
    t.tags = tags;
    t.level = done->level;
    t.department = done->department;
    t.priority = done->priority;
    s_intake(self, &t, timer, s_call_new(self, OP_FOLLOWUP, NULL, 0));
    ticket_view_fini(&view);
}

static void s_on_timers(server_t *self, const store_result_t *result)
{
    const redisReply *revokes = store_elem(result->payload, 0);
    const redisReply *lost = store_elem(result->payload, 1);
    const redisReply *away = store_elem(result->payload, 2);
    for (size_t i = 0; revokes && i + 2 < revokes->elements; i += 3)
        s_revoke(self, store_str(revokes->element[i]), store_str(revokes->element[i + 1]),
                 (uint32_t) store_u64(revokes->element[i + 2]), "offer timed out");
    for (size_t i = 0; lost && i < lost->elements; i++) {
        log_warning("agent %s: lease expired in Redis; its tickets went back to their queues",
                    store_str(lost->element[i]));
        dispatch_remove(self->dispatch, store_str(lost->element[i]));
    }
    for (size_t i = 0; away && i < away->elements; i++) {
        worker_t *worker = dispatch_by_agent(self->dispatch, store_str(away->element[i]));
        log_warning("agent %s: set away after %d offers in a row timed out",
                    store_str(away->element[i]), self->config->max_offer_misses);
        if (worker)
            worker_set_state(self->dispatch, worker, TIER__V1__AGENT_STATE__AGENT_AWAY);
    }
    const redisReply *offers = store_elem(result->payload, 3);
    for (size_t i = 0; offers && i + 1 < offers->elements; i += 2) {
        worker_t *worker = dispatch_by_agent(self->dispatch, store_str(offers->element[i]));
        if (worker) //  if it left meanwhile, the offer times out and is requeued
            s_send_offer(self, worker, offers->element[i + 1], result->now_ms);
    }
    const redisReply *followups = store_elem(result->payload, 4);
    for (size_t i = 0; followups && i < followups->elements; i++)
        s_followup(self, followups->element[i]);
}

//  An agent set away (it let offers time out) that gets a result through is
//  working again: give it work again, and say so in Redis and the events.
static void s_back_from_away(server_t *self, const char *agent)
{
    worker_t *worker = dispatch_by_agent(self->dispatch, agent);
    if (!worker || worker_state(worker) != TIER__V1__AGENT_STATE__AGENT_AWAY)
        return;
    worker_set_state(self->dispatch, worker, TIER__V1__AGENT_STATE__AGENT_READY);
    store_call_begin(self->store, "tier_agent_state", self->now_ms);
    store_arg_str(self->store, agent);
    store_arg_u64(self->store, TIER__V1__AGENT_STATE__AGENT_READY);
    s_call_end(self, s_call_new(self, OP_HEARTBEAT, NULL, 0));
    log_notice("agent %s: back from away (a result came through)", agent);
}

static void s_on_failure(server_t *self, call_t *call, const store_result_t *result)
{
    bool from_worker = call->op == OP_REGISTER || call->op == OP_RESULT || call->op == OP_DRAIN;
    if (call->envelope && from_worker)
        s_worker_error(self, call->envelope, call->request_id, result->code, result->reason);
    else if (call->envelope)
        s_client_error(self, call->envelope, call->request_id, result->code, result->reason);
    else if (result->code != TIER__V1__ERROR_CODE__ERROR_UNAVAILABLE)
        log_error("internal call %d failed: %s", call->op, result->reason);
}

static void s_on_success(server_t *self, call_t *call, const store_result_t *result)
{
    switch (call->op) {
    case OP_SUBMIT:
        s_on_submit(self, call, result);
        break;
    case OP_GET:
        s_reply_ticket(self, call, result->payload);
        break;
    case OP_CANCEL: {
        const char *agent = store_str(store_elem(result->payload, 0));
        if (*agent)
            s_revoke(self, agent, call->agent, (uint32_t) store_u64(store_elem(result->payload, 1)),
                     "cancelled by the customer");
        s_read_back(self, call);
        break;
    }
    case OP_MESSAGE:
    case OP_RATE:
    case OP_REQUEUE:
        s_read_back(self, call);
        break;
    case OP_DEAD_LETTERS:
        s_on_dead_letters(self, call, result);
        break;
    case OP_RULES_TEST:
        s_on_rules_test(self, call, result);
        break;
    case OP_REPORT:
        s_on_report(self, call, result);
        break;
    case OP_FOLLOWUP:
        log_info("follow-up ticket %s created", store_str(store_elem(result->payload, 0)));
        break;
    case OP_QUEUES:
    case OP_DEPTHS:
        s_on_queues(self, call, result);
        break;
    case OP_AGENTS:
        s_on_agents(self, call, result);
        break;
    case OP_SNAPSHOT:
        s_on_snapshot(self, call, result);
        break;
    case OP_REGISTER:
        s_on_register(self, call, result);
        break;
    case OP_RESULT:
        s_back_from_away(self, call->agent);
        s_on_done(self, call, result);
        break;
    case OP_DRAIN:
        s_on_done(self, call, result);
        break;
    case OP_ASSIGN:
        s_on_assign(self, call, result);
        break;
    case OP_TIMERS:
        s_on_timers(self, result);
        break;
    case OP_RESEND:
        s_on_resend(self, call, result);
        break;
    case OP_AGENT_LOST:
    case OP_HEARTBEAT:
    case OP_ROLLUP:
        break;
    }
}

static void s_on_result(void *arg, const store_result_t *result)
{
    call_t *call = arg;
    server_t *self = call->server;
    //  A refused call changes nothing, but in a batch the last call carries
    //  the queue events of the whole batch, whatever its own outcome.
    s_apply_events(self, result);
    if (result->code == 0)
        s_on_success(self, call, result);
    else
        s_on_failure(self, call, result);
    if (call->op == OP_ASSIGN)
        dispatch_assigned(self->dispatch, call->agent, call->asked,
                          result->code
                              ? call->asked
                              : (uint32_t) (result->payload ? result->payload->elements : 0));
    s_call_destroy(&call);
}

//  ---------------------------------------------------------------------------
//  Dispatch: turn the plan into tier_assign calls in the same batch.

static void s_assign(void *arg, worker_t *worker, uint32_t count, char *const *queues,
                     size_t queue_count)
{
    server_t *self = arg;
    store_call_begin(self->store, "tier_assign", self->now_ms);
    store_arg_str(self->store, worker_agent(worker));
    store_arg_u64(self->store, count);
    store_arg_u64(self->store, (uint64_t) self->config->offer_timeout_ms);
    store_arg_u64(self->store, (uint64_t) self->config->max_attempts);
    store_arg_u64(self->store, queue_count);
    for (size_t i = 0; i < queue_count; i++)
        store_arg_str(self->store, queues[i]);
    call_t *call = s_call_new(self, OP_ASSIGN, NULL, 0);
    call->agent = strdup(worker_agent(worker));
    call->asked = count;
    s_call_end(self, call);
}

//  ---------------------------------------------------------------------------
//  Reading messages

static void s_on_client_msg(server_t *self, zmsg_t *msg)
{
    //  A ROUTER always prepends the identity: fewer than two frames cannot be.
    zframe_t *body = zmsg_size(msg) >= 2 ? zmsg_last(msg) : NULL;
    if (!body)
        return;
    zmsg_remove(msg, body); //  msg is now the envelope
    if ((int) zframe_size(body) > self->config->max_message_bytes) {
        char reason[128];
        snprintf(reason, sizeof(reason), "request of %zu bytes exceeds the limit of %d",
                 zframe_size(body), self->config->max_message_bytes);
        s_client_error(self, msg, 0, TIER__V1__ERROR_CODE__ERROR_TOO_LARGE, reason);
    } else {
        Tier__V1__ClientRequest *req =
            tier__v1__client_request__unpack(NULL, zframe_size(body), zframe_data(body));
        if (!req)
            s_client_error(self, msg, 0, TIER__V1__ERROR_CODE__ERROR_BAD_MESSAGE,
                           "frame is not a ClientRequest");
        else if (req->protocol_version > 1)
            s_client_error(self, msg, req->request_id,
                           TIER__V1__ERROR_CODE__ERROR_UNSUPPORTED_VERSION,
                           "this router speaks protocol_version 1");
        else
            s_client_request(self, msg, req);
        tier__v1__client_request__free_unpacked(req, NULL);
    }
    zframe_destroy(&body);
}

static void s_on_worker_msg(server_t *self, zmsg_t *msg)
{
    zframe_t *body = zmsg_size(msg) >= 2 ? zmsg_last(msg) : NULL;
    if (!body)
        return;
    zmsg_remove(msg, body);
    zframe_t *identity = zmsg_first(msg);
    if ((int) zframe_size(body) > self->config->max_message_bytes) {
        char reason[128];
        snprintf(reason, sizeof(reason), "message of %zu bytes exceeds the limit of %d",
                 zframe_size(body), self->config->max_message_bytes);
        s_worker_error(self, msg, 0, TIER__V1__ERROR_CODE__ERROR_TOO_LARGE, reason);
    } else {
        Tier__V1__WorkerMessage *wm =
            tier__v1__worker_message__unpack(NULL, zframe_size(body), zframe_data(body));
        if (!wm)
            s_worker_error(self, msg, 0, TIER__V1__ERROR_CODE__ERROR_BAD_MESSAGE,
                           "frame is not a WorkerMessage");
        else if (wm->protocol_version > 1)
            s_worker_error(self, msg, wm->request_id,
                           TIER__V1__ERROR_CODE__ERROR_UNSUPPORTED_VERSION,
                           "this router speaks protocol_version 1");
        else
            s_worker_message(self, msg, identity, wm);
        tier__v1__worker_message__free_unpacked(wm, NULL);
    }
    zframe_destroy(&body);
}

static void s_drain(server_t *self, zsock_t *sock, void (*handle)(server_t *, zmsg_t *))
{
    for (int i = 0; i < BATCH_MAX && (zsock_events(sock) & ZMQ_POLLIN); i++) {
        zmsg_t *msg = zmsg_recv(sock);
        if (!msg)
            break;
        self->received++;
        handle(self, msg);
        zmsg_destroy(&msg);
    }
}

//  ---------------------------------------------------------------------------
//  Cron: bounded periodic work.

static void s_call_simple(server_t *self, op_t op)
{
    s_call_end(self, s_call_new(self, op, NULL, 0));
}

//  A worker silent for `liveness` heartbeats is gone: its tickets go back.
static void s_check_liveness(server_t *self)
{
    int64_t silence = (int64_t) self->config->liveness * self->config->heartbeat_ms;
    worker_t *worker;
    while ((worker = dispatch_next_silent(self->dispatch, self->now_ms, silence))) {
        log_warning("agent %s: silent for %lld ms; taking its tickets back", worker_agent(worker),
                    (long long) silence);
        store_call_begin(self->store, "tier_agent_lost", self->now_ms);
        store_arg_str(self->store, worker_agent(worker));
        store_arg_str(self->store, "agent stopped heartbeating");
        s_call_simple(self, OP_AGENT_LOST);
        dispatch_remove(self->dispatch, worker_agent(worker));
    }
}

static void s_renew_presence(server_t *self)
{
    const char *agents[RENEWALS_PER_CALL];
    size_t count;
    while ((count = dispatch_due_renewals(self->dispatch, self->now_ms, self->config->heartbeat_ms,
                                          agents, RENEWALS_PER_CALL)) > 0) {
        store_call_begin(self->store, "tier_heartbeat", self->now_ms);
        store_arg_u64(self->store, s_lease_ms(self));
        for (size_t i = 0; i < count; i++)
            store_arg_str(self->store, agents[i]);
        s_call_simple(self, OP_HEARTBEAT);
        if (count < RENEWALS_PER_CALL)
            break;
    }
}

static void s_status(server_t *self)
{
    char status[256];
    if (store_up(self->store))
        snprintf(status, sizeof(status), "%zu workers, %llu messages, %llu events",
                 dispatch_workers(self->dispatch), (unsigned long long) self->received,
                 (unsigned long long) events_published(self->events));
    else
        snprintf(status, sizeof(status), "redis unavailable (%s); refusing new work",
                 store_error(self->store));
    notify_status(status);
}

static void s_cron(server_t *self)
{
    store_check(self->store, self->now_ms);
    bool was_up = store_up(self->store);
    if (store_reconnect(self->store, self->now_ms) == 0 && !was_up) {
        self->next_depths_ms = 0; //  just (re)connected: re-read the queues
        s_resend_held(self);      //  and what lost batches may have offered
    }
    s_check_liveness(self);
    metrics_redis_up(self->metrics, store_up(self->store));
    if (store_up(self->store) && self->now_ms >= self->next_rollup_ms) {
        store_call_begin(self->store, "tier_rollup", self->now_ms);
        store_arg_u64(self->store, ROLLUP_MINUTES);
        s_call_simple(self, OP_ROLLUP);
        self->next_rollup_ms = self->now_ms + ROLLUP_MS;
    }
    if (store_up(self->store)) {
        s_renew_presence(self);
        store_call_begin(self->store, "tier_timers", self->now_ms);
        store_arg_u64(self->store, TIMERS_PER_CRON);
        store_arg_u64(self->store, (uint64_t) self->config->max_offer_misses);
        store_arg_u64(self->store, (uint64_t) self->config->offer_timeout_ms);
        store_arg_u64(self->store, (uint64_t) self->config->promise_grace_ms);
        s_call_simple(self, OP_TIMERS);
        if (self->now_ms >= self->next_depths_ms) {
            s_queue_names_call(self, OP_DEPTHS, NULL, 0, "tier_queues");
            self->next_depths_ms = self->now_ms + DEPTH_REFRESH_MS;
        }
    }
    if (self->now_ms >= self->next_status_ms) {
        s_status(self);
        self->next_status_ms = self->now_ms + STATUS_MS;
    }
    notify_watchdog();
    self->next_cron_ms = self->now_ms + CRON_MS;
}

//  ---------------------------------------------------------------------------
//  The loop

//  One turn: wait for messages or the reply of the batch in flight; take
//  the reply (which sends the next batch before running its callbacks);
//  read every waiting message; cron; plan; send what the turn queued if no
//  batch is in flight (else it goes when the reply comes).
static void s_turn(server_t *self, int timeout_ms)
{
    int redis_fd = store_fd(self->store);
    zmq_pollitem_t items[] = {{zsock_resolve(self->clients), 0, ZMQ_POLLIN, 0},
                              {zsock_resolve(self->workers), 0, ZMQ_POLLIN, 0},
                              {NULL, redis_fd, ZMQ_POLLIN, 0}};
    if (zmq_poll(items, redis_fd >= 0 ? 3 : 2, timeout_ms) < 0 && errno != EINTR)
        log_error("poll failed: %s", zmq_strerror(errno));
    self->now_ms = s_clock_ms();
    if (redis_fd >= 0 && (items[2].revents & ZMQ_POLLIN))
        store_receive(self->store, self->now_ms);
    s_drain(self, self->clients, s_on_client_msg);
    s_drain(self, self->workers, s_on_worker_msg);
    if (self->now_ms >= self->next_cron_ms)
        s_cron(self);
    if (store_up(self->store))
        dispatch_plan(self->dispatch, s_assign, self);
    store_send(self->store, self->now_ms);
}

//  Load the rules file named in the config; an empty name means no rules.
static rules_t *s_load_rules(server_t *self)
{
    if (!*self->config->rules_path)
        return rules_empty();
    char err[512];
    rules_t *rules =
        rules_load(self->config->rules_path, self->config, self->config->sla, err, sizeof(err));
    if (!rules)
        log_error("rules: %s", err);
    return rules;
}

//  SIGHUP: re-read the rules file. A bad file is refused with file:line and
//  the old rules stay; tickets in flight are not touched either way.
static void s_reload(server_t *self)
{
    notify_reloading();
    rules_t *rules = s_load_rules(self);
    if (rules) {
        rules_destroy(&self->rules);
        self->rules = rules;
        log_notice("SIGHUP: %zu rules loaded from %s", rules_count(rules),
                   *self->config->rules_path ? self->config->rules_path : "(none)");
    } else
        log_error("SIGHUP: kept the %zu rules in force", rules_count(self->rules));
    notify_ready();
}

int server_run(server_t *self)
{
    struct sigaction action = {.sa_handler = s_on_signal};
    sigemptyset(&action.sa_mask);
    sigaction(SIGTERM, &action, NULL);
    sigaction(SIGINT, &action, NULL);
    sigaction(SIGHUP, &action, NULL);
    self->now_ms = s_clock_ms();
    s_cron(self);
    store_flush(self->store, self->now_ms);
    notify_ready();
    log_notice("ready: clients %s, workers %s, events %s", self->config->clients,
               self->config->workers, self->config->events);
    while (!s_stop) {
        if (s_hangup) {
            s_hangup = 0;
            s_reload(self);
        }
        int64_t wait = self->next_cron_ms - s_clock_ms();
        //  More work already waiting (callbacks queued calls, or what they
        //  reported freed capacity or filled a queue): don't sleep, unless
        //  a batch is in flight: then its reply (or a message) wakes us.
        bool more = !store_busy(self->store) &&
                    (store_pending(self->store) || dispatch_dirty(self->dispatch));
        s_turn(self, more ? 0 : (int) (wait > 0 ? wait : 0));
    }
    self->now_ms = s_clock_ms();
    store_flush(self->store, self->now_ms); //  answer what is in flight or queued
    notify_stopping();
    log_notice("stopping: every acknowledged ticket is in Redis; workers keep their "
               "leases until they re-register or expire");
    return 0;
}

static zsock_t *s_bind(int type, const char *endpoint, const char *what)
{
    zsock_t *sock = zsock_new(type);
    if (!sock) {
        log_error("cannot create the %s socket: %s", what, zmq_strerror(zmq_errno()));
        return NULL;
    }
    zsock_set_linger(sock, 0);
    //  A ROUTER drops what it cannot queue for a peer, silently: an answer
    //  or an offer lost that way is a stall (the peer waits for it). Queue a
    //  great deal instead; a peer that stops reading is dropped by liveness.
    //  Set before bind: a listener gives its peers the options it had then.
    zsock_set_sndhwm(sock, SEND_QUEUE_MAX);
    zsock_set_rcvhwm(sock, SEND_QUEUE_MAX);
    if (zsock_bind(sock, "%s", endpoint) < 0) {
        log_error("cannot bind %s endpoint %s: %s", what, endpoint, zmq_strerror(zmq_errno()));
        zsock_destroy(&sock);
        return NULL;
    }
    return sock;
}

server_t *server_new(config_t *config)
{
    server_t *self = calloc(1, sizeof(server_t));
    self->config = config;
    self->clients = s_bind(ZMQ_ROUTER, config->clients, "clients");
    self->workers = s_bind(ZMQ_ROUTER, config->workers, "workers");
    self->events = self->clients && self->workers ? events_new(config->events) : NULL;
    store_config_t store_config = {config->redis_url, config->redis_prefix,
                                   config->connect_timeout_ms, config->command_timeout_ms};
    self->store = self->events ? store_new(&store_config) : NULL;
    if (!self->store) {
        server_destroy(&self);
        return NULL;
    }
    self->dispatch = dispatch_new(config);
    self->metrics = metrics_new();
    if (strcmp(config->metrics_listen, METRICS_LISTEN_OFF) != 0) //  NULL: logged, goes on
        self->http = http_new(config->metrics_listen, self->metrics);
    self->rules = s_load_rules(self);
    if (!self->rules)
        server_destroy(&self);
    return self;
}

void server_destroy(server_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    server_t *self = *self_p;
    rules_destroy(&self->rules);
    http_destroy(&self->http);
    metrics_destroy(&self->metrics);
    dispatch_destroy(&self->dispatch);
    store_destroy(&self->store);
    events_destroy(&self->events);
    zsock_destroy(&self->workers);
    zsock_destroy(&self->clients);
    free(self);
    *self_p = NULL;
}
