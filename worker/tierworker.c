/*  tierworker.c — the worker side of the tierd protocol.

    Reading order: the job table and outgoing queues, then the connection
    (register, reconnect, heartbeat), then the handlers for what the router
    sends, then the timers, then the public verbs.

    Every message a job sends (Accept, Respond, then one result) waits in
    that job's small queue until the router answers it. The queue is sent
    in order and pipelined: the caller may resolve before the Accept is
    confirmed. Whenever a message has to go again (ERROR_UNAVAILABLE, no
    answer within RESEND_MS, a new connection) the whole remaining queue of
    the job is resent in order, so the router never sees a result before the
    Accept it depends on. Results are idempotent in tierd, which makes the
    resends harmless.

    Request ids carry the job's slot in the job table in their low bits, so
    an answer finds its job without a search; the high bits are a sequence
    number, so a late answer for a job that is gone never matches.

    The hot path allocates nothing once warm. What the router sends is read
    with ZMQ_DONTWAIT into one zmq_msg_t until EAGAIN, and unpacked into a
    scratch arena that is emptied before each message; an Offer's arena is
    traded for the (emptied) arena of the job slot it lands in, so the ticket
    lives as long as the job without a copy. Messages are packed into buffers
    kept with their slot. Inside tierworker_poll the clock is read once per
    wake-up, and the timers are walked at most once per millisecond.
*/
#include "tierworker.h"
#include "tierarena.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#define PROTOCOL_VERSION     1
#define DEFAULT_HEARTBEAT_MS 1000 //  until the router tells us its own
#define SILENCE_BEATS        3    //  router dead after this many silent heartbeats
#define RESEND_MS            3000 //  resend a message unanswered this long
#define BACKOFF_MIN_MS       200  //  first retry delay after ERROR_UNAVAILABLE
#define BACKOFF_MAX_MS       2000 //  longest retry delay
#define OUT_MAX              4    //  queued messages per job: Accept, Respond(s), result
#define RID_INDEX_BITS       20   //  low bits of a request id: job table slot
#define RID_INDEX_MASK       ((UINT64_C(1) << RID_INDEX_BITS) - 1)
#define CONTROL_INDEX        RID_INDEX_MASK //  Register, Heartbeat, Drain, last-gasp Release
#define CLOSE_LINGER_MS      200            //  let the last results leave on destroy
#define JOBS_INITIAL         8              //  first size of the job table
#define HOSTNAME_MAX         256            //  bytes for gethostname
#define ERROR_MAX            512            //  bytes of the last fatal error text
#define ARENA_KEEP_MAX       65536          //  an arena grows to its largest message up to this

//  What a queued message is, for logs and for error handling
typedef enum {
    OUT_ACCEPT,
    OUT_RESPOND,
    OUT_RESOLVE,
    OUT_ESCALATE,
    OUT_RELEASE,
    OUT_DEFER,
} s_kind_t;

static const char *s_kind_name[] = {"accept", "respond", "resolve", "escalate", "release", "defer"};

//  One message of a job waiting for the router's answer
typedef struct {
    uint64_t request_id; //  echoed by the router's answer
    s_kind_t kind;       //  what it is
    uint8_t *buf;        //  packed WorkerMessage, resent byte for byte
    size_t len;          //  bytes used in buf
    size_t cap;          //  bytes allocated in buf (kept when the entry is reused)
    int64_t sent_ms;     //  last transmission, 0 = not sent on this connection
} s_out_t;

struct _tierworker_job_t {
    bool in_use;                    //  this table slot holds a live job
    uint64_t index;                 //  slot in the job table, low bits of request ids
    tier_arena_t *arena;            //  holds offer; emptied when the job is freed
    Tier__V1__RouterMessage *offer; //  the unpacked Offer (in arena); holds the ticket
    Tier__V1__Ticket *ticket;       //  borrowed from offer
    uint64_t id_hash;               //  of ticket->id: s_job_find compares strings rarely
    bool finished;                  //  the caller called a finishing verb
    bool revoked;                   //  the router took it back: send nothing more
    bool accept_held;               //  out[0] is an Accept not sent yet (see s_hold_accept)
    s_out_t out[OUT_MAX];           //  unanswered messages, oldest first
    size_t n_out;                   //  entries used in out
    int64_t retry_ms;               //  resend the queue at this time, 0 = not waiting
    int backoff_ms;                 //  delay before the next retry
    void *arg;                      //  the caller's pointer
};

struct _tierworker_t {
    char *endpoint;                              //  tierd's workers endpoint
    char *agent_id;                              //  our agent id
    Tier__V1__Level level;                       //  our level
    char **departments;                          //  departments we serve
    size_t n_departments;                        //  entries in departments
    uint32_t capacity;                           //  most tickets held at once
    Tier__V1__ChannelCapacity *channel_capacity; //  per-channel limits, sent in Register
    size_t n_channel_capacity;                   //  entries in channel_capacity
    bool bot;                                    //  automated worker
    tierworker_revoke_fn *on_revoke;             //  caller's revoke callback, may be NULL
    void *revoke_arg;                            //  argument for on_revoke
    char *log_prefix;                            //  start of every log line
    bool verbose;                                //  log protocol traffic too
    zsock_t *sock;                               //  DEALER to the router, replaced on reconnect
    void *handle;                                //  libzmq socket of sock
    bool registered;                             //  the router acknowledged our Register
    uint64_t register_rid;                       //  request id of the Register in flight
    int64_t register_retry_ms;                   //  resend Register at this time, 0 = not waiting
    int register_backoff_ms;                     //  delay before the next Register retry
    int64_t last_sent_ms;                        //  when we last sent anything
    int64_t last_heard_ms;                       //  when the router last sent anything
    int heartbeat_ms;                            //  interval the router asked for
    int liveness;                                //  silent beats before reconnecting
    bool draining;                               //  Drain requested: repeat it after re-registering
    bool fatal;                                  //  cannot go on, see error
    uint64_t seq;                                //  high bits of the next request id
    tierworker_job_t **jobs;                     //  job table, slots reused
    size_t jobs_size;                            //  slots in jobs
    size_t n_live;                               //  slots in use
    size_t n_unfinished;                         //  live jobs the caller has not finished
    size_t n_held;                               //  jobs whose Accept is held back
    uint8_t *ctl_buf;                            //  packing buffer for control messages
    size_t ctl_cap;                              //  bytes allocated in ctl_buf
    tier_arena_t *scratch;                       //  the message being handled is unpacked here
    bool in_poll;                                //  inside tierworker_poll: now_ms is the clock
    int64_t now_ms;                              //  the clock, read once per wake-up
    int64_t tick_ms;                             //  when the timers were last walked
    char error[ERROR_MAX];                       //  why we stopped, "" if we did not
};

