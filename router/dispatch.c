/*  dispatch.c — see dispatch.h. */
#include "dispatch.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define IDENTITY_KEY (2 * 255 + 1) //  hex of the longest ZeroMQ identity

struct _worker_t {
    const char *agent;      //  agent id (interned)
    zframe_t *identity;     //  of its connection
    char key[IDENTITY_KEY]; //  identity in hex, the registry key
    int level;              //  1..3
    const char **departments;
    size_t department_count;
    int *queues; //  book queue indexes it serves
    size_t queue_count;
    uint32_t capacity; //  most tickets held at once
    uint32_t channel_capacity[BOOK_CHANNELS + 1];
    bool limited;               //  some channel has a limit
    bool bot;                   //  automated
    Tier__V1__AgentState state; //  only READY workers get offers
    int64_t last_seen_ms;       //  last message from it
    int64_t renewed_ms;         //  last presence renewal in Redis
    int64_t idle_since_ms;      //  when it last got a ticket
};

struct _dispatch_t {
    const config_t *config;
    book_t *book;
    zhashx_t *by_agent;    //  agent id -> worker_t (owns)
    zhashx_t *by_identity; //  identity key -> worker_t
    bool dirty;            //  something changed since the last plan
    worker_t **candidates; //  scratch for dispatch_plan
    size_t candidates_size;
};

static void s_worker_destroy(void **item)
{
    worker_t *worker = *item;
    if (!worker)
        return;
    free(worker->departments);
    free(worker->queues);
    zframe_destroy(&worker->identity);
    free(worker);
    *item = NULL;
}

dispatch_t *dispatch_new(const config_t *config, book_t *book)
{
    dispatch_t *self = calloc(1, sizeof(dispatch_t));
    if (!self)
        return NULL;
    self->config = config;
    self->book = book;
    self->by_agent = zhashx_new();
    zhashx_set_destructor(self->by_agent, s_worker_destroy);
    self->by_identity = zhashx_new();
    return self;
}

void dispatch_destroy(dispatch_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    dispatch_t *self = *self_p;
    zhashx_destroy(&self->by_identity);
    zhashx_destroy(&self->by_agent);
    free(self->candidates);
    free(self);
    *self_p = NULL;
}

