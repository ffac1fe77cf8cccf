/*  server.c — see server.h.

    Reading order: sending and the outbox items that send after a commit,
    errors, client requests (intake first), worker messages, dispatch,
    timers and the cron, the batch's end, the journal's outcomes, the loop.

    Every answer that reports a change waits in the outbox until the batch
    holding the change is in Redis; refusals that change nothing are sent at
    once.
*/
#include "server.h"
#include "book.h"
#include "dispatch.h"
#include "events.h"
#include "filter.h"
#include "http.h"
#include "journal.h"
#include "kpi.h"
#include "lifecycle.h"
#include "loader.h"
#include "log.h"
#include "metrics.h"
#include "notify.h"
#include "outbox.h"
#include "report.h"
#include "rules.h"
#include "sla.h"
#include "ticket.h"
#include "wire.h"

#include <czmq.h>
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BATCH_MAX            512   //  messages read per socket per turn
#define CRON_MS              100   //  periodic work interval
#define ROLLUP_MS            10000 //  roll finished KPI minutes into hours and days
#define ROLLUP_MINUTES       10    //  minutes rolled up per call, at most
#define STATUS_MS            1000  //  systemd STATUS= line
#define FOLLOWUPS_MS         1000  //  look for due follow-ups this often
#define FOLLOWUPS_PER_ROUND  100
#define TIMERS_PER_TURN      1000    //  due tickets handled per turn
#define RENEWALS_PER_CALL    256     //  agents per presence renewal
#define LEASE_HEARTBEATS     2       //  Redis agent lease, in liveness periods
#define SEND_QUEUE_MAX       1000000 //  messages queued per peer before ZeroMQ drops
#define REJECT_LOG_PER_SEC   20      //  bad input is counted always, logged up to this
#define DEAD_LETTERS_DEFAULT 100
#define ENVELOPE_MAX         1024 //  routing frames of one request, as kept
#define FRAMES_MAX           16
#define ID_TEXT_MAX          24
#define HELD_MAX             1024 //  declared tickets of one Register answered at most
#define CONTENT_MAX          65536
#define ARENA_UNPACK_MAX     16384 //  requests up to this size are unpacked into the batch arena

typedef enum {
    STATE_DOWN,    //  Redis unreachable
    STATE_STANDBY, //  another router owns the prefix
    STATE_LOADING, //  reading the state back
    STATE_READY,
    STATE_UNUSABLE //  the data in Redis cannot be read by this tierd
} run_state_t;

typedef enum { SOCK_CLIENTS, SOCK_WORKERS } sock_kind_t;

//  Where an answer goes: the request's routing frames (in a batch's arena)
//  and its request id.
typedef struct {
    uint32_t env;
    uint32_t env_len;
    uint64_t request_id;
    uint8_t sock; //  sock_kind_t
} dest_t;

#define POLICY_CACHE_MAX 64
#define POLICY_CACHE_MS  60000

typedef struct {
    char name[SLA_NAME_MAX + 1];
    int priority;
    const policy_t *policy;
} policy_cache_t;