//  Inside tierworker_poll, the time of the current wake-up (what it handles
//  takes microseconds); from the verbs, which the caller may call any time
//  later, the clock itself.
static int64_t s_now(tierworker_t *self)
{
    return self->in_poll ? self->now_ms : zclock_mono();
}

//  ---------------------------------------------------------------------
//  Logs and names

static void s_log(tierworker_t *self, bool trouble, const char *format, ...)
{
    if (!trouble && !self->verbose)
        return;
    char line[1024];
    va_list args;
    va_start(args, format);
    vsnprintf(line, sizeof line, format, args);
    va_end(args);
    fprintf(stderr, "%s[%s]: %s\n", self->log_prefix, self->agent_id, line);
}

static const char *s_error_name(Tier__V1__ErrorCode code)
{
    const ProtobufCEnumValue *value =
        protobuf_c_enum_descriptor_get_value(&tier__v1__error_code__descriptor, (int) code);
    return value ? value->name : "ERROR_UNKNOWN";
}

static const char *s_level_name(Tier__V1__Level level)
{
    switch (level) {
    case TIER__V1__LEVEL__LEVEL_L1:
        return "L1";
    case TIER__V1__LEVEL__LEVEL_L2:
        return "L2";
    case TIER__V1__LEVEL__LEVEL_L3:
        return "L3";
    default:
        return "";
    }
}

static uint64_t s_request_id(tierworker_t *self, uint64_t index)
{
    return (++self->seq << RID_INDEX_BITS) | index;
}

//  Pack msg into *buf, growing it. Returns the packed length.
static size_t s_pack(const ProtobufCMessage *msg, uint8_t **buf, size_t *cap)
{
    size_t len = protobuf_c_message_get_packed_size(msg);
    if (len > *cap || !*buf) {
        size_t want = len > 64 ? len : 64;
        uint8_t *grown = (uint8_t *) realloc(*buf, want);
        if (!grown)
            return 0;
        *buf = grown;
        *cap = want;
    }
    return protobuf_c_message_pack(msg, *buf);
}

//  A failed send is not an error here: the resend timer and the silence
//  check recover from a full pipe or a dead connection.
static void s_transmit(tierworker_t *self, const uint8_t *buf, size_t len)
{
    if (zmq_send(self->handle, buf, len, ZMQ_DONTWAIT) == -1)
        s_log(self, false, "send failed (%s), will retry", zmq_strerror(errno));
    self->last_sent_ms = s_now(self);
}

static void s_send_control(tierworker_t *self, Tier__V1__WorkerMessage *msg)
{
    msg->request_id = s_request_id(self, CONTROL_INDEX);
    msg->protocol_version = PROTOCOL_VERSION;
    size_t len = s_pack(&msg->base, &self->ctl_buf, &self->ctl_cap);
    if (len)
        s_transmit(self, self->ctl_buf, len);
}

//  ---------------------------------------------------------------------
//  The job table

static tierworker_job_t *s_job_new(tierworker_t *self)
{
    size_t index = 0;
    while (index < self->jobs_size && self->jobs[index] && self->jobs[index]->in_use)
        index++;
    if (index == self->jobs_size) {
        size_t size = self->jobs_size ? self->jobs_size * 2 : JOBS_INITIAL;
        if (size >= CONTROL_INDEX)
            return NULL;
        tierworker_job_t **grown =
            (tierworker_job_t **) realloc(self->jobs, size * sizeof(tierworker_job_t *));
        if (!grown)
            return NULL;
        memset(grown + self->jobs_size, 0, (size - self->jobs_size) * sizeof(tierworker_job_t *));
        self->jobs = grown;
        self->jobs_size = size;
    }
    if (!self->jobs[index]) {
        tierworker_job_t *fresh = (tierworker_job_t *) calloc(1, sizeof(tierworker_job_t));
        if (fresh && !(fresh->arena = tier_arena_new(ARENA_KEEP_MAX))) {
            free(fresh);
            fresh = NULL;
        }
        if (!fresh)
            return NULL;
        self->jobs[index] = fresh;
    }
    tierworker_job_t *job = self->jobs[index];
    job->in_use = true;
    job->index = index;
    job->backoff_ms = BACKOFF_MIN_MS;
    self->n_live++;
    self->n_unfinished++;
    return job;
}

//  The Accept of a new job is held back until the next tierworker_poll: a
//  job finished before then (a bot answering at once) needs no Accept, its
//  Respond, Resolve or Defer accepts the offer in the same step in the
//  router. That saves the router a Redis transition per ticket. A job still
//  open at the next poll gets its Accept then, long before the offer times
//  out (the caller must poll that often anyway to keep its lease).
static void s_unhold(tierworker_t *self, tierworker_job_t *job)
{
    if (job->accept_held) {
        job->accept_held = false;
        self->n_held--;
    }
}

//  The slot, its arena and its packing buffers stay allocated for the next job.
static void s_job_free(tierworker_t *self, tierworker_job_t *job)
{
    tier_arena_reset(job->arena);
    job->offer = NULL;
    job->ticket = NULL;
    job->in_use = false;
    job->finished = false;
    job->revoked = false;
    s_unhold(self, job);
    job->n_out = 0;
    job->retry_ms = 0;
    job->arg = NULL;
    self->n_live--;
}

