/*  workers.c — worker messages (server_int.h): register (parked while
    the state loads), heartbeat, drain, and results, handed to requests.c.
*/
#include "server_int.h"

#define LEASE_HEARTBEATS 2    //  Redis agent lease, in liveness periods
#define HELD_MAX         1024 //  declared tickets of one Register answered at most

//  ---------------------------------------------------------------------------
//  Worker messages

int64_t workers_lease_ms(const server_t *self)
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
        send_error(self, SOCK_WORKERS, env, env_len, msg->request_id, code, reason);
        return;
    }
    const char *depts[CONFIG_DEPARTMENTS_MAX];
    char dept_list[CONFIG_DEPARTMENTS_MAX * 65] = "";
    size_t ndepts = 0;
    for (size_t i = 0; i < reg->n_departments && ndepts < CONFIG_DEPARTMENTS_MAX; i++) {
        depts[ndepts++] = server_dept(self, reg->departments[i]);
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
    dest_t dest = send_dest(self, SOCK_WORKERS, env, env_len, msg->request_id);
    send_reply_later(self, &dest, &m.base);
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
        send_error(self, SOCK_WORKERS, env, env_len, msg->request_id,
                   TIER__V1__ERROR_CODE__ERROR_UNAVAILABLE, server_unavailable(self));
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
void workers_unpark(server_t *self, bool ready)
{
    while (self->parked) {
        parked_t *p = self->parked;
        self->parked = p->next;
        self->parked_count--;
        Tier__V1__WorkerMessage *msg = tier__v1__worker_message__unpack(NULL, p->size, p->message);
        if (msg && ready)
            s_register(self, p->env, p->env_len, msg);
        else if (msg)
            send_error(self, SOCK_WORKERS, p->env, p->env_len, msg->request_id,
                       TIER__V1__ERROR_CODE__ERROR_UNAVAILABLE, server_unavailable(self));
        if (msg)
            tier__v1__worker_message__free_unpacked(msg, NULL);
        free(p);
    }
}

//  At the end: the parked Registers are dropped unanswered.
void workers_parked_free(server_t *self)
{
    while (self->parked) {
        parked_t *next = self->parked->next;
        free(self->parked);
        self->parked = next;
    }
    self->parked_count = 0;
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
bool workers_message(server_t *self, const uint8_t *env, size_t env_len,
                     Tier__V1__WorkerMessage *msg, bool arena)
{
    uint64_t rid = msg->request_id;
    char reason[256];
    if (msg->body_case == TIER__V1__WORKER_MESSAGE__BODY__NOT_SET) {
        send_error(self, SOCK_WORKERS, env, env_len, rid, TIER__V1__ERROR_CODE__ERROR_BAD_MESSAGE,
                   "worker message has no body");
        return false;
    }
    if (msg->body_case == TIER__V1__WORKER_MESSAGE__BODY_REGISTER) {
        if (self->state == STATE_LOADING)
            s_park_register(self, env, env_len, msg);
        else if (self->state != STATE_READY)
            send_error(self, SOCK_WORKERS, env, env_len, rid,
                       TIER__V1__ERROR_CODE__ERROR_UNAVAILABLE, server_unavailable(self));
        else
            s_register(self, env, env_len, msg);
        return false;
    }
    worker_t *worker = env_len ? dispatch_by_identity(self->dispatch, env + 1, env[0]) : NULL;
    if (!worker) {
        send_error(self, SOCK_WORKERS, env, env_len, rid,
                   TIER__V1__ERROR_CODE__ERROR_NOT_REGISTERED,
                   "this connection has not registered (or the router restarted)");
        return false;
    }
    worker_seen(worker, self->now_ms);
    if (msg->body_case == TIER__V1__WORKER_MESSAGE__BODY_HEARTBEAT) {
        Tier__V1__RouterMessage pong = TIER__V1__ROUTER_MESSAGE__INIT;
        pong.request_id = rid;
        send_packed(self->workers_handle, env, env_len, &pong.base, &self->scratch);
        return false;
    }
    if (self->state != STATE_READY) {
        send_error(self, SOCK_WORKERS, env, env_len, rid, TIER__V1__ERROR_CODE__ERROR_UNAVAILABLE,
                   server_unavailable(self));
        return false;
    }
    dest_t dest = send_dest(self, SOCK_WORKERS, env, env_len, rid);
    if (msg->body_case == TIER__V1__WORKER_MESSAGE__BODY_DRAIN) {
        worker_set_state(self->dispatch, worker, TIER__V1__AGENT_STATE__AGENT_DRAINING);
        lifecycle_agent_state(self->lifecycle, self->now_ms, worker_agent(worker),
                              TIER__V1__AGENT_STATE__AGENT_DRAINING, "");
        Tier__V1__Done done = TIER__V1__DONE__INIT;
        Tier__V1__RouterMessage m = TIER__V1__ROUTER_MESSAGE__INIT;
        m.request_id = rid;
        m.body_case = TIER__V1__ROUTER_MESSAGE__BODY_DONE;
        m.done = &done;
        send_reply_later(self, &dest, &m.base);
        return false;
    }
    const char *ticket = s_result_ticket(msg);
    if (!ticket) {
        send_error(self, SOCK_WORKERS, env, env_len, rid, TIER__V1__ERROR_CODE__ERROR_BAD_MESSAGE,
                   "worker message has no body this router knows");
        return false;
    }
    if (!*ticket) {
        send_error(self, SOCK_WORKERS, env, env_len, rid, TIER__V1__ERROR_CODE__ERROR_MISSING_FIELD,
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
            code = intake_validate_placement(self, esc->to_level, esc->to_department, reason,
                                             sizeof(reason));
        if (code) {
            send_error(self, SOCK_WORKERS, env, env_len, rid, code, reason);
            return false;
        }
    }
    if (msg->body_case == TIER__V1__WORKER_MESSAGE__BODY_DEFER &&
        (!*msg->defer->reason || msg->defer->until_ms == 0)) {
        send_error(self, SOCK_WORKERS, env, env_len, rid, TIER__V1__ERROR_CODE__ERROR_MISSING_FIELD,
                   "a deferral needs until_ms and a reason (the promise)");
        return false;
    }
    requests_with_ticket(self, OP_RESULT, ticket, msg, arena, &dest, env, worker_agent(worker));
    return true;
}
