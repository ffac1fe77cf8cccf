/*  loader.c — see loader.h.

    Each phase queues its reads in the journal's filling batch and one
    outbox item that gets their replies once they come; a generation number
    makes items of an earlier start (before Redis was lost again) do nothing.
*/
#include "loader.h"
#include "log.h"
#include "tier.pb-c.h"

#include <czmq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK       5000 //  queued tickets read per round trip
#define ID_TEXT_MAX 24
#define SCORE_TEXT  32

typedef struct {
    loader_t *loader;
    uint64_t gen;
    uint32_t first; //  index of the first read
    uint32_t count; //  reads
    int queue;      //  the queue a chunk is of
    int64_t upto;   //  the chunk's new boundary
    bool last;      //  the chunk is the queue's last
} step_t;

typedef struct {
    const char *agent; //  interned
    int64_t seen_ms;
    uint64_t *held; //  the ids of its held set (owned)
    size_t held_count;
} known_t;

typedef struct {
    bool started;      //  a chunk is being read
    bool done;         //  every member loaded
    int64_t upto;      //  loaded through this score
    bool from_start;   //  no chunk read yet: start at -inf inclusive
    uint32_t unloaded; //  members not loaded yet (ZCARD less those read)
} progress_t;

struct loader {
    loader_config_t config;
    uint64_t gen;
    bool ready;
    int64_t started_ms; //  when loader_start ran
    bool told;          //  "every queued ticket loaded" was logged
    uint64_t seq;
    int64_t rolled_upto; //  P k:done
    uint64_t loaded;
    known_t *agents;
    size_t agent_count;
    progress_t *queues;
    size_t queue_count;
};

loader_t *loader_new(const loader_config_t *config)
{
    loader_t *self = calloc(1, sizeof(loader_t));
    if (!self)
        return NULL;
    self->config = *config;
    return self;
}

static void s_agents_free(loader_t *self)
{
    for (size_t i = 0; i < self->agent_count; i++)
        free(self->agents[i].held);
    free(self->agents);
    self->agents = NULL;
    self->agent_count = 0;
}

void loader_destroy(loader_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    s_agents_free(*self_p);
    free((*self_p)->queues);
    free(*self_p);
    *self_p = NULL;
}

bool loader_ready(const loader_t *self)
{
    return self->ready;
}

int64_t loader_rolled_upto(const loader_t *self)
{
    return self->rolled_upto;
}

uint64_t loader_loaded(const loader_t *self)
{
    return self->loaded;
}

bool loader_complete(const loader_t *self)
{
    if (!self->ready)
        return false;
    for (size_t q = 0; q < self->queue_count; q++)
        if (!self->queues[q].done)
            return false;
    return true;
}

static const redisReply *s_reply(loader_t *self, uint32_t i)
{
    return journal_reply(self->config.journal, i);
}

static bool s_current(const step_t *step)
{
    return step->gen == step->loader->gen;
}

static void s_fail(loader_t *self, const char *why)
{
    self->gen++; //  whatever is still in flight does nothing
    if (self->config.failed)
        self->config.failed(self->config.arg, why);
}

//  A ticket read back; stale index entries are removed from Redis.
static ticket_t *s_load(loader_t *self, const redisReply *value, int64_t now_ms)
{
    size_t len = journal_len(value);
    if (!len)
        return NULL;
    ticket_t *t = book_load(self->config.book, (const uint8_t *) journal_str(value), len, now_ms);
    if (t) {
        lifecycle_loaded(self->config.lifecycle, now_ms, t);
        self->loaded++;
    }
    return t;
}

static void s_write_rem(loader_t *self, const char *command, const char *key_a, const char *key_b,
                        const char *member)
{
    journal_t *j = self->config.journal;
    journal_write(j, 3);
    journal_arg_str(j, command);
    journal_arg_key(j, key_a, key_b);
    journal_arg_str(j, member);
}

//  ---------------------------------------------------------------------------
//  Queues, chunk by chunk

static void s_on_chunk_tickets(void *arg, outbox_batch_t *batch, void *payload,
                               const redisReply *reply, bool committed);
static void s_on_chunk_range(void *arg, outbox_batch_t *batch, void *payload,
                             const redisReply *reply, bool committed);

static void s_format_score(int64_t score, bool exclusive, char *out)
{
    snprintf(out, SCORE_TEXT, "%s%lld", exclusive ? "(" : "", (long long) score);
}

