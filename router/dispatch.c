/*  dispatch.c — see dispatch.h. */
#include "dispatch.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LEVELS         3
#define IDENTITY_KEY   (2 * 255 + 1) //  hex of the longest ZeroMQ identity
#define QUEUE_NAME_MAX 128

struct _worker_t {
    char *agent;            //  agent id
    zframe_t *identity;     //  of its connection
    char key[IDENTITY_KEY]; //  identity in hex, the registry key
    int level;              //  1..3
    char **queues;          //  names of the queues it serves
    int *queue_index;       //  their slots in dispatch_t.depth
    size_t queue_count;
    uint32_t capacity;           //  most tickets held at once
    uint32_t held;               //  offered or assigned to it, per Redis
    uint32_t reserved;           //  asked for, not answered yet
    bool bot;                    //  automated
    Tier__V1__AgentState state;  //  only READY workers get offers
    int64_t last_seen_ms;        //  last message from it
    int64_t renewed_ms;          //  last presence renewal in Redis
    int64_t idle_since_ms;       //  when it last had a free slot appear
    bool stalled;                //  got fewer than asked: its queues' heads are not
                                 //  for it (channel limits) until something changes
    uint64_t stalled_generation; //  the sum of its queues' generations then
};

struct _dispatch_t {
    const config_t *config; //  departments
    zhashx_t *by_agent;     //  agent id -> worker_t (owns)
    zhashx_t *by_identity;  //  identity key -> worker_t
    char **queue_names;     //  every queue, "L:dept"
    uint32_t *depth;        //  last known depth per queue
    size_t queue_count;     //  LEVELS * (departments + 1)
    bool dirty;             //  something changed since the last plan
    worker_t **candidates;  //  scratch for dispatch_plan
    uint32_t *planned;      //  scratch: tickets planned per candidate
    uint32_t *remaining;    //  scratch: depth left per queue
    uint64_t *generation;   //  per queue: tickets queued so far
};

static int s_queue_slot(dispatch_t *self, int level, const char *department)
{
    if (level < 1 || level > LEVELS)
        return -1;
    int dept = *department ? config_department(self->config, department) : -1;
    if (*department && dept < 0)
        return -1;
    return (level - 1) * (self->config->department_count + 1) + dept + 1;
}

static void s_worker_destroy(void **item)
{
    worker_t *worker = *item;
    if (!worker)
        return;
    for (size_t i = 0; i < worker->queue_count; i++)
        free(worker->queues[i]);
    free(worker->queues);
    free(worker->queue_index);
    zframe_destroy(&worker->identity);
    free(worker->agent);
    free(worker);
    *item = NULL;
}

dispatch_t *dispatch_new(const config_t *config)
{
    dispatch_t *self = calloc(1, sizeof(dispatch_t));
    self->config = config;
    self->by_agent = zhashx_new();
    zhashx_set_destructor(self->by_agent, s_worker_destroy);
    self->by_identity = zhashx_new();
    self->queue_count = LEVELS * (config->department_count + 1);
    self->queue_names = calloc(self->queue_count, sizeof(char *));
    self->depth = calloc(self->queue_count, sizeof(uint32_t));
    self->remaining = calloc(self->queue_count, sizeof(uint32_t));
    self->generation = calloc(self->queue_count, sizeof(uint64_t));
    for (int level = 1; level <= LEVELS; level++)
        for (int d = -1; d < config->department_count; d++) {
            char name[QUEUE_NAME_MAX];
            snprintf(name, sizeof(name), "%d:%s", level, d < 0 ? "" : config->departments[d]);
            self->queue_names[s_queue_slot(self, level, d < 0 ? "" : config->departments[d])] =
                strdup(name);
        }
    return self;
}