static void s_job_free_if_done(tierworker_t *self, tierworker_job_t *job)
{
    if (job->finished && job->n_out == 0)
        s_job_free(self, job);
}

//  FNV-1a: a table of a few dozen jobs needs no more.
static uint64_t s_id_hash(const char *ticket_id)
{
    uint64_t hash = UINT64_C(14695981039346656037);
    for (const unsigned char *c = (const unsigned char *) ticket_id; *c; c++)
        hash = (hash ^ *c) * UINT64_C(1099511628211);
    return hash;
}

static tierworker_job_t *s_job_find(tierworker_t *self, const char *ticket_id)
{
    uint64_t hash = s_id_hash(ticket_id);
    for (size_t index = 0; index < self->jobs_size; index++) {
        tierworker_job_t *job = self->jobs[index];
        if (job && job->in_use && !job->revoked && job->id_hash == hash &&
            streq(job->ticket->id, ticket_id))
            return job;
    }
    return NULL;
}

//  The router says we no longer hold the ticket: forget its messages and
//  tell the caller. Touches nothing after the callback, which may free job.
static void s_job_drop(tierworker_t *self, tierworker_job_t *job, const char *reason)
{
    job->revoked = true;
    s_unhold(self, job);
    job->n_out = 0;
    job->retry_ms = 0;
    if (job->finished)
        s_job_free(self, job);
    else if (self->on_revoke)
        self->on_revoke(job, reason, self->revoke_arg);
}

static void s_job_flush(tierworker_t *self, tierworker_job_t *job)
{
    s_unhold(self, job);
    int64_t now = s_now(self);
    for (size_t i = 0; i < job->n_out; i++) {
        s_transmit(self, job->out[i].buf, job->out[i].len);
        job->out[i].sent_ms = now;
    }
}

//  Keeps the removed entry's buffer at the end of the array for reuse.
static void s_job_unqueue(tierworker_job_t *job, size_t i)
{
    s_out_t removed = job->out[i];
    memmove(&job->out[i], &job->out[i + 1], (job->n_out - i - 1) * sizeof(s_out_t));
    job->out[job->n_out - 1] = removed;
    job->n_out--;
}

//  Queue a message of the job and send it unless an earlier one waits for
//  a retry or we are not registered (then it goes with the next flush).
static int s_job_queue(tierworker_t *self, tierworker_job_t *job, s_kind_t kind,
                       Tier__V1__WorkerMessage *msg)
{
    if (job->accept_held && kind != OUT_ACCEPT) {
        //  Respond, Resolve and Defer accept the offer themselves; Escalate
        //  and Release do not, so the Accept goes first.
        s_unhold(self, job);
        if (kind == OUT_RESPOND || kind == OUT_RESOLVE || kind == OUT_DEFER)
            s_job_unqueue(job, 0);
        else if (self->registered && !job->retry_ms) {
            s_transmit(self, job->out[0].buf, job->out[0].len);
            job->out[0].sent_ms = s_now(self);
        }
    }
    if (job->n_out == OUT_MAX)
        return -1;
    s_out_t *out = &job->out[job->n_out];
    msg->request_id = s_request_id(self, job->index);
    msg->protocol_version = PROTOCOL_VERSION;
    out->len = s_pack(&msg->base, &out->buf, &out->cap);
    if (!out->len)
        return -1;
    out->request_id = msg->request_id;
    out->kind = kind;
    out->sent_ms = 0;
    job->n_out++;
    if (self->registered && !job->retry_ms && !job->accept_held) {
        s_transmit(self, out->buf, out->len);
        out->sent_ms = s_now(self);
    }
    return 0;
}

//  ---------------------------------------------------------------------
//  The connection

static void s_send_register(tierworker_t *self)
{
    Tier__V1__Held *held = (Tier__V1__Held *) calloc(self->n_live + 1, sizeof(Tier__V1__Held));
    Tier__V1__Held **held_p =
        (Tier__V1__Held **) calloc(self->n_live + 1, sizeof(Tier__V1__Held *));
    size_t n_held = 0;
    for (size_t index = 0; held && held_p && index < self->jobs_size; index++) {
        tierworker_job_t *job = self->jobs[index];
        if (!job || !job->in_use || job->revoked)
            continue;
        tier__v1__held__init(&held[n_held]);
        held[n_held].ticket_id = job->ticket->id;
        held[n_held].attempt = job->ticket->attempt;
        held_p[n_held] = &held[n_held];
        n_held++;
    }
    Tier__V1__ChannelCapacity **limits_p = (Tier__V1__ChannelCapacity **) calloc(
        self->n_channel_capacity + 1, sizeof(Tier__V1__ChannelCapacity *));
    size_t n_limits = 0;
    for (size_t i = 0; limits_p && i < self->n_channel_capacity; i++)
        limits_p[n_limits++] = &self->channel_capacity[i];
    Tier__V1__Register reg = TIER__V1__REGISTER__INIT;
    reg.agent_id = self->agent_id;
    reg.level = self->level;
    reg.departments = self->departments;
    reg.n_departments = self->n_departments;
    reg.capacity = self->capacity;
    reg.bot = self->bot;
    reg.held = held_p;
    reg.n_held = n_held;
    reg.channel_capacity = limits_p;
    reg.n_channel_capacity = n_limits;
    Tier__V1__WorkerMessage msg = TIER__V1__WORKER_MESSAGE__INIT;
    msg.body_case = TIER__V1__WORKER_MESSAGE__BODY_REGISTER;
    msg.register_ = &reg;
    s_send_control(self, &msg);
    self->register_rid = msg.request_id;
    self->registered = false;
    self->register_retry_ms = 0;
    s_log(self, false, "register sent (%zu held)", n_held);
    free(held);
    free(held_p);
    free(limits_p);
}