//  ZRANGE P q:NAME (upto +inf BYSCORE LIMIT 0 CHUNK WITHSCORES
static void s_read_chunk(loader_t *self, int queue)
{
    progress_t *p = &self->queues[queue];
    queue_t *q = book_queue(self->config.book, (size_t) queue);
    journal_t *j = self->config.journal;
    char from[SCORE_TEXT];
    if (p->from_start)
        snprintf(from, sizeof(from), "-inf");
    else
        s_format_score(p->upto, true, from);
    uint32_t read = journal_read(j, 9);
    journal_arg_str(j, "ZRANGE");
    journal_arg_key(j, "q:", q->name);
    journal_arg_str(j, from);
    journal_arg_str(j, "+inf");
    journal_arg_str(j, "BYSCORE");
    journal_arg_str(j, "LIMIT");
    journal_arg_str(j, "0");
    journal_arg_u64(j, CHUNK);
    journal_arg_str(j, "WITHSCORES");
    step_t step = {self, self->gen, read, 1, queue, 0, false};
    outbox_add(self->config.outbox, s_on_chunk_range, &step, sizeof(step), read);
    p->started = true;
}

//  Every member with exactly this score (many tickets may share one).
static void s_read_ties(loader_t *self, int queue, int64_t score)
{
    queue_t *q = book_queue(self->config.book, (size_t) queue);
    journal_t *j = self->config.journal;
    char text[SCORE_TEXT];
    s_format_score(score, false, text);
    uint32_t read = journal_read(j, 6);
    journal_arg_str(j, "ZRANGE");
    journal_arg_key(j, "q:", q->name);
    journal_arg_str(j, text);
    journal_arg_str(j, text);
    journal_arg_str(j, "BYSCORE");
    journal_arg_str(j, "WITHSCORES");
    step_t step = {self, self->gen, read, 1, queue, score, false};
    outbox_add(self->config.outbox, s_on_chunk_range, &step, sizeof(step), read);
}

//  MGET the members [from, to) of a WITHSCORES reply that are not loaded.
static void s_read_members(loader_t *self, const redisReply *range, size_t from, size_t to,
                           int queue, int64_t upto, bool last)
{
    book_t *book = self->config.book;
    size_t wanted = 0;
    for (size_t i = from; i < to; i++)
        if (!book_ticket(book, journal_u64(journal_elem(range, 2 * i))))
            wanted++;
    if (!wanted) {
        step_t step = {self, self->gen, OUTBOX_NO_READ, 0, queue, upto, last};
        s_on_chunk_tickets(NULL, NULL, &step, NULL, true);
        return;
    }
    journal_t *j = self->config.journal;
    uint32_t read = journal_read(j, 1 + (int) wanted);
    journal_arg_str(j, "MGET");
    for (size_t i = from; i < to; i++) {
        uint64_t id = journal_u64(journal_elem(range, 2 * i));
        if (!book_ticket(book, id))
            journal_arg_key_u64(j, "tk:", id);
    }
    step_t step = {self, self->gen, read, 1, queue, upto, last};
    outbox_add(self->config.outbox, s_on_chunk_tickets, &step, sizeof(step), read);
}

static void s_on_chunk_range(void *arg, outbox_batch_t *batch, void *payload,
                             const redisReply *reply, bool committed)
{
    (void) arg;
    (void) batch;
    step_t *step = payload;
    loader_t *self = step->loader;
    if (!committed || !s_current(step))
        return;
    progress_t *p = &self->queues[step->queue];
    size_t n = reply && reply->type == REDIS_REPLY_ARRAY ? reply->elements / 2 : 0;
    if (step->upto && n) { //  the ties of one score
        s_read_members(self, reply, 0, n, step->queue, step->upto, false);
        return;
    }
    if (n < CHUNK) { //  the queue's last chunk
        s_read_members(self, reply, 0, n, step->queue, 0, true);
        return;
    }
    int64_t first = strtoll(journal_str(journal_elem(reply, 1)), NULL, 10);
    int64_t last = strtoll(journal_str(journal_elem(reply, 2 * n - 1)), NULL, 10);
    if (first == last) {
        s_read_ties(self, step->queue, last);
        return;
    }
    //  Members scored `last` may go on past the chunk: take them next time.
    size_t keep = n;
    while (keep > 0 && strtoll(journal_str(journal_elem(reply, 2 * keep - 1)), NULL, 10) == last)
        keep--;
    int64_t upto = strtoll(journal_str(journal_elem(reply, 2 * keep - 1)), NULL, 10);
    s_read_members(self, reply, 0, keep, step->queue, upto, false);
    (void) p;
}

