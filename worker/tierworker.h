/*  tierworker.h — the worker side of the tierd protocol, as a library.

    A tierworker_t is one agent: it connects a DEALER to tierd's workers
    endpoint, registers, heartbeats, accepts offers and delivers results with
    the retry rules of docs/protocol.md. The caller only decides what to do
    with each ticket. Nothing here blocks longer than the caller asks, so a
    worker can share its thread with other work (child processes, a load
    generator, a GUI loop).

    Typical loop:

        tierworker_t *w = tierworker_new ("tcp://127.0.0.1:5561", &cfg);
        while (running) {
            tierworker_job_t *job;
            int rc = tierworker_poll (w, 1000, &job);
            if (rc == TIERWORKER_JOB)
                tierworker_resolve (w, job, "done");
            else if (rc == TIERWORKER_FATAL)
                break;
        }
        tierworker_destroy (&w);

    To poll the worker together with other fds, put zsock_resolve
    (tierworker_sock (w)) in a zmq_pollitem_t, wait at most
    tierworker_timeout (w) ms, then call tierworker_poll (w, 0, &job) until
    it returns TIERWORKER_NOTHING. Fetch tierworker_sock () again on every
    loop: the library replaces the socket when it reconnects.

    Ownership: tierworker_new copies everything in the config. Jobs belong
    to the library: a job handed out by tierworker_poll stays valid until
    the caller finishes it with exactly one of tierworker_resolve,
    tierworker_escalate, tierworker_release or tierworker_defer; after that
    call the job and
    its ticket must not be touched again (the library frees them once the
    router has confirmed the result). Strings passed to the verbs are copied
    before they return. Revoked jobs must still be finished by the caller;
    finishing a revoked job sends nothing and frees it.

    Not thread-safe: use one tierworker_t from one thread.
*/
#ifndef TIERWORKER_H_INCLUDED
#define TIERWORKER_H_INCLUDED

#include <czmq.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tier.pb-c.h"

