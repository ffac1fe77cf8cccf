/*  server_int.h — what the parts of the reactor share (server.c and the
    files it is split into): the server's state and the calls they make of
    each other. Not an interface: nothing outside router/server*.c and the
    five parts below includes it.

    server.c    the loop: reading messages, dispatch, the batch's end, the
                journal's outcomes, start and stop
    send.c      everything that leaves on a socket: answers, refusals,
                offers, revokes and events, most of them after the commit
    intake.c    validation and the intake of new tickets (external ids,
                customer history, rules, SLA policy)
    requests.c  client requests: one ticket's (cancel, message, rate,
                requeue, and workers' results), and the reading ones
    workers.c   worker messages: register, heartbeat, drain, results
    cron.c      timers, follow-ups, cold tickets, liveness, presence,
                status, reconnecting
*/
#ifndef TIER_SERVER_INT_H
#define TIER_SERVER_INT_H

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
#include <string.h>

#define ENVELOPE_MAX 1024 //  routing frames of one request, as kept
#define FRAMES_MAX   16
#define ID_TEXT_MAX  24

typedef enum {
    STATE_DOWN,    //  Redis unreachable
    STATE_STANDBY, //  another router owns the prefix
    STATE_LOADING, //  reading the state back
    STATE_READY,
    STATE_UNUSABLE //  the data in Redis cannot be read by this tierd
} run_state_t;

//  The ZeroMQ sockets: the two ROUTERs answers go to, then the events' XPUB.
typedef enum { SOCK_CLIENTS, SOCK_WORKERS, SOCK_EVENTS, SOCKETS } sock_kind_t;

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
    events_t *events;     //  PUB
    int zmq_fds[SOCKETS]; //  ZMQ_FD of clients, workers, events (s_turn polls them)
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

typedef enum { OP_CANCEL, OP_MESSAGE, OP_RATE, OP_REQUEUE, OP_RESULT } ticket_op_t;

static inline const char *server_str(const char *s)
{
    return s ? s : "";
}

//  Requests up to ARENA_UNPACK_MAX are unpacked into the filling batch's
//  arena (server.c): freed with it.
static inline ProtobufCAllocator *server_allocator(server_t *self, bool arena)
{
    return arena ? &self->arena : NULL;
}

static inline const char *server_dept(server_t *self, const char *name)
{
    return name && *name ? intern_name(self->intern, name, strlen(name)) : NULL;
}

static inline const char *server_unavailable(server_t *self)
{
    return *self->state_why ? self->state_why : "redis is unavailable";
}

//  Whether an item's continuation still applies when it runs: its batch
//  committed, memory was not reset since it was queued (epoch), and the
//  router is ready.
static inline bool server_current(const server_t *self, bool committed, uint64_t epoch)
{
    return committed && epoch == self->epoch && self->state == STATE_READY;
}

//  send.c: a destination (dest_t) is a request's routing frames and id, kept
//  in the filling batch; *_later answers go after that batch's commit, or
//  UNAVAILABLE instead; send_error answers at once.
void *send_handle(server_t *self, int sock); //  sock_kind_t: its ZeroMQ socket
void send_env(void *handle, const uint8_t *env, size_t len, const void *body, size_t size);
void send_packed(void *handle, const uint8_t *env, size_t len, const ProtobufCMessage *message,
                 bytes_t *buf);
dest_t send_dest(server_t *self, int sock, const uint8_t *env, size_t env_len, uint64_t request_id);
dest_t send_dest_copy(server_t *self, outbox_batch_t *batch, const dest_t *d);
void send_error(server_t *self, int sock, const uint8_t *env, size_t env_len, uint64_t request_id,
                int code, const char *reason);
void send_error_dest(server_t *self, outbox_batch_t *batch, const dest_t *d, int code,
                     const char *reason);
bool send_refused(server_t *self, outbox_batch_t *batch, const dest_t *dest, bool committed);
void send_reply_later(server_t *self, const dest_t *dest, const ProtobufCMessage *message);
void send_revoke_later(server_t *self, const char *agent, uint64_t ticket, uint32_t attempt,
                       const char *reason);
void send_offer_later(server_t *self, const ticket_t *t);
void send_on_event(void *arg, Tier__V1__Event *e, uint64_t ticket); //  lifecycle_event_fn
void send_ticket_later(server_t *self, const dest_t *dest, uint64_t id, bool with_history);
void send_bytes_later(server_t *self, const dest_t *dest, const bytes_t *body);

//  intake.c: intake_ticket takes the ticket (and request, which owns it);
//  dest is in the filling batch, or NULL for a follow-up (followup_of).
int intake_validate_placement(server_t *self, int level, const char *department, char *reason,
                              size_t size);
int intake_validate_ticket(server_t *self, const Tier__V1__Ticket *t, char *reason, size_t size);
void intake_waiters_free(void **item);
void intake_followup_done(server_t *self, uint64_t of);       //  no longer being created
void intake_followup_unschedule(server_t *self, uint64_t of); //  ZREM P followups, in the batch
void intake_ticket(server_t *self, Tier__V1__Ticket *ticket, void *request, bool arena,
                   const dest_t *dest, const uint8_t *env, uint64_t followup_of, bool test);

//  requests.c: both return or take ownership of request as the reactor
//  expects: requests_client returns true when it kept req.
void requests_with_ticket(server_t *self, ticket_op_t op, const char *id_text, void *request,
                          bool arena, const dest_t *dest, const uint8_t *env, const char *agent);
bool requests_client(server_t *self, const uint8_t *env, size_t env_len,
                     Tier__V1__ClientRequest *req, bool arena);

//  workers.c: workers_message returns true when it kept msg; workers_unpark
//  answers the Registers parked while loading (ready: registers them, else
//  refuses them UNAVAILABLE).
int64_t workers_lease_ms(const server_t *self);
void workers_unpark(server_t *self, bool ready);
void workers_parked_free(server_t *self);
bool workers_message(server_t *self, const uint8_t *env, size_t env_len,
                     Tier__V1__WorkerMessage *msg, bool arena);

//  cron.c
void cron_fire_timers(server_t *self);
void cron_run(server_t *self);

//  server.c
void server_set_state(server_t *self, run_state_t state, const char *why);

#endif
