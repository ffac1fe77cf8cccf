/*  lifecycle.h — every change of a ticket's life, decided in memory.

    The router is the authority (book.h): each verb here checks the request
    against the ticket as the router holds it, writes the change as a step
    (book_step, ticket.h), puts the ticket where its new state says, schedules
    its next timer, and reports what happened: events (through the event
    function given at creation), service-level counts (kpi.h) and, for the
    caller, what to tell whom. Nothing here talks to a socket, and nothing is
    told to anyone before the batch holding the change is in Redis: the
    caller (server.c) answers after the journal says so.

    Verbs return 0 or a Tier__V1__ErrorCode with `reason` filled; a refused
    request changes nothing.
*/
#ifndef TIER_LIFECYCLE_H
#define TIER_LIFECYCLE_H

#include "book.h"
#include "config.h"
#include "journal.h"
#include "kpi.h"
#include "tier.pb-c.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LIFECYCLE_REASON_MAX 256

typedef struct lifecycle lifecycle_t;

//  An event, numbered and kept by the caller (server.c) for publishing once
//  the batch is in Redis. Strings are borrowed for the call; the ticket's id
//  is given as a number (event->ticket_id is left empty).
typedef void(lifecycle_event_fn)(void *arg, Tier__V1__Event *event, uint64_t ticket);
//  Whether an agent is connected, ready, and has room for one more ticket
//  of `channel` (a promise coming due goes back to its agent if so).
typedef bool(lifecycle_available_fn)(void *arg, const char *agent, int channel);

typedef struct {
    book_t *book;
    journal_t *journal;
    kpi_t *kpi;
    const config_t *config;
    lifecycle_event_fn *event;
    lifecycle_available_fn *available;
    void *arg; //  for both
} lifecycle_config_t;

lifecycle_t *lifecycle_new(const lifecycle_config_t *config);
void lifecycle_destroy(lifecycle_t **self_p);

//  The last ticket id handed out (from Redis at load; then counted here).
void lifecycle_set_next_id(lifecycle_t *self, uint64_t last_id);
uint64_t lifecycle_last_id(const lifecycle_t *self);

//  ---------------------------------------------------------------------------
//  Intake

typedef struct {
    const char *rule;   //  rule name
    const char *action; //  what it did, for people
} lifecycle_hit_t;

typedef struct {
    const uint8_t *content; //  packed tier.v1.Ticket: the submitted content (no id)
    size_t content_len;
    const char *external_id; //  "" = none
    const char *customer;    //  "" = none
    bool vip;
    int channel;
    const char *subject;
    int level;              //  after the rules
    const char *department; //  interned, NULL = general
    int priority;
    const policy_t *policy; //  interned
    int64_t boost_ms;
    const lifecycle_hit_t *hits; //  rules that fired, content and history
    size_t hit_count;
    bool record_contact; //  a rule counts contacts: record this one (P cc:CUSTOMER)
} lifecycle_intake_t;

//  A new ticket, queued. The caller has checked that external_id is new.
ticket_t *lifecycle_intake(lifecycle_t *self, int64_t now_ms, const lifecycle_intake_t *in);

//  ---------------------------------------------------------------------------
//  Dispatch

//  Offer a queued ticket to an agent. Returns 1 if offered, 0 if it was
//  dead-lettered instead (delivered max_attempts times already).
int lifecycle_offer(lifecycle_t *self, int64_t now_ms, ticket_t *t, const char *agent);

//  ---------------------------------------------------------------------------
//  Worker results. `agent` is the sender; `attempt` and `request_id` as sent.

typedef struct {
    int code;                          //  0 or Tier__V1__ErrorCode
    char reason[LIFECYCLE_REASON_MAX]; //  when code != 0
    int state;                         //  the ticket's state after (Done.state)
    bool duplicate;                    //  a resent result, answered, not applied again
} lifecycle_outcome_t;

typedef enum {
    RESULT_ACCEPT,
    RESULT_RESPOND,
    RESULT_RESOLVE,
    RESULT_ESCALATE,
    RESULT_RELEASE,
    RESULT_DEFER
} lifecycle_result_kind_t;