struct _server_t {
    config_t *config; //  borrowed
    zsock_t *clients; //  ROUTER for integrators
    zsock_t *workers; //  ROUTER for workers
    void *clients_handle, *workers_handle;
    events_t *events; //  PUB
    journal_t *journal;
    outbox_t *outbox;
    intern_t *intern;
    book_t *book;
    kpi_t *kpi;
    filter_t *filter; //  external ids Redis holds: most submits need no read
    lifecycle_t *lifecycle;
    loader_t *loader;
    dispatch_t *dispatch;
    rules_t *rules;     //  intake rules (never NULL)
    metrics_t *metrics; //  what GET /metrics shows
    http_t *http;       //  NULL when [metrics] listen = off
    run_state_t state;
    char state_why[400]; //  for refusals and status
    uint64_t epoch;      //  +1 at every reset: older continuations do nothing
    uint64_t seq;        //  last event number handed out
    uint64_t seq_written, id_written;
    zhashx_t *intakes;        //  external ids whose intake is under way
    zhashx_t *followups_busy; //  follow-ups being created (ticket id text)
    struct parked *parked;    //  registrations waiting for the state to load
    size_t parked_count;
    int64_t now_ms;
    int64_t next_cron_ms, next_status_ms, next_rollup_ms, next_followups_ms;
    int64_t next_cold_ms; //  look for cold tickets' timers and oldest waits
    bool cold_reading;    //  such a read is in flight
    uint64_t received;
    uint64_t rejected[TIER__V1__ERROR_CODE__ERROR_BAD_REQUEST + 1];
    int64_t reject_log_second;
    int reject_logged;
    policy_cache_t policy_cache[POLICY_CACHE_MAX]; //  s_policy's
    size_t cached;
    char business[BUSINESS_SPEC_MAX]; //  business hours as the cache has them
    int64_t policies_at;              //  when they were read
    ProtobufCAllocator arena;         //  unpacks requests into the filling batch's arena
    bytes_t scratch;                  //  packing answers
    bytes_t scratch2;                 //  packing nested parts
    zmq_msg_t parts[FRAMES_MAX];
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

static const char *s_str(const char *s)
{
    return s ? s : "";
}

//  protobuf-c allocates a request's strings and submessages one by one:
//  small requests go into the batch's arena instead, freed with the batch.
static void *s_arena_alloc(void *data, size_t size)
{
    return outbox_alloc(data, size);
}

static void s_arena_free(void *data, void *pointer)
{
    (void) data;
    (void) pointer;
}

static ProtobufCAllocator *s_allocator(server_t *self, bool arena)
{
    return arena ? &self->arena : NULL;
}

//  ---------------------------------------------------------------------------
//  Sending

static void *s_handle(server_t *self, int sock)
{
    return sock == SOCK_CLIENTS ? self->clients_handle : self->workers_handle;
}

//  Routing frames kept as (length byte, bytes)...
static void s_send_env(void *handle, const uint8_t *env, size_t len, const void *body, size_t size)
{
    size_t at = 0;
    while (at < len) {
        size_t frame = env[at++];
        if (at + frame > len)
            return;
        zmq_send(handle, env + at, frame, ZMQ_SNDMORE | ZMQ_DONTWAIT);
        at += frame;
    }
    zmq_send(handle, body, size, ZMQ_DONTWAIT);
}

static void s_send_packed(void *handle, const uint8_t *env, size_t len,
                          const ProtobufCMessage *message, bytes_t *buf)
{
    size_t size = protobuf_c_message_get_packed_size(message);
    bytes_clear(buf);
    bytes_reserve(buf, size);
    protobuf_c_message_pack(message, buf->data);
    s_send_env(handle, env, len, buf->data, size);
}

//  The routing frames of a message just read (parts[0 .. count - 2]).
static size_t s_env_of(server_t *self, size_t count, uint8_t *env)
{
    size_t len = 0;
    for (size_t i = 0; i + 1 < count; i++) {
        size_t frame = zmq_msg_size(&self->parts[i]);
        if (frame > 255 || len + 1 + frame > ENVELOPE_MAX)
            break;
        env[len++] = (uint8_t) frame;
        memcpy(env + len, zmq_msg_data(&self->parts[i]), frame);
        len += frame;
    }
    return len;
}

//  A destination in the filling batch.
static dest_t s_dest(server_t *self, int sock, const uint8_t *env, size_t env_len,
                     uint64_t request_id)
{
    dest_t d = {outbox_put(self->outbox, env, env_len), (uint32_t) env_len, request_id,
                (uint8_t) sock};
    return d;
}

//  A destination kept in one batch, copied into the filling one.
static dest_t s_dest_copy(server_t *self, outbox_batch_t *batch, const dest_t *d)
{
    return s_dest(self, d->sock, outbox_bytes(batch, d->env), d->env_len, d->request_id);
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

//  An error to a destination, now.
static void s_error_to(server_t *self, int sock, const uint8_t *env, size_t env_len,
                       uint64_t request_id, int code, const char *reason)
{
    bool worker = sock == SOCK_WORKERS;
    if (code != TIER__V1__ERROR_CODE__ERROR_UNAVAILABLE &&
        !(worker && code == TIER__V1__ERROR_CODE__ERROR_STALE))
        s_count_reject(self, code, worker ? "worker message" : "client request", reason);
    Tier__V1__Error error = TIER__V1__ERROR__INIT;
    error.code = (Tier__V1__ErrorCode) code;
    error.reason = (char *) reason;
    error.hint = (char *) s_hint(code);
    if (worker) {
        Tier__V1__RouterMessage m = TIER__V1__ROUTER_MESSAGE__INIT;
        m.request_id = request_id;
        m.error = &error;
        s_send_packed(self->workers_handle, env, env_len, &m.base, &self->scratch);
    } else {
        Tier__V1__ClientReply r = TIER__V1__CLIENT_REPLY__INIT;
        r.request_id = request_id;
        r.error = &error;
        s_send_packed(self->clients_handle, env, env_len, &r.base, &self->scratch);
    }
}

static void s_error_dest(server_t *self, outbox_batch_t *batch, const dest_t *d, int code,
                         const char *reason)
{
    s_error_to(self, d->sock, outbox_bytes(batch, d->env), d->env_len, d->request_id, code, reason);
}

static const char *s_unavailable(server_t *self)
{
    return *self->state_why ? self->state_why : "redis is unavailable";
}

//  An item whose batch did not commit answers UNAVAILABLE: true if so.
static bool s_refused(server_t *self, outbox_batch_t *batch, const dest_t *dest, bool committed)
{
    if (committed)
        return false;
    s_error_dest(self, batch, dest, TIER__V1__ERROR_CODE__ERROR_UNAVAILABLE, s_unavailable(self));
    return true;
}

//  ---------------------------------------------------------------------------
//  Outbox items

//  An answer packed now, sent after the commit (or UNAVAILABLE instead).
typedef struct {
    dest_t dest;
    uint32_t body, body_len;
} reply_item_t;

static void s_item_reply(void *arg, outbox_batch_t *batch, void *payload, const redisReply *r,
                         bool committed)
{
    (void) r;
    server_t *self = arg;
    reply_item_t *item = payload;
    if (committed)
        s_send_env(s_handle(self, item->dest.sock), outbox_bytes(batch, item->dest.env),
                   item->dest.env_len, outbox_bytes(batch, item->body), item->body_len);
    else
        s_error_dest(self, batch, &item->dest, TIER__V1__ERROR_CODE__ERROR_UNAVAILABLE,
                     s_unavailable(self));
}

//  Queue an answer for after the commit.
static void s_reply_later(server_t *self, const dest_t *dest, const ProtobufCMessage *message)
{
    size_t size = protobuf_c_message_get_packed_size(message);
    bytes_clear(&self->scratch);
    bytes_reserve(&self->scratch, size);
    protobuf_c_message_pack(message, self->scratch.data);
    reply_item_t item = {*dest, outbox_put(self->outbox, self->scratch.data, size),
                         (uint32_t) size};
    outbox_add(self->outbox, s_item_reply, &item, sizeof(item), OUTBOX_NO_READ);
}

//  A push to an agent (Revoke), sent to its connection of the moment.
typedef struct {
    const char *agent;
    uint32_t body, body_len;
} push_item_t;

static void s_item_push(void *arg, outbox_batch_t *batch, void *payload, const redisReply *r,
                        bool committed)
{
    (void) r;
    server_t *self = arg;
    push_item_t *item = payload;
    worker_t *worker = committed ? dispatch_by_agent(self->dispatch, item->agent) : NULL;
    if (!worker)
        return;
    zframe_t *id = worker_identity(worker);
    zmq_send(self->workers_handle, zframe_data(id), zframe_size(id), ZMQ_SNDMORE | ZMQ_DONTWAIT);
    zmq_send(self->workers_handle, outbox_bytes(batch, item->body), item->body_len, ZMQ_DONTWAIT);
}

static void s_revoke_later(server_t *self, const char *agent, uint64_t ticket, uint32_t attempt,
                           const char *reason)
{
    char id[ID_TEXT_MAX];
    snprintf(id, sizeof(id), "%llu", (unsigned long long) ticket);
    Tier__V1__Revoke revoke = TIER__V1__REVOKE__INIT;
    revoke.ticket_id = id;
    revoke.attempt = attempt;
    revoke.reason = (char *) reason;
    Tier__V1__RouterMessage m = TIER__V1__ROUTER_MESSAGE__INIT;
    m.body_case = TIER__V1__ROUTER_MESSAGE__BODY_REVOKE;
    m.revoke = &revoke;
    size_t size = tier__v1__router_message__get_packed_size(&m);
    bytes_clear(&self->scratch);
    bytes_reserve(&self->scratch, size);
    tier__v1__router_message__pack(&m, self->scratch.data);
    push_item_t item = {intern_name(self->intern, agent, strlen(agent)),
                        outbox_put(self->outbox, self->scratch.data, size), (uint32_t) size};
    outbox_add(self->outbox, s_item_push, &item, sizeof(item), OUTBOX_NO_READ);
}

//  An offer: the ticket's stored bytes, read after the batch that made the
//  offer, wrapped without decoding (ticket_wire).
typedef struct {
    const char *agent;
    uint64_t ticket;
    uint32_t attempt;
    int64_t deadline_ms;
    uint32_t stored, stored_len; //  a ticket made in the batch: its bytes, in the arena
} offer_item_t;

//  RouterMessage{offer = Offer{ticket = <wire>, deadline_ms}}: field 11 of
//  RouterMessage, field 1 and 2 of Offer.
static void s_pack_offer(server_t *self, const uint8_t *stored, size_t len, int64_t deadline_ms)
{
    bytes_t *ticket = &self->scratch2, *out = &self->scratch;
    bytes_clear(ticket);
    bytes_clear(out);
    ticket_wire(stored, len, true, ticket);
    size_t offer = wire_open(out, 11);
    wire_bytes(out, 1, ticket->data, ticket->len);
    wire_u64(out, 2, (uint64_t) deadline_ms);
    wire_close(out, offer);
}

static void s_item_offer(void *arg, outbox_batch_t *batch, void *payload, const redisReply *stored,
                         bool committed)
{
    server_t *self = arg;
    offer_item_t *item = payload;
    const uint8_t *bytes = item->stored_len ? outbox_bytes(batch, item->stored)
                                            : (const uint8_t *) journal_str(stored);
    size_t len = item->stored_len ? item->stored_len : journal_len(stored);
    if (!committed || !len)
        return;
    //  Only if it is still this agent's offer (a later batch may have taken
    //  it back already: cancelled, timed out).
    ticket_t *t = book_ticket(self->book, item->ticket);
    if (!t || t->state != TIER__V1__TICKET_STATE__STATE_OFFERED || t->agent != item->agent ||
        t->attempt != item->attempt)
        return;
    worker_t *worker = dispatch_by_agent(self->dispatch, item->agent);
    if (!worker) //  gone meanwhile: the offer times out and the ticket is requeued
        return;
    s_pack_offer(self, bytes, len, item->deadline_ms);
    zframe_t *id = worker_identity(worker);
    zmq_send(self->workers_handle, zframe_data(id), zframe_size(id), ZMQ_SNDMORE | ZMQ_DONTWAIT);
    zmq_send(self->workers_handle, self->scratch.data, self->scratch.len, ZMQ_DONTWAIT);
}

//  The offer goes out with the ticket as it is after this batch: read back
//  after the commit, or for a ticket made in this very batch (the common
//  case when agents are free), its steps as they are now.
static void s_offer_later(server_t *self, const ticket_t *t)
{
    offer_item_t item = {t->agent, t->id, t->attempt, t->offer_deadline_ms, 0, 0};
    bytes_clear(&self->scratch2);
    if (book_new_bytes(self->book, t, &self->scratch2)) {
        item.stored = outbox_put(self->outbox, self->scratch2.data, self->scratch2.len);
        item.stored_len = (uint32_t) self->scratch2.len;
        outbox_add(self->outbox, s_item_offer, &item, sizeof(item), OUTBOX_NO_READ);
        return;
    }
    uint32_t read = journal_read(self->journal, 2);
    journal_arg_str(self->journal, "GET");
    journal_arg_key_u64(self->journal, "tk:", t->id);
    outbox_add(self->outbox, s_item_offer, &item, sizeof(item), read);
}

//  Events: numbered now, published after the commit.
typedef struct {
    uint64_t seq;
    int64_t at_ms, created_ms, queued_ms, oldest_ms;
    uint64_t ticket;
    const char *department, *agent, *from_department, *reason;
    uint32_t depth, attempt;
    uint8_t kind, level, from_level, state, agent_state, channel, priority, csat;
} event_item_t;

static void s_item_event(void *arg, outbox_batch_t *batch, void *payload, const redisReply *r,
                         bool committed)
{
    (void) batch;
    (void) r;
    server_t *self = arg;
    event_item_t *item = payload;
    if (!committed)
        return;
    char id[ID_TEXT_MAX] = "";
    if (item->ticket)
        wire_decimal(item->ticket, id);
    Tier__V1__Event e = TIER__V1__EVENT__INIT;
    e.seq = item->seq;
    e.at_ms = (uint64_t) item->at_ms;
    e.kind = item->kind;
    e.ticket_id = id;
    e.level = item->level;
    e.department = (char *) item->department;
    e.agent = (char *) item->agent;
    e.from_level = item->from_level;
    e.from_department = (char *) item->from_department;
    e.reason = (char *) item->reason;
    e.depth = item->depth;
    e.oldest_ms = (uint64_t) item->oldest_ms;
    e.state = item->state;
    e.agent_state = item->agent_state;
    e.channel = item->channel;
    e.priority = item->priority;
    e.csat = item->csat;
    e.attempt = item->attempt;
    e.created_ms = (uint64_t) item->created_ms;
    e.queued_ms = (uint64_t) item->queued_ms;
    metrics_on_event(self->metrics, &e);
    events_publish(self->events, &e);
}

static const char *s_keep(server_t *self, const char *s)
{
    return s && *s ? outbox_strdup(self->outbox, s) : "";
}

//  lifecycle_event_fn: every event of a transition.
static void s_on_event(void *arg, Tier__V1__Event *e, uint64_t ticket)
{
    server_t *self = arg;
    event_item_t item = {.seq = ++self->seq,
                         .at_ms = (int64_t) e->at_ms,
                         .created_ms = (int64_t) e->created_ms,
                         .queued_ms = (int64_t) e->queued_ms,
                         .oldest_ms = (int64_t) e->oldest_ms,
                         .ticket = ticket,
                         .department = s_keep(self, e->department),
                         .agent = s_keep(self, e->agent),
                         .from_department = s_keep(self, e->from_department),
                         .reason = s_keep(self, e->reason),
                         .depth = e->depth,
                         .attempt = e->attempt,
                         .kind = (uint8_t) e->kind,
                         .level = (uint8_t) e->level,
                         .from_level = (uint8_t) e->from_level,
                         .state = (uint8_t) e->state,
                         .agent_state = (uint8_t) e->agent_state,
                         .channel = (uint8_t) e->channel,
                         .priority = (uint8_t) e->priority,
                         .csat = (uint8_t) e->csat};
    outbox_add(self->outbox, s_item_event, &item, sizeof(item), OUTBOX_NO_READ);
    //  Anything that queues a ticket or frees capacity may let a worker take one.
    switch (e->kind) {
    case TIER__V1__EVENT_KIND__EVENT_QUEUED:
    case TIER__V1__EVENT_KIND__EVENT_RESOLVED:
    case TIER__V1__EVENT_KIND__EVENT_ESCALATED:
    case TIER__V1__EVENT_KIND__EVENT_RELEASED:
    case TIER__V1__EVENT_KIND__EVENT_REQUEUED:
    case TIER__V1__EVENT_KIND__EVENT_ABANDONED:
    case TIER__V1__EVENT_KIND__EVENT_DEFERRED:
    case TIER__V1__EVENT_KIND__EVENT_AGENT:
        dispatch_changed(self->dispatch);
        break;
    default:
        break;
    }
}

//  lifecycle_available_fn: a promise coming due goes back to its agent if so.
static bool s_available(void *arg, const char *agent, int channel)
{
    server_t *self = arg;
    worker_t *worker = dispatch_by_agent(self->dispatch, agent);
    return worker && worker_room_for(self->dispatch, worker, channel);
}

//  A ticket closed in a batch, or given back to Redis by a queue over its
//  window (book_shrink), is forgotten once that batch is in Redis (not
//  before: a read of it in flight meanwhile would bring back its old state).
typedef struct {
    uint64_t epoch;
    uint64_t ticket;
} evict_item_t;

static void s_item_evict(void *arg, outbox_batch_t *batch, void *payload, const redisReply *r,
                         bool committed)
{
    (void) batch;
    (void) r;
    server_t *self = arg;
    evict_item_t *item = payload;
    if (!committed || item->epoch != self->epoch)
        return;
    ticket_t *t = book_ticket(self->book, item->ticket);
    if (t && book_evictable(self->book, t))
        book_evict(self->book, t);
}

static void s_on_going(void *arg, ticket_t *t)
{
    server_t *self = arg;
    evict_item_t item = {self->epoch, t->id};
    outbox_add(self->outbox, s_item_evict, &item, sizeof(item), OUTBOX_NO_READ);
}

//  A ticket as it is now, read after the batch: a Ticket reply.
typedef struct {
    dest_t dest;
    bool with_history;
} ticket_item_t;

static void s_item_ticket(void *arg, outbox_batch_t *batch, void *payload, const redisReply *stored,
                          bool committed)
{
    server_t *self = arg;
    ticket_item_t *item = payload;
    if (s_refused(self, batch, &item->dest, committed))
        return;
    if (!journal_len(stored)) {
        s_error_dest(self, batch, &item->dest, TIER__V1__ERROR_CODE__ERROR_UNKNOWN_TICKET,
                     "no such ticket");
        return;
    }
    //  ClientReply{request_id = 1, ticket = 11}
    bytes_t *ticket = &self->scratch2, *out = &self->scratch;
    bytes_clear(ticket);
    bytes_clear(out);
    if (ticket_wire((const uint8_t *) journal_str(stored), journal_len(stored), item->with_history,
                    ticket)) {
        s_error_dest(self, batch, &item->dest, TIER__V1__ERROR_CODE__ERROR_INTERNAL,
                     "the stored ticket is malformed");
        return;
    }
    wire_u64_opt(out, 1, item->dest.request_id);
    wire_bytes(out, 11, ticket->data, ticket->len);
    s_send_env(self->clients_handle, outbox_bytes(batch, item->dest.env), item->dest.env_len,
               out->data, out->len);
}

static void s_ticket_later(server_t *self, const dest_t *dest, uint64_t id, bool with_history)
{
    uint32_t read = journal_read(self->journal, 2);
    journal_arg_str(self->journal, "GET");
    journal_arg_key_u64(self->journal, "tk:", id);
    ticket_item_t item = {*dest, with_history};
    outbox_add(self->outbox, s_item_ticket, &item, sizeof(item), read);
}

//  ---------------------------------------------------------------------------
//  Validation

static int s_validate_placement(server_t *self, int level, const char *department, char *reason,
                                size_t size)
{
    if (level < 0 || level > TIER__V1__LEVEL__LEVEL_L3) {
        snprintf(reason, size, "level %d is not L1, L2 or L3", level);
        return TIER__V1__ERROR_CODE__ERROR_UNKNOWN_LEVEL;
    }
    if (*department && config_department(self->config, department) < 0) {
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
    return s_validate_placement(self, t->level, t->department, reason, size);
}

static const char *s_dept(server_t *self, const char *name)
{
    return name && *name ? intern_name(self->intern, name, strlen(name)) : NULL;
}

//  ---------------------------------------------------------------------------
//  Intake: the external id and the customer's history are read first (one
//  round trip), then the ticket is taken in (the next).

//  Reads of an intake's first round trip, in order: GET x:EXT if there is
//  an external id, then per history rule ZCOUNT cc:CUSTOMER (contacts) or
//  EXISTS ce:CUSTOMER (escalated before).
typedef struct {
    uint64_t epoch;
    Tier__V1__Ticket *ticket; //  owned: the submitted ticket
    void *request;            //  owned: what ticket belongs to (ClientRequest), or NULL
    dest_t dest;              //  dest.env_len 0 and no request: a follow-up
    uint32_t first, count;    //  the reads
    const char *intake_key;   //  the external id in self->intakes, or NULL
    uint64_t followup_of;     //  a follow-up: the ticket it follows up
    bool test;                //  tierctl rules test: answer, take nothing in
    bool arena;               //  request was unpacked into the batch arena
    bool read_external;       //  the first read is GET P x:EXTERNAL
} intake_item_t;

static void s_intake_free(server_t *self, intake_item_t *item)
{
    if (item->request)
        tier__v1__client_request__free_unpacked(item->request, s_allocator(self, item->arena));
    else if (item->ticket)
        tier__v1__ticket__free_unpacked(item->ticket, NULL);
    item->request = NULL;
    item->ticket = NULL;
}

//  Submits of an external id whose intake is under way wait for its
//  outcome (a client retrying while the first try is being written).
typedef struct {
    uint8_t env[ENVELOPE_MAX];
    size_t env_len;
    uint64_t request_id;
} waiter_t;

typedef struct {
    waiter_t *list;
    size_t count;
} waiters_t;

#define NO_WAITERS ((void *) 1) //  the value of an intake nobody waits for

static void s_waiters_free(void **item)
{
    if (*item && *item != NO_WAITERS) {
        waiters_t *w = *item;
        free(w->list);
        free(w);
    }
    *item = NULL;
}

static void s_wait_for_intake(server_t *self, const char *key, const uint8_t *env, size_t env_len,
                              uint64_t request_id)
{
    waiters_t *w = zhashx_lookup(self->intakes, key);
    if (w == NO_WAITERS) {
        w = calloc(1, sizeof(waiters_t));
        if (!w) {
            log_error("out of memory keeping a resent submit");
            abort();
        }
        zhashx_update(self->intakes, key, w);
    }
    waiter_t *grown = realloc(w->list, (w->count + 1) * sizeof(waiter_t));
    if (!grown) {
        log_error("out of memory keeping a resent submit");
        abort();
    }
    w->list = grown;
    waiter_t *one = &w->list[w->count++];
    memcpy(one->env, env, env_len);
    one->env_len = env_len;
    one->request_id = request_id;
}

static void s_send_submitted(server_t *self, const uint8_t *env, size_t env_len,
                             uint64_t request_id, uint64_t ticket, bool duplicate)
{
    char id[ID_TEXT_MAX];
    wire_decimal(ticket, id);
    Tier__V1__SubmitReply submitted = TIER__V1__SUBMIT_REPLY__INIT;
    submitted.id = id;
    submitted.duplicate = duplicate;
    Tier__V1__ClientReply reply = TIER__V1__CLIENT_REPLY__INIT;
    reply.request_id = request_id;
    reply.body_case = TIER__V1__CLIENT_REPLY__BODY_SUBMITTED;
    reply.submitted = &submitted;
    s_send_packed(self->clients_handle, env, env_len, &reply.base, &self->scratch);
}

//  The intake of `key` is over: with a ticket (committed), or not. Those
//  who sent the same submit meanwhile get the answer (a duplicate of it).
static void s_intake_done(server_t *self, const char *key, bool committed, uint64_t ticket)
{
    if (!key)
        return;
    waiters_t *w = zhashx_lookup(self->intakes, key);
    if (w && w != NO_WAITERS)
        for (size_t i = 0; i < w->count; i++) {
            waiter_t *one = &w->list[i];
            if (committed && ticket)
                s_send_submitted(self, one->env, one->env_len, one->request_id, ticket, true);
            else
                s_error_to(self, SOCK_CLIENTS, one->env, one->env_len, one->request_id,
                           TIER__V1__ERROR_CODE__ERROR_UNAVAILABLE, s_unavailable(self));
        }
    zhashx_delete(self->intakes, key);
}

//  The answer to a submit, and the end of its intake.
typedef struct {
    dest_t dest;
    uint64_t id;
    bool duplicate;
    const char *intake_key; //  in self->intakes until answered
    uint64_t followup_of;
} submitted_item_t;

static void s_item_submitted(void *arg, outbox_batch_t *batch, void *payload, const redisReply *r,
                             bool committed)
{
    (void) r;
    server_t *self = arg;
    submitted_item_t *item = payload;
    s_intake_done(self, item->intake_key, committed, item->id);
    if (item->followup_of) {
        char key[ID_TEXT_MAX];
        snprintf(key, sizeof(key), "%llu", (unsigned long long) item->followup_of);
        zhashx_delete(self->followups_busy, key);
        if (committed && !item->duplicate)
            log_info("follow-up ticket %llu created for ticket %llu", (unsigned long long) item->id,
                     (unsigned long long) item->followup_of);
        return;
    }
    if (s_refused(self, batch, &item->dest, committed))
        return;
    s_send_submitted(self, outbox_bytes(batch, item->dest.env), item->dest.env_len,
                     item->dest.request_id, item->id, item->duplicate);
}

static void s_submitted_later(server_t *self, const dest_t *dest, uint64_t id, bool duplicate,
                              const char *intake_key, uint64_t followup_of)
{
    //  The key may be in an earlier batch's arena: keep a copy in this one.
    submitted_item_t item = {*dest, id, duplicate,
                             intake_key ? outbox_strdup(self->outbox, intake_key) : NULL,
                             followup_of};
    outbox_add(self->outbox, s_item_submitted, &item, sizeof(item), OUTBOX_NO_READ);
}

//  The policy a ticket gets at intake (interned), by policy name and
//  priority; cached, since only the UTC offset of business hours changes
//  (DST): the spec is read again once a minute.
static const policy_t *s_policy(server_t *self, const rules_outcome_t *out, int64_t *boost_p,
                                bool vip)
{
    const sla_t *sla = self->config->sla;
    *boost_p = (vip ? sla_vip_boost_ms(sla) : 0) + sla_priority_boost_ms(sla, out->priority);
    if (self->now_ms - self->policies_at >= POLICY_CACHE_MS) {
        char spec[BUSINESS_SPEC_MAX];
        sla_business_spec(sla, spec, sizeof(spec));
        if (strcmp(spec, self->business) != 0)
            self->cached = 0;
        snprintf(self->business, sizeof(self->business), "%s", spec);
        self->policies_at = self->now_ms;
    }
    for (size_t i = 0; i < self->cached; i++)
        if (self->policy_cache[i].priority == out->priority &&
            strcmp(self->policy_cache[i].name, out->sla_policy) == 0)
            return self->policy_cache[i].policy;
    const sla_targets_t *targets = sla_targets(sla, out->sla_policy, out->priority);
    policy_t p;
    memset(&p, 0, sizeof(p));
    p.first_response_ms = targets->first_response_ms;
    p.resolution_ms = targets->resolution_ms;
    for (int level = 1; level <= POLICY_LEVELS; level++)
        p.wait_ms[level] = targets->wait_ms[level];
    p.warn_percent = sla_warn_percent(sla);
    p.action = targets->action;
    for (int prio = 1; prio <= POLICY_PRIORITIES; prio++)
        p.priority_boost_ms[prio] = sla_priority_boost_ms(sla, prio);
    snprintf(p.business, sizeof(p.business), "%s", self->business);
    const policy_t *interned = intern_policy(self->intern, &p);
    if (self->cached < POLICY_CACHE_MAX) {
        policy_cache_t *c = &self->policy_cache[self->cached++];
        snprintf(c->name, sizeof(c->name), "%s", out->sla_policy);
        c->priority = out->priority;
        c->policy = interned;
    }
    return interned;
}

//  "level L3, department billing" for a history rule that fired.
static void s_history_action(const rule_history_t *rule, char *out, size_t size)
{
    snprintf(out, size, "%s%s%s%s", rule->level ? "level " : "", rules_level_name(rule->level),
             !rule->department ? ""
             : rule->level     ? ", department "
                               : "department ",
             rule->department ? rule->department : "");
}

//  Apply the history rules whose reads say they fire; returns how many hits
//  were added to hits (content hits first).
static size_t s_history_hits(server_t *self, rules_outcome_t *out, uint32_t first_read,
                             lifecycle_hit_t *hits, size_t count, char (*actions)[RULE_ACTION_MAX],
                             bool *record_contact)
{
    *record_contact = false;
    for (size_t r = 0; r < out->history_count; r++) {
        const rule_history_t *rule = out->history[r];
        const redisReply *reply = journal_reply(self->journal, first_read + (uint32_t) r);
        if (rule->contacts > 0)
            *record_contact = true;
        //  contacts: the count so far in the window must reach contacts - 1
        //  (this ticket is the Nth); escalated: the customer's flag exists.
        bool fires = rule->contacts > 0 ? (int64_t) journal_u64(reply) >= rule->contacts - 1
                                        : journal_u64(reply) > 0;
        if (!fires || count >= 2 * RULES_HITS_MAX)
            continue;
        if (rule->level > out->level)
            out->level = rule->level;
        if (rule->department && !*out->department)
            out->department = rule->department;
        s_history_action(rule, actions[r], RULE_ACTION_MAX);
        hits[count].rule = rule->name;
        hits[count].action = actions[r];
        count++;
    }
    return count;
}

//  The content part of a submitted ticket, packed: what never changes.
static size_t s_pack_content(const Tier__V1__Ticket *submitted, const rules_outcome_t *out,
                             bytes_t *buf)
{
    Tier__V1__Ticket content = TIER__V1__TICKET__INIT;
    content.external_id = submitted->external_id;
    content.channel = submitted->channel;
    content.customer = submitted->customer;
    content.subject = submitted->subject;
    content.body = submitted->body;
    content.n_tags = out->tag_count;
    content.tags = (char **) out->tags;
    size_t size = tier__v1__ticket__get_packed_size(&content);
    bytes_clear(buf);
    bytes_reserve(buf, size);
    tier__v1__ticket__pack(&content, buf->data);
    buf->len = size;
    return size;
}

static void s_rules_test_reply(server_t *self, const dest_t *dest, const Tier__V1__Ticket *t,
                               const rules_outcome_t *out, const lifecycle_hit_t *hits,
                               size_t count);

//  The ticket taken in, its reads (if any) in. `batch` is the batch the
//  item was kept in (NULL: called at once, dest is in the filling batch).
static void s_intake_apply(server_t *self, outbox_batch_t *batch, intake_item_t *item)
{
    const Tier__V1__Ticket *t = item->ticket;
    bool followup = item->followup_of != 0;
    uint32_t read = item->first;
    dest_t dest = batch && !followup ? s_dest_copy(self, batch, &item->dest) : item->dest;
    if (item->read_external) {
        const redisReply *existing = journal_reply(self->journal, read++);
        if (journal_len(existing)) {
            if (followup) {
                //  Made before (a router stopped before clearing the timer).
                journal_write(self->journal, 3);
                journal_arg_str(self->journal, "ZREM");
                journal_arg_key(self->journal, "followups", NULL);
                journal_arg_u64(self->journal, item->followup_of);
            }
            s_submitted_later(self, &dest, journal_u64(existing), true, item->intake_key,
                              item->followup_of);
            return;
        }
    }
    rules_outcome_t out;
    rules_apply(self->rules, t, &out);
    lifecycle_hit_t hits[2 * RULES_HITS_MAX];
    char actions[RULES_HITS_MAX][RULE_ACTION_MAX];
    size_t count = 0;
    for (size_t i = 0; i < out.hit_count; i++)
        hits[count++] = (lifecycle_hit_t){out.hits[i].rule, out.hits[i].action};
    bool record_contact;
    count = s_history_hits(self, &out, read, hits, count, actions, &record_contact);
    if (item->test) {
        s_rules_test_reply(self, &dest, t, &out, hits, count);
        return;
    }
    bool vip = t->customer && t->customer->vip;
    int64_t boost;
    const policy_t *policy = s_policy(self, &out, &boost, vip);
    size_t content_len = s_pack_content(t, &out, &self->scratch2);
    lifecycle_intake_t in = {.content = self->scratch2.data,
                             .content_len = content_len,
                             .external_id = t->external_id,
                             .customer = t->customer ? s_str(t->customer->id) : "",
                             .vip = vip,
                             .channel = t->channel,
                             .subject = t->subject,
                             .level = out.level,
                             .department = s_dept(self, out.department),
                             .priority = out.priority,
                             .policy = policy,
                             .boost_ms = boost,
                             .hits = hits,
                             .hit_count = count,
                             .record_contact = record_contact};
    ticket_t *ticket = lifecycle_intake(self->lifecycle, self->now_ms, &in);
    if (*t->external_id)
        filter_add(self->filter, t->external_id);
    if (followup) {
        journal_write(self->journal, 3);
        journal_arg_str(self->journal, "ZREM");
        journal_arg_key(self->journal, "followups", NULL);
        journal_arg_u64(self->journal, item->followup_of);
    }
    s_submitted_later(self, &dest, ticket->id, false, item->intake_key, item->followup_of);
}

static void s_followup_done(server_t *self, uint64_t of)
{
    char key[ID_TEXT_MAX];
    snprintf(key, sizeof(key), "%llu", (unsigned long long) of);
    zhashx_delete(self->followups_busy, key);
}

//  The second round trip of an intake: the reads are in.
static void s_item_intake(void *arg, outbox_batch_t *batch, void *payload, const redisReply *r,
                          bool committed)
{
    (void) r;
    server_t *self = arg;
    intake_item_t *item = payload;
    if (!committed || item->epoch != self->epoch || self->state != STATE_READY) {
        if (!item->followup_of)
            s_error_dest(self, batch, &item->dest, TIER__V1__ERROR_CODE__ERROR_UNAVAILABLE,
                         s_unavailable(self));
        else
            s_followup_done(self, item->followup_of);
        s_intake_done(self, item->intake_key, false, 0);
    } else
        s_intake_apply(self, batch, item);
    s_intake_free(self, item);
}

//  First round trip of an intake (or a rules test): the reads it needs.
//  Takes ticket (and request, which owns it, if not NULL). dest is in the
//  filling batch, or NULL for a follow-up.
static void s_intake(server_t *self, Tier__V1__Ticket *ticket, void *request, bool arena,
                     const dest_t *dest, const uint8_t *env, uint64_t followup_of, bool test)
{
    intake_item_t item = {.epoch = self->epoch,
                          .ticket = ticket,
                          .request = request,
                          .dest = dest ? *dest : (dest_t){0},
                          .followup_of = followup_of,
                          .test = test,
                          .arena = arena,
                          .first = UINT32_MAX};
    if (*ticket->external_id && !test) {
        if (zhashx_lookup(self->intakes, ticket->external_id)) {
            //  The same ticket, sent again while its intake is under way:
            //  it gets the first one's answer.
            if (env)
                s_wait_for_intake(self, ticket->external_id, env, dest->env_len, dest->request_id);
            s_intake_free(self, &item);
            return;
        }
        zhashx_insert(self->intakes, ticket->external_id, NO_WAITERS);
        item.intake_key = outbox_strdup(self->outbox, ticket->external_id);
    }
    rules_outcome_t out;
    rules_apply(self->rules, ticket, &out);
    journal_t *j = self->journal;
    if (*ticket->external_id && !test && filter_maybe(self->filter, ticket->external_id)) {
        item.first = journal_read(j, 2);
        journal_arg_str(j, "GET");
        journal_arg_key(j, "x:", ticket->external_id);
        item.count++;
        item.read_external = true;
    }
    const char *customer = ticket->customer ? s_str(ticket->customer->id) : "";
    for (size_t r = 0; r < out.history_count; r++) {
        const rule_history_t *rule = out.history[r];
        uint32_t read;
        if (*customer && rule->contacts > 0) {
            read = journal_read(j, 4);
            journal_arg_str(j, "ZCOUNT");
            journal_arg_key(j, "cc:", customer);
            journal_arg_i64(j, self->now_ms - rule->window_ms);
            journal_arg_str(j, "+inf");
        } else {
            //  escalated before; without a customer, a read that gives 0
            read = journal_read(j, 2);
            journal_arg_str(j, "EXISTS");
            journal_arg_key(j, "ce:", customer);
        }
        if (item.first == UINT32_MAX)
            item.first = read;
        item.count++;
    }
    if (!item.count) { //  nothing to read: take it in now
        s_intake_apply(self, NULL, &item);
        s_intake_free(self, &item);
        return;
    }
    outbox_add(self->outbox, s_item_intake, &item, sizeof(item), OUTBOX_NO_READ);
}

//  tierctl rules test: the ticket as intake would queue it.
static void s_rules_test_reply(server_t *self, const dest_t *dest, const Tier__V1__Ticket *t,
                               const rules_outcome_t *out, const lifecycle_hit_t *hits,
                               size_t count)
{
    Tier__V1__RuleHit hit_items[2 * RULES_HITS_MAX], *hit_ptrs[2 * RULES_HITS_MAX];
    for (size_t i = 0; i < count; i++) {
        tier__v1__rule_hit__init(&hit_items[i]);
        hit_items[i].rule = (char *) hits[i].rule;
        hit_items[i].action = (char *) hits[i].action;
        hit_ptrs[i] = &hit_items[i];
    }
    Tier__V1__Ticket shown = *t;
    shown.level = (Tier__V1__Level) out->level;
    shown.department = (char *) out->department;
    shown.priority = (Tier__V1__Priority) out->priority;
    shown.n_tags = out->tag_count;
    shown.tags = (char **) out->tags;
    const sla_targets_t *targets = sla_targets(self->config->sla, out->sla_policy, out->priority);
    Tier__V1__RulesTestReply test = TIER__V1__RULES_TEST_REPLY__INIT;
    test.n_hits = count;
    test.hits = hit_ptrs;
    test.ticket = &shown;
    test.sla_policy = (char *) out->sla_policy;
    test.first_response_due_ms = (uint64_t) targets->first_response_ms;
    test.resolution_due_ms = (uint64_t) targets->resolution_ms;
    Tier__V1__ClientReply reply = TIER__V1__CLIENT_REPLY__INIT;
    reply.request_id = dest->request_id;
    reply.body_case = TIER__V1__CLIENT_REPLY__BODY_RULES_TEST;
    reply.rules_test = &test;
    s_reply_later(self, dest, &reply.base);
}

//  ---------------------------------------------------------------------------
//  Requests about one ticket: the ticket in memory, or read first.

typedef enum { OP_CANCEL, OP_MESSAGE, OP_RATE, OP_REQUEUE, OP_RESULT } ticket_op_t;

typedef struct {
    uint64_t epoch;
    uint64_t id;
    uint8_t op;        //  ticket_op_t
    void *request;     //  owned: ClientRequest (client ops) or WorkerMessage (OP_RESULT)
    dest_t dest;       //  in the batch the item is kept in
    const char *agent; //  OP_RESULT: who sent it (interned)
    bool arena;        //  request was unpacked into the batch arena
} ticket_item_op_t;

static void s_request_free(server_t *self, ticket_item_op_t *item)
{
    if (!item->request)
        return;
    ProtobufCAllocator *allocator = s_allocator(self, item->arena);
    if (item->op == OP_RESULT)
        tier__v1__worker_message__free_unpacked(item->request, allocator);
    else
        tier__v1__client_request__free_unpacked(item->request, allocator);
    item->request = NULL;
}

static void s_back_from_away(server_t *self, const char *agent)
{
    worker_t *worker = dispatch_by_agent(self->dispatch, agent);
    if (!worker || worker_state(worker) != TIER__V1__AGENT_STATE__AGENT_AWAY)
        return;
    worker_set_state(self->dispatch, worker, TIER__V1__AGENT_STATE__AGENT_READY);
    lifecycle_agent_state(self->lifecycle, self->now_ms, agent, TIER__V1__AGENT_STATE__AGENT_READY,
                          "a result came through");
    log_notice("agent %s: back from away (a result came through)", agent);
}

static void s_done_later(server_t *self, const dest_t *dest, int state)
{
    Tier__V1__Done done = TIER__V1__DONE__INIT;
    done.state = (Tier__V1__TicketState) state;
    Tier__V1__RouterMessage m = TIER__V1__ROUTER_MESSAGE__INIT;
    m.request_id = dest->request_id;
    m.body_case = TIER__V1__ROUTER_MESSAGE__BODY_DONE;
    m.done = &done;
    s_reply_later(self, dest, &m.base);
}

//  Worker results (Accept .. Defer) as lifecycle takes them.
static void s_result_of(server_t *self, const Tier__V1__WorkerMessage *msg, const char *agent,
                        lifecycle_result_t *r)
{
    memset(r, 0, sizeof(*r));
    r->agent = agent;
    r->request_id = msg->request_id;
    switch (msg->body_case) {
    case TIER__V1__WORKER_MESSAGE__BODY_ACCEPT:
        r->kind = RESULT_ACCEPT;
        r->attempt = msg->accept->attempt;
        break;
    case TIER__V1__WORKER_MESSAGE__BODY_RESPOND:
        r->kind = RESULT_RESPOND;
        r->attempt = msg->respond->attempt;
        r->text = msg->respond->text;
        r->awaiting_customer = msg->respond->awaiting_customer;
        break;
    case TIER__V1__WORKER_MESSAGE__BODY_RESOLVE:
        r->kind = RESULT_RESOLVE;
        r->attempt = msg->resolve->attempt;
        r->text = msg->resolve->text;
        break;
    case TIER__V1__WORKER_MESSAGE__BODY_ESCALATE:
        r->kind = RESULT_ESCALATE;
        r->attempt = msg->escalate->attempt;
        r->to_level = msg->escalate->to_level;
        r->to_department = s_dept(self, msg->escalate->to_department);
        r->reason = msg->escalate->reason;
        r->notes = msg->escalate->notes;
        break;
    case TIER__V1__WORKER_MESSAGE__BODY_RELEASE:
        r->kind = RESULT_RELEASE;
        r->attempt = msg->release->attempt;
        r->reason = *msg->release->reason ? msg->release->reason : "released by the agent";
        break;
    default: //  DEFER
        r->kind = RESULT_DEFER;
        r->attempt = msg->defer->attempt;
        r->until_ms = msg->defer->until_ms;
        r->reason = msg->defer->reason;
        break;
    }
}

//  Apply a request to a ticket (NULL: there is no such ticket). env: the
//  bytes of item->dest's routing frames; batch: the batch item was kept in
//  (NULL: its dest is in the filling batch already).
static void s_ticket_op(server_t *self, ticket_item_op_t *item, ticket_t *t, outbox_batch_t *batch,
                        const uint8_t *env)
{
    lifecycle_outcome_t out;
    dest_t dest = batch ? s_dest_copy(self, batch, &item->dest) : item->dest;
    const Tier__V1__ClientRequest *req = item->request;
    int64_t now = self->now_ms;
    switch ((ticket_op_t) item->op) {
    case OP_CANCEL: {
        const char *agent;
        uint32_t attempt;
        const char *reason =
            *req->cancel->reason ? req->cancel->reason : "cancelled by the customer";
        lifecycle_cancel(self->lifecycle, now, t, reason, &out, &agent, &attempt);
        if (!out.code && agent)
            s_revoke_later(self, agent, item->id, attempt, "cancelled by the customer");
        break;
    }
    case OP_MESSAGE:
        lifecycle_message(self->lifecycle, now, t, req->message->text, &out);
        break;
    case OP_RATE:
        lifecycle_rate(self->lifecycle, now, t, req->rate->csat, req->rate->comment, &out);
        break;
    case OP_REQUEUE:
        lifecycle_requeue(self->lifecycle, now, t, req->requeue->level,
                          s_dept(self, req->requeue->department), req->requeue->reason, &out);
        break;
    case OP_RESULT: {
        lifecycle_result_t r;
        s_result_of(self, item->request, item->agent, &r);
        lifecycle_result(self->lifecycle, now, t, &r, &out);
        if (out.code)
            break;
        if (!out.duplicate)
            s_back_from_away(self, item->agent);
        s_done_later(self, &dest, out.state);
        return;
    }
    }
    if (out.code) {
        //  A refusal changes nothing: answer at once.
        s_error_to(self, item->dest.sock, env, item->dest.env_len, item->dest.request_id, out.code,
                   out.reason);
        return;
    }
    s_ticket_later(self, &dest, item->id, true);
}

static void s_item_fetched(void *arg, outbox_batch_t *batch, void *payload,
                           const redisReply *stored, bool committed)
{
    server_t *self = arg;
    ticket_item_op_t *item = payload;
    if (!committed || item->epoch != self->epoch || self->state != STATE_READY) {
        s_error_dest(self, batch, &item->dest, TIER__V1__ERROR_CODE__ERROR_UNAVAILABLE,
                     s_unavailable(self));
        s_request_free(self, item);
        return;
    }
    //  Memory wins over what was read: it may be newer.
    ticket_t *t = book_ticket(self->book, item->id);
    if (!t && journal_len(stored))
        t = book_fetched(self->book, (const uint8_t *) journal_str(stored), journal_len(stored));
    if (t)
        lifecycle_loaded(self->lifecycle, self->now_ms, t);
    s_ticket_op(self, item, t, batch, outbox_bytes(batch, item->dest.env));
    s_request_free(self, item);
}

//  Run op on ticket `id` now if it is in memory, else after reading it.
//  Takes request. dest is in the filling batch.
static void s_with_ticket(server_t *self, ticket_op_t op, const char *id_text, void *request,
                          bool arena, const dest_t *dest, const uint8_t *env, const char *agent)
{
    ticket_item_op_t item = {
        self->epoch, strtoull(id_text, NULL, 10), (uint8_t) op, request, *dest, agent, arena};
    ticket_t *t = item.id ? book_ticket(self->book, item.id) : NULL;
    if (t || !item.id) {
        s_ticket_op(self, &item, t, NULL, env);
        s_request_free(self, &item);
        return;
    }
    uint32_t read = journal_read(self->journal, 2);
    journal_arg_str(self->journal, "GET");
    journal_arg_key_u64(self->journal, "tk:", item.id);
    outbox_add(self->outbox, s_item_fetched, &item, sizeof(item), read);
}

//  ---------------------------------------------------------------------------
//  Reading requests: queues, agents, snapshot, dead letters, report

static void s_queue_info(server_t *self, size_t q, Tier__V1__QueueInfo *info)
{
    const queue_t *queue = book_queue(self->book, q);
    tier__v1__queue_info__init(info);
    info->level = (Tier__V1__Level) queue->level;
    info->department = (char *) s_str(queue->department);
    info->depth = book_depth(self->book, q);
    info->oldest_ms = (uint64_t) book_oldest(self->book, q);
    if (info->oldest_ms && (int64_t) info->oldest_ms < self->now_ms)
        info->oldest_wait_ms = (uint64_t) self->now_ms - info->oldest_ms;
}

static void s_queues(server_t *self, const dest_t *dest)
{
    size_t count = book_queue_count(self->book);
    Tier__V1__QueueInfo *infos = calloc(count + 1, sizeof(Tier__V1__QueueInfo));
    Tier__V1__QueueInfo **ptrs = calloc(count + 1, sizeof(Tier__V1__QueueInfo *));
    for (size_t q = 0; q < count; q++) {
        s_queue_info(self, q, &infos[q]);
        ptrs[q] = &infos[q];
    }
    Tier__V1__QueuesReply queues = TIER__V1__QUEUES_REPLY__INIT;
    queues.n_queues = count;
    queues.queues = ptrs;
    Tier__V1__ClientReply reply = TIER__V1__CLIENT_REPLY__INIT;
    reply.request_id = dest->request_id;
    reply.body_case = TIER__V1__CLIENT_REPLY__BODY_QUEUES;
    reply.queues = &queues;
    s_reply_later(self, dest, &reply.base);
    free(ptrs);
    free(infos);
}

//  Every connected agent as AgentInfo, packed as `field` of the reply being
//  built in out (AgentsReply 1, SnapshotReply 3).
static void s_pack_agents(server_t *self, int field, bytes_t *out)
{
    bytes_t one = {0};
    for (worker_t *w = dispatch_first(self->dispatch); w; w = dispatch_next(self->dispatch)) {
        size_t ndepts;
        const char *const *depts = worker_departments(w, &ndepts);
        uint32_t held = worker_held(self->dispatch, w);
        char **ids = calloc(held + 1, sizeof(char *));
        char *texts = calloc(held + 1, ID_TEXT_MAX);
        size_t n = 0;
        for (ticket_t *t = book_held_first(self->book, worker_agent(w)); t && n < held;
             t = book_held_next(self->book)) {
            ids[n] = texts + n * ID_TEXT_MAX;
            snprintf(ids[n], ID_TEXT_MAX, "%llu", (unsigned long long) t->id);
            n++;
        }
        Tier__V1__AgentInfo info = TIER__V1__AGENT_INFO__INIT;
        info.id = (char *) worker_agent(w);
        info.level = (Tier__V1__Level) worker_level(w);
        info.n_departments = ndepts;
        info.departments = (char **) depts;
        info.capacity = worker_capacity(w);
        info.load = held;
        info.state = worker_state(w);
        info.bot = worker_bot(w);
        info.last_seen_ms = (uint64_t) worker_last_seen(w);
        info.n_tickets = n;
        info.tickets = ids;
        size_t size = tier__v1__agent_info__get_packed_size(&info);
        bytes_clear(&one);
        bytes_reserve(&one, size);
        tier__v1__agent_info__pack(&info, one.data);
        wire_bytes(out, field, one.data, size);
        free(ids);
        free(texts);
    }
    bytes_fini(&one);
}

//  A reply packed by hand: ClientReply{request_id, <body bytes>}.
static void s_reply_bytes_later(server_t *self, const dest_t *dest, const bytes_t *body)
{
    bytes_t *out = &self->scratch;
    bytes_clear(out);
    wire_u64_opt(out, 1, dest->request_id);
    bytes_put(out, body->data, body->len);
    reply_item_t item = {*dest, outbox_put(self->outbox, out->data, out->len), (uint32_t) out->len};
    outbox_add(self->outbox, s_item_reply, &item, sizeof(item), OUTBOX_NO_READ);
}

static void s_agents(server_t *self, const dest_t *dest)
{
    bytes_t agents = {0}, body = {0};
    s_pack_agents(self, 1, &agents);
    wire_bytes(&body, 13, agents.data, agents.len); //  ClientReply.agents
    s_reply_bytes_later(self, dest, &body);
    bytes_fini(&agents);
    bytes_fini(&body);
}

//  A snapshot: what is queued, in dispatch order, as of seq; subjects are
//  read from the stored tickets.
typedef struct {
    uint64_t id;
    int64_t queued_ms;
    uint8_t priority, channel;
} snap_ticket_t;

typedef struct {
    dest_t dest;
    uint64_t seq;
    uint32_t tickets, ticket_count; //  snap_ticket_t array in the arena
    uint32_t queues;                //  per queue: level, department ptr, count
    uint32_t queue_count;
    uint32_t agents, agents_len; //  packed AgentInfo fields (SnapshotReply 3)
} snapshot_item_t;

typedef struct {
    int level;
    const char *department;
    uint32_t count;
    uint32_t omitted; //  QueueContents.omitted
} snap_queue_t;

static int s_snap_order(const void *a, const void *b)
{
    const heap_entry_t *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return x->tie < y->tie ? -1 : x->tie > y->tie;
}

static void s_item_snapshot(void *arg, outbox_batch_t *batch, void *payload,
                            const redisReply *subjects, bool committed)
{
    server_t *self = arg;
    snapshot_item_t *item = payload;
    if (s_refused(self, batch, &item->dest, committed))
        return;
    const snap_ticket_t *tickets = (const snap_ticket_t *) outbox_bytes(batch, item->tickets);
    const snap_queue_t *queues = (const snap_queue_t *) outbox_bytes(batch, item->queues);
    bytes_t body = {0}, snap = {0}, queue = {0}, one = {0};
    wire_u64(&snap, 1, item->seq);
    size_t at = 0;
    for (uint32_t q = 0; q < item->queue_count; q++) {
        bytes_clear(&queue);
        wire_u64_opt(&queue, 1, (uint64_t) queues[q].level);
        wire_str_opt(&queue, 2, queues[q].department);
        for (uint32_t k = 0; k < queues[q].count; k++, at++) {
            const snap_ticket_t *t = &tickets[at];
            ticket_content_t content = {0};
            const redisReply *stored = journal_elem(subjects, at);
            ticket_content((const uint8_t *) journal_str(stored), journal_len(stored), &content);
            char id[ID_TEXT_MAX];
            snprintf(id, sizeof(id), "%llu", (unsigned long long) t->id);
            bytes_clear(&one);
            wire_str(&one, 1, id);
            wire_u64_opt(&one, 2, t->priority);
            wire_u64_opt(&one, 3, t->channel);
            wire_u64_opt(&one, 4, (uint64_t) t->queued_ms);
            if (content.subject)
                wire_bytes(&one, 5, content.subject, content.subject_len);
            wire_bytes(&queue, 3, one.data, one.len);
        }
        wire_u64_opt(&queue, 4, queues[q].omitted);
        wire_bytes(&snap, 2, queue.data, queue.len);
    }
    bytes_put(&snap, outbox_bytes(batch, item->agents), item->agents_len);
    wire_bytes(&body, 1, NULL, 0);
    body.len = 0;
    wire_u64_opt(&body, 1, item->dest.request_id);
    wire_bytes(&body, 14, snap.data, snap.len); //  ClientReply.snapshot
    s_send_env(self->clients_handle, outbox_bytes(batch, item->dest.env), item->dest.env_len,
               body.data, body.len);
    bytes_fini(&body);
    bytes_fini(&snap);
    bytes_fini(&queue);
    bytes_fini(&one);
}

static void s_snapshot(server_t *self, const dest_t *dest, const uint8_t *env)
{
    if (!loader_ready(self->loader)) {
        s_error_to(self, SOCK_CLIENTS, env, dest->env_len, dest->request_id,
                   TIER__V1__ERROR_CODE__ERROR_UNAVAILABLE,
                   "tierd is still loading its queues from Redis; retry in a moment");
        return;
    }
    size_t nqueues = book_queue_count(self->book), total = 0;
    for (size_t q = 0; q < nqueues; q++)
        total += book_depth(self->book, q);
    snap_ticket_t *tickets = calloc(total + 1, sizeof(snap_ticket_t));
    snap_queue_t *queues = calloc(nqueues + 1, sizeof(snap_queue_t));
    heap_entry_t *order = NULL;
    size_t at = 0;
    for (size_t q = 0; q < nqueues; q++) {
        queue_t *queue = book_queue(self->book, q);
        size_t n = 0;
        for (int c = 0; c <= BOOK_CHANNELS; c++)
            n += heap_count(&queue->by_channel[c]);
        order = realloc(order, (n + 1) * sizeof(heap_entry_t));
        size_t k = 0;
        //  What is beyond a channel's window is in Redis only (or on its
        //  way there): counted as omitted, not listed.
        for (int c = 0; c <= BOOK_CHANNELS; c++)
            for (uint32_t i = 0; i < heap_count(&queue->by_channel[c]); i++)
                if (!book_beyond(self->book, queue->by_channel[c].entries[i].item))
                    order[k++] = queue->by_channel[c].entries[i];
        qsort(order, k, sizeof(heap_entry_t), s_snap_order);
        queues[q] = (snap_queue_t){queue->level, queue->department, (uint32_t) k,
                                   book_depth(self->book, q) - (uint32_t) k};
        for (size_t i = 0; i < k && at < total; i++) {
            const ticket_t *t = order[i].item;
            tickets[at++] = (snap_ticket_t){t->id, t->queued_ms, t->priority, t->channel};
        }
    }
    free(order);
    journal_t *j = self->journal;
    uint32_t read = journal_read(j, 1 + (int) (at ? at : 1));
    journal_arg_str(j, "MGET");
    if (!at)
        journal_arg_key(j, "tk:", "");
    for (size_t i = 0; i < at; i++)
        journal_arg_key_u64(j, "tk:", tickets[i].id);
    bytes_t agents = {0};
    s_pack_agents(self, 3, &agents);
    snapshot_item_t item = {*dest,
                            self->seq,
                            outbox_put(self->outbox, tickets, at * sizeof(snap_ticket_t)),
                            (uint32_t) at,
                            outbox_put(self->outbox, queues, nqueues * sizeof(snap_queue_t)),
                            (uint32_t) nqueues,
                            outbox_put(self->outbox, agents.data, agents.len),
                            (uint32_t) agents.len};
    outbox_add(self->outbox, s_item_snapshot, &item, sizeof(item), read);
    bytes_fini(&agents);
    free(tickets);
    free(queues);
}

//  Dead letters: the newest ids, then their tickets (without history).
typedef struct {
    dest_t dest;
} dead_item_t;

static void s_item_dead_tickets(void *arg, outbox_batch_t *batch, void *payload,
                                const redisReply *stored, bool committed)
{
    server_t *self = arg;
    dead_item_t *item = payload;
    if (s_refused(self, batch, &item->dest, committed))
        return;
    bytes_t dead = {0}, ticket = {0}, body = {0};
    for (size_t i = 0; stored && i < stored->elements; i++) {
        const redisReply *one = stored->element[i];
        if (!journal_len(one))
            continue;
        bytes_clear(&ticket);
        if (ticket_wire((const uint8_t *) journal_str(one), journal_len(one), false, &ticket))
            continue;
        wire_bytes(&dead, 1, ticket.data, ticket.len);
    }
    wire_u64_opt(&body, 1, item->dest.request_id);
    wire_bytes(&body, 15, dead.data, dead.len); //  ClientReply.dead_letters
    s_send_env(self->clients_handle, outbox_bytes(batch, item->dest.env), item->dest.env_len,
               body.data, body.len);
    bytes_fini(&dead);
    bytes_fini(&ticket);
    bytes_fini(&body);
}

static void s_item_dead_ids(void *arg, outbox_batch_t *batch, void *payload, const redisReply *ids,
                            bool committed)
{
    server_t *self = arg;
    dead_item_t *item = payload;
    if (s_refused(self, batch, &item->dest, committed))
        return;
    size_t n = ids && ids->type == REDIS_REPLY_ARRAY ? ids->elements : 0;
    journal_t *j = self->journal;
    uint32_t read = journal_read(j, 1 + (int) (n ? n : 1));
    journal_arg_str(j, "MGET");
    if (!n)
        journal_arg_key(j, "tk:", "");
    for (size_t i = 0; i < n; i++)
        journal_arg_key(j, "tk:", journal_str(ids->element[i]));
    dead_item_t next = {s_dest_copy(self, batch, &item->dest)};
    outbox_add(self->outbox, s_item_dead_tickets, &next, sizeof(next), read);
}

static void s_dead_letters(server_t *self, const dest_t *dest, uint32_t limit)
{
    journal_t *j = self->journal;
    uint32_t read = journal_read(j, 4);
    journal_arg_str(j, "ZREVRANGE");
    journal_arg_key(j, "dead", NULL);
    journal_arg_str(j, "0");
    journal_arg_i64(j, (int64_t) (limit ? limit : DEAD_LETTERS_DEFAULT) - 1);
    dead_item_t item = {*dest};
    outbox_add(self->outbox, s_item_dead_ids, &item, sizeof(item), read);
}

typedef struct {
    dest_t dest;
} report_item_t;

static void s_item_report(void *arg, outbox_batch_t *batch, void *payload, const redisReply *reply,
                          bool committed)
{
    server_t *self = arg;
    report_item_t *item = payload;
    if (s_refused(self, batch, &item->dest, committed))
        return;
    Tier__V1__ReportReply *report = reply && reply->type == REDIS_REPLY_ARRAY
                                        ? report_reply_new(reply, &self->config->grades)
                                        : NULL;
    if (!report) {
        s_error_dest(self, batch, &item->dest, TIER__V1__ERROR_CODE__ERROR_INTERNAL,
                     reply && reply->type == REDIS_REPLY_ERROR ? reply->str
                                                               : "report payload is malformed");
        return;
    }
    Tier__V1__ClientReply r = TIER__V1__CLIENT_REPLY__INIT;
    r.request_id = item->dest.request_id;
    r.body_case = TIER__V1__CLIENT_REPLY__BODY_REPORT;
    r.report = report;
    s_send_packed(self->clients_handle, outbox_bytes(batch, item->dest.env), item->dest.env_len,
                  &r.base, &self->scratch);
    report_reply_destroy(&report);
}

//  ---------------------------------------------------------------------------
//  Client requests. Returns true when it kept req (a continuation owns it).

static bool s_client_request(server_t *self, const uint8_t *env, size_t env_len,
                             Tier__V1__ClientRequest *req, bool arena)
{
    uint64_t rid = req->request_id;
    char reason[256], why[512];
    int code;
#define REFUSE(c, ...)                                                                             \
    do {                                                                                           \
        snprintf(why, sizeof(why), __VA_ARGS__);                                                   \
        s_error_to(self, SOCK_CLIENTS, env, env_len, rid, (c), why);                               \
        return false;                                                                              \
    } while (0)
    if (self->state != STATE_READY)
        REFUSE(TIER__V1__ERROR_CODE__ERROR_UNAVAILABLE, "%s", s_unavailable(self));
    dest_t dest = s_dest(self, SOCK_CLIENTS, env, env_len, rid);
    switch (req->body_case) {
    case TIER__V1__CLIENT_REQUEST__BODY_SUBMIT:
        if ((code = s_validate_ticket(self, req->submit->ticket, reason, sizeof(reason))))
            REFUSE(code, "%s", reason);
        s_intake(self, req->submit->ticket, req, arena, &dest, env, 0, false);
        return true;
    case TIER__V1__CLIENT_REQUEST__BODY_RULES_TEST:
        if ((code = s_validate_ticket(self, req->rules_test->ticket, reason, sizeof(reason))))
            REFUSE(code, "%s", reason);
        s_intake(self, req->rules_test->ticket, req, arena, &dest, env, 0, true);
        return true;
    case TIER__V1__CLIENT_REQUEST__BODY_GET:
        if (!*req->get->id)
            REFUSE(TIER__V1__ERROR_CODE__ERROR_MISSING_FIELD, "ticket id is empty");
        s_ticket_later(self, &dest, strtoull(req->get->id, NULL, 10), req->get->with_history);
        return false;
    case TIER__V1__CLIENT_REQUEST__BODY_CANCEL:
        if (!*req->cancel->id)
            REFUSE(TIER__V1__ERROR_CODE__ERROR_MISSING_FIELD, "ticket id is empty");
        s_with_ticket(self, OP_CANCEL, req->cancel->id, req, arena, &dest, env, NULL);
        return true;
    case TIER__V1__CLIENT_REQUEST__BODY_MESSAGE:
        if (!*req->message->id)
            REFUSE(TIER__V1__ERROR_CODE__ERROR_MISSING_FIELD, "ticket id is empty");
        if (!*req->message->text)
            REFUSE(TIER__V1__ERROR_CODE__ERROR_MISSING_FIELD, "message text is empty");
        s_with_ticket(self, OP_MESSAGE, req->message->id, req, arena, &dest, env, NULL);
        return true;
    case TIER__V1__CLIENT_REQUEST__BODY_RATE:
        if (!*req->rate->id)
            REFUSE(TIER__V1__ERROR_CODE__ERROR_MISSING_FIELD, "ticket id is empty");
        if (req->rate->csat < 1 || req->rate->csat > 5)
            REFUSE(TIER__V1__ERROR_CODE__ERROR_BAD_RATING, "rating %u is outside 1..5",
                   req->rate->csat);
        s_with_ticket(self, OP_RATE, req->rate->id, req, arena, &dest, env, NULL);
        return true;
    case TIER__V1__CLIENT_REQUEST__BODY_REQUEUE:
        if ((code = s_validate_placement(self, req->requeue->level, req->requeue->department,
                                         reason, sizeof(reason))))
            REFUSE(code, "%s", reason);
        if (!*req->requeue->reason)
            REFUSE(TIER__V1__ERROR_CODE__ERROR_MISSING_FIELD,
                   "requeue needs a reason (it is kept in history)");
        if (!*req->requeue->id)
            REFUSE(TIER__V1__ERROR_CODE__ERROR_MISSING_FIELD, "ticket id is empty");
        s_with_ticket(self, OP_REQUEUE, req->requeue->id, req, arena, &dest, env, NULL);
        return true;
    case TIER__V1__CLIENT_REQUEST__BODY_QUEUES:
        s_queues(self, &dest);
        return false;
    case TIER__V1__CLIENT_REQUEST__BODY_AGENTS:
        s_agents(self, &dest);
        return false;
    case TIER__V1__CLIENT_REQUEST__BODY_SNAPSHOT:
        s_snapshot(self, &dest, env);
        return false;
    case TIER__V1__CLIENT_REQUEST__BODY_DEAD_LETTERS:
        s_dead_letters(self, &dest, req->dead_letters->limit);
        return false;
    case TIER__V1__CLIENT_REQUEST__BODY_REPORT: {
        uint32_t read;
        if ((code = report_read(self->journal, req->report, self->now_ms, reason, sizeof(reason),
                                &read)))
            REFUSE(code, "%s", reason);
        report_item_t item = {dest};
        outbox_add(self->outbox, s_item_report, &item, sizeof(item), read);
        return false;
    }
    default:
        REFUSE(TIER__V1__ERROR_CODE__ERROR_BAD_MESSAGE, "request has no body this router knows");
    }
#undef REFUSE
}

//  ---------------------------------------------------------------------------
//  Worker messages

static int64_t s_lease_ms(const server_t *self)
{
    return (int64_t) LEASE_HEARTBEATS * self->config->liveness * self->config->heartbeat_ms;
}

static int s_validate_register(server_t *self, const Tier__V1__Register *reg, char *reason,
                               size_t size)
{
    if (!*reg->agent_id) {
        snprintf(reason, size, "register has an empty agent_id");
        return TIER__V1__ERROR_CODE__ERROR_MISSING_FIELD;
    }
    if (strlen(reg->agent_id) > 200) {
        snprintf(reason, size, "agent_id is longer than 200 bytes");
        return TIER__V1__ERROR_CODE__ERROR_BAD_REQUEST;
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

static void s_register(server_t *self, const uint8_t *env, size_t env_len,
                       const Tier__V1__WorkerMessage *msg)
{
    const Tier__V1__Register *reg = msg->register_;
    char reason[256];
    int code = s_validate_register(self, reg, reason, sizeof(reason));
    if (code) {
        s_error_to(self, SOCK_WORKERS, env, env_len, msg->request_id, code, reason);
        return;
    }
    const char *depts[CONFIG_DEPARTMENTS_MAX];
    char dept_list[CONFIG_DEPARTMENTS_MAX * 65] = "";
    size_t ndepts = 0;
    for (size_t i = 0; i < reg->n_departments && ndepts < CONFIG_DEPARTMENTS_MAX; i++) {
        depts[ndepts++] = s_dept(self, reg->departments[i]);
        snprintf(dept_list + strlen(dept_list), sizeof(dept_list) - strlen(dept_list), "%s%s",
                 i ? "," : "", reg->departments[i]);
    }
    char limits[256] = "";
    worker_spec_t spec = {.agent = intern_name(self->intern, reg->agent_id, strlen(reg->agent_id)),
                          .level = reg->level,
                          .departments = depts,
                          .department_count = ndepts,
                          .capacity = reg->capacity,
                          .bot = reg->bot};
    for (size_t i = 0; i < reg->n_channel_capacity; i++) {
        int channel = reg->channel_capacity[i]->channel;
        if (channel >= 1 && channel <= BOOK_CHANNELS)
            spec.channel_capacity[channel] = reg->channel_capacity[i]->capacity;
        snprintf(limits + strlen(limits), sizeof(limits) - strlen(limits), "%s%d:%u", i ? "," : "",
                 channel, reg->channel_capacity[i]->capacity);
    }
    Tier__V1__Held stale[HELD_MAX], *stale_ptrs[HELD_MAX];
    size_t stale_count = 0;
    lifecycle_register_t lreg = {.agent = reg->agent_id,
                                 .level = reg->level,
                                 .departments = dept_list,
                                 .capacity = reg->capacity,
                                 .bot = reg->bot,
                                 .channel_limits = limits,
                                 .held = (const Tier__V1__Held *const *) reg->held,
                                 .held_count = reg->n_held};
    uint32_t kept =
        lifecycle_register(self->lifecycle, self->now_ms, &lreg, stale, HELD_MAX, &stale_count);
    //  The connection: the identity frame ROUTER put first.
    zframe_t *identity = zframe_new(env + 1, env_len ? env[0] : 0);
    spec.identity = identity;
    dispatch_register(self->dispatch, &spec, self->now_ms);
    zframe_destroy(&identity);
    for (size_t i = 0; i < stale_count; i++)
        stale_ptrs[i] = &stale[i];
    Tier__V1__Registered registered = TIER__V1__REGISTERED__INIT;
    registered.heartbeat_ms = (uint32_t) self->config->heartbeat_ms;
    registered.offer_timeout_ms = (uint32_t) self->config->offer_timeout_ms;
    registered.liveness = (uint32_t) self->config->liveness;
    registered.n_stale = stale_count;
    registered.stale = stale_ptrs;
    Tier__V1__RouterMessage m = TIER__V1__ROUTER_MESSAGE__INIT;
    m.request_id = msg->request_id;
    m.body_case = TIER__V1__ROUTER_MESSAGE__BODY_REGISTERED;
    m.registered = &registered;
    dest_t dest = s_dest(self, SOCK_WORKERS, env, env_len, msg->request_id);
    s_reply_later(self, &dest, &m.base);
    log_info("agent %s registered at L%d, capacity %u, holding %u", reg->agent_id, reg->level,
             reg->capacity, kept);
}

//  A Register that comes while the state is loading (workers come back
//  together with a restarted router) waits for it, instead of a refusal
//  and a retry later.
typedef struct parked {
    struct parked *next;
    uint8_t env[ENVELOPE_MAX];
    size_t env_len;
    size_t size;
    uint8_t message[]; //  the packed WorkerMessage
} parked_t;

#define PARKED_MAX 10000 //  registrations kept while loading, at most

static void s_park_register(server_t *self, const uint8_t *env, size_t env_len,
                            const Tier__V1__WorkerMessage *msg)
{
    size_t size = tier__v1__worker_message__get_packed_size(msg);
    parked_t *p = self->parked_count < PARKED_MAX ? malloc(sizeof(parked_t) + size) : NULL;
    if (!p) {
        s_error_to(self, SOCK_WORKERS, env, env_len, msg->request_id,
                   TIER__V1__ERROR_CODE__ERROR_UNAVAILABLE, s_unavailable(self));
        return;
    }
    memcpy(p->env, env, env_len);
    p->env_len = env_len;
    p->size = size;
    tier__v1__worker_message__pack(msg, p->message);
    p->next = NULL;
    //  Kept in arrival order.
    parked_t **tail = &self->parked;
    while (*tail)
        tail = &(*tail)->next;
    *tail = p;
    self->parked_count++;
}

//  The state is loaded (ready) or lost again: answer what waited.
static void s_unpark(server_t *self, bool ready)
{
    while (self->parked) {
        parked_t *p = self->parked;
        self->parked = p->next;
        self->parked_count--;
        Tier__V1__WorkerMessage *msg = tier__v1__worker_message__unpack(NULL, p->size, p->message);
        if (msg && ready)
            s_register(self, p->env, p->env_len, msg);
        else if (msg)
            s_error_to(self, SOCK_WORKERS, p->env, p->env_len, msg->request_id,
                       TIER__V1__ERROR_CODE__ERROR_UNAVAILABLE, s_unavailable(self));
        if (msg)
            tier__v1__worker_message__free_unpacked(msg, NULL);
        free(p);
    }
}

static const char *s_result_ticket(const Tier__V1__WorkerMessage *msg)
{
    switch (msg->body_case) {
    case TIER__V1__WORKER_MESSAGE__BODY_ACCEPT:
        return msg->accept->ticket_id;
    case TIER__V1__WORKER_MESSAGE__BODY_RESPOND:
        return msg->respond->ticket_id;
    case TIER__V1__WORKER_MESSAGE__BODY_RESOLVE:
        return msg->resolve->ticket_id;
    case TIER__V1__WORKER_MESSAGE__BODY_ESCALATE:
        return msg->escalate->ticket_id;
    case TIER__V1__WORKER_MESSAGE__BODY_RELEASE:
        return msg->release->ticket_id;
    case TIER__V1__WORKER_MESSAGE__BODY_DEFER:
        return msg->defer->ticket_id;
    default:
        return NULL;
    }
}

//  Returns true when it kept msg.
static bool s_worker_message(server_t *self, const uint8_t *env, size_t env_len,
                             Tier__V1__WorkerMessage *msg, bool arena)
{
    uint64_t rid = msg->request_id;
    char reason[256];
    if (msg->body_case == TIER__V1__WORKER_MESSAGE__BODY__NOT_SET) {
        s_error_to(self, SOCK_WORKERS, env, env_len, rid, TIER__V1__ERROR_CODE__ERROR_BAD_MESSAGE,
                   "worker message has no body");
        return false;
    }
    if (msg->body_case == TIER__V1__WORKER_MESSAGE__BODY_REGISTER) {
        if (self->state == STATE_LOADING)
            s_park_register(self, env, env_len, msg);
        else if (self->state != STATE_READY)
            s_error_to(self, SOCK_WORKERS, env, env_len, rid,
                       TIER__V1__ERROR_CODE__ERROR_UNAVAILABLE, s_unavailable(self));
        else
            s_register(self, env, env_len, msg);
        return false;
    }
    worker_t *worker = env_len ? dispatch_by_identity(self->dispatch, env + 1, env[0]) : NULL;
    if (!worker) {
        s_error_to(self, SOCK_WORKERS, env, env_len, rid,
                   TIER__V1__ERROR_CODE__ERROR_NOT_REGISTERED,
                   "this connection has not registered (or the router restarted)");
        return false;
    }
    worker_seen(worker, self->now_ms);
    if (msg->body_case == TIER__V1__WORKER_MESSAGE__BODY_HEARTBEAT) {
        Tier__V1__RouterMessage pong = TIER__V1__ROUTER_MESSAGE__INIT;
        pong.request_id = rid;
        s_send_packed(self->workers_handle, env, env_len, &pong.base, &self->scratch);
        return false;
    }
    if (self->state != STATE_READY) {
        s_error_to(self, SOCK_WORKERS, env, env_len, rid, TIER__V1__ERROR_CODE__ERROR_UNAVAILABLE,
                   s_unavailable(self));
        return false;
    }
    dest_t dest = s_dest(self, SOCK_WORKERS, env, env_len, rid);
    if (msg->body_case == TIER__V1__WORKER_MESSAGE__BODY_DRAIN) {
        worker_set_state(self->dispatch, worker, TIER__V1__AGENT_STATE__AGENT_DRAINING);
        lifecycle_agent_state(self->lifecycle, self->now_ms, worker_agent(worker),
                              TIER__V1__AGENT_STATE__AGENT_DRAINING, "");
        Tier__V1__Done done = TIER__V1__DONE__INIT;
        Tier__V1__RouterMessage m = TIER__V1__ROUTER_MESSAGE__INIT;
        m.request_id = rid;
        m.body_case = TIER__V1__ROUTER_MESSAGE__BODY_DONE;
        m.done = &done;
        s_reply_later(self, &dest, &m.base);
        return false;
    }
    const char *ticket = s_result_ticket(msg);
    if (!ticket) {
        s_error_to(self, SOCK_WORKERS, env, env_len, rid, TIER__V1__ERROR_CODE__ERROR_BAD_MESSAGE,
                   "worker message has no body this router knows");
        return false;
    }
    if (!*ticket) {
        s_error_to(self, SOCK_WORKERS, env, env_len, rid, TIER__V1__ERROR_CODE__ERROR_MISSING_FIELD,
                   "ticket_id is empty");
        return false;
    }
    if (msg->body_case == TIER__V1__WORKER_MESSAGE__BODY_ESCALATE) {
        const Tier__V1__Escalate *esc = msg->escalate;
        int code = 0;
        if (!*esc->reason) {
            snprintf(reason, sizeof(reason), "an escalation needs a reason");
            code = TIER__V1__ERROR_CODE__ERROR_MISSING_FIELD;
        } else
            code = s_validate_placement(self, esc->to_level, esc->to_department, reason,
                                        sizeof(reason));
        if (code) {
            s_error_to(self, SOCK_WORKERS, env, env_len, rid, code, reason);
            return false;
        }
    }
    if (msg->body_case == TIER__V1__WORKER_MESSAGE__BODY_DEFER &&
        (!*msg->defer->reason || msg->defer->until_ms == 0)) {
        s_error_to(self, SOCK_WORKERS, env, env_len, rid, TIER__V1__ERROR_CODE__ERROR_MISSING_FIELD,
                   "a deferral needs until_ms and a reason (the promise)");
        return false;
    }
    s_with_ticket(self, OP_RESULT, ticket, msg, arena, &dest, env, worker_agent(worker));
    return true;
}

//  ---------------------------------------------------------------------------
//  Reading messages

//  Receive one multipart message into self->parts; returns its part count
//  (0: none waiting).
static size_t s_recv(server_t *self, void *handle)
{
    size_t count = 0;
    for (;;) {
        zmq_msg_t *part = &self->parts[count < FRAMES_MAX ? count : FRAMES_MAX - 1];
        if (count >= FRAMES_MAX)
            zmq_msg_close(part);
        zmq_msg_init(part);
        if (zmq_msg_recv(part, handle, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(part);
            return count;
        }
        if (count < FRAMES_MAX)
            count++;
        if (!zmq_msg_more(part))
            return count;
    }
}

static void s_parts_close(server_t *self, size_t count)
{
    for (size_t i = 0; i < count; i++)
        zmq_msg_close(&self->parts[i]);
}

static void s_on_message(server_t *self, int sock, size_t count)
{
    //  A ROUTER always prepends the identity: fewer than two frames cannot be.
    if (count < 2)
        return;
    uint8_t env[ENVELOPE_MAX];
    size_t env_len = s_env_of(self, count, env);
    zmq_msg_t *body = &self->parts[count - 1];
    size_t size = zmq_msg_size(body);
    const uint8_t *data = zmq_msg_data(body);
    if ((int) size > self->config->max_message_bytes) {
        char reason[128];
        snprintf(reason, sizeof(reason), "%s of %zu bytes exceeds the limit of %d",
                 sock == SOCK_CLIENTS ? "request" : "message", size,
                 self->config->max_message_bytes);
        s_error_to(self, sock, env, env_len, 0, TIER__V1__ERROR_CODE__ERROR_TOO_LARGE, reason);
        return;
    }
    bool arena = size <= ARENA_UNPACK_MAX;
    ProtobufCAllocator *allocator = s_allocator(self, arena);
    if (sock == SOCK_CLIENTS) {
        Tier__V1__ClientRequest *req = tier__v1__client_request__unpack(allocator, size, data);
        if (!req)
            s_error_to(self, sock, env, env_len, 0, TIER__V1__ERROR_CODE__ERROR_BAD_MESSAGE,
                       "frame is not a ClientRequest");
        else if (req->protocol_version > 1)
            s_error_to(self, sock, env, env_len, req->request_id,
                       TIER__V1__ERROR_CODE__ERROR_UNSUPPORTED_VERSION,
                       "this router speaks protocol_version 1");
        else if (s_client_request(self, env, env_len, req, arena))
            req = NULL;
        if (req)
            tier__v1__client_request__free_unpacked(req, allocator);
    } else {
        Tier__V1__WorkerMessage *msg = tier__v1__worker_message__unpack(allocator, size, data);
        if (!msg)
            s_error_to(self, sock, env, env_len, 0, TIER__V1__ERROR_CODE__ERROR_BAD_MESSAGE,
                       "frame is not a WorkerMessage");
        else if (msg->protocol_version > 1)
            s_error_to(self, sock, env, env_len, msg->request_id,
                       TIER__V1__ERROR_CODE__ERROR_UNSUPPORTED_VERSION,
                       "this router speaks protocol_version 1");
        else if (s_worker_message(self, env, env_len, msg, arena))
            msg = NULL;
        if (msg)
            tier__v1__worker_message__free_unpacked(msg, allocator);
    }
}

static void s_drain(server_t *self, int sock)
{
    void *handle = s_handle(self, sock);
    for (int i = 0; i < BATCH_MAX; i++) {
        size_t count = s_recv(self, handle);
        if (!count)
            break;
        self->received++;
        s_on_message(self, sock, count);
        s_parts_close(self, count);
    }
}

//  ---------------------------------------------------------------------------
//  Dispatch: one ticket for a worker, the best head of its queues that its
//  channel limits allow.

static bool s_pick(void *arg, worker_t *worker)
{
    server_t *self = arg;
    bool allowed[BOOK_CHANNELS + 1];
    if (!worker_room(self->dispatch, worker, allowed))
        return false;
    size_t count;
    const int *queues = worker_queues(worker, &count);
    ticket_t *best = NULL;
    for (size_t i = 0; i < count; i++) {
        if (queues[i] < 0)
            continue;
        ticket_t *t = book_head(self->book, (size_t) queues[i], allowed);
        if (t && (!best || t->score < best->score || (t->score == best->score && t->id < best->id)))
            best = t;
    }
    if (!best)
        return false;
    if (lifecycle_offer(self->lifecycle, self->now_ms, best, worker_agent(worker)))
        s_offer_later(self, best);
    return true;
}

//  ---------------------------------------------------------------------------
//  Timers, follow-ups and the cron

static void s_fire_timers(server_t *self)
{
    ticket_t *t;
    for (int i = 0; i < TIMERS_PER_TURN && (t = book_due(self->book, self->now_ms)); i++) {
        lifecycle_fired_t fired;
        uint64_t id = t->id;
        lifecycle_fire(self->lifecycle, self->now_ms, t, &fired);
        if (fired.revoke_agent)
            s_revoke_later(self, fired.revoke_agent, id, fired.revoke_attempt, "offer timed out");
        if (fired.away_agent) {
            worker_t *worker = dispatch_by_agent(self->dispatch, fired.away_agent);
            log_warning("agent %s: set away after %d offers in a row timed out", fired.away_agent,
                        self->config->max_offer_misses);
            if (worker)
                worker_set_state(self->dispatch, worker, TIER__V1__AGENT_STATE__AGENT_AWAY);
        }
        if (fired.offer_agent && (t = book_ticket(self->book, id)))
            s_offer_later(self, t);
    }
}

//  Due follow-ups: read the resolved tickets, then take each follow-up in
//  (idempotent on its external id, "followup:ID").
typedef struct {
    uint64_t epoch;
    uint32_t ids, count; //  uint64_t array in the arena
} followup_item_t;

static Tier__V1__Ticket *s_followup_ticket(const redisReply *stored, uint64_t of)
{
    bytes_t wire = {0};
    if (ticket_wire((const uint8_t *) journal_str(stored), journal_len(stored), false, &wire)) {
        bytes_fini(&wire);
        return NULL;
    }
    Tier__V1__Ticket *done = tier__v1__ticket__unpack(NULL, wire.len, wire.data);
    bytes_fini(&wire);
    if (!done)
        return NULL;
    char external[64], subject[512], body[256];
    snprintf(external, sizeof(external), "followup:%llu", (unsigned long long) of);
    snprintf(subject, sizeof(subject), "Follow-up: %s", done->subject);
    snprintf(body, sizeof(body),
             "Check that the customer is satisfied with the resolution of ticket %llu.",
             (unsigned long long) of);
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
    size_t size = tier__v1__ticket__get_packed_size(&t);
    uint8_t *packed = malloc(size + 1);
    Tier__V1__Ticket *copy = NULL;
    if (packed) {
        tier__v1__ticket__pack(&t, packed);
        copy = tier__v1__ticket__unpack(NULL, size, packed);
        free(packed);
    }
    tier__v1__ticket__free_unpacked(done, NULL);
    return copy;
}

static void s_item_followup_tickets(void *arg, outbox_batch_t *batch, void *payload,
                                    const redisReply *stored, bool committed)
{
    server_t *self = arg;
    followup_item_t *item = payload;
    const uint64_t *ids = (const uint64_t *) outbox_bytes(batch, item->ids);
    for (uint32_t i = 0; i < item->count; i++) {
        const redisReply *one = journal_elem(stored, i);
        Tier__V1__Ticket *t = NULL;
        if (committed && item->epoch == self->epoch && self->state == STATE_READY &&
            journal_len(one))
            t = s_followup_ticket(one, ids[i]);
        if (t)
            s_intake(self, t, NULL, false, NULL, NULL, ids[i], false);
        else {
            s_followup_done(self, ids[i]);
            if (committed && item->epoch == self->epoch && !journal_len(one)) {
                journal_write(self->journal, 3); //  its ticket is gone
                journal_arg_str(self->journal, "ZREM");
                journal_arg_key(self->journal, "followups", NULL);
                journal_arg_u64(self->journal, ids[i]);
            }
        }
    }
}

static void s_item_followups_due(void *arg, outbox_batch_t *batch, void *payload,
                                 const redisReply *due, bool committed)
{
    (void) batch;
    server_t *self = arg;
    followup_item_t *item = payload;
    if (!committed || item->epoch != self->epoch || self->state != STATE_READY)
        return;
    uint64_t ids[FOLLOWUPS_PER_ROUND];
    uint32_t count = 0;
    for (size_t i = 0; due && i < due->elements && count < FOLLOWUPS_PER_ROUND; i++) {
        const char *key = journal_str(due->element[i]);
        if (zhashx_lookup(self->followups_busy, key))
            continue;
        zhashx_insert(self->followups_busy, key, (void *) 1);
        ids[count++] = strtoull(key, NULL, 10);
    }
    if (!count)
        return;
    journal_t *j = self->journal;
    uint32_t read = journal_read(j, 1 + (int) count);
    journal_arg_str(j, "MGET");
    for (uint32_t i = 0; i < count; i++)
        journal_arg_key_u64(j, "tk:", ids[i]);
    followup_item_t next = {self->epoch, outbox_put(self->outbox, ids, count * sizeof(uint64_t)),
                            count};
    outbox_add(self->outbox, s_item_followup_tickets, &next, sizeof(next), read);
}

static void s_followups(server_t *self)
{
    journal_t *j = self->journal;
    uint32_t read = journal_read(j, 7);
    journal_arg_str(j, "ZRANGEBYSCORE");
    journal_arg_key(j, "followups", NULL);
    journal_arg_str(j, "-inf");
    journal_arg_i64(j, self->now_ms);
    journal_arg_str(j, "LIMIT");
    journal_arg_str(j, "0");
    journal_arg_u64(j, FOLLOWUPS_PER_ROUND);
    followup_item_t item = {self->epoch, 0, 0};
    outbox_add(self->outbox, s_item_followups_due, &item, sizeof(item), read);
}

//  Cold tickets (book.h): their timers are in P due and their queued times
//  in P qt:NAME. Every COLD_MS the due ones are read back, so that their
//  timers fire in memory, and each queue with a cold tail learns its oldest
//  wait.
#define COLD_MS        100
#define COLD_PER_ROUND 256

typedef struct {
    uint64_t epoch;
    uint32_t first; //  read: ZRANGEBYSCORE P due, then one ZRANGE qt per queue
    uint32_t queues;
} cold_item_t;

static void s_item_cold_tickets(void *arg, outbox_batch_t *batch, void *payload,
                                const redisReply *stored, bool committed)
{
    (void) batch;
    server_t *self = arg;
    cold_item_t *item = payload;
    self->cold_reading = false;
    if (!committed || item->epoch != self->epoch || self->state != STATE_READY)
        return;
    for (size_t i = 0; stored && i < stored->elements; i++) {
        const redisReply *one = stored->element[i];
        if (!journal_len(one))
            continue;
        ticket_t *t =
            book_fetched(self->book, (const uint8_t *) journal_str(one), journal_len(one));
        if (t)
            lifecycle_loaded(self->lifecycle, self->now_ms, t); //  fires this turn
    }
}

static void s_item_cold(void *arg, outbox_batch_t *batch, void *payload, const redisReply *due,
                        bool committed)
{
    (void) batch;
    server_t *self = arg;
    cold_item_t *item = payload;
    self->cold_reading = false;
    if (!committed || item->epoch != self->epoch || self->state != STATE_READY)
        return;
    for (uint32_t q = 0; q < item->queues && q < book_queue_count(self->book); q++) {
        const redisReply *oldest = journal_reply(self->journal, item->first + 1 + q);
        queue_t *queue = book_queue(self->book, q);
        queue->cold_oldest = (int64_t) journal_u64(journal_elem(oldest, 1));
    }
    size_t wanted = 0;
    for (size_t i = 0; due && i < due->elements; i++)
        if (!book_ticket(self->book, journal_u64(due->element[i])))
            wanted++;
    if (!wanted)
        return;
    journal_t *j = self->journal;
    uint32_t read = journal_read(j, 1 + (int) wanted);
    journal_arg_str(j, "MGET");
    for (size_t i = 0; due && i < due->elements; i++) {
        uint64_t id = journal_u64(due->element[i]);
        if (!book_ticket(self->book, id))
            journal_arg_key_u64(j, "tk:", id);
    }
    cold_item_t next = {self->epoch, read, 0};
    outbox_add(self->outbox, s_item_cold_tickets, &next, sizeof(next), read);
    self->cold_reading = true;
}

static void s_cold(server_t *self)
{
    size_t queues = book_queue_count(self->book);
    bool any = false;
    for (size_t q = 0; q < queues; q++)
        any = any || !book_complete(self->book, q);
    if (!any || self->cold_reading)
        return;
    journal_t *j = self->journal;
    uint32_t first = journal_read(j, 7);
    journal_arg_str(j, "ZRANGEBYSCORE");
    journal_arg_key(j, "due", NULL);
    journal_arg_str(j, "-inf");
    journal_arg_i64(j, self->now_ms);
    journal_arg_str(j, "LIMIT");
    journal_arg_str(j, "0");
    journal_arg_u64(j, COLD_PER_ROUND);
    for (size_t q = 0; q < queues; q++) {
        journal_read(j, 5);
        journal_arg_str(j, "ZRANGE");
        journal_arg_key(j, "qt:", book_queue(self->book, q)->name);
        journal_arg_str(j, "0");
        journal_arg_str(j, "0");
        journal_arg_str(j, "WITHSCORES");
    }
    cold_item_t item = {self->epoch, first, (uint32_t) queues};
    outbox_add(self->outbox, s_item_cold, &item, sizeof(item), first);
    self->cold_reading = true;
}

//  A worker silent for `liveness` heartbeats is gone: its tickets go back;
//  so are agents known from Redis that did not come back within their lease.
static void s_check_liveness(server_t *self)
{
    int64_t silence = (int64_t) self->config->liveness * self->config->heartbeat_ms;
    worker_t *worker;
    while ((worker = dispatch_next_silent(self->dispatch, self->now_ms, silence))) {
        const char *agent = worker_agent(worker);
        log_warning("agent %s: silent for %lld ms; taking its tickets back", agent,
                    (long long) silence);
        dispatch_remove(self->dispatch, agent);
        lifecycle_agent_gone(self->lifecycle, self->now_ms, agent, "agent stopped heartbeating");
    }
    for (holder_t *h = book_holder_first(self->book); h; h = book_holder_next(self->book))
        if (h->lease_until_ms && h->lease_until_ms <= self->now_ms &&
            !dispatch_by_agent(self->dispatch, h->agent)) {
            const char *agent = h->agent;
            log_warning("agent %s: lease expired; its tickets went back to their queues", agent);
            lifecycle_agent_gone(self->lifecycle, self->now_ms, agent, "agent lease expired");
            break; //  the holders changed: look again next cron
        }
}

static void s_renew_presence(server_t *self)
{
    const char *agents[RENEWALS_PER_CALL];
    size_t count;
    while ((count = dispatch_due_renewals(self->dispatch, self->now_ms, self->config->heartbeat_ms,
                                          agents, RENEWALS_PER_CALL)) > 0) {
        lifecycle_renew(self->lifecycle, self->now_ms, agents, count);
        if (count < RENEWALS_PER_CALL)
            break;
    }
}

static void s_status(server_t *self)
{
    char status[512];
    if (self->state == STATE_READY) {
        uint64_t cold = 0;
        for (size_t q = 0; q < book_queue_count(self->book); q++)
            cold += book_cold(self->book, q);
        char waiting[64] = "";
        if (cold)
            snprintf(waiting, sizeof(waiting), ", %llu queued in Redis only",
                     (unsigned long long) cold);
        snprintf(status, sizeof(status),
                 "%zu workers, %zu open tickets in memory%s, %llu messages, %llu events",
                 dispatch_workers(self->dispatch), book_count(self->book), waiting,
                 (unsigned long long) self->received,
                 (unsigned long long) events_published(self->events));
    } else
        snprintf(status, sizeof(status), "%s; refusing new work", s_unavailable(self));
    notify_status(status);
}

static void s_set_state(server_t *self, run_state_t state, const char *why)
{
    self->state = state;
    snprintf(self->state_why, sizeof(self->state_why), "%s", why ? why : "");
    metrics_redis_up(self->metrics, state == STATE_READY);
}

static void s_connect(server_t *self)
{
    const char *who = NULL;
    int rc = journal_reconnect(self->journal, self->now_ms, &who);
    if (rc < 0) {
        char why[sizeof(self->state_why) - 40];
        snprintf(why, sizeof(why), "redis is unavailable (%s)", journal_error(self->journal));
        s_set_state(self, STATE_DOWN, why);
        return;
    }
    if (rc == 1) {
        char why[sizeof(self->state_why)];
        snprintf(why, sizeof(why),
                 "standby: another tierd (%s) owns this Redis prefix; taking over when it "
                 "lets go",
                 who ? who : "?");
        if (self->state != STATE_STANDBY)
            log_warning("%s", why);
        s_set_state(self, STATE_STANDBY, why);
        return;
    }
    s_set_state(self, STATE_LOADING, "tierd is loading its state from Redis; retry in a moment");
    loader_start(self->loader, self->now_ms);
}

static void s_cron(server_t *self)
{
    journal_check(self->journal, self->now_ms);
    if (self->state == STATE_DOWN || self->state == STATE_STANDBY)
        s_connect(self);
    if (self->state == STATE_READY) {
        s_check_liveness(self);
        s_renew_presence(self);
        if (self->now_ms >= self->next_followups_ms) {
            s_followups(self);
            self->next_followups_ms = self->now_ms + FOLLOWUPS_MS;
        }
        if (self->now_ms >= self->next_cold_ms) {
            s_cold(self);
            self->next_cold_ms = self->now_ms + COLD_MS;
        }
        if (self->now_ms >= self->next_rollup_ms) {
            journal_t *j = self->journal;
            journal_write(j, 6);
            journal_arg_str(j, "FCALL");
            journal_arg_str(j, "tier_rollup");
            journal_arg_str(j, "0");
            journal_arg_str(j, journal_prefix(j));
            journal_arg_i64(j, self->now_ms);
            journal_arg_u64(j, ROLLUP_MINUTES);
            //  It rolls up minutes before the one before now's.
            kpi_rolled(self->kpi, self->now_ms - self->now_ms % 60000 - 60000);
            self->next_rollup_ms = self->now_ms + ROLLUP_MS;
        }
        //  The lock expires unless a batch with writes renews it.
        if (self->now_ms - journal_last_write_ms(self->journal) > self->config->lock_lease_ms / 4) {
            journal_write(self->journal, 1);
            journal_arg_str(self->journal, "PING");
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
//  The batch's end: what the turn changed goes to Redis.

static void s_persist_counters(server_t *self)
{
    journal_t *j = self->journal;
    if (self->seq != self->seq_written) {
        journal_set(j);
        journal_arg_key(j, "seq", NULL);
        journal_arg_u64(j, self->seq);
        self->seq_written = self->seq;
    }
    uint64_t last_id = lifecycle_last_id(self->lifecycle);
    if (last_id != self->id_written) {
        journal_set(j);
        journal_arg_key(j, "nextid", NULL);
        journal_arg_u64(j, last_id);
        self->id_written = last_id;
    }
}

static void s_end_turn(server_t *self)
{
    for (int round = 0; round < 4; round++) {
        if (self->state == STATE_READY) {
            lifecycle_queue_events(self->lifecycle, self->now_ms);
            kpi_flush(self->kpi, self->journal, self->now_ms);
            filter_flush(self->filter, self->journal);
            s_persist_counters(self);
            book_shrink(self->book);
            book_flush(self->book, s_on_going, self);
        }
        int sent = journal_send(self->journal, self->now_ms);
        //  Items that needed nothing from Redis, with nothing in flight to
        //  wait for, run now (they may queue more work: go round again).
        if (sent == 0 && !journal_busy(self->journal) && !journal_pending(self->journal) &&
            outbox_filling(self->outbox)) {
            outbox_run_filling(self->outbox);
            continue;
        }
        break;
    }
}

//  ---------------------------------------------------------------------------
//  The journal's and the loader's news

static void s_on_sent(void *arg)
{
    server_t *self = arg;
    outbox_sent(self->outbox);
}

//  Redis was lost (or another router took over): what memory holds may be
//  ahead of Redis. Answer what waits, forget the tickets, load again.
static void s_reset(server_t *self, journal_status_t status)
{
    self->epoch++;
    run_state_t next = status == JOURNAL_FENCED ? STATE_STANDBY : STATE_DOWN;
    s_set_state(self, next,
                next == STATE_STANDBY ? "standby: another tierd took over this Redis prefix"
                                      : "redis is unavailable; reconnecting");
    outbox_fail_all(self->outbox);
    book_clear(self->book);
    kpi_clear(self->kpi);
    filter_clear(self->filter);
    zhashx_purge(self->intakes);
    zhashx_purge(self->followups_busy);
    self->cold_reading = false;
    dispatch_changed(self->dispatch);
    s_unpark(self, false);
    self->next_cron_ms = 0; //  reconnect at once
}

static void s_on_done(void *arg, journal_status_t status)
{
    server_t *self = arg;
    if (status == JOURNAL_COMMITTED)
        outbox_done(self->outbox, true);
    else
        s_reset(self, status);
}

//  The core state is loaded: connected workers get their tickets' offers
//  again (a lost batch may have made offers that never went out; a worker
//  ignores an offer of an attempt it holds).
static void s_on_loaded(void *arg, uint64_t seq)
{
    server_t *self = arg;
    self->seq = self->seq_written = seq;
    self->id_written = lifecycle_last_id(self->lifecycle);
    kpi_rolled(self->kpi, loader_rolled_upto(self->loader));
    s_set_state(self, STATE_READY, "");
    for (worker_t *w = dispatch_first(self->dispatch); w; w = dispatch_next(self->dispatch)) {
        holder_t *h = book_holder_get(self->book, worker_agent(w));
        h->lease_until_ms = 0;
        h->bot = worker_bot(w);
        size_t resent = 0;
        for (ticket_t *t = book_held_first(self->book, worker_agent(w)); t;
             t = book_held_next(self->book))
            if (t->state == TIER__V1__TICKET_STATE__STATE_OFFERED) {
                s_offer_later(self, t);
                resent++;
            }
        if (resent)
            log_notice("agent %s: %zu offers sent again after the redis reconnect", worker_agent(w),
                       resent);
    }
    dispatch_changed(self->dispatch);
    s_unpark(self, true);
}

//  The loader brought cold tickets in (book.h): they may go to free workers.
static void s_on_more(void *arg)
{
    server_t *self = arg;
    dispatch_changed(self->dispatch);
}

static void s_on_unusable(void *arg, const char *why)
{
    server_t *self = arg;
    log_error("redis: %s", why);
    s_set_state(self, STATE_UNUSABLE, why);
    s_unpark(self, false);
}

//  ---------------------------------------------------------------------------
//  The loop

//  One turn: wait for messages or the reply of the batch in flight; take
//  the reply (which sends the next batch before its items run); read every
//  waiting message; timers and cron; plan; send what the turn queued.
static void s_turn(server_t *self, int timeout_ms)
{
    int redis_fd = journal_fd(self->journal);
    zmq_pollitem_t items[] = {{self->clients_handle, 0, ZMQ_POLLIN, 0},
                              {self->workers_handle, 0, ZMQ_POLLIN, 0},
                              {events_socket(self->events), 0, ZMQ_POLLIN, 0},
                              {NULL, redis_fd, ZMQ_POLLIN, 0}};
    if (zmq_poll(items, redis_fd >= 0 ? 4 : 3, timeout_ms) < 0 && errno != EINTR)
        log_error("poll failed: %s", zmq_strerror(errno));
    self->now_ms = s_clock_ms();
    events_read_subscriptions(self->events);
    if (redis_fd >= 0 && (items[3].revents & ZMQ_POLLIN))
        journal_receive(self->journal, self->now_ms);
    s_drain(self, SOCK_CLIENTS);
    s_drain(self, SOCK_WORKERS);
    if (self->state == STATE_READY) {
        s_fire_timers(self);
        loader_step(self->loader, self->now_ms);
    }
    if (self->now_ms >= self->next_cron_ms)
        s_cron(self);
    if (self->state == STATE_READY)
        dispatch_plan(self->dispatch, s_pick, self, self->now_ms);
    s_end_turn(self);
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

//  The next time something is due: the cron, or the earliest timer.
static int s_wait_ms(server_t *self)
{
    int64_t until = self->next_cron_ms;
    int64_t next = book_next_due(self->book);
    if (next && next < until)
        until = next;
    int64_t wait = until - s_clock_ms();
    return wait > 0 ? (int) wait : 0;
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
    s_end_turn(self);
    notify_ready();
    log_notice("ready: clients %s, workers %s, events %s", self->config->clients,
               self->config->workers, self->config->events);
    while (!s_stop) {
        if (s_hangup) {
            s_hangup = 0;
            s_reload(self);
        }
        //  More work waiting (items queued work, the plan has work): don't
        //  sleep, unless a batch is in flight: its reply (or a message)
        //  wakes us.
        bool more = !journal_busy(self->journal) &&
                    (journal_pending(self->journal) || dispatch_dirty(self->dispatch) ||
                     outbox_filling(self->outbox));
        s_turn(self, more ? 0 : s_wait_ms(self));
    }
    //  Answer what is in flight or queued, then let go of the lock.
    self->now_ms = s_clock_ms();
    for (int i = 0; i < 16 && (journal_busy(self->journal) || journal_pending(self->journal));
         i++) {
        if (journal_busy(self->journal))
            journal_receive(self->journal, self->now_ms);
        s_end_turn(self);
    }
    journal_release(self->journal);
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

extern const char store_lua_source[];
extern const size_t store_lua_size;

server_t *server_new(config_t *config)
{
    server_t *self = calloc(1, sizeof(server_t));
    if (!self)
        return NULL;
    self->config = config;
    self->clients = s_bind(ZMQ_ROUTER, config->clients, "clients");
    self->workers = s_bind(ZMQ_ROUTER, config->workers, "workers");
    self->events = self->clients && self->workers ? events_new(config->events) : NULL;
    if (!self->events) {
        server_destroy(&self);
        return NULL;
    }
    self->clients_handle = zsock_resolve(self->clients);
    self->workers_handle = zsock_resolve(self->workers);
    journal_config_t jc = {.url = config->redis_url,
                           .prefix = config->redis_prefix,
                           .connect_timeout_ms = config->connect_timeout_ms,
                           .command_timeout_ms = config->command_timeout_ms,
                           .lock_lease_ms = config->lock_lease_ms,
                           .library = store_lua_source,
                           .library_size = store_lua_size,
                           .done = s_on_done,
                           .sent = s_on_sent,
                           .arg = self};
    self->journal = journal_new(&jc);
    if (!self->journal) {
        server_destroy(&self);
        return NULL;
    }
    self->outbox = outbox_new(self->journal, self);
    self->arena = (ProtobufCAllocator){s_arena_alloc, s_arena_free, self->outbox};
    self->intern = intern_new();
    self->book = book_new(self->intern, self->journal, (const char *const *) config->departments,
                          config->department_count);
    self->kpi = kpi_new();
    self->filter = filter_new((size_t) config->idempotency_filter_mb << 20);
    lifecycle_config_t lc = {.book = self->book,
                             .journal = self->journal,
                             .kpi = self->kpi,
                             .config = config,
                             .event = s_on_event,
                             .available = s_available,
                             .arg = self};
    self->lifecycle = lifecycle_new(&lc);
    loader_config_t ldc = {.book = self->book,
                           .journal = self->journal,
                           .outbox = self->outbox,
                           .lifecycle = self->lifecycle,
                           .filter = self->filter,
                           .lease_ms = s_lease_ms(self),
                           .ready = s_on_loaded,
                           .failed = s_on_unusable,
                           .more = s_on_more,
                           .arg = self};
    self->loader = loader_new(&ldc);
    self->dispatch = dispatch_new(config, self->book);
    self->metrics = metrics_new();
    self->intakes = zhashx_new();
    zhashx_set_destructor(self->intakes, s_waiters_free);
    self->followups_busy = zhashx_new();
    s_set_state(self, STATE_DOWN, "redis is not connected yet");
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
    if (self->outbox)
        outbox_fail_all(self->outbox);
    while (self->parked) {
        struct parked *next = self->parked->next;
        free(self->parked);
        self->parked = next;
    }
    rules_destroy(&self->rules);
    http_destroy(&self->http);
    zhashx_destroy(&self->intakes);
    zhashx_destroy(&self->followups_busy);
    dispatch_destroy(&self->dispatch);
    loader_destroy(&self->loader);
    lifecycle_destroy(&self->lifecycle);
    kpi_destroy(&self->kpi);
    filter_destroy(&self->filter);
    book_destroy(&self->book);
    intern_destroy(&self->intern);
    outbox_destroy(&self->outbox);
    journal_destroy(&self->journal);
    metrics_destroy(&self->metrics);
    events_destroy(&self->events);
    zsock_destroy(&self->workers);
    zsock_destroy(&self->clients);
    bytes_fini(&self->scratch);
    bytes_fini(&self->scratch2);
    free(self);
    *self_p = NULL;
}
