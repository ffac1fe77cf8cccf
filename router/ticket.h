/*  ticket.h — one ticket: what the router keeps of it in memory, and its
    stored form in Redis.

    The stored form (proto/store.proto) is the value of the key P tk:ID: the
    intake step followed by one step per change, each a StoredTicket message
    written field by field (wire.h). ticket_apply reads steps into the
    in-memory ticket; it is the only code that sets a ticket's state, both
    when a transition makes a step (lifecycle.c writes the step, then applies
    it) and when the router loads a ticket from Redis (the whole value is
    applied at once). So what the router holds is by construction what Redis
    would give back.

    A ticket in memory is open (queued, offered, assigned, deferred) or
    about to be forgotten (closed in the batch being written).
*/
#ifndef TIER_TICKET_H
#define TIER_TICKET_H

#include "wire.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

//  Field numbers of StoredTicket (proto/store.proto); 1..20 are tier.v1.Ticket's.
enum {
    TK_ID = 1,
    TK_EXTERNAL_ID = 2,
    TK_CHANNEL = 3,
    TK_CUSTOMER = 4,
    TK_SUBJECT = 5,
    TK_BODY = 6,
    TK_PRIORITY = 7,
    TK_LEVEL = 8,
    TK_DEPARTMENT = 9,
    TK_TAGS = 10,
    TK_STATE = 11,
    TK_AGENT = 12,
    TK_ATTEMPT = 13,
    TK_CREATED = 14,
    TK_UPDATED = 15,
    TK_QUEUED = 16,
    TK_FIRST_RESPONSE = 17,
    TK_RESOLVED = 18,
    TK_CSAT = 19,
    TK_HISTORY = 20,
    TK_INTERNAL = 100, //  this and above: bookkeeping, never on the wire
    TK_POLICY = 100,
    TK_BOOST = 101,
    TK_SCORE = 102,
    TK_APPLIED = 103,
    TK_RESPONSES = 104,
    TK_ESCALATIONS = 105,
    TK_FIRST_DUE = 106,
    TK_RESOLUTION_DUE = 107,
    TK_RESOLUTION_START = 108,
    TK_PAUSED = 109,
    TK_STAGE_FIRST = 110,
    TK_STAGE_RESOLUTION = 111,
    TK_STAGE_WAIT = 112,
    TK_PROMISED_AGENT = 113,
    TK_PROMISE = 114,
    TK_WAITING_SINCE = 115,
    TK_PERSON = 116,
    TK_RATED = 117,
    TK_VIP = 118,
    TK_PROMISE_CHECK = 119,
};

//  HistoryEntry field numbers (tier.proto).
enum {
    HE_AT = 1,
    HE_KIND = 2,
    HE_ACTOR = 3,
    HE_TEXT = 4,
    HE_REASON = 5,
    HE_FROM_LEVEL = 6,
    HE_TO_LEVEL = 7,
    HE_FROM_DEPT = 8,
    HE_TO_DEPT = 9,
    HE_ESCALATION = 10,
    HE_AUTOMATIC = 11,
};

//  The three SLA clocks of a ticket.
enum { CLOCK_FIRST = 0, CLOCK_RESOLUTION = 1, CLOCK_WAIT = 2, CLOCKS = 3 };

#define STEP_NONE         UINT32_MAX
#define POLICY_LEVELS     3
#define POLICY_PRIORITIES 4
#define BUSINESS_SPEC_MAX 48

//  The SLA policy a ticket got at intake. Tickets share identical policies
//  (policies_intern), so a ticket costs a pointer, not the policy.
typedef struct policy {
    int64_t first_response_ms;                        //  0 = no target
    int64_t resolution_ms;                            //  0 = no target
    int64_t wait_ms[POLICY_LEVELS + 1];               //  per level 1..3
    int warn_percent;                                 //  warn at this share
    int action;                                       //  sla_action_t, on a breach while queued
    int64_t priority_boost_ms[POLICY_PRIORITIES + 1]; //  per priority 1..4
    char business[BUSINESS_SPEC_MAX];                 //  "0111110,480,1080,-180" or ""
    struct policy *next;                              //  intern list
} policy_t;

//  What tickets share, kept once for all of them and for the router's life:
//  SLA policies, department names, agent ids (a few hundred at most).
typedef struct intern intern_t;
intern_t *intern_new(void);
void intern_destroy(intern_t **self_p);
//  The shared copy of a policy equal to *policy (added if new).
const policy_t *intern_policy(intern_t *self, const policy_t *policy);
//  The shared copy of a name (department, agent id) of len bytes; "" is NULL.
const char *intern_name(intern_t *self, const char *name, size_t len);