static void s_identity_key(const void *identity, size_t size, char *key)
{
    static const char hex[] = "0123456789abcdef";
    const byte *data = identity;
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
    if (!worker) {
        log_error("out of memory registering %s", spec->agent);
        abort();
    }
    worker->agent = spec->agent;
    worker->identity = zframe_dup(spec->identity);
    s_identity_key(zframe_data(worker->identity), zframe_size(worker->identity), worker->key);
    worker->level = spec->level;
    worker->departments = calloc(spec->department_count + 1, sizeof(char *));
    worker->queues = calloc(spec->department_count + 1, sizeof(int));
    worker->queues[worker->queue_count++] = book_queue_index(self->book, spec->level, NULL);
    for (size_t i = 0; i < spec->department_count; i++) {
        int q = book_queue_index(self->book, spec->level, spec->departments[i]);
        if (q < 0)
            continue; //  validated by the caller; never trust twice
        worker->departments[worker->department_count++] = spec->departments[i];
        worker->queues[worker->queue_count++] = q;
    }
    worker->capacity = spec->capacity;
    for (int c = 0; c <= BOOK_CHANNELS; c++) {
        worker->channel_capacity[c] = spec->channel_capacity[c];
        worker->limited = worker->limited || spec->channel_capacity[c];
    }
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

worker_t *dispatch_by_identity(dispatch_t *self, const void *identity, size_t size)
{
    char key[IDENTITY_KEY];
    s_identity_key(identity, size, key);
    return zhashx_lookup(self->by_identity, key);
}

worker_t *dispatch_by_agent(dispatch_t *self, const char *agent)
{
    return agent ? zhashx_lookup(self->by_agent, agent) : NULL;
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

int worker_level(const worker_t *worker)
{
    return worker->level;
}

uint32_t worker_capacity(const worker_t *worker)
{
    return worker->capacity;
}

bool worker_bot(const worker_t *worker)
{
    return worker->bot;
}

int64_t worker_last_seen(const worker_t *worker)
{
    return worker->last_seen_ms;
}

const char *const *worker_departments(const worker_t *worker, size_t *count_p)
{
    *count_p = worker->department_count;
    return worker->departments;
}

const int *worker_queues(const worker_t *worker, size_t *count_p)
{
    *count_p = worker->queue_count;
    return worker->queues;
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

uint32_t worker_held(dispatch_t *self, const worker_t *worker)
{
    holder_t *h = book_holder(self->book, worker->agent);
    return h ? h->held : 0;
}

bool worker_room(dispatch_t *self, const worker_t *worker, bool *allowed)
{
    if (worker->state != TIER__V1__AGENT_STATE__AGENT_READY)
        return false;
    holder_t *h = book_holder(self->book, worker->agent);
    if (h && h->held >= worker->capacity)
        return false;
    bool any = false;
    for (int c = 0; c <= BOOK_CHANNELS; c++) {
        uint32_t cap = worker->channel_capacity[c];
        allowed[c] = !cap || !h || h->per_channel[c] < cap;
        any = any || allowed[c];
    }
    return any;
}

bool worker_room_for(dispatch_t *self, const worker_t *worker, int channel)
{
    bool allowed[BOOK_CHANNELS + 1];
    return worker_room(self, worker, allowed) && channel >= 0 && channel <= BOOK_CHANNELS &&
           allowed[channel];
}

void dispatch_changed(dispatch_t *self)
{
    self->dirty = true;
}

bool dispatch_dirty(const dispatch_t *self)
{
    return self->dirty;
}

//  Candidates in the order they get work: by level, then by the level's
//  strategy (longest idle, or least loaded), then by agent id for ties.
typedef struct {
    const config_t *config;
    book_t *book;
} order_ctx_t;
static order_ctx_t s_order; //  qsort has no context argument

static uint32_t s_held_of(const worker_t *w)
{
    holder_t *h = book_holder(s_order.book, w->agent);
    return h ? h->held : 0;
}

static int s_candidate_order(const void *a, const void *b)
{
    const worker_t *x = *(worker_t *const *) a, *y = *(worker_t *const *) b;
    if (x->level != y->level)
        return x->level < y->level ? -1 : 1;
    if (s_order.config->strategy[x->level] == STRATEGY_LEAST_LOADED) {
        //  load as a share of capacity, compared without division
        uint64_t lx = (uint64_t) s_held_of(x) * y->capacity;
        uint64_t ly = (uint64_t) s_held_of(y) * x->capacity;
        if (lx != ly)
            return lx < ly ? -1 : 1;
    }
    if (x->idle_since_ms != y->idle_since_ms)
        return x->idle_since_ms < y->idle_since_ms ? -1 : 1;
    return strcmp(x->agent, y->agent);
}

void dispatch_plan(dispatch_t *self, dispatch_pick_fn *pick, void *arg, int64_t now_ms)
{
    if (!self->dirty)
        return;
    self->dirty = false;
    size_t workers = zhashx_size(self->by_agent), count = 0;
    if (workers + 1 > self->candidates_size) {
        self->candidates_size = workers + 1;
        self->candidates = realloc(self->candidates, self->candidates_size * sizeof(worker_t *));
    }
    bool allowed[BOOK_CHANNELS + 1];
    for (worker_t *w = zhashx_first(self->by_agent); w; w = zhashx_next(self->by_agent))
        if (worker_room(self, w, allowed))
            self->candidates[count++] = w;
    s_order = (order_ctx_t){self->config, self->book};
    qsort(self->candidates, count, sizeof(worker_t *), s_candidate_order);
    //  Round robin: one ticket per worker per round, so a burst spreads over
    //  every free agent instead of filling the first one up.
    while (count) {
        size_t kept = 0;
        for (size_t i = 0; i < count; i++) {
            worker_t *w = self->candidates[i];
            if (pick(arg, w)) {
                w->idle_since_ms = now_ms;
                if (worker_room(self, w, allowed))
                    self->candidates[kept++] = w;
            }
        }
        count = kept;
    }
}

worker_t *dispatch_first(dispatch_t *self)
{
    return zhashx_first(self->by_agent);
}

worker_t *dispatch_next(dispatch_t *self)
{
    return zhashx_next(self->by_agent);
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