//  Messages sent on a lost connection may never have arrived: send them
//  all again once the router has acknowledged the new registration.
static void s_mark_unsent(tierworker_t *self)
{
    for (size_t index = 0; index < self->jobs_size; index++) {
        tierworker_job_t *job = self->jobs[index];
        for (size_t i = 0; job && job->in_use && i < job->n_out; i++)
            job->out[i].sent_ms = 0;
    }
}

static int s_connect(tierworker_t *self)
{
    zsock_destroy(&self->sock);
    self->sock = zsock_new(ZMQ_DEALER);
    if (!self->sock) {
        snprintf(self->error, sizeof self->error, "cannot create a socket: %s",
                 zmq_strerror(errno));
        return -1;
    }
    zsock_set_linger(self->sock, 0);
    if (zsock_connect(self->sock, "%s", self->endpoint) == -1) {
        snprintf(self->error, sizeof self->error, "cannot connect to %s: %s", self->endpoint,
                 zmq_strerror(errno));
        zsock_destroy(&self->sock);
        self->handle = NULL;
        return -1;
    }
    self->handle = zsock_resolve(self->sock);
    return 0;
}

//  A new socket, not a reconnect of the old one: libzmq would keep
//  replaying whatever sat in the old pipe to a router that restarted.
static int s_reconnect(tierworker_t *self)
{
    if (s_connect(self) == -1) {
        self->fatal = true;
        s_log(self, true, "%s", self->error);
        return -1;
    }
    s_mark_unsent(self);
    self->last_heard_ms = s_now(self);
    s_send_register(self);
    return 0;
}

static void s_send_heartbeat(tierworker_t *self)
{
    Tier__V1__Heartbeat beat = TIER__V1__HEARTBEAT__INIT;
    Tier__V1__WorkerMessage msg = TIER__V1__WORKER_MESSAGE__INIT;
    msg.body_case = TIER__V1__WORKER_MESSAGE__BODY_HEARTBEAT;
    msg.heartbeat = &beat;
    s_send_control(self, &msg);
}

static void s_send_drain(tierworker_t *self)
{
    Tier__V1__Drain drain = TIER__V1__DRAIN__INIT;
    Tier__V1__WorkerMessage msg = TIER__V1__WORKER_MESSAGE__INIT;
    msg.body_case = TIER__V1__WORKER_MESSAGE__BODY_DRAIN;
    msg.drain = &drain;
    s_send_control(self, &msg);
    s_log(self, false, "drain sent");
}

//  The last word on a ticket the router refused a message for: give it
//  back once and forget it; the answer does not matter.
static void s_send_last_release(tierworker_t *self, tierworker_job_t *job, const char *reason)
{
    Tier__V1__Release release = TIER__V1__RELEASE__INIT;
    release.ticket_id = job->ticket->id;
    release.attempt = job->ticket->attempt;
    release.reason = (char *) reason;
    Tier__V1__WorkerMessage msg = TIER__V1__WORKER_MESSAGE__INIT;
    msg.body_case = TIER__V1__WORKER_MESSAGE__BODY_RELEASE;
    msg.release = &release;
    s_send_control(self, &msg);
}

//  ---------------------------------------------------------------------
//  What the router sends

static void s_registration_refused(tierworker_t *self, Tier__V1__Error *error)
{
    Tier__V1__ErrorCode code = error->code;
    if (code == TIER__V1__ERROR_CODE__ERROR_UNAVAILABLE ||
        code == TIER__V1__ERROR_CODE__ERROR_NOT_REGISTERED ||
        code == TIER__V1__ERROR_CODE__ERROR_INTERNAL) {
        s_log(self, true, "registration failed: %s: %s; retrying in %d ms", s_error_name(code),
              error->reason, self->register_backoff_ms);
        self->register_retry_ms = s_now(self) + self->register_backoff_ms;
        self->register_backoff_ms = self->register_backoff_ms * 2 > BACKOFF_MAX_MS
                                        ? BACKOFF_MAX_MS
                                        : self->register_backoff_ms * 2;
        return;
    }
    snprintf(self->error, sizeof self->error, "router refused the registration: %s: %s (%s)",
             s_error_name(code), error->reason, error->hint);
    s_log(self, true, "%s", self->error);
    self->fatal = true;
}

static void s_drop_stale(tierworker_t *self, Tier__V1__Registered *registered)
{
    for (size_t i = 0; registered && i < registered->n_stale; i++) {
        Tier__V1__Held *stale = registered->stale[i];
        tierworker_job_t *job =
            stale && stale->ticket_id ? s_job_find(self, stale->ticket_id) : NULL;
        if (job && job->ticket->attempt == stale->attempt) {
            s_log(self, false, "%s: stale after reconnect, dropped", job->ticket->id);
            s_job_drop(self, job, "lost while disconnected");
        }
    }
}

static void s_on_registered(tierworker_t *self, Tier__V1__RouterMessage *msg)
{
    if (msg->error && msg->error->code != TIER__V1__ERROR_CODE__ERROR_NONE) {
        s_registration_refused(self, msg->error);
        return;
    }
    Tier__V1__Registered *registered =
        msg->body_case == TIER__V1__ROUTER_MESSAGE__BODY_REGISTERED ? msg->registered : NULL;
    self->registered = true;
    self->register_backoff_ms = BACKOFF_MIN_MS;
    self->heartbeat_ms = registered && registered->heartbeat_ms ? (int) registered->heartbeat_ms
                                                                : DEFAULT_HEARTBEAT_MS;
    self->liveness =
        registered && registered->liveness ? (int) registered->liveness : SILENCE_BEATS;
    s_log(self, false, "registered (heartbeat %d ms)", self->heartbeat_ms);
    s_drop_stale(self, registered);
    for (size_t index = 0; index < self->jobs_size; index++) {
        tierworker_job_t *job = self->jobs[index];
        if (job && job->in_use && !job->revoked && !job->retry_ms)
            s_job_flush(self, job);
    }
    if (self->draining)
        s_send_drain(self);
}

