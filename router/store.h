/*  store.h — the only door to Redis.

    Every state change is one call of a Redis function (store.lua). Calls are
    queued with store_call_begin/end and sent together by store_send: one
    write, one round trip for the whole batch. The loop polls store_fd; once
    the reply is readable, store_receive sends the next batch and then runs
    each call's callback in order.
    Losing Redis is a state, not a crash: while it is down every call completes
    with ERROR_UNAVAILABLE, and store_reconnect retries with backoff.
*/
#ifndef TIER_STORE_H
#define TIER_STORE_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct _store_t store_t;

//  Field positions in each event returned by store.lua (see event()).
enum {
    STORE_EV_KIND,
    STORE_EV_TICKET,
    STORE_EV_LEVEL,
    STORE_EV_DEPT,
    STORE_EV_AGENT,
    STORE_EV_FROM_LEVEL,
    STORE_EV_FROM_DEPT,
    STORE_EV_REASON,
    STORE_EV_DEPTH,
    STORE_EV_OLDEST,
    STORE_EV_STATE,
    STORE_EV_ATTEMPT,
    STORE_EV_CHANNEL,
    STORE_EV_PRIORITY,
    STORE_EV_CSAT,
    STORE_EV_AGENT_STATE,
    STORE_EV_CREATED,
    STORE_EV_QUEUED,
    STORE_EV_FIELDS
};

//  The outcome of one call. Everything points into the Redis reply and is
//  valid only during the callback.
typedef struct {
    int code;            //  Tier__V1__ErrorCode; 0 = success
    int64_t now_ms;      //  the call's time (store_call_begin): when its events happened
    const char *reason;  //  for people, when code != 0
    uint64_t seq_last;   //  seq of the last event in events
    redisReply *events;  //  array of event arrays (may be empty), or NULL
    redisReply *payload; //  function-specific array, or NULL on error
} store_result_t;

typedef void(store_done_fn)(void *arg, const store_result_t *result);

typedef struct {
    const char *url;        //  redis://host:port[/db]
    const char *prefix;     //  key prefix, e.g. "tier:"
    int connect_timeout_ms; //  per connection attempt
    int command_timeout_ms; //  per round trip
} store_config_t;

//  Create a store; does not connect (call store_reconnect).
store_t *store_new(const store_config_t *config);
void store_destroy(store_t **self_p);

//  Connect and load the function library if down and the backoff allows.
//  Returns 0 when connected.
int store_reconnect(store_t *self, int64_t now_ms);
bool store_up(store_t *self);
//  Why the store is down, for logs and status; "" when up.
const char *store_error(store_t *self);

//  Start a call of Redis function `fn` at time now_ms; then add arguments;
//  then store_call_end queues it with its callback. The prefix and now_ms are
//  the first two function arguments, as store.lua expects.
void store_call_begin(store_t *self, const char *fn, int64_t now_ms);
void store_arg_str(store_t *self, const char *s);
void store_arg_bin(store_t *self, const void *data, size_t size);
void store_arg_u64(store_t *self, uint64_t value);
void store_call_end(store_t *self, store_done_fn *done, void *arg);

//  Calls queued and not yet flushed.
size_t store_pending(store_t *self);

//  Send the queued calls as one batch, unless a batch is in flight (one at
//  a time). Returns 0, or -1 if Redis went away (their callbacks then got
//  ERROR_UNAVAILABLE).
int store_send(store_t *self, int64_t now_ms);
//  The socket to poll for the reply of the batch in flight; -1 if none.
int store_fd(store_t *self);
bool store_busy(store_t *self);
//  Read the reply of the batch in flight (blocks until it is complete), send
//  the next batch, then run the first one's callbacks in order. Returns 0,
//  or -1 if Redis went away (unanswered calls got ERROR_UNAVAILABLE).
int store_receive(store_t *self, int64_t now_ms);
//  A batch in flight longer than command_timeout_ms: Redis is taken as lost
//  and its calls answered ERROR_UNAVAILABLE.
void store_check(store_t *self, int64_t now_ms);
//  Send and receive until nothing is queued (start-up, shutdown).
int store_flush(store_t *self, int64_t now_ms);

//  Helpers to read replies; NULL-safe, never assert on Redis data.
const char *store_str(const redisReply *r);            //  "" if not a string
uint64_t store_u64(const redisReply *r);               //  0 if not a number
redisReply *store_elem(const redisReply *r, size_t i); //  NULL if out of range

#endif