static void s_on_chunk_tickets(void *arg, outbox_batch_t *batch, void *payload,
                               const redisReply *reply, bool committed)
{
    (void) arg;
    (void) batch;
    step_t *step = payload;
    loader_t *self = step->loader;
    if (!committed || !s_current(step))
        return;
    int64_t now_ms = zclock_time();
    progress_t *p = &self->queues[step->queue];
    queue_t *q = book_queue(self->config.book, (size_t) step->queue);
    for (size_t i = 0; reply && i < reply->elements; i++) {
        ticket_t *t = s_load(self, reply->element[i], now_ms);
        if (p->unloaded)
            p->unloaded--;
        if (!t && journal_len(reply->element[i]) == 0)
            continue; //  a member without its ticket: left for the next start
        (void) t;
    }
    (void) q;
    p->started = false;
    p->from_start = false;
    if (step->last) {
        p->done = true;
        p->unloaded = 0;
    } else
        p->upto = step->upto;
    book_loading(self->config.book, (size_t) step->queue, p->unloaded, p->upto, p->done);
    if (self->ready && !self->told && loader_complete(self)) {
        self->told = true;
        log_notice("every queued ticket loaded in %lld ms: %zu tickets in memory",
                   (long long) (zclock_time() - self->started_ms), book_count(self->config.book));
    }
    if (!self->ready) {
        //  The first chunk of every queue makes the router ready.
        for (size_t i = 0; i < self->queue_count; i++)
            if (self->queues[i].started)
                return;
        self->ready = true;
        log_notice("state loaded in %lld ms: %zu tickets in memory, %llu last id; "
                   "dispatching%s",
                   (long long) (zclock_time() - self->started_ms), book_count(self->config.book),
                   (unsigned long long) lifecycle_last_id(self->config.lifecycle),
                   loader_complete(self) ? "" : " (queues still loading)");
        if (self->config.ready)
            self->config.ready(self->config.arg, self->seq);
    }
}

void loader_step(loader_t *self, int64_t now_ms)
{
    (void) now_ms;
    if (!self->ready)
        return;
    for (size_t q = 0; q < self->queue_count; q++)
        if (!self->queues[q].done && !self->queues[q].started)
            s_read_chunk(self, (int) q);
}

//  ---------------------------------------------------------------------------
//  Phases 1 to 3

static void s_on_held(void *arg, outbox_batch_t *batch, void *payload, const redisReply *reply,
                      bool committed);

//  The queues: counts and first chunks.
static void s_read_queues(loader_t *self)
{
    book_t *book = self->config.book;
    self->queue_count = book_queue_count(book);
    free(self->queues);
    self->queues = calloc(self->queue_count + 1, sizeof(progress_t));
    journal_t *j = self->config.journal;
    for (size_t q = 0; q < self->queue_count; q++) {
        self->queues[q].from_start = true;
        uint32_t read = journal_read(j, 2);
        journal_arg_str(j, "ZCARD");
        journal_arg_key(j, "q:", book_queue(book, q)->name);
        self->queues[q].unloaded = 0;
        (void) read;
    }
}