static void s_on_refused(tierworker_t *self, tierworker_job_t *job, size_t i,
                         Tier__V1__Error *error)
{
    s_kind_t kind = job->out[i].kind;
    s_log(self, true, "%s: router refused %s: %s: %s", job->ticket->id, s_kind_name[kind],
          s_error_name(error->code), error->reason);
    if (kind == OUT_RESPOND) {
        //  A lost response to the customer does not stop the ticket.
        s_job_unqueue(job, i);
        s_job_free_if_done(self, job);
        return;
    }
    if (kind != OUT_RELEASE)
        s_send_last_release(self, job, error->reason);
    s_job_drop(self, job, error->reason);
}

static void s_on_answer(tierworker_t *self, tierworker_job_t *job, size_t i,
                        Tier__V1__RouterMessage *msg)
{
    Tier__V1__ErrorCode code = msg->error ? msg->error->code : TIER__V1__ERROR_CODE__ERROR_NONE;
    if (code == TIER__V1__ERROR_CODE__ERROR_NONE) {
        if (msg->body_case == TIER__V1__ROUTER_MESSAGE__BODY_DONE && job->out[i].kind != OUT_ACCEPT)
            s_log(self, false, "%s: %s confirmed", job->ticket->id, s_kind_name[job->out[i].kind]);
        s_job_unqueue(job, i);
        job->backoff_ms = BACKOFF_MIN_MS;
        s_job_free_if_done(self, job);
    } else if (code == TIER__V1__ERROR_CODE__ERROR_STALE) {
        s_log(self, false, "%s: stale, dropped", job->ticket->id);
        s_job_drop(self, job, "stale");
    } else if (code == TIER__V1__ERROR_CODE__ERROR_UNAVAILABLE) {
        //  One backoff per job: the other queued messages got the same error.
        if (!job->retry_ms) {
            s_log(self, false, "%s: router unavailable, retry in %d ms", job->ticket->id,
                  job->backoff_ms);
            job->retry_ms = s_now(self) + job->backoff_ms;
            job->backoff_ms =
                job->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : job->backoff_ms * 2;
        }
    } else
        s_on_refused(self, job, i, msg->error);
}

static void s_on_reply(tierworker_t *self, Tier__V1__RouterMessage *msg)
{
    if (msg->request_id == self->register_rid) {
        s_on_registered(self, msg);
        return;
    }
    if (msg->error && msg->error->code == TIER__V1__ERROR_CODE__ERROR_NOT_REGISTERED) {
        //  The router restarted. Answers to pipelined messages repeat this.
        if (self->registered) {
            s_log(self, true, "router forgot us, registering again");
            s_mark_unsent(self);
            s_send_register(self);
        }
        return;
    }
    uint64_t index = msg->request_id & RID_INDEX_MASK;
    if (index >= self->jobs_size || !self->jobs[index] || !self->jobs[index]->in_use)
        return; //  heartbeat or drain answer, or a late answer for a gone job
    tierworker_job_t *job = self->jobs[index];
    for (size_t i = 0; i < job->n_out; i++)
        if (job->out[i].request_id == msg->request_id) {
            s_on_answer(self, job, i, msg);
            return;
        }
}

//  Takes msg, and the scratch arena it is in, into the new job. Returns
//  NULL if the offer is unusable or one we already hold.
static tierworker_job_t *s_on_offer(tierworker_t *self, Tier__V1__RouterMessage *msg)
{
    Tier__V1__Ticket *ticket = msg->offer ? msg->offer->ticket : NULL;
    if (!ticket || !ticket->id || !*ticket->id) {
        s_log(self, true, "offer without a ticket id ignored");
        return NULL;
    }
    tierworker_job_t *old = s_job_find(self, ticket->id);
    if (old && old->ticket->attempt == ticket->attempt) {
        s_log(self, false, "%s: repeated offer ignored", ticket->id);
        return NULL;
    }
    if (old)
        s_job_drop(self, old, "offered again");
    tierworker_job_t *job = s_job_new(self);
    if (!job) {
        s_log(self, true, "%s: out of memory, offer ignored", ticket->id);
        return NULL;
    }
    //  msg lives in the scratch arena: the job keeps that arena, and the
    //  job's own (empty) arena becomes the scratch one.
    tier_arena_t *spare = job->arena;
    job->arena = self->scratch;
    self->scratch = spare;
    job->offer = msg;
    job->ticket = ticket;
    job->id_hash = s_id_hash(ticket->id);
    job->accept_held = true;
    self->n_held++;
    Tier__V1__Accept accept = TIER__V1__ACCEPT__INIT;
    accept.ticket_id = ticket->id;
    accept.attempt = ticket->attempt;
    Tier__V1__WorkerMessage out = TIER__V1__WORKER_MESSAGE__INIT;
    out.body_case = TIER__V1__WORKER_MESSAGE__BODY_ACCEPT;
    out.accept = &accept;
    s_job_queue(self, job, OUT_ACCEPT, &out);
    s_log(self, false, "%s: offered (attempt %u), accepting", ticket->id, ticket->attempt);
    return job;
}

static void s_on_revoke(tierworker_t *self, Tier__V1__Revoke *revoke)
{
    tierworker_job_t *job =
        revoke && revoke->ticket_id ? s_job_find(self, revoke->ticket_id) : NULL;
    if (!job || (revoke->attempt && revoke->attempt != job->ticket->attempt))
        return;
    s_log(self, false, "%s: revoked (%s)", job->ticket->id, revoke->reason);
    s_job_drop(self, job, revoke->reason);
}

//  Returns a new job, or NULL. msg is in the scratch arena, emptied before
//  the next message unless a job took it.
static tierworker_job_t *s_on_message(tierworker_t *self, Tier__V1__RouterMessage *msg)
{
    tierworker_job_t *job = NULL;
    if (msg->request_id)
        s_on_reply(self, msg);
    else if (msg->body_case == TIER__V1__ROUTER_MESSAGE__BODY_OFFER)
        job = s_on_offer(self, msg);
    else if (msg->body_case == TIER__V1__ROUTER_MESSAGE__BODY_REVOKE)
        s_on_revoke(self, msg->revoke);
    else
        s_log(self, true, "push with body %d ignored", (int) msg->body_case);
    return job;
}

