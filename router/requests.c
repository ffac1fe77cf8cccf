/*  requests.c — client requests (server_int.h).

    Requests about one ticket (cancel, message, rate, requeue, and a
    worker's results) run at once on a ticket in memory, or after reading
    it; reading requests (queues, agents, snapshot, dead letters, report)
    answer from memory or from one read.
*/
#include "server_int.h"

#define DEAD_LETTERS_DEFAULT 100

//  ---------------------------------------------------------------------------
//  Requests about one ticket: the ticket in memory, or read first.

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
    ProtobufCAllocator *allocator = server_allocator(self, item->arena);
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
    send_reply_later(self, dest, &m.base);
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
        r->to_department = server_dept(self, msg->escalate->to_department);
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
    dest_t dest = batch ? send_dest_copy(self, batch, &item->dest) : item->dest;
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
            send_revoke_later(self, agent, item->id, attempt, "cancelled by the customer");
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
                          server_dept(self, req->requeue->department), req->requeue->reason, &out);
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
        send_error(self, item->dest.sock, env, item->dest.env_len, item->dest.request_id, out.code,
                   out.reason);
        return;
    }
    send_ticket_later(self, &dest, item->id, true);
}

static void s_item_fetched(void *arg, outbox_batch_t *batch, void *payload,
                           const redisReply *stored, bool committed)
{
    server_t *self = arg;
    ticket_item_op_t *item = payload;
    if (!server_current(self, committed, item->epoch)) {
        send_error_dest(self, batch, &item->dest, TIER__V1__ERROR_CODE__ERROR_UNAVAILABLE,
                        server_unavailable(self));
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
void requests_with_ticket(server_t *self, ticket_op_t op, const char *id_text, void *request,
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
    info->department = (char *) server_str(queue->department);
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
    send_reply_later(self, dest, &reply.base);
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

static void s_agents(server_t *self, const dest_t *dest)
{
    bytes_t agents = {0}, body = {0};
    s_pack_agents(self, 1, &agents);
    wire_bytes(&body, 13, agents.data, agents.len); //  ClientReply.agents
    send_bytes_later(self, dest, &body);
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
    if (send_refused(self, batch, &item->dest, committed))
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
    send_env(self->clients_handle, outbox_bytes(batch, item->dest.env), item->dest.env_len,
             body.data, body.len);
    bytes_fini(&body);
    bytes_fini(&snap);
    bytes_fini(&queue);
    bytes_fini(&one);
}

static void s_snapshot(server_t *self, const dest_t *dest, const uint8_t *env)
{
    if (!loader_ready(self->loader)) {
        send_error(self, SOCK_CLIENTS, env, dest->env_len, dest->request_id,
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
    if (send_refused(self, batch, &item->dest, committed))
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
    send_env(self->clients_handle, outbox_bytes(batch, item->dest.env), item->dest.env_len,
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
    if (send_refused(self, batch, &item->dest, committed))
        return;
    uint32_t read = journal_read_mget(self->journal, "tk:", ids);
    dead_item_t next = {send_dest_copy(self, batch, &item->dest)};
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
    if (send_refused(self, batch, &item->dest, committed))
        return;
    Tier__V1__ReportReply *report = reply && reply->type == REDIS_REPLY_ARRAY
                                        ? report_reply_new(reply, &self->config->grades)
                                        : NULL;
    if (!report) {
        send_error_dest(self, batch, &item->dest, TIER__V1__ERROR_CODE__ERROR_INTERNAL,
                        reply && reply->type == REDIS_REPLY_ERROR ? reply->str
                                                                  : "report payload is malformed");
        return;
    }
    Tier__V1__ClientReply r = TIER__V1__CLIENT_REPLY__INIT;
    r.request_id = item->dest.request_id;
    r.body_case = TIER__V1__CLIENT_REPLY__BODY_REPORT;
    r.report = report;
    send_packed(self->clients_handle, outbox_bytes(batch, item->dest.env), item->dest.env_len,
                &r.base, &self->scratch);
    report_reply_destroy(&report);
}

//  ---------------------------------------------------------------------------
//  Client requests. Returns true when it kept req (a continuation owns it).

bool requests_client(server_t *self, const uint8_t *env, size_t env_len,
                     Tier__V1__ClientRequest *req, bool arena)
{
    uint64_t rid = req->request_id;
    char reason[256], why[512];
    int code;
#define REFUSE(c, ...)                                                                             \
    do {                                                                                           \
        snprintf(why, sizeof(why), __VA_ARGS__);                                                   \
        send_error(self, SOCK_CLIENTS, env, env_len, rid, (c), why);                               \
        return false;                                                                              \
    } while (0)
    if (self->state != STATE_READY)
        REFUSE(TIER__V1__ERROR_CODE__ERROR_UNAVAILABLE, "%s", server_unavailable(self));
    dest_t dest = send_dest(self, SOCK_CLIENTS, env, env_len, rid);
    switch (req->body_case) {
    case TIER__V1__CLIENT_REQUEST__BODY_SUBMIT:
        if ((code = intake_validate_ticket(self, req->submit->ticket, reason, sizeof(reason))))
            REFUSE(code, "%s", reason);
        intake_ticket(self, req->submit->ticket, req, arena, &dest, env, 0, false);
        return true;
    case TIER__V1__CLIENT_REQUEST__BODY_RULES_TEST:
        if ((code = intake_validate_ticket(self, req->rules_test->ticket, reason, sizeof(reason))))
            REFUSE(code, "%s", reason);
        intake_ticket(self, req->rules_test->ticket, req, arena, &dest, env, 0, true);
        return true;
    case TIER__V1__CLIENT_REQUEST__BODY_GET:
        if (!*req->get->id)
            REFUSE(TIER__V1__ERROR_CODE__ERROR_MISSING_FIELD, "ticket id is empty");
        send_ticket_later(self, &dest, strtoull(req->get->id, NULL, 10), req->get->with_history);
        return false;
    case TIER__V1__CLIENT_REQUEST__BODY_CANCEL:
        if (!*req->cancel->id)
            REFUSE(TIER__V1__ERROR_CODE__ERROR_MISSING_FIELD, "ticket id is empty");
        requests_with_ticket(self, OP_CANCEL, req->cancel->id, req, arena, &dest, env, NULL);
        return true;
    case TIER__V1__CLIENT_REQUEST__BODY_MESSAGE:
        if (!*req->message->id)
            REFUSE(TIER__V1__ERROR_CODE__ERROR_MISSING_FIELD, "ticket id is empty");
        if (!*req->message->text)
            REFUSE(TIER__V1__ERROR_CODE__ERROR_MISSING_FIELD, "message text is empty");
        requests_with_ticket(self, OP_MESSAGE, req->message->id, req, arena, &dest, env, NULL);
        return true;
    case TIER__V1__CLIENT_REQUEST__BODY_RATE:
        if (!*req->rate->id)
            REFUSE(TIER__V1__ERROR_CODE__ERROR_MISSING_FIELD, "ticket id is empty");
        if (req->rate->csat < 1 || req->rate->csat > 5)
            REFUSE(TIER__V1__ERROR_CODE__ERROR_BAD_RATING, "rating %u is outside 1..5",
                   req->rate->csat);
        requests_with_ticket(self, OP_RATE, req->rate->id, req, arena, &dest, env, NULL);
        return true;
    case TIER__V1__CLIENT_REQUEST__BODY_REQUEUE:
        if ((code = intake_validate_placement(self, req->requeue->level, req->requeue->department,
                                              reason, sizeof(reason))))
            REFUSE(code, "%s", reason);
        if (!*req->requeue->reason)
            REFUSE(TIER__V1__ERROR_CODE__ERROR_MISSING_FIELD,
                   "requeue needs a reason (it is kept in history)");
        if (!*req->requeue->id)
            REFUSE(TIER__V1__ERROR_CODE__ERROR_MISSING_FIELD, "ticket id is empty");
        requests_with_ticket(self, OP_REQUEUE, req->requeue->id, req, arena, &dest, env, NULL);
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