static void s_on_phase2(void *arg, outbox_batch_t *batch, void *payload, const redisReply *reply,
                        bool committed)
{
    (void) arg;
    (void) batch;
    (void) reply;
    step_t *step = payload;
    loader_t *self = step->loader;
    if (!committed || !s_current(step))
        return;
    book_t *book = self->config.book;
    journal_t *j = self->config.journal;
    int64_t now_ms = zclock_time();
    uint32_t r = step->first;
    //  Per agent: HMGET a:A bot misses, SMEMBERS w:A.
    size_t held_total = 0;
    for (size_t i = 0; i < self->agent_count; i++) {
        const redisReply *fields = s_reply(self, r++);
        const redisReply *held = s_reply(self, r++);
        holder_t *h = book_holder_get(book, self->agents[i].agent);
        h->bot = strcmp(journal_str(journal_elem(fields, 0)), "1") == 0;
        h->misses = (uint32_t) journal_u64(journal_elem(fields, 1));
        //  A full lease from now, not from its last renewal: the router may
        //  have been down (or taken over after the lock's lease) longer than
        //  that, and the agent must have its chance to register again.
        h->lease_until_ms = now_ms + self->config.lease_ms;
        size_t n = held && held->type == REDIS_REPLY_ARRAY ? held->elements : 0;
        self->agents[i].held = calloc(n + 1, sizeof(uint64_t));
        self->agents[i].held_count = n;
        for (size_t k = 0; k < n; k++)
            self->agents[i].held[k] = journal_u64(held->element[k]);
        held_total += n;
    }
    //  Deferred tickets.
    const redisReply *deferred = s_reply(self, r++);
    for (size_t i = 0; deferred && i < deferred->elements; i++)
        s_load(self, deferred->element[i], now_ms);
    //  Queue depths.
    for (size_t q = 0; q < self->queue_count; q++)
        self->queues[q].unloaded = (uint32_t) journal_u64(s_reply(self, r++));
    //  Phase 3: the held tickets, agent by agent (to check each against the
    //  set it was found in), then the first chunk of every queue.
    uint32_t first = 0, count = 0;
    for (size_t i = 0; i < self->agent_count; i++) {
        size_t n = self->agents[i].held_count;
        //  MGET needs a key: an agent holding nothing reads "P tk:" (nil).
        uint32_t read = journal_read(j, 1 + (int) (n ? n : 1));
        journal_arg_str(j, "MGET");
        if (!n)
            journal_arg_key(j, "tk:", "");
        for (size_t k = 0; k < n; k++)
            journal_arg_key_u64(j, "tk:", self->agents[i].held[k]);
        if (!count)
            first = read;
        count++;
    }
    step_t next = {self, self->gen, first, count, 0, 0, false};
    outbox_add(self->config.outbox, s_on_held, &next, sizeof(next), OUTBOX_NO_READ);
    for (size_t q = 0; q < self->queue_count; q++)
        s_read_chunk(self, (int) q);
    (void) held_total;
    if (!self->queue_count) {
        self->ready = true;
        if (self->config.ready)
            self->config.ready(self->config.arg, self->seq);
    }
}

static void s_on_held(void *arg, outbox_batch_t *batch, void *payload, const redisReply *reply,
                      bool committed)
{
    (void) arg;
    (void) batch;
    (void) reply;
    step_t *step = payload;
    loader_t *self = step->loader;
    if (!committed || !s_current(step))
        return;
    int64_t now_ms = zclock_time();
    book_t *book = self->config.book;
    for (uint32_t i = 0; i < step->count && i < self->agent_count; i++) {
        const redisReply *tickets = s_reply(self, step->first + i);
        const known_t *known = &self->agents[i];
        for (size_t k = 0; k < known->held_count; k++) {
            s_load(self, journal_elem(tickets, k), now_ms);
            ticket_t *t = book_ticket(book, known->held[k]);
            if (t && t->holder == known->agent)
                continue;
            //  The set names a ticket that says otherwise (or is gone): the
            //  ticket is right, the set entry is a leftover.
            char id[ID_TEXT_MAX];
            snprintf(id, sizeof(id), "%llu", (unsigned long long) known->held[k]);
            s_write_rem(self, "SREM", "w:", known->agent, id);
        }
    }
}