//  Reads what is waiting without blocking, until EAGAIN or a new job.
//  Returns the job or NULL. The frame is let go as soon as it is unpacked:
//  one kept would pin libzmq's receive buffer and make it allocate another.
static tierworker_job_t *s_receive(tierworker_t *self)
{
    tierworker_job_t *job = NULL;
    zmq_msg_t frame;
    zmq_msg_init(&frame);
    while (!job && !self->fatal && zmq_msg_recv(&frame, self->handle, ZMQ_DONTWAIT) != -1) {
        bool more = zmq_msg_more(&frame);
        size_t size = zmq_msg_size(&frame);
        tier_arena_reset(self->scratch);
        Tier__V1__RouterMessage *msg =
            more ? NULL
                 : tier__v1__router_message__unpack(tier_arena_allocator(self->scratch), size,
                                                    (const uint8_t *) zmq_msg_data(&frame));
        while (zmq_msg_more(&frame) && zmq_msg_recv(&frame, self->handle, ZMQ_DONTWAIT) != -1)
            ; //  the rest of a multipart message: not ours to read
        zmq_msg_close(&frame);
        zmq_msg_init(&frame);
        self->last_heard_ms = s_now(self);
        if (more || !msg)
            s_log(self, true, "bad frame from router (%zu bytes%s) ignored", size,
                  more ? ", multipart" : "");
        else
            job = s_on_message(self, msg);
    }
    zmq_msg_close(&frame);
    return job;
}

//  ---------------------------------------------------------------------
//  Timers

static int64_t s_silence_deadline(tierworker_t *self)
{
    return self->last_heard_ms + (int64_t) self->liveness * self->heartbeat_ms;
}

static void s_tick_job(tierworker_t *self, tierworker_job_t *job, int64_t now)
{
    if (job->retry_ms) {
        if (now >= job->retry_ms) {
            job->retry_ms = 0;
            s_job_flush(self, job);
        }
        return;
    }
    for (size_t i = job->accept_held ? 1 : 0; i < job->n_out; i++)
        if (!job->out[i].sent_ms || now - job->out[i].sent_ms >= RESEND_MS) {
            s_log(self, false, "%s: no answer to %s, resending", job->ticket->id,
                  s_kind_name[job->out[i].kind]);
            s_job_flush(self, job);
            return;
        }
}

//  Every timer is in whole milliseconds and none falls due the instant it
//  is set, so a walk within the millisecond of the last one finds nothing:
//  a poll called once per job of a burst walks the job table once.
static void s_tick(tierworker_t *self)
{
    int64_t now = s_now(self);
    if (now == self->tick_ms)
        return;
    self->tick_ms = now;
    if (now >= s_silence_deadline(self)) {
        s_log(self, self->registered, "no word from router for %d ms, reconnecting",
              self->liveness * self->heartbeat_ms);
        s_reconnect(self);
        return;
    }
    if (!self->registered) {
        if (self->register_retry_ms && now >= self->register_retry_ms)
            s_send_register(self);
        return;
    }
    for (size_t index = 0; index < self->jobs_size; index++) {
        tierworker_job_t *job = self->jobs[index];
        if (job && job->in_use && job->n_out)
            s_tick_job(self, job, now);
    }
    if (now - self->last_sent_ms >= self->heartbeat_ms)
        s_send_heartbeat(self);
}

static int64_t s_next_deadline(tierworker_t *self)
{
    int64_t next = s_silence_deadline(self);
    if (!self->registered) {
        if (self->register_retry_ms && self->register_retry_ms < next)
            next = self->register_retry_ms;
        return next;
    }
    if (self->last_sent_ms + self->heartbeat_ms < next)
        next = self->last_sent_ms + self->heartbeat_ms;
    for (size_t index = 0; index < self->jobs_size; index++) {
        tierworker_job_t *job = self->jobs[index];
        if (!job || !job->in_use || !job->n_out)
            continue;
        int64_t due = job->retry_ms ? job->retry_ms : job->out[0].sent_ms + RESEND_MS;
        for (size_t i = 1; !job->retry_ms && i < job->n_out; i++)
            if (job->out[i].sent_ms + RESEND_MS < due)
                due = job->out[i].sent_ms + RESEND_MS;
        if (due < next)
            next = due;
    }
    return next;
}

//  ---------------------------------------------------------------------
//  Public API

static char *s_default_agent(Tier__V1__Level level)
{
    char host[HOSTNAME_MAX] = "";
    if (gethostname(host, sizeof host) == -1)
        strcpy(host, "localhost");
    host[sizeof host - 1] = 0;
    return zsys_sprintf("%s-%s-%d", s_level_name(level), host, (int) getpid());
}

static int s_configure_channels(tierworker_t *self, const tierworker_config_t *cfg)
{
    self->channel_capacity = (Tier__V1__ChannelCapacity *) calloc(
        cfg->n_channel_capacity + 1, sizeof(Tier__V1__ChannelCapacity));
    if (!self->channel_capacity)
        return -1;
    for (size_t i = 0; i < cfg->n_channel_capacity; i++) {
        Tier__V1__ChannelCapacity *limit = &self->channel_capacity[i];
        tier__v1__channel_capacity__init(limit);
        limit->channel = cfg->channel_capacity[i].channel;
        limit->capacity = cfg->channel_capacity[i].capacity;
    }
    self->n_channel_capacity = cfg->n_channel_capacity;
    return 0;
}