#ifdef __cplusplus
extern "C" {
#endif

//  Return values of tierworker_poll
#define TIERWORKER_JOB     0  //  *job_p is a new job, accepted (see tierworker_poll)
#define TIERWORKER_NOTHING 1  //  no new job within the timeout
#define TIERWORKER_FATAL   -1 //  cannot go on; tierworker_error says why

typedef struct _tierworker_t tierworker_t;
typedef struct _tierworker_job_t tierworker_job_t;

//  Called from inside tierworker_poll when the router takes back a job the
//  caller still holds (customer cancelled, offer timed out, lease lost).
//  The caller should stop working on it and finish it (any finishing verb;
//  nothing is sent). It may finish it inside the callback. reason is
//  borrowed for the duration of the call.
typedef void(tierworker_revoke_fn)(tierworker_job_t *job, const char *reason, void *arg);

//  A per-channel limit within the worker's capacity: several chats, but one
//  call at a time.
typedef struct {
    Tier__V1__Channel channel; //  the channel limited
    uint32_t capacity;         //  most tickets of this channel held at once
} tierworker_channel_capacity_t;

typedef struct {
    const char *agent_id;  //  unique agent id; NULL = "<level>-<host>-<pid>"
    Tier__V1__Level level; //  TIER__V1__LEVEL__LEVEL_L1 .. L3
    char **departments;    //  departments served besides the general queue
    size_t n_departments;  //  entries in departments
    uint32_t capacity;     //  most tickets held at once; 0 is read as 1
    const tierworker_channel_capacity_t *channel_capacity; //  optional per-channel limits
    size_t n_channel_capacity;                             //  entries in channel_capacity
    bool bot;                                              //  an automated worker, not a person
    tierworker_revoke_fn *on_revoke;                       //  optional, see tierworker_revoke_fn
    void *revoke_arg;                                      //  passed to on_revoke
    const char *log_prefix; //  prefix of log lines; NULL = "tierworker"
    bool verbose;           //  log protocol traffic, not only trouble
} tierworker_config_t;

//  Create a worker and connect it to endpoint (tierd's workers endpoint).
//  Sends Register at once; registration completes inside tierworker_poll.
//  Returns NULL if the config is invalid or the endpoint cannot be used.
tierworker_t *tierworker_new(const char *endpoint, const tierworker_config_t *cfg);

//  Close the socket and free every job, finished or not. Sends nothing
//  more: drain first if the router should hear about it. NULL-safe,
//  nulls the caller's pointer.
void tierworker_destroy(tierworker_t **self_p);

//  Run the protocol for up to timeout_ms (< 0: until a job arrives).
//  Returns TIERWORKER_JOB with *job_p set to a new, accepted job (its
//  Accept goes out with the next call, or never if the job is resolved,
//  responded to or deferred first: those accept it in the router too);
//  TIERWORKER_NOTHING when the time ran out or a signal interrupted the
//  wait; TIERWORKER_FATAL when the router refused the registration or the
//  socket cannot be rebuilt.
int tierworker_poll(tierworker_t *self, int timeout_ms, tierworker_job_t **job_p);

//  The socket to poll for input (borrowed; replaced on reconnect).
zsock_t *tierworker_sock(tierworker_t *self);

//  Milliseconds until tierworker_poll must run again for heartbeats and
//  retries even if the socket stays silent (>= 0).
int tierworker_timeout(tierworker_t *self);

//  Send a response to the customer. Optional, before the finish; the first
//  one is the ticket's first response. Returns 0, or -1 if the job is
//  finished already or too many of its messages still wait for the
//  router's answer (a burst of responses; try again after a poll).
int tierworker_respond(tierworker_t *self, tierworker_job_t *job, const char *text);

//  tierworker_respond with a flag: awaiting_customer says the response asks
//  the customer something, so the ticket's SLA clocks pause until the
//  customer's next message.
int tierworker_respond_ex(tierworker_t *self, tierworker_job_t *job, const char *text,
                          bool awaiting_customer);

//  Finish a job: resolve it with a resolution text. Returns 0, or -1 if the
//  job was finished already (programmer error, logged).
int tierworker_resolve(tierworker_t *self, tierworker_job_t *job, const char *text);

//  Finish a job: escalate it. to_level LEVEL_UNSPECIFIED with a NULL or ""
//  to_department means the next level. reason is required by the router;
//  notes may be NULL. Returns 0 or -1 like tierworker_resolve.
int tierworker_escalate(tierworker_t *self, tierworker_job_t *job, Tier__V1__Level to_level,
                        const char *to_department, const char *reason, const char *notes);

//  Finish a job: give it back to its queue. Returns 0 or -1.
int tierworker_release(tierworker_t *self, tierworker_job_t *job, const char *reason);

//  Finish a job: keep a promise made to the customer ("call back at
//  15:00"). The ticket leaves this worker and comes back at until_ms (ms
//  since the epoch, UTC) to this agent if it is connected then, else to its
//  level's queue. reason is the promise, kept in history; may be NULL.
//  Returns 0 or -1 like tierworker_resolve.
int tierworker_defer(tierworker_t *self, tierworker_job_t *job, uint64_t until_ms,
                     const char *reason);

//  Tell the router to send no more offers (worker stopping). Repeated
//  after every re-registration. Returns 0.
int tierworker_drain(tierworker_t *self);

//  Jobs handed out and not yet finished by the caller.
size_t tierworker_held(tierworker_t *self);

//  True when the library holds no job at all: nothing unfinished and no
//  result waiting for the router's confirmation.
bool tierworker_idle(tierworker_t *self);

//  True once the router has acknowledged the current registration.
bool tierworker_registered(tierworker_t *self);

//  The agent id in use (borrowed).
const char *tierworker_agent(tierworker_t *self);

//  Why the last TIERWORKER_FATAL happened (borrowed, "" if none). The
//  library has also logged it to stderr.
const char *tierworker_error(tierworker_t *self);

//  The job's ticket with its history (borrowed; do not modify or free).
Tier__V1__Ticket *tierworker_job_ticket(tierworker_job_t *job);

//  Shortcuts into the ticket (borrowed).
const char *tierworker_job_id(tierworker_job_t *job);
uint32_t tierworker_job_attempt(tierworker_job_t *job);

//  True if the router took the job back; finishing it then sends nothing.
bool tierworker_revoked(tierworker_job_t *job);

//  A pointer the caller may attach to a job (e.g. its child process).
void tierworker_job_set_arg(tierworker_job_t *job, void *arg);
void *tierworker_job_arg(tierworker_job_t *job);

#ifdef __cplusplus
}
#endif

#endif