void dispatch_destroy(dispatch_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    dispatch_t *self = *self_p;
    zhashx_destroy(&self->by_identity);
    zhashx_destroy(&self->by_agent);
    for (size_t i = 0; i < self->queue_count; i++)
        free(self->queue_names[i]);
    free(self->queue_names);
    free(self->depth);
    free(self->remaining);
    free(self->generation);
    free(self->candidates);
    free(self->planned);
    free(self);
    *self_p = NULL;
}

static void s_identity_key(zframe_t *identity, char *key)
{
    static const char hex[] = "0123456789abcdef";
    size_t size = zframe_size(identity);
    const byte *data = zframe_data(identity);
    for (size_t i = 0; i < size && i < IDENTITY_KEY / 2; i++) {
        *key++ = hex[data[i] >> 4];
        *key++ = hex[data[i] & 15];
    }
    *key = 0;
}

worker_t *dispatch_register(dispatch_t *self, const worker_spec_t *spec, int64_t now_ms)
{
    dispatch_remove(self, spec->agent);
    worker_t *worker = calloc(1, sizeof(worker_t));
    worker->agent = strdup(spec->agent);
    worker->identity = zframe_dup(spec->identity);
    s_identity_key(worker->identity, worker->key);
    worker->level = spec->level;
    worker->queues = calloc(spec->department_count + 1, sizeof(char *));
    worker->queue_index = calloc(spec->department_count + 1, sizeof(int));
    worker->queues[0] = strdup(self->queue_names[s_queue_slot(self, spec->level, "")]);
    worker->queue_index[0] = s_queue_slot(self, spec->level, "");
    worker->queue_count = 1;
    for (size_t i = 0; i < spec->department_count; i++) {
        int slot = s_queue_slot(self, spec->level, spec->departments[i]);
        if (slot < 0)
            continue; //  validated by the caller; never trust twice
        worker->queue_index[worker->queue_count] = slot;
        worker->queues[worker->queue_count++] = strdup(self->queue_names[slot]);
    }
    worker->capacity = spec->capacity;
    worker->held = spec->held;
    worker->bot = spec->bot;
    worker->state = TIER__V1__AGENT_STATE__AGENT_READY;
    worker->last_seen_ms = worker->renewed_ms = worker->idle_since_ms = now_ms;
    //  A worker replacing a connection that is still open takes its identity.
    worker_t *same_identity = zhashx_lookup(self->by_identity, worker->key);
    if (same_identity)
        dispatch_remove(self, same_identity->agent);
    zhashx_insert(self->by_agent, worker->agent, worker);
    zhashx_insert(self->by_identity, worker->key, worker);
    self->dirty = true;
    return worker;
}

void dispatch_remove(dispatch_t *self, const char *agent)
{
    worker_t *worker = zhashx_lookup(self->by_agent, agent);
    if (!worker)
        return;
    zhashx_delete(self->by_identity, worker->key);
    zhashx_delete(self->by_agent, agent);
}

worker_t *dispatch_by_identity(dispatch_t *self, zframe_t *identity)
{
    char key[IDENTITY_KEY];
    s_identity_key(identity, key);
    return zhashx_lookup(self->by_identity, key);
}

worker_t *dispatch_by_agent(dispatch_t *self, const char *agent)
{
    return zhashx_lookup(self->by_agent, agent);
}

size_t dispatch_workers(dispatch_t *self)
{
    return zhashx_size(self->by_agent);
}

const char *worker_agent(const worker_t *worker)
{
    return worker->agent;
}

zframe_t *worker_identity(const worker_t *worker)
{
    return worker->identity;
}

void worker_seen(worker_t *worker, int64_t now_ms)
{
    worker->last_seen_ms = now_ms;
}

Tier__V1__AgentState worker_state(const worker_t *worker)
{
    return worker->state;
}

void worker_set_state(dispatch_t *self, worker_t *worker, Tier__V1__AgentState state)
{
    worker->state = state;
    self->dirty = true;
}