static int s_configure(tierworker_t *self, const char *endpoint, const tierworker_config_t *cfg)
{
    self->endpoint = strdup(endpoint);
    self->level = cfg->level;
    self->agent_id =
        cfg->agent_id && *cfg->agent_id ? strdup(cfg->agent_id) : s_default_agent(cfg->level);
    self->log_prefix = strdup(cfg->log_prefix ? cfg->log_prefix : "tierworker");
    self->capacity = cfg->capacity ? cfg->capacity : 1;
    self->bot = cfg->bot;
    self->verbose = cfg->verbose;
    self->on_revoke = cfg->on_revoke;
    self->revoke_arg = cfg->revoke_arg;
    self->heartbeat_ms = DEFAULT_HEARTBEAT_MS;
    self->liveness = SILENCE_BEATS;
    self->register_backoff_ms = BACKOFF_MIN_MS;
    self->departments = (char **) calloc(cfg->n_departments + 1, sizeof(char *));
    if (!self->endpoint || !self->agent_id || !self->log_prefix || !self->departments ||
        s_configure_channels(self, cfg) == -1)
        return -1;
    for (size_t i = 0; i < cfg->n_departments; i++) {
        self->departments[i] = strdup(cfg->departments[i] ? cfg->departments[i] : "");
        if (!self->departments[i])
            return -1;
        self->n_departments++;
    }
    return 0;
}

tierworker_t *tierworker_new(const char *endpoint, const tierworker_config_t *cfg)
{
    if (!endpoint || !cfg || !*s_level_name(cfg->level)) {
        fprintf(stderr, "tierworker: need an endpoint and a level L1..L3\n");
        return NULL;
    }
    tierworker_t *self = (tierworker_t *) calloc(1, sizeof(tierworker_t));
    if (!self)
        return NULL;
    self->scratch = tier_arena_new(ARENA_KEEP_MAX);
    if (!self->scratch || s_configure(self, endpoint, cfg) == -1 || s_connect(self) == -1) {
        fprintf(stderr, "%s: %s\n", cfg->log_prefix ? cfg->log_prefix : "tierworker",
                *self->error ? self->error : "out of memory");
        tierworker_destroy(&self);
        return NULL;
    }
    self->last_heard_ms = s_now(self);
    s_send_register(self);
    return self;
}

void tierworker_destroy(tierworker_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    tierworker_t *self = *self_p;
    if (self->sock)
        zsock_set_linger(self->sock, CLOSE_LINGER_MS);
    zsock_destroy(&self->sock);
    for (size_t index = 0; index < self->jobs_size; index++) {
        tierworker_job_t *job = self->jobs[index];
        if (!job)
            continue;
        tier_arena_destroy(&job->arena);
        for (size_t i = 0; i < OUT_MAX; i++)
            free(job->out[i].buf);
        free(job);
    }
    for (size_t i = 0; self->departments && i < self->n_departments; i++)
        free(self->departments[i]);
    free(self->departments);
    free(self->channel_capacity);
    free(self->jobs);
    free(self->ctl_buf);
    tier_arena_destroy(&self->scratch);
    free(self->endpoint);
    free(self->agent_id);
    free(self->log_prefix);
    free(self);
    *self_p = NULL;
}

//  The jobs handed out since the last poll and not finished: accept them now.
static void s_send_held_accepts(tierworker_t *self)
{
    for (size_t index = 0; self->n_held && index < self->jobs_size; index++) {
        tierworker_job_t *job = self->jobs[index];
        if (!job || !job->in_use || !job->accept_held)
            continue;
        s_unhold(self, job);
        if (self->registered && !job->retry_ms) {
            s_transmit(self, job->out[0].buf, job->out[0].len);
            job->out[0].sent_ms = s_now(self);
        }
    }
}

int tierworker_poll(tierworker_t *self, int timeout_ms, tierworker_job_t **job_p)
{
    assert(self);
    assert(job_p);
    *job_p = NULL;
    self->now_ms = zclock_mono();
    self->in_poll = true;
    int64_t deadline = timeout_ms < 0 ? INT64_MAX : self->now_ms + timeout_ms;
    int rc = TIERWORKER_FATAL;
    s_send_held_accepts(self);
    while (!self->fatal) {
        *job_p = s_receive(self);
        if (!self->fatal)
            s_tick(self);
        if (self->fatal)
            break;
        if (*job_p) {
            rc = TIERWORKER_JOB;
            break;
        }
        if (self->now_ms >= deadline) {
            rc = TIERWORKER_NOTHING;
            break;
        }
        int64_t next = s_next_deadline(self);
        int64_t wait = (next < deadline ? next : deadline) - self->now_ms;
        zmq_pollitem_t item = {self->handle, 0, ZMQ_POLLIN, 0};
        int ready = zmq_poll(&item, 1, wait < 0 ? 0 : (long) wait);
        int poll_errno = errno;
        self->now_ms = zclock_mono();
        if (ready == -1) {
            if (poll_errno == EINTR) {
                rc = TIERWORKER_NOTHING;
                break;
            }
            snprintf(self->error, sizeof self->error, "cannot poll the socket: %s",
                     zmq_strerror(poll_errno));
            self->fatal = true;
            s_log(self, true, "%s", self->error);
        }
    }
    self->in_poll = false;
    //  A job received in the same call stays in the table; freed on destroy.
    if (rc == TIERWORKER_FATAL)
        *job_p = NULL;
    return rc;
}

zsock_t *tierworker_sock(tierworker_t *self)
{
    assert(self);
    return self->sock;
}

int tierworker_timeout(tierworker_t *self)
{
    assert(self);
    int64_t wait = s_next_deadline(self) - s_now(self);
    return wait < 0 ? 0 : wait > INT_MAX ? INT_MAX : (int) wait;
}

static int s_begin_finish(tierworker_t *self, tierworker_job_t *job, const char *verb)
{
    assert(self);
    assert(job);
    if (!job->in_use || job->finished) {
        s_log(self, true, "%s on a job already finished ignored", verb);
        return -1;
    }
    job->finished = true;
    self->n_unfinished--;
    if (job->revoked) {
        s_job_free(self, job);
        return 1;
    }
    return 0;
}

//  Only fails when out of memory; the job is then forgotten (the router
//  will take it back when its lease runs out).
static int s_queue_result(tierworker_t *self, tierworker_job_t *job, s_kind_t kind,
                          Tier__V1__WorkerMessage *msg)
{
    if (s_job_queue(self, job, kind, msg) == 0)
        return 0;
    s_log(self, true, "%s: cannot queue %s, dropped", job->ticket->id, s_kind_name[kind]);
    s_job_free_if_done(self, job);
    return -1;
}

