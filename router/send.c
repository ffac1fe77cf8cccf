/*  send.c — what leaves tierd on its sockets (server_int.h).

    Refusals that change nothing go at once; every answer that reports a
    change, every offer, revoke and event waits in the outbox until the
    batch holding the change is in Redis.
*/
#include "server_int.h"

#define REJECT_LOG_PER_SEC 20 //  bad input is counted always, logged up to this

//  ---------------------------------------------------------------------------
//  Sending

void *send_handle(server_t *self, int sock)
{
    return sock == SOCK_CLIENTS   ? self->clients_handle
           : sock == SOCK_WORKERS ? self->workers_handle
                                  : events_socket(self->events);
}

//  Routing frames kept as (length byte, bytes)...
void send_env(void *handle, const uint8_t *env, size_t len, const void *body, size_t size)
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

void send_packed(void *handle, const uint8_t *env, size_t len, const ProtobufCMessage *message,
                 bytes_t *buf)
{
    size_t size = protobuf_c_message_get_packed_size(message);
    bytes_clear(buf);
    bytes_reserve(buf, size);
    protobuf_c_message_pack(message, buf->data);
    send_env(handle, env, len, buf->data, size);
}

//  A destination in the filling batch.
dest_t send_dest(server_t *self, int sock, const uint8_t *env, size_t env_len, uint64_t request_id)
{
    dest_t d = {outbox_put(self->outbox, env, env_len), (uint32_t) env_len, request_id,
                (uint8_t) sock};
    return d;
}

//  A destination kept in one batch, copied into the filling one.
dest_t send_dest_copy(server_t *self, outbox_batch_t *batch, const dest_t *d)
{
    return send_dest(self, d->sock, outbox_bytes(batch, d->env), d->env_len, d->request_id);
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
void send_error(server_t *self, int sock, const uint8_t *env, size_t env_len, uint64_t request_id,
                int code, const char *reason)
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
        send_packed(self->workers_handle, env, env_len, &m.base, &self->scratch);
    } else {
        Tier__V1__ClientReply r = TIER__V1__CLIENT_REPLY__INIT;
        r.request_id = request_id;
        r.error = &error;
        send_packed(self->clients_handle, env, env_len, &r.base, &self->scratch);
    }
}

void send_error_dest(server_t *self, outbox_batch_t *batch, const dest_t *d, int code,
                     const char *reason)
{
    send_error(self, d->sock, outbox_bytes(batch, d->env), d->env_len, d->request_id, code, reason);
}

//  An item whose batch did not commit answers UNAVAILABLE: true if so.
bool send_refused(server_t *self, outbox_batch_t *batch, const dest_t *dest, bool committed)
{
    if (committed)
        return false;
    send_error_dest(self, batch, dest, TIER__V1__ERROR_CODE__ERROR_UNAVAILABLE,
                    server_unavailable(self));
    return true;
}

//  ---------------------------------------------------------------------------
//  Outbox items

//  An answer packed now, sent after the commit (or UNAVAILABLE instead).
//  What goes to workers runs first in its batch (outbox_add_first): a
//  worker waiting for an offer is the latency that counts, and a client's
//  answer or an event can wait the few microseconds. Each socket's sends
//  keep their order.
static void s_add(server_t *self, int sock, outbox_fn *fn, const void *item, size_t size,
                  uint32_t read)
{
    if (sock == SOCK_WORKERS)
        outbox_add_first(self->outbox, fn, item, size, read);
    else
        outbox_add(self->outbox, fn, item, size, read);
}

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
        send_env(send_handle(self, item->dest.sock), outbox_bytes(batch, item->dest.env),
                 item->dest.env_len, outbox_bytes(batch, item->body), item->body_len);
    else
        send_error_dest(self, batch, &item->dest, TIER__V1__ERROR_CODE__ERROR_UNAVAILABLE,
                        server_unavailable(self));
}

//  Queue an answer for after the commit.
void send_reply_later(server_t *self, const dest_t *dest, const ProtobufCMessage *message)
{
    size_t size = protobuf_c_message_get_packed_size(message);
    bytes_clear(&self->scratch);
    bytes_reserve(&self->scratch, size);
    protobuf_c_message_pack(message, self->scratch.data);
    reply_item_t item = {*dest, outbox_put(self->outbox, self->scratch.data, size),
                         (uint32_t) size};
    s_add(self, dest->sock, s_item_reply, &item, sizeof(item), OUTBOX_NO_READ);
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

void send_revoke_later(server_t *self, const char *agent, uint64_t ticket, uint32_t attempt,
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
    s_add(self, SOCK_WORKERS, s_item_push, &item, sizeof(item), OUTBOX_NO_READ);
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
void send_offer_later(server_t *self, const ticket_t *t)
{
    offer_item_t item = {t->agent, t->id, t->attempt, t->offer_deadline_ms, 0, 0};
    bytes_clear(&self->scratch2);
    if (book_new_bytes(self->book, t, &self->scratch2)) {
        item.stored = outbox_put(self->outbox, self->scratch2.data, self->scratch2.len);
        item.stored_len = (uint32_t) self->scratch2.len;
        s_add(self, SOCK_WORKERS, s_item_offer, &item, sizeof(item), OUTBOX_NO_READ);
        return;
    }
    uint32_t read = journal_read(self->journal, 2);
    journal_arg_str(self->journal, "GET");
    journal_arg_key_u64(self->journal, "tk:", t->id);
    s_add(self, SOCK_WORKERS, s_item_offer, &item, sizeof(item), read);
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
void send_on_event(void *arg, Tier__V1__Event *e, uint64_t ticket)
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
    if (send_refused(self, batch, &item->dest, committed))
        return;
    if (!journal_len(stored)) {
        send_error_dest(self, batch, &item->dest, TIER__V1__ERROR_CODE__ERROR_UNKNOWN_TICKET,
                        "no such ticket");
        return;
    }
    //  ClientReply{request_id = 1, ticket = 11}
    bytes_t *ticket = &self->scratch2, *out = &self->scratch;
    bytes_clear(ticket);
    bytes_clear(out);
    if (ticket_wire((const uint8_t *) journal_str(stored), journal_len(stored), item->with_history,
                    ticket)) {
        send_error_dest(self, batch, &item->dest, TIER__V1__ERROR_CODE__ERROR_INTERNAL,
                        "the stored ticket is malformed");
        return;
    }
    wire_u64_opt(out, 1, item->dest.request_id);
    wire_bytes(out, 11, ticket->data, ticket->len);
    send_env(self->clients_handle, outbox_bytes(batch, item->dest.env), item->dest.env_len,
             out->data, out->len);
}

void send_ticket_later(server_t *self, const dest_t *dest, uint64_t id, bool with_history)
{
    uint32_t read = journal_read(self->journal, 2);
    journal_arg_str(self->journal, "GET");
    journal_arg_key_u64(self->journal, "tk:", id);
    ticket_item_t item = {*dest, with_history};
    s_add(self, dest->sock, s_item_ticket, &item, sizeof(item), read);
}

//  A reply packed by hand: ClientReply{request_id, <body bytes>}.
void send_bytes_later(server_t *self, const dest_t *dest, const bytes_t *body)
{
    bytes_t *out = &self->scratch;
    bytes_clear(out);
    wire_u64_opt(out, 1, dest->request_id);
    bytes_put(out, body->data, body->len);
    reply_item_t item = {*dest, outbox_put(self->outbox, out->data, out->len), (uint32_t) out->len};
    s_add(self, dest->sock, s_item_reply, &item, sizeof(item), OUTBOX_NO_READ);
}