void dispatch_expect(dispatch_t *self, int level, const char *department)
{
    int slot = s_queue_slot(self, level, department);
    if (slot < 0)
        return;
    self->depth[slot]++;
    self->generation[slot]++;
    self->dirty = true;
}

bool dispatch_dirty(const dispatch_t *self)
{
    return self->dirty;
}

void dispatch_set_depth(dispatch_t *self, int level, const char *department, uint32_t depth)
{
    int slot = s_queue_slot(self, level, department);
    if (slot < 0)
        return;
    self->depth[slot] = depth;
    if (depth)
        self->dirty = true;
}

static bool s_releases_agent(Tier__V1__EventKind kind)
{
    return kind == TIER__V1__EVENT_KIND__EVENT_RESOLVED ||
           kind == TIER__V1__EVENT_KIND__EVENT_ESCALATED ||
           kind == TIER__V1__EVENT_KIND__EVENT_RELEASED ||
           kind == TIER__V1__EVENT_KIND__EVENT_REQUEUED ||
           kind == TIER__V1__EVENT_KIND__EVENT_ABANDONED ||
           kind == TIER__V1__EVENT_KIND__EVENT_DEFERRED;
}

static uint64_t s_generation(const dispatch_t *self, const worker_t *worker)
{
    uint64_t sum = 0;
    for (size_t q = 0; q < worker->queue_count; q++)
        sum += self->generation[worker->queue_index[q]];
    return sum;
}

void dispatch_on_event(dispatch_t *self, const Tier__V1__Event *event)
{
    if (event->kind == TIER__V1__EVENT_KIND__EVENT_QUEUED) {
        int slot = s_queue_slot(self, event->level, event->department);
        if (slot >= 0)
            self->generation[slot]++;
    }
    if (event->kind == TIER__V1__EVENT_KIND__EVENT_QUEUE) {
        dispatch_set_depth(self, event->level, event->department, event->depth);
        return;
    }
    if (!*event->agent)
        return;
    worker_t *worker = zhashx_lookup(self->by_agent, event->agent);
    if (!worker)
        return;
    if (event->kind == TIER__V1__EVENT_KIND__EVENT_OFFERED) {
        worker->held++;
        worker->idle_since_ms = (int64_t) event->at_ms; //  last activity, for longest idle
    } else if (s_releases_agent(event->kind) && worker->held > 0) {
        worker->held--;
        worker->idle_since_ms = (int64_t) event->at_ms;
        worker->stalled = false;
        self->dirty = true;
    }
}

static uint32_t s_free(const worker_t *worker)
{
    uint32_t busy = worker->held + worker->reserved;
    if (worker->state != TIER__V1__AGENT_STATE__AGENT_READY || busy >= worker->capacity)
        return 0;
    return worker->capacity - busy;
}

//  Candidates in the order they get work: by level, then by the level's
//  strategy (longest idle, or least loaded), then by agent id for ties.
static const config_t *s_order_config; //  qsort has no context argument

static int s_candidate_order(const void *a, const void *b)
{
    const worker_t *x = *(worker_t *const *) a, *y = *(worker_t *const *) b;
    if (x->level != y->level)
        return x->level < y->level ? -1 : 1;
    if (s_order_config->strategy[x->level] == STRATEGY_LEAST_LOADED) {
        //  load as a share of capacity, compared without division
        uint64_t lx = (uint64_t) (x->held + x->reserved) * y->capacity;
        uint64_t ly = (uint64_t) (y->held + y->reserved) * x->capacity;
        if (lx != ly)
            return lx < ly ? -1 : 1;
    }
    if (x->idle_since_ms != y->idle_since_ms)
        return x->idle_since_ms < y->idle_since_ms ? -1 : 1;
    return strcmp(x->agent, y->agent);
}

//  Take one ticket from the first of the worker's queues that has any left.
static bool s_take_one(dispatch_t *self, const worker_t *worker)
{
    for (size_t q = 0; q < worker->queue_count; q++)
        if (self->remaining[worker->queue_index[q]] > 0) {
            self->remaining[worker->queue_index[q]]--;
            return true;
        }
    return false;
}

