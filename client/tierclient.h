// tierclient — the C client of tierd's clients endpoint.
//
// One tierclient_t is one ZeroMQ DEALER connected to tierd. It speaks the
// ClientRequest / ClientReply protocol of tier.proto: every request carries a
// request_id and the reply echoes it, so replies from an earlier, timed-out
// try are recognised and dropped.
//
// Two ways to use it, not to be mixed while pipelined requests are in flight
// (a synchronous call drops every reply that is not its own):
//
//   synchronous   tierclient_submit, _get, _cancel, ... : send, wait for the
//                 answer up to timeout_ms per try, retry where that is safe.
//   pipelined     tierclient_send_submit + tierclient_recv (or
//                 tierclient_recv_borrowed): keep thousands of requests in
//                 flight, match replies on request_id yourself.
//
// Errors live in the object, like hiredis' context: after a call returned -1
// or NULL, tierclient_errcode says what kind and tierclient_errstr says what
// and what to do. A tierclient_t is not thread-safe: one per thread.
//
// Ownership: returned messages were unpacked by the library and are the
// caller's; free each with the free_unpacked function of its type, e.g.
// tier__v1__ticket__free_unpacked (ticket, NULL). Returned `char *` are the
// caller's to free(). Messages passed in are only read.
#ifndef TIERCLIENT_H_INCLUDED
#define TIERCLIENT_H_INCLUDED

#include <stdbool.h>
#include <stdint.h>
#include "tier.pb-c.h"

