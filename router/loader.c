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

#define CHUNK          BOOK_REFILL //  cold tickets read per round trip
#define WARM_CHUNK     4096        //  warm tickets per MGET at start
#define WARM_PER_BATCH 8
#define ID_TEXT_MAX    24
#define SCORE_TEXT     32

typedef struct {
    loader_t *loader;
    uint64_t gen;
    uint32_t first; //  index of the first read
    uint32_t count; //  reads
    int queue;      //  cold reads: the queue and channel
    int channel;
    int64_t upto;   //  and the window's new upto once they are in
    uint64_t epoch; //  the window's epoch when they were asked for
    bool ties;      //  the read is of every member of one score
} step_t;

typedef struct {
    const char *agent; //  interned
    int64_t seen_ms;
    uint64_t *held; //  the ids of its held set (owned)
    size_t held_count;
} known_t;

struct loader {
    loader_config_t config;
    uint64_t gen;
    bool ready;
    int64_t started_ms; //  when loader_start ran
    uint64_t seq;
    int64_t rolled_upto; //  P k:done
    uint64_t loaded;
    known_t *agents;
    size_t agent_count;
    size_t queue_count;
    uint64_t *warm; //  queued tickets in memory before the restart, to read
    size_t warm_count, warm_at;
    int warm_flying; //  warm chunks in flight
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
    free((*self_p)->warm);
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

static const redisReply *s_reply(loader_t *self, uint32_t i)
{
    return journal_reply(self->config.journal, i);
}

//  The loader of a step whose reads are in and still wanted (committed,
//  and not from before a start over), else NULL.
static loader_t *s_live(const step_t *step, bool committed)
{
    return committed && step->gen == step->loader->gen ? step->loader : NULL;
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
//  Queues: what is in memory (warm) at start, then cold tickets as needed

//  Every ticket of an MGET reply; a member without its ticket is left as it is.
static void s_load_all(loader_t *self, const redisReply *reply)
{
    int64_t now_ms = zclock_time();
    for (size_t i = 0; reply && i < reply->elements; i++)
        s_load(self, reply->element[i], now_ms);
}

static void s_on_warm(void *arg, outbox_batch_t *batch, void *payload, const redisReply *reply,
                      bool committed);
static void s_on_cold_range(void *arg, outbox_batch_t *batch, void *payload,
                            const redisReply *reply, bool committed);
static void s_on_cold_tickets(void *arg, outbox_batch_t *batch, void *payload,
                              const redisReply *reply, bool committed);

static void s_format_score(int64_t score, bool exclusive, char *out)
{
    snprintf(out, SCORE_TEXT, "%s%lld", exclusive ? "(" : "", (long long) score);
}

static void s_arg_score(journal_t *j, int64_t score, bool exclusive)
{
    char text[SCORE_TEXT];
    s_format_score(score, exclusive, text);
    journal_arg_str(j, text);
}

//  The next warm chunks, a few per batch, while any is left.
static void s_read_warm(loader_t *self)
{
    journal_t *j = self->config.journal;
    for (int round = 0; round < WARM_PER_BATCH && self->warm_at < self->warm_count; round++) {
        size_t n = self->warm_count - self->warm_at;
        if (n > WARM_CHUNK)
            n = WARM_CHUNK;
        uint32_t read = journal_read_mget_ids(j, "tk:", self->warm + self->warm_at, n);
        self->warm_at += n;
        step_t step = {self, self->gen, read, 1, -1, 0, 0, 0, false};
        outbox_add(self->config.outbox, s_on_warm, &step, sizeof(step), read);
        self->warm_flying++;
    }
}

static void s_ready(loader_t *self)
{
    self->ready = true;
    free(self->warm);
    self->warm = NULL;
    self->warm_count = self->warm_at = 0;
    log_notice("state loaded in %lld ms: %zu tickets in memory, %llu last id; dispatching",
               (long long) (zclock_time() - self->started_ms), book_count(self->config.book),
               (unsigned long long) lifecycle_last_id(self->config.lifecycle));
    if (self->config.ready)
        self->config.ready(self->config.arg, self->seq);
}

static void s_on_warm(void *arg, outbox_batch_t *batch, void *payload, const redisReply *reply,
                      bool committed)
{
    (void) arg;
    (void) batch;
    step_t *step = payload;
    loader_t *self = s_live(step, committed);
    if (!self)
        return;
    s_load_all(self, reply);
    self->warm_flying--;
    if (self->warm_at < self->warm_count)
        s_read_warm(self);
    else if (!self->warm_flying && !self->ready)
        s_ready(self);
}

//  ZRANGE P q:NAME:C (upto +inf BYSCORE LIMIT 0 CHUNK WITHSCORES: the next
//  cold tickets of a channel.
static void s_read_cold(loader_t *self, int queue, int channel)
{
    book_t *book = self->config.book;
    queue_t *q = book_queue(book, (size_t) queue);
    journal_t *j = self->config.journal;
    uint64_t epoch = book_load_begin(book, (size_t) queue, channel);
    uint32_t read = journal_read(j, 9);
    journal_arg_str(j, "ZRANGE");
    journal_arg_key(j, "q:", q->key[channel]);
    s_arg_score(j, q->window[channel].upto, true);
    journal_arg_str(j, "+inf");
    journal_arg_str(j, "BYSCORE");
    journal_arg_str(j, "LIMIT");
    journal_arg_str(j, "0");
    journal_arg_u64(j, CHUNK);
    journal_arg_str(j, "WITHSCORES");
    step_t step = {self, self->gen, read, 1, queue, channel, 0, epoch, false};
    outbox_add(self->config.outbox, s_on_cold_range, &step, sizeof(step), read);
}

//  Every cold ticket of a channel with exactly this score (many may share one).
static void s_read_ties(loader_t *self, const step_t *asked, int64_t score)
{
    queue_t *q = book_queue(self->config.book, (size_t) asked->queue);
    journal_t *j = self->config.journal;
    uint32_t read = journal_read(j, 6);
    journal_arg_str(j, "ZRANGE");
    journal_arg_key(j, "q:", q->key[asked->channel]);
    s_arg_score(j, score, false);
    s_arg_score(j, score, false);
    journal_arg_str(j, "BYSCORE");
    journal_arg_str(j, "WITHSCORES");
    step_t step = *asked;
    step.first = read;
    step.upto = score;
    step.ties = true;
    outbox_add(self->config.outbox, s_on_cold_range, &step, sizeof(step), read);
}

//  MGET the members [0, n) of a WITHSCORES reply that are not in memory.
static void s_read_members(loader_t *self, const redisReply *range, size_t n, const step_t *asked,
                           int64_t upto)
{
    book_t *book = self->config.book;
    step_t step = *asked;
    step.upto = upto;
    step.first = OUTBOX_NO_READ;
    step.count = 0;
    size_t wanted = 0;
    for (size_t i = 0; i < n; i++)
        if (!book_ticket(book, journal_u64(journal_elem(range, 2 * i))))
            wanted++;
    if (!wanted) {
        s_on_cold_tickets(NULL, NULL, &step, NULL, true);
        return;
    }
    journal_t *j = self->config.journal;
    step.first = journal_read(j, 1 + (int) wanted);
    step.count = 1;
    journal_arg_str(j, "MGET");
    for (size_t i = 0; i < n; i++) {
        uint64_t id = journal_u64(journal_elem(range, 2 * i));
        if (!book_ticket(book, id))
            journal_arg_key_u64(j, "tk:", id);
    }
    outbox_add(self->config.outbox, s_on_cold_tickets, &step, sizeof(step), step.first);
}

static int64_t s_score_at(const redisReply *range, size_t i)
{
    return strtoll(journal_str(journal_elem(range, 2 * i + 1)), NULL, 10);
}

static void s_on_cold_range(void *arg, outbox_batch_t *batch, void *payload,
                            const redisReply *reply, bool committed)
{
    (void) arg;
    (void) batch;
    step_t *step = payload;
    loader_t *self = s_live(step, committed);
    if (!self)
        return;
    size_t n = reply && reply->type == REDIS_REPLY_ARRAY ? reply->elements / 2 : 0;
    if (step->ties) { //  every member of one score: through it
        s_read_members(self, reply, n, step, step->upto);
        return;
    }
    if (n < CHUNK) { //  the channel's last cold tickets
        s_read_members(self, reply, n, step, INT64_MAX);
        return;
    }
    int64_t last = s_score_at(reply, n - 1);
    if (s_score_at(reply, 0) == last) {
        s_read_ties(self, step, last);
        return;
    }
    //  Members scored `last` may go on past the chunk: take them next time.
    size_t keep = n;
    while (keep > 0 && s_score_at(reply, keep - 1) == last)
        keep--;
    s_read_members(self, reply, keep, step, s_score_at(reply, keep - 1));
}

static void s_on_cold_tickets(void *arg, outbox_batch_t *batch, void *payload,
                              const redisReply *reply, bool committed)
{
    (void) arg;
    (void) batch;
    step_t *step = payload;
    loader_t *self = s_live(step, committed);
    if (!self)
        return;
    s_load_all(self, reply);
    //  If the window moved down meanwhile, what was read goes back.
    if (book_loaded(self->config.book, (size_t) step->queue, step->channel, step->epoch,
                    step->upto) &&
        self->config.more)
        self->config.more(self->config.arg);
}

//  A channel whose memory runs low gets its next cold tickets.
void loader_step(loader_t *self, int64_t now_ms)
{
    (void) now_ms;
    if (!self->ready)
        return;
    book_t *book = self->config.book;
    for (size_t q = 0; q < book_queue_count(book); q++) {
        queue_t *queue = book_queue(book, q);
        for (int c = 0; c <= BOOK_CHANNELS; c++) {
            const window_t *w = &queue->window[c];
            if (w->upto == INT64_MAX || w->loading)
                continue;
            //  The heap also holds tickets beyond the window on their way
            //  out: a head beyond it means none within.
            const heap_t *heap = &queue->by_channel[c];
            const heap_entry_t *head = heap_min(heap);
            if (heap_count(heap) < BOOK_REFILL || (head && head->key > w->upto))
                s_read_cold(self, (int) q, c);
        }
    }
}

//  ---------------------------------------------------------------------------
//  Phases 1 to 3

static void s_on_held(void *arg, outbox_batch_t *batch, void *payload, const redisReply *reply,
                      bool committed);

//  No queued ticket to read: ready once the held ones are in.
static void s_on_warm_none(void *arg, outbox_batch_t *batch, void *payload, const redisReply *reply,
                           bool committed)
{
    (void) arg;
    (void) batch;
    (void) reply;
    loader_t *self = s_live(payload, committed);
    if (self && !self->ready)
        s_ready(self);
}

//  Per queue and channel: its warm members (P q:NAME:C up to the window's
//  upto) and how many are cold (beyond it).
static void s_read_queues(loader_t *self)
{
    book_t *book = self->config.book;
    self->queue_count = book_queue_count(book);
    journal_t *j = self->config.journal;
    for (size_t q = 0; q < self->queue_count; q++) {
        const queue_t *queue = book_queue(book, q);
        for (int c = 0; c <= BOOK_CHANNELS; c++) {
            int64_t upto = queue->window[c].upto;
            journal_read(j, 5);
            journal_arg_str(j, "ZRANGE");
            journal_arg_key(j, "q:", queue->key[c]);
            journal_arg_str(j, "-inf");
            if (upto == INT64_MAX)
                journal_arg_str(j, "+inf");
            else
                s_arg_score(j, upto, false);
            journal_arg_str(j, "BYSCORE");
            journal_read(j, 4);
            journal_arg_str(j, "ZCOUNT");
            journal_arg_key(j, "q:", queue->key[c]);
            if (upto == INT64_MAX)
                journal_arg_str(j, "+inf");
            else
                s_arg_score(j, upto, true);
            journal_arg_str(j, "+inf");
        }
    }
}

//  P qw: the windows that do not hold every ticket of their channel.
static void s_windows(loader_t *self, const redisReply *windows)
{
    book_t *book = self->config.book;
    for (size_t i = 0; windows && i + 1 < windows->elements; i += 2) {
        const char *field = journal_str(windows->element[i]);
        const char *colon = strrchr(field, ':');
        if (!colon)
            continue;
        int channel = atoi(colon + 1);
        for (size_t q = 0; q < book_queue_count(book); q++) {
            const queue_t *queue = book_queue(book, q);
            if (strlen(queue->name) == (size_t) (colon - field) &&
                !memcmp(queue->name, field, (size_t) (colon - field)))
                book_window_found(book, q, channel,
                                  strtoll(journal_str(windows->element[i + 1]), NULL, 10));
        }
    }
}

static void s_on_phase2(void *arg, outbox_batch_t *batch, void *payload, const redisReply *reply,
                        bool committed)
{
    (void) arg;
    (void) batch;
    (void) reply;
    step_t *step = payload;
    loader_t *self = s_live(step, committed);
    if (!self)
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
    //  Queues: the cold ones' windows, and the warm ones to read.
    free(self->warm);
    self->warm = NULL;
    self->warm_count = self->warm_at = 0;
    self->warm_flying = 0;
    size_t warm_size = 0;
    for (size_t q = 0; q < self->queue_count; q++)
        for (int c = 0; c <= BOOK_CHANNELS; c++) {
            const redisReply *warm = s_reply(self, r++);
            book_cold_found(book, q, c, (uint32_t) journal_u64(s_reply(self, r++)));
            size_t n = warm && warm->type == REDIS_REPLY_ARRAY ? warm->elements : 0;
            if (self->warm_count + n > warm_size) {
                warm_size = (self->warm_count + n) * 2;
                uint64_t *grown = realloc(self->warm, warm_size * sizeof(uint64_t));
                if (!grown) {
                    log_error("out of memory reading the queues");
                    abort();
                }
                self->warm = grown;
            }
            for (size_t i = 0; i < n; i++)
                self->warm[self->warm_count++] = journal_u64(warm->element[i]);
        }
    //  Phase 3: the held tickets, agent by agent (to check each against the
    //  set it was found in), then the warm queued ones.
    uint32_t first = 0, count = 0;
    for (size_t i = 0; i < self->agent_count; i++) {
        //  An agent holding nothing reads "P tk:" (nil): MGET needs a key.
        uint32_t read =
            journal_read_mget_ids(j, "tk:", self->agents[i].held, self->agents[i].held_count);
        if (!count)
            first = read;
        count++;
    }
    step_t next = {self, self->gen, first, count, -1, 0, 0, 0, false};
    outbox_add(self->config.outbox, s_on_held, &next, sizeof(next), OUTBOX_NO_READ);
    (void) held_total;
    if (self->warm_count)
        s_read_warm(self);
    else
        //  After the held tickets: they are in when this item runs.
        outbox_add(self->config.outbox, s_on_warm_none, &next, sizeof(next), OUTBOX_NO_READ);
}

static void s_on_held(void *arg, outbox_batch_t *batch, void *payload, const redisReply *reply,
                      bool committed)
{
    (void) arg;
    (void) batch;
    (void) reply;
    step_t *step = payload;
    loader_t *self = s_live(step, committed);
    if (!self)
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
    loader_t *self = s_live(step, committed);
    if (!self)
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
    const redisReply *windows = s_reply(self, r++);
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
    s_windows(self, windows);
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
    uint32_t read = journal_read_mget(j, "tk:", deferred);
    if (!any)
        first = read;
    s_read_queues(self);
    step_t next = {self, self->gen, first, 0, -1, 0, 0, 0, false};
    outbox_add(self->config.outbox, s_on_phase2, &next, sizeof(next), OUTBOX_NO_READ);
}

void loader_start(loader_t *self, int64_t now_ms)
{
    self->started_ms = now_ms;
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
    journal_read(j, 2);
    journal_arg_str(j, "HGETALL");
    journal_arg_key(j, "qw", NULL);
    step_t step = {self, self->gen, first, 9, -1, 0, 0, 0, false};
    outbox_add(self->config.outbox, s_on_phase1, &step, sizeof(step), OUTBOX_NO_READ);
}