static size_t s_candidates(dispatch_t *self)
{
    size_t count = 0, workers = zhashx_size(self->by_agent);
    self->candidates = realloc(self->candidates, (workers + 1) * sizeof(worker_t *));
    self->planned = realloc(self->planned, (workers + 1) * sizeof(uint32_t));
    for (worker_t *w = zhashx_first(self->by_agent); w; w = zhashx_next(self->by_agent)) {
        if (w->stalled && w->stalled_generation == s_generation(self, w))
            continue;
        w->stalled = false;
        if (s_free(w) > 0)
            self->candidates[count++] = w;
    }
    s_order_config = self->config;
    qsort(self->candidates, count, sizeof(worker_t *), s_candidate_order);
    memset(self->planned, 0, count * sizeof(uint32_t));
    return count;
}

void dispatch_plan(dispatch_t *self, dispatch_assign_fn *assign, void *arg)
{
    if (!self->dirty)
        return;
    self->dirty = false;
    memcpy(self->remaining, self->depth, self->queue_count * sizeof(uint32_t));
    size_t count = s_candidates(self);
    //  Round robin: one ticket per worker per round, so a burst spreads over
    //  every free agent instead of filling the first one up.
    bool progress = true;
    while (progress) {
        progress = false;
        for (size_t i = 0; i < count; i++) {
            worker_t *w = self->candidates[i];
            if (self->planned[i] < s_free(w) && s_take_one(self, w)) {
                self->planned[i]++;
                progress = true;
            }
        }
    }
    for (size_t i = 0; i < count; i++) {
        if (!self->planned[i])
            continue;
        worker_t *w = self->candidates[i];
        w->reserved += self->planned[i];
        assign(arg, w, self->planned[i], w->queues, w->queue_count);
    }
}

void dispatch_assigned(dispatch_t *self, const char *agent, uint32_t asked, uint32_t got)
{
    worker_t *worker = zhashx_lookup(self->by_agent, agent);
    if (!worker)
        return;
    if (got < asked) {
        worker->stalled = true;
        worker->stalled_generation = s_generation(self, worker);
    }
    //  Fewer may have come than asked: the queue events of the same reply
    //  then brought the true depths, and set dirty if anything is left.
    worker->reserved = worker->reserved > asked ? worker->reserved - asked : 0;
}

void dispatch_set_held(dispatch_t *self, const char *agent, uint32_t held)
{
    worker_t *worker = zhashx_lookup(self->by_agent, agent);
    if (!worker || worker->held == held)
        return;
    worker->held = held;
    worker->stalled = false;
    self->dirty = true;
}

worker_t *dispatch_first(dispatch_t *self)
{
    return zhashx_first(self->by_agent);
}

worker_t *dispatch_next(dispatch_t *self)
{
    return zhashx_next(self->by_agent);
}

char *const *dispatch_queue_names(dispatch_t *self, size_t *count_p)
{
    *count_p = self->queue_count;
    return self->queue_names;
}

worker_t *dispatch_next_silent(dispatch_t *self, int64_t now_ms, int64_t silence_ms)
{
    for (worker_t *w = zhashx_first(self->by_agent); w; w = zhashx_next(self->by_agent))
        if (now_ms - w->last_seen_ms > silence_ms)
            return w;
    return NULL;
}

size_t dispatch_due_renewals(dispatch_t *self, int64_t now_ms, int64_t interval_ms,
                             const char **agents, size_t max)
{
    size_t count = 0;
    for (worker_t *w = zhashx_first(self->by_agent); w && count < max;
         w = zhashx_next(self->by_agent))
        if (now_ms - w->renewed_ms >= interval_ms) {
            w->renewed_ms = now_ms;
            agents[count++] = w->agent;
        }
    return count;
}