int tierworker_respond(tierworker_t *self, tierworker_job_t *job, const char *text)
{
    return tierworker_respond_ex(self, job, text, false);
}

int tierworker_respond_ex(tierworker_t *self, tierworker_job_t *job, const char *text,
                          bool awaiting_customer)
{
    assert(self);
    assert(job);
    if (!job->in_use || job->finished)
        return -1;
    //  Keep the last slot for the result.
    if (job->revoked || job->n_out >= OUT_MAX - 1)
        return job->revoked ? 0 : -1;
    Tier__V1__Respond respond = TIER__V1__RESPOND__INIT;
    respond.ticket_id = job->ticket->id;
    respond.attempt = job->ticket->attempt;
    respond.text = (char *) (text ? text : "");
    respond.awaiting_customer = awaiting_customer;
    Tier__V1__WorkerMessage msg = TIER__V1__WORKER_MESSAGE__INIT;
    msg.body_case = TIER__V1__WORKER_MESSAGE__BODY_RESPOND;
    msg.respond = &respond;
    return s_job_queue(self, job, OUT_RESPOND, &msg);
}

int tierworker_resolve(tierworker_t *self, tierworker_job_t *job, const char *text)
{
    int rc = s_begin_finish(self, job, "resolve");
    if (rc)
        return rc < 0 ? -1 : 0;
    Tier__V1__Resolve resolve = TIER__V1__RESOLVE__INIT;
    resolve.ticket_id = job->ticket->id;
    resolve.attempt = job->ticket->attempt;
    resolve.text = (char *) (text ? text : "");
    Tier__V1__WorkerMessage msg = TIER__V1__WORKER_MESSAGE__INIT;
    msg.body_case = TIER__V1__WORKER_MESSAGE__BODY_RESOLVE;
    msg.resolve = &resolve;
    return s_queue_result(self, job, OUT_RESOLVE, &msg);
}

int tierworker_escalate(tierworker_t *self, tierworker_job_t *job, Tier__V1__Level to_level,
                        const char *to_department, const char *reason, const char *notes)
{
    int rc = s_begin_finish(self, job, "escalate");
    if (rc)
        return rc < 0 ? -1 : 0;
    Tier__V1__Escalate escalate = TIER__V1__ESCALATE__INIT;
    escalate.ticket_id = job->ticket->id;
    escalate.attempt = job->ticket->attempt;
    escalate.to_level = to_level;
    escalate.to_department = (char *) (to_department ? to_department : "");
    escalate.reason = (char *) (reason ? reason : "");
    escalate.notes = (char *) (notes ? notes : "");
    Tier__V1__WorkerMessage msg = TIER__V1__WORKER_MESSAGE__INIT;
    msg.body_case = TIER__V1__WORKER_MESSAGE__BODY_ESCALATE;
    msg.escalate = &escalate;
    return s_queue_result(self, job, OUT_ESCALATE, &msg);
}

int tierworker_release(tierworker_t *self, tierworker_job_t *job, const char *reason)
{
    int rc = s_begin_finish(self, job, "release");
    if (rc)
        return rc < 0 ? -1 : 0;
    Tier__V1__Release release = TIER__V1__RELEASE__INIT;
    release.ticket_id = job->ticket->id;
    release.attempt = job->ticket->attempt;
    release.reason = (char *) (reason ? reason : "");
    Tier__V1__WorkerMessage msg = TIER__V1__WORKER_MESSAGE__INIT;
    msg.body_case = TIER__V1__WORKER_MESSAGE__BODY_RELEASE;
    msg.release = &release;
    return s_queue_result(self, job, OUT_RELEASE, &msg);
}

int tierworker_defer(tierworker_t *self, tierworker_job_t *job, uint64_t until_ms,
                     const char *reason)
{
    int rc = s_begin_finish(self, job, "defer");
    if (rc)
        return rc < 0 ? -1 : 0;
    Tier__V1__Defer defer = TIER__V1__DEFER__INIT;
    defer.ticket_id = job->ticket->id;
    defer.attempt = job->ticket->attempt;
    defer.until_ms = until_ms;
    defer.reason = (char *) (reason ? reason : "");
    Tier__V1__WorkerMessage msg = TIER__V1__WORKER_MESSAGE__INIT;
    msg.body_case = TIER__V1__WORKER_MESSAGE__BODY_DEFER;
    msg.defer = &defer;
    return s_queue_result(self, job, OUT_DEFER, &msg);
}

int tierworker_drain(tierworker_t *self)
{
    assert(self);
    self->draining = true;
    if (self->registered)
        s_send_drain(self);
    return 0;
}

size_t tierworker_held(tierworker_t *self)
{
    assert(self);
    return self->n_unfinished;
}

bool tierworker_idle(tierworker_t *self)
{
    assert(self);
    return self->n_live == 0;
}

bool tierworker_registered(tierworker_t *self)
{
    assert(self);
    return self->registered;
}

const char *tierworker_agent(tierworker_t *self)
{
    assert(self);
    return self->agent_id;
}

const char *tierworker_error(tierworker_t *self)
{
    assert(self);
    return self->error;
}

Tier__V1__Ticket *tierworker_job_ticket(tierworker_job_t *job)
{
    assert(job);
    return job->ticket;
}

const char *tierworker_job_id(tierworker_job_t *job)
{
    assert(job);
    return job->ticket->id;
}

uint32_t tierworker_job_attempt(tierworker_job_t *job)
{
    assert(job);
    return job->ticket->attempt;
}

bool tierworker_revoked(tierworker_job_t *job)
{
    assert(job);
    return job->revoked;
}

void tierworker_job_set_arg(tierworker_job_t *job, void *arg)
{
    assert(job);
    job->arg = arg;
}

void *tierworker_job_arg(tierworker_job_t *job)
{
    assert(job);
    return job->arg;
}