typedef struct ticket ticket_t;
struct ticket {
    uint64_t id;
    //  times, ms since the epoch (0 = not yet)
    int64_t created_ms, updated_ms, queued_ms, first_response_ms, resolved_ms;
    int64_t first_due_ms, resolution_due_ms; //  SLA due times, 0 = no target
    int64_t resolution_start_ms;             //  when the resolution clock (re)started
    int64_t paused_ms;                       //  resolution clock paused since; 0 = running
    int64_t waiting_since_ms;                //  customer waits since; 0 = answered
    int64_t promise_ms;                      //  a deferral's promised time
    int64_t promise_check_ms;                //  then: was it kept? 0 = nothing to check
    int64_t score;                           //  queue order while queued
    int64_t boost_ms;                        //  subtracted from the deadline in the order
    const policy_t *policy;                  //  interned; NULL until the intake step
    const char *agent;      //  holding it (offered, assigned) or that held it last (interned)
    const char *promised;   //  a deferral's agent (interned)
    const char *department; //  interned; NULL = the level's general queue
    char *customer;         //  customer id (owned); NULL = none
    char *applied;          //  ",agent:attempt:request_id,..." of this attempt (owned)
    uint32_t attempt, responses, escalations;
    uint8_t state, level, priority, channel, csat;
    uint8_t stage[CLOCKS]; //  0 running, 1 warned, 2 breached
    bool vip, person, rated;
    bool followup; //  its external id is "followup:..." (a follow-up of another ticket)
    bool has_external_id;
    //  The router's own, never stored (book.c):
    int queue;                 //  the queue it is in, -1 = none
    uint32_t queue_pos;        //  in that queue's heap for its channel
    uint32_t wait_pos;         //  in that queue's oldest-first heap
    uint32_t timer_pos;        //  in the book's timer heap
    int64_t offer_deadline_ms; //  while offered: when the offer times out
    const char *holder;        //  the holder whose list it is on (interned), NULL = none
    ticket_t *held_prev;       //  that list
    ticket_t *held_next;
    bool deferred; //  in the book's deferred count
    //  What Redis has, as of the last batch written (book_flush compares).
    int redis_queue;          //  the queue whose sorted set holds it, -1 = none
    int64_t redis_score;      //  at this score
    const char *redis_holder; //  the agent whose held set holds it, NULL = none
    bool redis_deferred;      //  in P deferred
    bool redis_exists;        //  its key exists
    int8_t redis_channel;     //  and channel (P q:NAME:C)
    int16_t redis_cold;       //  the queue whose P qt:NAME holds it (book.h), -1 = none
    int64_t redis_qt_at;      //  at this queued_ms (-1: unknown, written again)
    int64_t redis_due;        //  its score in P due, 0 = none, -1 = unknown
    uint64_t written;         //  the journal batch that last wrote it
    bool dirty;               //  on the book's list of tickets the batch changes
    bool closed;              //  resolved, abandoned or dead: forgotten after the batch
    uint32_t step_first;      //  its first step in the batch, STEP_NONE = none
    uint32_t step_last;       //  its last one
    ticket_t *dirty_next;     //  that list
};

//  A new, empty ticket (everything zero, positions HEAP_NONE). NULL when out
//  of memory.
ticket_t *ticket_new(uint64_t id);
void ticket_destroy(ticket_t **self_p);

//  Apply steps (a whole stored value, or one step) to a ticket: the last
//  value of each field wins. Returns 0, or -1 if the bytes are malformed
//  (the ticket then holds what came before the bad field).
int ticket_apply(ticket_t *self, intern_t *intern, const uint8_t *data, size_t len);

//  A history entry, for step_history.
typedef struct {
    int64_t at_ms;
    int kind;           //  Tier__V1__HistoryKind
    const char *actor;  //  "customer", an agent, "router", a rule, "sla"
    const char *text;   //  or NULL
    const char *reason; //  or NULL
    int from_level, to_level;
    const char *from_dept, *to_dept; //  or NULL
    int escalation;                  //  Tier__V1__EscalationKind, 0 = none
    bool automatic;
} history_t;

//  Append a history entry (field 20) to a step.
void step_history(bytes_t *step, const history_t *entry);
//  Append the policy (field 100) to a step.
void step_policy(bytes_t *step, const policy_t *policy);

//  The wire form of a stored ticket: its bytes without the bookkeeping
//  fields (and without history unless with_history), appended to out as the
//  content of a tier.v1.Ticket. Returns 0, or -1 if the stored bytes are
//  malformed.
int ticket_wire(const uint8_t *stored, size_t len, bool with_history, bytes_t *out);

//  The customer id and channel, subject, level, department and priority of a
//  stored ticket, for follow-ups and snapshots: pointers into `stored`
//  (not NUL-terminated: lengths given). Returns -1 if malformed.
typedef struct {
    const uint8_t *subject;
    size_t subject_len;
    const uint8_t *customer; //  the Customer message's bytes
    size_t customer_len;
} ticket_content_t;
int ticket_content(const uint8_t *stored, size_t len, ticket_content_t *out);

#endif
