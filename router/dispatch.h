/*  dispatch.h — who may take what: the connected workers and the plan that
    gives queued tickets to their free capacity.

    A worker is a connection that registered: its agent id, level and
    departments (the queues it serves), capacity, per-channel limits and
    presence state. What it holds is the book's (book_holder): the plan reads
    it there, so capacity is counted in one place only.

    dispatch_plan goes round the workers with free capacity, longest idle (or
    least loaded, per level) first, and asks the caller to give each one
    ticket per round; the caller (server.c) picks the best head of the
    worker's queues that its channel limits allow and offers it. A round
    costs the same with 100 or 1,000,000 tickets queued.
*/
#ifndef TIER_DISPATCH_H
#define TIER_DISPATCH_H

#include "book.h"
#include "config.h"
#include "tier.pb-c.h"

#include <czmq.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct _dispatch_t dispatch_t;
typedef struct _worker_t worker_t;

typedef struct {
    const char *agent;        //  agent id (interned)
    zframe_t *identity;       //  ROUTER identity of its connection (copied)
    int level;                //  1..3
    const char **departments; //  validated department names (interned)
    size_t department_count;
    uint32_t capacity; //  >= 1
    bool bot;
    uint32_t channel_capacity[BOOK_CHANNELS + 1]; //  0 = no limit of its own
} worker_spec_t;

dispatch_t *dispatch_new(const config_t *config, book_t *book);
void dispatch_destroy(dispatch_t **self_p);

//  Add a worker, replacing any earlier one with the same agent id or the
//  same connection.
worker_t *dispatch_register(dispatch_t *self, const worker_spec_t *spec, int64_t now_ms);
void dispatch_remove(dispatch_t *self, const char *agent);
worker_t *dispatch_by_identity(dispatch_t *self, const void *identity, size_t size);
worker_t *dispatch_by_agent(dispatch_t *self, const char *agent);
size_t dispatch_workers(dispatch_t *self);

//  Worker accessors.
const char *worker_agent(const worker_t *worker); //  interned
zframe_t *worker_identity(const worker_t *worker);
int worker_level(const worker_t *worker);
uint32_t worker_capacity(const worker_t *worker);
bool worker_bot(const worker_t *worker);
int64_t worker_last_seen(const worker_t *worker);
//  The departments it serves besides its level's general queue.
const char *const *worker_departments(const worker_t *worker, size_t *count_p);
//  Indexes of the book's queues it serves (its level's general queue first).
const int *worker_queues(const worker_t *worker, size_t *count_p);
void worker_seen(worker_t *worker, int64_t now_ms);
void worker_set_state(dispatch_t *self, worker_t *worker, Tier__V1__AgentState state);
Tier__V1__AgentState worker_state(const worker_t *worker);
//  Tickets it holds now (the book's count).
uint32_t worker_held(dispatch_t *self, const worker_t *worker);
//  Whether it may take one more ticket, and of which channels: allowed[c]
//  for c in 0..BOOK_CHANNELS. False when full, not ready, or every channel
//  is at its limit.
bool worker_room(dispatch_t *self, const worker_t *worker, bool *allowed);
//  The same for one channel (a promise coming due).
bool worker_room_for(dispatch_t *self, const worker_t *worker, int channel);

//  Something changed that may let a worker take a ticket: plan again.
void dispatch_changed(dispatch_t *self);
bool dispatch_dirty(const dispatch_t *self);

//  Give `worker` one ticket; true if it got one.
typedef bool(dispatch_pick_fn)(void *arg, worker_t *worker);
//  Plan (if something changed): one ticket per free worker per round, in
//  their order, until no worker gets one.
void dispatch_plan(dispatch_t *self, dispatch_pick_fn *pick, void *arg, int64_t now_ms);

//  Every connected worker, one after the other: first, then next until NULL.
worker_t *dispatch_first(dispatch_t *self);
worker_t *dispatch_next(dispatch_t *self);

//  Liveness: the next worker silent for longer than silence_ms, or NULL.
worker_t *dispatch_next_silent(dispatch_t *self, int64_t now_ms, int64_t silence_ms);
//  Agents whose presence in Redis is due for renewal; marks them renewed.
size_t dispatch_due_renewals(dispatch_t *self, int64_t now_ms, int64_t interval_ms,
                             const char **agents, size_t max);

#endif