#ifdef __cplusplus
extern "C" {
#endif

// tierclient_errcode values besides Tier__V1__ErrorCode (which are >= 0).
#define TIERCLIENT_TIMEOUT -1 // no answer within timeout_ms, after every retry
#define TIERCLIENT_FAILED                                                                          \
    -2 // local failure: cannot send, bad argument, or
       // an answer that is not a valid ClientReply

#define TIERCLIENT_DEFAULT_RETRIES 3 // resends after a timeout, on safe calls

typedef struct _tierclient_t tierclient_t;

// Connects to tierd's clients endpoint, e.g. "tcp://127.0.0.1:5560"
// (ZeroMQ connects lazily: an unreachable router shows as timeouts later).
// timeout_ms is how long one try waits for its answer. Returns NULL if the
// endpoint is invalid or out of memory.
tierclient_t *tierclient_new(const char *endpoint, int timeout_ms);

// Closes the socket (unsent requests are dropped) and nulls *self_p.
void tierclient_destroy(tierclient_t **self_p);

// How many times a timed-out call is resent (default 3). 0 = never resend.
void tierclient_set_retries(tierclient_t *self, int retries);

// How long one try waits for its answer, in milliseconds.
void tierclient_set_timeout(tierclient_t *self, int timeout_ms);

// The last error: a Tier__V1__ErrorCode from the router (ERROR_NONE after
// success), TIERCLIENT_TIMEOUT or TIERCLIENT_FAILED.
int tierclient_errcode(tierclient_t *self);

// The last error as a name: "UNKNOWN_TICKET", "TIMEOUT", "FAILED", "NONE".
const char *tierclient_errname(tierclient_t *self);

// The last error for people: the router's reason followed by its hint in
// parentheses, or the local reason. "" after success. Borrowed: valid until
// the next call on self.
const char *tierclient_errstr(tierclient_t *self);

// Synchronous calls. Each sends one request and waits for its answer.
// Safe calls (submit, get, cancel, rate, queues, agents, snapshot, dead
// letters, requeue, rules test, report) resend the same request, with the same request_id, after
// a timeout, up to retries times; an answer to any of the tries is the
// answer. tierclient_message is never resent: a customer message sent twice
// would show twice in history.

// Submits a new ticket. Reads external_id, channel, customer, subject, body,
// priority, level, department and tags. If external_id is empty the library
// makes one up (32 random hex characters) before the first try, so retries
// after a lost answer cannot create the ticket twice. On success *id_p (if
// not NULL) gets the ticket id (caller frees) and *duplicate_p (if not NULL)
// whether the external_id was already known. With a made-up external_id,
// "duplicate" can only mean an earlier try of this call, so it is reported as
// false. Returns 0 or -1.
int tierclient_submit(tierclient_t *self, const Tier__V1__Ticket *ticket, char **id_p,
                      bool *duplicate_p);

// The ticket with this id, with its history if asked. Returns NULL on error.
// Caller frees with tier__v1__ticket__free_unpacked (ticket, NULL).
Tier__V1__Ticket *tierclient_get(tierclient_t *self, const char *id, bool with_history);

// Cancels a ticket for the customer (it becomes ABANDONED). reason may be
// NULL. Returns the ticket after the change, or NULL on error. Caller frees
// with tier__v1__ticket__free_unpacked. A retry of a cancel that was applied
// may be refused ERROR_INVALID_STATE (it is already abandoned).
Tier__V1__Ticket *tierclient_cancel(tierclient_t *self, const char *id, const char *reason);

// Adds a message from the customer to an open ticket. Never resent (see
// above): on TIERCLIENT_TIMEOUT the message may or may not have arrived; check
// with tierclient_get before sending it again. Returns the ticket after the
// change, or NULL. Caller frees with tier__v1__ticket__free_unpacked.
Tier__V1__Ticket *tierclient_message(tierclient_t *self, const char *id, const char *text);

// Rates a ticket, csat 1..5; comment may be NULL. Resent after a timeout:
// the same rating twice changes nothing, but if the first answer was lost the
// one you get is the router's verdict on the second. Returns the ticket after
// the change, or NULL. Caller frees with tier__v1__ticket__free_unpacked.
Tier__V1__Ticket *tierclient_rate(tierclient_t *self, const char *id, unsigned csat,
                                  const char *comment);

// Every configured queue with its depth and oldest wait, or NULL.
// Caller frees with tier__v1__queues_reply__free_unpacked (reply, NULL).
Tier__V1__QueuesReply *tierclient_queues(tierclient_t *self);

// Every known agent, or NULL.
// Caller frees with tier__v1__agents_reply__free_unpacked (reply, NULL).
Tier__V1__AgentsReply *tierclient_agents(tierclient_t *self);

// Queues with their tickets, agents, and the event seq they include, or NULL.
// Caller frees with tier__v1__snapshot_reply__free_unpacked (reply, NULL).
Tier__V1__SnapshotReply *tierclient_snapshot(tierclient_t *self);

// Dead letters: tickets delivered max_attempts times without a result,
// most recent first, without history (tierclient_get one for it). limit 0
// means the router's default (100). Returns NULL on error. Caller frees with
// tier__v1__dead_letters_reply__free_unpacked (reply, NULL).
Tier__V1__DeadLettersReply *tierclient_dead_letters(tierclient_t *self, unsigned limit);

// Puts a dead letter back in a queue with its attempts reset. level
// LEVEL_UNSPECIFIED keeps its level and department; department (may be NULL)
// applies with a level. reason is required (kept in history). Resent after a
// timeout like cancel: a retry of a requeue that was applied is refused
// ERROR_INVALID_STATE (it is no longer a dead letter). Returns the ticket
// after the change, with history, or NULL. Caller frees with
// tier__v1__ticket__free_unpacked.
Tier__V1__Ticket *tierclient_requeue(tierclient_t *self, const char *id, Tier__V1__Level level,
                                     const char *department, const char *reason);

// Which intake rules fire for ticket and where it would go (level,
// department, priority, tags, SLA policy and targets), without submitting
// it. Reads the fields tierclient_submit reads; external_id is sent as given
// (none is made up: nothing is created). Resent after a timeout: it changes
// nothing. Returns the answer or NULL. Caller frees with
// tier__v1__rules_test_reply__free_unpacked (reply, NULL).
Tier__V1__RulesTestReply *tierclient_rules_test(tierclient_t *self, const Tier__V1__Ticket *ticket);

// The service-level report (docs/metrics.md) over [since_ms, until_ms):
// since_ms 0 = 24 h before until_ms, until_ms 0 = now. by groups the rows:
// "" (the total only), "channel", "level", "department", "agent", "hour" or
// "day". Resent after a timeout: it changes nothing. Returns the answer or
// NULL. Caller frees with tier__v1__report_reply__free_unpacked (reply, NULL).
Tier__V1__ReportReply *tierclient_report(tierclient_t *self, uint64_t since_ms, uint64_t until_ms,
                                         const char *by);

// Pipelined calls. Nothing is resent; match answers on request_id.

// Sends a Submit without waiting. An empty external_id is replaced by a
// made-up one, as in tierclient_submit. Returns the request_id (> 0) that
// the answer will carry, or 0 if it could not be sent within timeout_ms
// (errcode TIERCLIENT_FAILED).
uint64_t tierclient_send_submit(tierclient_t *self, const Tier__V1__Ticket *ticket);

// Waits up to timeout_ms (-1: forever, 0: do not wait) for the next answer,
// whatever request it answers. On success returns 0 and *reply_p gets it
// (caller frees with tier__v1__client_reply__free_unpacked (reply, NULL));
// check (*reply_p)->error for the router's verdict. Returns -1 on timeout
// (errcode TIERCLIENT_TIMEOUT), on interrupt or on an undecodable answer
// (TIERCLIENT_FAILED; the answer is dropped).
int tierclient_recv(tierclient_t *self, int timeout_ms, Tier__V1__ClientReply **reply_p);

// tierclient_recv without an allocation per answer, for readers of thousands
// of answers a second: the answer is decoded into memory the library keeps
// and reuses. *reply_p is borrowed: valid until the next call on self, never
// freed by the caller. Returns and errors as tierclient_recv.
int tierclient_recv_borrowed(tierclient_t *self, int timeout_ms,
                             const Tier__V1__ClientReply **reply_p);

// The libzmq socket handle, for zmq_poll or zpoller: readable when
// tierclient_recv has an answer. Borrowed: do not read from it or close it.
void *tierclient_socket(tierclient_t *self);

#ifdef __cplusplus
}
#endif

#endif