static void s_on_phase1(void *arg, outbox_batch_t *batch, void *payload, const redisReply *reply,
                        bool committed)
{
    (void) arg;
    (void) batch;
    (void) reply;
    step_t *step = payload;
    loader_t *self = step->loader;
    if (!committed || !s_current(step))
        return;
    book_t *book = self->config.book;
    journal_t *j = self->config.journal;
    uint32_t r = step->first;
    const redisReply *format = s_reply(self, r++);
    const redisReply *nextid = s_reply(self, r++);
    const redisReply *seq = s_reply(self, r++);
    const redisReply *agents = s_reply(self, r++);
    const redisReply *deferred = s_reply(self, r++);
    const redisReply *queues = s_reply(self, r++);
    const redisReply *rolled = s_reply(self, r++);
    const redisReply *xf = s_reply(self, r++);
    self->rolled_upto =
        rolled && rolled->type == REDIS_REPLY_STRING ? strtoll(rolled->str, NULL, 10) : -1;
    if (format && format->type == REDIS_REPLY_NIL && nextid && nextid->type != REDIS_REPLY_NIL) {
        s_fail(self, "this Redis prefix holds tierd data of an earlier format (ticket hashes, "
                     "format 1) that this tierd cannot read: let the old router drain it, or "
                     "give this one another [redis] prefix");
        return;
    }
    if (format && format->type != REDIS_REPLY_NIL && strcmp(journal_str(format), STORE_FORMAT)) {
        char why[160];
        snprintf(why, sizeof(why),
                 "this Redis prefix holds tierd data of format %.20s; this "
                 "tierd reads format " STORE_FORMAT,
                 journal_str(format));
        s_fail(self, why);
        return;
    }
    if (!format || format->type == REDIS_REPLY_NIL) {
        journal_write(j, 3);
        journal_arg_str(j, "SET");
        journal_arg_key(j, "format", NULL);
        journal_arg_str(j, STORE_FORMAT);
    }
    lifecycle_set_next_id(self->config.lifecycle, journal_u64(nextid));
    if (self->config.filter)
        filter_load(self->config.filter, (const uint8_t *) journal_str(xf), journal_len(xf),
                    journal_u64(nextid) == 0, j);
    self->seq = journal_u64(seq);
    //  Queues Redis knows besides the configured ones.
    for (size_t i = 0; queues && i < queues->elements; i++) {
        const char *name = journal_str(queues->element[i]);
        int level = name[0] - '0';
        const char *colon = strchr(name, ':');
        if (level < 1 || level > BOOK_LEVELS || !colon)
            continue;
        const char *dept = intern_name(book_intern(book), colon + 1, strlen(colon + 1));
        book_queue_ensure(book, level, dept);
    }
    //  Agents and what they hold.
    s_agents_free(self);
    self->agent_count = agents && agents->type == REDIS_REPLY_ARRAY ? agents->elements / 2 : 0;
    self->agents = calloc(self->agent_count + 1, sizeof(known_t));
    uint32_t first = 0;
    bool any = false;
    for (size_t i = 0; i < self->agent_count; i++) {
        const char *agent = journal_str(agents->element[2 * i]);
        self->agents[i].agent = intern_name(book_intern(book), agent, strlen(agent));
        self->agents[i].seen_ms = (int64_t) journal_u64(agents->element[2 * i + 1]);
        uint32_t read = journal_read(j, 4);
        journal_arg_str(j, "HMGET");
        journal_arg_key(j, "a:", agent);
        journal_arg_str(j, "bot");
        journal_arg_str(j, "misses");
        journal_read(j, 2);
        journal_arg_str(j, "SMEMBERS");
        journal_arg_key(j, "w:", agent);
        if (!any)
            first = read;
        any = true;
    }
    size_t ndeferred = deferred && deferred->type == REDIS_REPLY_ARRAY ? deferred->elements : 0;
    uint32_t read = journal_read(j, 1 + (int) (ndeferred ? ndeferred : 1));
    journal_arg_str(j, "MGET");
    if (!ndeferred)
        journal_arg_key(j, "tk:", "");
    for (size_t i = 0; i < ndeferred; i++)
        journal_arg_key(j, "tk:", journal_str(deferred->element[i]));
    if (!any)
        first = read;
    s_read_queues(self);
    step_t next = {self, self->gen, first, 0, 0, 0, false};
    outbox_add(self->config.outbox, s_on_phase2, &next, sizeof(next), OUTBOX_NO_READ);
}

void loader_start(loader_t *self, int64_t now_ms)
{
    self->started_ms = now_ms;
    self->told = false;
    self->gen++;
    self->ready = false;
    self->loaded = 0;
    journal_t *j = self->config.journal;
    uint32_t first = journal_read(j, 2);
    journal_arg_str(j, "GET");
    journal_arg_key(j, "format", NULL);
    journal_read(j, 2);
    journal_arg_str(j, "GET");
    journal_arg_key(j, "nextid", NULL);
    journal_read(j, 2);
    journal_arg_str(j, "GET");
    journal_arg_key(j, "seq", NULL);
    journal_read(j, 5);
    journal_arg_str(j, "ZRANGE");
    journal_arg_key(j, "agents", NULL);
    journal_arg_str(j, "0");
    journal_arg_str(j, "-1");
    journal_arg_str(j, "WITHSCORES");
    journal_read(j, 4);
    journal_arg_str(j, "ZRANGE");
    journal_arg_key(j, "deferred", NULL);
    journal_arg_str(j, "0");
    journal_arg_str(j, "-1");
    journal_read(j, 2);
    journal_arg_str(j, "SMEMBERS");
    journal_arg_key(j, "queues", NULL);
    journal_read(j, 2);
    journal_arg_str(j, "GET");
    journal_arg_key(j, "k:done", NULL);
    journal_read(j, 2);
    journal_arg_str(j, "GET");
    journal_arg_key(j, "xf", NULL);
    step_t step = {self, self->gen, first, 8, 0, 0, false};
    outbox_add(self->config.outbox, s_on_phase1, &step, sizeof(step), OUTBOX_NO_READ);
}
