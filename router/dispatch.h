/*  dispatch.h — who may take what: the connected workers and the plan that
    matches queued tickets to their free capacity.

    The router keeps, in memory, only what it needs to decide quickly: each
    worker's capacity and load, and each queue's depth as last reported by
    Redis. Which ticket a worker gets is decided inside Redis (store.lua,
    order()), so a decision costs the same with 100 or 100,000 tickets queued.
*/
#ifndef TIER_DISPATCH_H
#define TIER_DISPATCH_H

#include "config.h"
#include "tier.pb-c.h"
#include <czmq.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct _dispatch_t dispatch_t;
typedef struct _worker_t worker_t;

typedef struct {
    const char *agent;        //  agent id
    zframe_t *identity;       //  ROUTER identity of its connection (copied)
    int level;                //  1..3
    const char **departments; //  validated department names
    size_t department_count;
    uint32_t capacity; //  >= 1
    bool bot;
    uint32_t held; //  tickets Redis says it holds now
} worker_spec_t;

dispatch_t *dispatch_new(const config_t *config);
void dispatch_destroy(dispatch_t **self_p);

//  Add a worker, replacing any earlier one with the same agent id.
worker_t *dispatch_register(dispatch_t *self, const worker_spec_t *spec, int64_t now_ms);
void dispatch_remove(dispatch_t *self, const char *agent);
worker_t *dispatch_by_identity(dispatch_t *self, zframe_t *identity);
worker_t *dispatch_by_agent(dispatch_t *self, const char *agent);
size_t dispatch_workers(dispatch_t *self);

//  Worker accessors.
const char *worker_agent(const worker_t *worker);
zframe_t *worker_identity(const worker_t *worker);
void worker_seen(worker_t *worker, int64_t now_ms);
void worker_set_state(dispatch_t *self, worker_t *worker, Tier__V1__AgentState state);
Tier__V1__AgentState worker_state(const worker_t *worker);

//  Keep the picture current from the events every state change produces:
//  queue depths, and which agent gained or lost a ticket.
void dispatch_on_event(dispatch_t *self, const Tier__V1__Event *event);
//  A ticket is about to be queued (its intake is in the same batch): count
//  it now, so that the plan can ask for it in that very batch.
void dispatch_expect(dispatch_t *self, int level, const char *department);
//  Whether something changed since the last plan.
bool dispatch_dirty(const dispatch_t *self);
//  Set a queue's depth (from tier_queues at start and periodically).
void dispatch_set_depth(dispatch_t *self, int level, const char *department, uint32_t depth);

//  Plan offers: calls `assign` for each worker that should be offered
//  `count` more tickets from `queues` (names "L:dept"), longest-idle worker
//  first, one ticket per worker per round. The counts are reserved until
//  dispatch_assigned.
typedef void(dispatch_assign_fn)(void *arg, worker_t *worker, uint32_t count, char *const *queues,
                                 size_t queue_count);
void dispatch_plan(dispatch_t *self, dispatch_assign_fn *assign, void *arg);
//  The assignment of `asked` tickets for `agent` has been answered with
//  `got`. Fewer means the worker may take none of what its queues hold now
//  (per-channel limits): it is left out of plans until a ticket is queued in
//  one of its queues or it gives one back.
void dispatch_assigned(dispatch_t *self, const char *agent, uint32_t asked, uint32_t got);

//  Redis says `agent` holds `held` tickets (after a reconnect, when the
//  events of lost batches never came).
void dispatch_set_held(dispatch_t *self, const char *agent, uint32_t held);
//  Every connected worker, one after the other: first, then next until NULL.
worker_t *dispatch_first(dispatch_t *self);
worker_t *dispatch_next(dispatch_t *self);

//  Every queue name ("L:dept"), for listing and snapshots.
char *const *dispatch_queue_names(dispatch_t *self, size_t *count_p);

//  Liveness: the next worker silent for longer than silence_ms, or NULL.
worker_t *dispatch_next_silent(dispatch_t *self, int64_t now_ms, int64_t silence_ms);
//  Agents whose presence in Redis is due for renewal; marks them renewed.
size_t dispatch_due_renewals(dispatch_t *self, int64_t now_ms, int64_t interval_ms,
                             const char **agents, size_t max);

#endif