typedef struct {
    lifecycle_result_kind_t kind;
    const char *agent;
    uint32_t attempt;
    uint64_t request_id;
    const char *text;          //  respond, resolve: what was said; defer: unused
    bool awaiting_customer;    //  respond
    int to_level;              //  escalate (0 = next level, unless to_department)
    const char *to_department; //  escalate: interned, NULL = none
    const char *reason;        //  escalate, release, defer
    const char *notes;         //  escalate
    uint64_t until_ms;         //  defer
} lifecycle_result_t;

void lifecycle_result(lifecycle_t *self, int64_t now_ms, ticket_t *t,
                      const lifecycle_result_t *result, lifecycle_outcome_t *out);

//  ---------------------------------------------------------------------------
//  Customer and operator requests

//  revoke_agent_p/attempt_p: who held it, to be told (NULL: nobody).
void lifecycle_cancel(lifecycle_t *self, int64_t now_ms, ticket_t *t, const char *reason,
                      lifecycle_outcome_t *out, const char **revoke_agent_p,
                      uint32_t *revoke_attempt_p);
void lifecycle_message(lifecycle_t *self, int64_t now_ms, ticket_t *t, const char *text,
                       lifecycle_outcome_t *out);
void lifecycle_rate(lifecycle_t *self, int64_t now_ms, ticket_t *t, uint32_t csat,
                    const char *comment, lifecycle_outcome_t *out);
//  A dead letter back to a queue: level 0 keeps its level and department.
void lifecycle_requeue(lifecycle_t *self, int64_t now_ms, ticket_t *t, int level,
                       const char *department, const char *reason, lifecycle_outcome_t *out);

//  ---------------------------------------------------------------------------
//  Agents

typedef struct {
    const char *agent;
    int level;
    const char *departments; //  "billing,sales"
    uint32_t capacity;
    bool bot;
    const char *channel_limits;        //  "1:3,3:1" or ""
    const Tier__V1__Held *const *held; //  what it declares it holds
    size_t held_count;
} lifecycle_register_t;

//  Registration: keeps what it declares and holds, takes back what it holds
//  but did not declare, and lists in stale_out (capacity stale_max) the
//  declared tickets it no longer holds. Returns how many it keeps.
uint32_t lifecycle_register(lifecycle_t *self, int64_t now_ms, const lifecycle_register_t *reg,
                            Tier__V1__Held *stale_out, size_t stale_max, size_t *stale_count_p);
//  The agent is gone (silent, lease expired): everything it held goes back
//  to the front of its queue; it is forgotten in Redis.
void lifecycle_agent_gone(lifecycle_t *self, int64_t now_ms, const char *agent, const char *reason);
//  Presence state (READY, AWAY, DRAINING) in Redis and the events.
void lifecycle_agent_state(lifecycle_t *self, int64_t now_ms, const char *agent, int state,
                           const char *reason);
//  Renew the presence of connected agents (P agents scores).
void lifecycle_renew(lifecycle_t *self, int64_t now_ms, const char *const *agents, size_t count);

//  ---------------------------------------------------------------------------
//  Timers

//  What handling a due ticket asks of the caller.
typedef struct {
    const char *revoke_agent; //  tell this agent its offer was taken back (NULL: none)
    uint32_t revoke_attempt;
    const char *away_agent;  //  set this agent away (too many offers missed)
    const char *offer_agent; //  the ticket was offered to this agent (a promise due)
} lifecycle_fired_t;

//  Handle whatever is due of the ticket's timers at now_ms, and schedule the
//  next one.
void lifecycle_fire(lifecycle_t *self, int64_t now_ms, ticket_t *t, lifecycle_fired_t *out);

//  An agent's run of missed offers ends (it accepted, or came back).
void lifecycle_misses_clear(lifecycle_t *self, const char *agent);

//  Arm the timer of a ticket just loaded from Redis (offers loaded time out
//  offer_timeout_ms after they were made).
void lifecycle_loaded(lifecycle_t *self, int64_t now_ms, ticket_t *t);

//  The QUEUE events of the queues this batch changed.
void lifecycle_queue_events(lifecycle_t *self, int64_t now_ms);

#endif
