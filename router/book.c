/*  book.c — see book.h.

    Reading order: the id table, steps, placing a ticket (queues, holders,
    deferred), timers, heads, flushing a batch, loading.
*/
#include "book.h"
#include "log.h"
#include "tier.pb-c.h"

#include <czmq.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define TABLE_SIZE_MIN 1024
#define U64_TEXT_MAX   24
#define STEP_BYTES_MIN 4096

//  One step kept for the batch: where its bytes are, and the next step of
//  the same ticket.
typedef struct {
    uint32_t offset, len;
    uint32_t next; //  STEP_NONE: the ticket's last
} step_t;

//  An index change gathered by book_flush: one command per (kind, key).
typedef enum {
    OP_ZADD_QUEUE,
    OP_ZREM_QUEUE,
    OP_SADD_HELD,
    OP_SREM_HELD,
    OP_ZADD_DEFERRED,
    OP_ZREM_DEFERRED,
    OP_ZADD_QT,
    OP_ZREM_QT,
    OP_ZADD_DUE,
    OP_ZREM_DUE
} op_kind_t;
typedef struct {
    op_kind_t kind;
    const char *key; //  queue name or agent (interned/stable), or NULL
    int64_t score;
    uint64_t id;
} op_t;

struct book {
    intern_t *intern;   //  borrowed
    journal_t *journal; //  borrowed
    //  id -> ticket: open addressing, linear probing, backward-shift deletion
    ticket_t **slots;
    size_t slot_count, used;
    size_t cursor; //  book_first/next
    //  queues: BOOK_LEVELS x (1 + departments), more for departments met in
    //  Redis that the config no longer has
    queue_t *queues;
    size_t queue_count, queue_size;
    int touched_cursor;
    heap_t timers;
    zhashx_t *holders; //  agent -> holder_t (owned)
    ticket_t *held_cursor;
    //  the batch
    bytes_t step_bytes; //  every step's bytes
    step_t *steps;
    uint32_t step_count, step_size;
    size_t step_open; //  offset where the step being written began
    bytes_t scratch;  //  the step being written
    ticket_t *dirty;  //  tickets changed in this batch
    op_t *ops;
    size_t op_count, op_size;
    uint32_t *group_head, *group_tail, *group_count, *op_next; //  s_write_ops
    size_t group_size;
    bool windows_moved; //  a window's upto changed in this batch
};

//  ---------------------------------------------------------------------------
//  Construction

static void s_holder_free(void **item)
{
    free(*item);
    *item = NULL;
}

static void s_queue_init(queue_t *q, int level, const char *department)
{
    memset(q, 0, sizeof(*q));
    q->level = level;
    q->department = department;
    q->told_depth = q->told_oldest = -1;
    snprintf(q->name, sizeof(q->name), "%d:%s", level, department ? department : "");
    for (int c = 0; c <= BOOK_CHANNELS; c++) {
        q->window[c].upto = q->window[c].redis_upto = INT64_MAX;
        snprintf(q->key[c], sizeof(q->key[c]), "%s:%d", q->name, c);
    }
    for (int c = 0; c <= BOOK_CHANNELS; c++)
        heap_init(&q->by_channel[c], offsetof(ticket_t, queue_pos));
    heap_init(&q->by_wait, offsetof(ticket_t, wait_pos));
}

static int s_queue_add(book_t *self, int level, const char *department)
{
    if (self->queue_count == self->queue_size) {
        size_t size = self->queue_size ? self->queue_size * 2 : 16;
        queue_t *grown = realloc(self->queues, size * sizeof(queue_t));
        if (!grown) {
            log_error("out of memory adding a queue");
            abort();
        }
        //  The heaps hold pointers to tickets, not to the queue: moving is fine.
        self->queues = grown;
        self->queue_size = size;
    }
    s_queue_init(&self->queues[self->queue_count], level, department);
    return (int) self->queue_count++;
}

book_t *book_new(intern_t *intern, journal_t *journal, const char *const *departments,
                 int department_count)
{
    book_t *self = calloc(1, sizeof(book_t));
    if (!self)
        return NULL;
    self->intern = intern;
    self->journal = journal;
    self->slot_count = TABLE_SIZE_MIN;
    self->slots = calloc(self->slot_count, sizeof(ticket_t *));
    heap_init(&self->timers, offsetof(ticket_t, timer_pos));
    self->holders = zhashx_new();
    zhashx_set_destructor(self->holders, s_holder_free);
    self->touched_cursor = 0;
    for (int level = 1; level <= BOOK_LEVELS; level++) {
        s_queue_add(self, level, NULL);
        for (int d = 0; d < department_count; d++)
            s_queue_add(self, level, intern_name(intern, departments[d], strlen(departments[d])));
    }
    return self;
}

static void s_forget_all(book_t *self)
{
    //  The heaps first: heap_fini writes into the tickets it holds.
    for (size_t q = 0; q < self->queue_count; q++) {
        for (int c = 0; c <= BOOK_CHANNELS; c++)
            heap_fini(&self->queues[q].by_channel[c]);
        heap_fini(&self->queues[q].by_wait);
        for (int c = 0; c <= BOOK_CHANNELS; c++) {
            window_t *w = &self->queues[q].window[c];
            *w = (window_t){INT64_MAX, 0, w->epoch + 1, false, INT64_MAX, 0};
        }
        self->queues[q].cold_oldest = 0;
        self->queues[q].touched = false;
        self->queues[q].listed = false;
        self->queues[q].told_depth = self->queues[q].told_oldest = -1;
    }
    heap_fini(&self->timers);
    for (size_t i = 0; i < self->slot_count; i++)
        if (self->slots[i])
            ticket_destroy(&self->slots[i]);
    self->used = 0;
    zhashx_purge(self->holders);
    self->held_cursor = NULL;
    self->dirty = NULL;
    self->step_count = 0;
    bytes_clear(&self->step_bytes);
    self->op_count = 0;
    self->windows_moved = false;
}

void book_destroy(book_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    book_t *self = *self_p;
    s_forget_all(self);
    free(self->slots);
    free(self->queues);
    zhashx_destroy(&self->holders);
    bytes_fini(&self->step_bytes);
    bytes_fini(&self->scratch);
    free(self->steps);
    free(self->ops);
    free(self->group_head);
    free(self->group_tail);
    free(self->group_count);
    free(self->op_next);
    free(self);
    *self_p = NULL;
}

void book_clear(book_t *self)
{
    s_forget_all(self);
}

intern_t *book_intern(book_t *self)
{
    return self->intern;
}

//  ---------------------------------------------------------------------------
//  The id table

static inline size_t s_hash(uint64_t id, size_t count)
{
    id ^= id >> 33;
    id *= 0xff51afd7ed558ccdULL;
    id ^= id >> 33;
    return (size_t) id & (count - 1);
}

static void s_grow(book_t *self)
{
    size_t old_count = self->slot_count;
    ticket_t **old = self->slots;
    self->slot_count *= 2;
    self->slots = calloc(self->slot_count, sizeof(ticket_t *));
    if (!self->slots) {
        log_error("out of memory growing the ticket table to %zu", self->slot_count);
        abort();
    }
    for (size_t i = 0; i < old_count; i++)
        if (old[i]) {
            size_t at = s_hash(old[i]->id, self->slot_count);
            while (self->slots[at])
                at = (at + 1) & (self->slot_count - 1);
            self->slots[at] = old[i];
        }
    free(old);
}

ticket_t *book_ticket(book_t *self, uint64_t id)
{
    size_t mask = self->slot_count - 1;
    for (size_t at = s_hash(id, self->slot_count);; at = (at + 1) & mask) {
        ticket_t *t = self->slots[at];
        if (!t || t->id == id)
            return t;
    }
}

void book_add(book_t *self, ticket_t *ticket)
{
    if ((self->used + 1) * 4 > self->slot_count * 3)
        s_grow(self);
    size_t mask = self->slot_count - 1;
    size_t at = s_hash(ticket->id, self->slot_count);
    while (self->slots[at])
        at = (at + 1) & mask;
    self->slots[at] = ticket;
    self->used++;
}

static void s_table_remove(book_t *self, const ticket_t *ticket)
{
    size_t mask = self->slot_count - 1;
    size_t at = s_hash(ticket->id, self->slot_count);
    while (self->slots[at] != ticket) {
        if (!self->slots[at])
            return;
        at = (at + 1) & mask;
    }
    self->slots[at] = NULL;
    self->used--;
    //  Backward shift: pull later entries of the run into the hole.
    for (size_t next = (at + 1) & mask; self->slots[next]; next = (next + 1) & mask) {
        size_t home = s_hash(self->slots[next]->id, self->slot_count);
        //  Does `home` lie cyclically in (at, next]? Then it stays.
        bool stays = at <= next ? (home > at && home <= next) : (home > at || home <= next);
        if (stays)
            continue;
        self->slots[at] = self->slots[next];
        self->slots[next] = NULL;
        at = next;
    }
}

size_t book_count(const book_t *self)
{
    return self->used;
}

ticket_t *book_first(book_t *self)
{
    self->cursor = 0;
    return book_next(self);
}

ticket_t *book_next(book_t *self)
{
    while (self->cursor < self->slot_count) {
        ticket_t *t = self->slots[self->cursor++];
        if (t)
            return t;
    }
    return NULL;
}

//  ---------------------------------------------------------------------------
//  Steps

static void s_dirty(book_t *self, ticket_t *ticket)
{
    if (ticket->dirty)
        return;
    ticket->dirty = true;
    ticket->dirty_next = self->dirty;
    self->dirty = ticket;
}

bytes_t *book_step(book_t *self, ticket_t *ticket)
{
    (void) ticket;
    bytes_clear(&self->scratch);
    return &self->scratch;
}

void book_step_end(book_t *self, ticket_t *ticket)
{
    if (ticket_apply(ticket, self->intern, self->scratch.data, self->scratch.len))
        log_error("ticket %llu: a step the router wrote does not read back (a bug)",
                  (unsigned long long) ticket->id);
    if (self->step_count == self->step_size) {
        uint32_t size = self->step_size ? self->step_size * 2 : 256;
        step_t *grown = realloc(self->steps, size * sizeof(step_t));
        if (!grown) {
            log_error("out of memory keeping a batch's steps");
            abort();
        }
        self->steps = grown;
        self->step_size = size;
    }
    uint32_t index = self->step_count++;
    self->steps[index] =
        (step_t){(uint32_t) self->step_bytes.len, (uint32_t) self->scratch.len, STEP_NONE};
    bytes_put(&self->step_bytes, self->scratch.data, self->scratch.len);
    if (ticket->step_first == STEP_NONE)
        ticket->step_first = index;
    else
        self->steps[ticket->step_last].next = index;
    ticket->step_last = index;
    s_dirty(self, ticket);
}

bool book_new_bytes(book_t *self, const ticket_t *ticket, bytes_t *out)
{
    if (ticket->redis_exists)
        return false;
    for (uint32_t s = ticket->step_first; s != STEP_NONE; s = self->steps[s].next)
        bytes_put(out, self->step_bytes.data + self->steps[s].offset, self->steps[s].len);
    return true;
}

void book_created(book_t *self, ticket_t *ticket)
{
    ticket->redis_exists = false;
    s_dirty(self, ticket);
}

//  ---------------------------------------------------------------------------
//  Placing a ticket

static bool s_closed_state(int state)
{
    return state == TIER__V1__TICKET_STATE__STATE_RESOLVED ||
           state == TIER__V1__TICKET_STATE__STATE_ABANDONED ||
           state == TIER__V1__TICKET_STATE__STATE_DEAD;
}

int book_queue_index(book_t *self, int level, const char *department)
{
    for (size_t i = 0; i < self->queue_count; i++)
        if (self->queues[i].level == level && self->queues[i].department == department)
            return (int) i;
    return -1;
}

int book_queue_ensure(book_t *self, int level, const char *department)
{
    int index = book_queue_index(self, level, department);
    if (index < 0 && level >= 1 && level <= BOOK_LEVELS)
        index = s_queue_add(self, level, department);
    if (index >= 0)
        self->queues[index].listed = true; //  found in P queues
    return index;
}

static inline int s_channel(const ticket_t *t)
{
    return t->channel >= 1 && t->channel <= BOOK_CHANNELS ? t->channel : 0;
}

static void s_unqueue(book_t *self, ticket_t *t)
{
    if (t->queue < 0)
        return;
    queue_t *q = &self->queues[t->queue];
    for (int c = 0; c <= BOOK_CHANNELS; c++)
        heap_remove(&q->by_channel[c], t);
    heap_remove(&q->by_wait, t);
    q->touched = true;
    t->queue = -1;
}

static void s_enqueue(book_t *self, ticket_t *t, int index)
{
    queue_t *q = &self->queues[index];
    if (t->queue != index) {
        s_unqueue(self, t);
        t->queue = index;
        q->touched = true;
    } else
        //  The channel may have changed: take it out of every channel heap.
        for (int c = 0; c <= BOOK_CHANNELS; c++)
            if (c != s_channel(t))
                heap_remove(&q->by_channel[c], t);
    heap_set(&q->by_channel[s_channel(t)], t, t->score, t->id);
    heap_set(&q->by_wait, t, t->queued_ms, t->id);
}

//  Holders keep the head of their list here (holder_t stays small and public).
typedef struct {
    holder_t pub;
    ticket_t *first;
} holder_full_t;

static void s_unhold(book_t *self, ticket_t *t)
{
    if (!t->holder)
        return;
    holder_full_t *h = zhashx_lookup(self->holders, t->holder);
    if (h) {
        if (h->pub.held)
            h->pub.held--;
        if (h->pub.per_channel[s_channel(t)])
            h->pub.per_channel[s_channel(t)]--;
        if (h->first == t)
            h->first = t->held_next;
    }
    if (t->held_prev)
        t->held_prev->held_next = t->held_next;
    if (t->held_next)
        t->held_next->held_prev = t->held_prev;
    if (self->held_cursor == t)
        self->held_cursor = t->held_next;
    t->held_prev = t->held_next = NULL;
    t->holder = NULL;
}

static void s_hold(book_t *self, ticket_t *t, const char *agent)
{
    holder_full_t *h = (holder_full_t *) book_holder_get(self, agent);
    t->holder = h->pub.agent;
    t->held_prev = NULL;
    t->held_next = h->first;
    if (h->first)
        h->first->held_prev = t;
    h->first = t;
    h->pub.held++;
    h->pub.per_channel[s_channel(t)]++;
}

int book_place(book_t *self, ticket_t *t)
{
    int state = t->state;
    int want_queue = -1;
    if (state == TIER__V1__TICKET_STATE__STATE_QUEUED) {
        want_queue = book_queue_index(self, t->level, t->department);
        if (want_queue < 0 && t->level >= 1 && t->level <= BOOK_LEVELS)
            want_queue = s_queue_add(self, t->level, t->department);
        if (want_queue < 0) {
            log_error("ticket %llu has level %d: no queue for it", (unsigned long long) t->id,
                      t->level);
            return -1;
        }
    }
    if (want_queue >= 0)
        s_enqueue(self, t, want_queue);
    else
        s_unqueue(self, t);
    bool held = state == TIER__V1__TICKET_STATE__STATE_OFFERED ||
                state == TIER__V1__TICKET_STATE__STATE_ASSIGNED;
    const char *want_holder = held ? t->agent : NULL;
    if (t->holder != want_holder) {
        s_unhold(self, t);
        if (want_holder)
            s_hold(self, t, want_holder);
    }
    t->deferred = state == TIER__V1__TICKET_STATE__STATE_DEFERRED;
    t->closed = s_closed_state(state);
    if (t->closed)
        heap_remove(&self->timers, t);
    s_dirty(self, t);
    return 0;
}

//  ---------------------------------------------------------------------------
//  Timers

void book_timer(book_t *self, ticket_t *ticket, int64_t due_ms)
{
    if (due_ms > 0 && !ticket->closed)
        heap_set(&self->timers, ticket, due_ms, ticket->id);
    else
        heap_remove(&self->timers, ticket);
}

ticket_t *book_due(book_t *self, int64_t now_ms)
{
    const heap_entry_t *min = heap_min(&self->timers);
    return min && min->key <= now_ms ? min->item : NULL;
}

int64_t book_next_due(const book_t *self)
{
    const heap_entry_t *min = heap_min(&self->timers);
    return min ? min->key : 0;
}

//  ---------------------------------------------------------------------------
//  Queues

size_t book_queue_count(const book_t *self)
{
    return self->queue_count;
}

queue_t *book_queue(book_t *self, size_t index)
{
    return index < self->queue_count ? &self->queues[index] : NULL;
}

uint32_t book_depth(const book_t *self, size_t index)
{
    const queue_t *q = &self->queues[index];
    uint32_t depth = 0;
    for (int c = 0; c <= BOOK_CHANNELS; c++)
        depth += q->window[c].cold + heap_count(&q->by_channel[c]);
    return depth;
}

int64_t book_oldest(const book_t *self, size_t index)
{
    const queue_t *q = &self->queues[index];
    const heap_entry_t *min = heap_min(&q->by_wait);
    int64_t oldest = min ? min->key : 0;
    if (q->cold_oldest && book_cold(self, index) && (!oldest || q->cold_oldest < oldest))
        oldest = q->cold_oldest;
    return oldest;
}

ticket_t *book_head(book_t *self, size_t index, const bool *allowed)
{
    queue_t *q = &self->queues[index];
    const heap_entry_t *best = NULL;
    for (int c = 0; c <= BOOK_CHANNELS; c++) {
        if (allowed && !allowed[c])
            continue;
        //  Beyond the window, cold tickets may come first: none until the
        //  loader brought them in.
        const heap_entry_t *min = heap_min(&q->by_channel[c]);
        if (min && min->key <= q->window[c].upto &&
            (!best || min->key < best->key || (min->key == best->key && min->tie < best->tie)))
            best = min;
    }
    return best ? best->item : NULL;
}

int book_touched_next(book_t *self)
{
    for (; self->touched_cursor < (int) self->queue_count; self->touched_cursor++)
        if (self->queues[self->touched_cursor].touched) {
            self->queues[self->touched_cursor].touched = false;
            return self->touched_cursor++;
        }
    self->touched_cursor = 0;
    return -1;
}

//  ---------------------------------------------------------------------------
//  Holders

holder_t *book_holder(book_t *self, const char *agent)
{
    return agent ? zhashx_lookup(self->holders, agent) : NULL;
}

holder_t *book_holder_get(book_t *self, const char *agent)
{
    holder_full_t *h = zhashx_lookup(self->holders, agent);
    if (h)
        return &h->pub;
    h = calloc(1, sizeof(holder_full_t));
    if (!h) {
        log_error("out of memory adding agent %s", agent);
        abort();
    }
    h->pub.agent = intern_name(self->intern, agent, strlen(agent));
    zhashx_insert(self->holders, agent, h);
    return &h->pub;
}

void book_holder_forget(book_t *self, const char *agent)
{
    holder_full_t *h = zhashx_lookup(self->holders, agent);
    if (!h)
        return;
    //  Whatever it still holds stays where it is in Redis; callers requeue first.
    while (h->first)
        s_unhold(self, h->first);
    zhashx_delete(self->holders, agent);
}

ticket_t *book_held_first(book_t *self, const char *agent)
{
    holder_full_t *h = agent ? zhashx_lookup(self->holders, agent) : NULL;
    self->held_cursor = h ? h->first : NULL;
    return book_held_next(self);
}

ticket_t *book_held_next(book_t *self)
{
    ticket_t *t = self->held_cursor;
    if (t)
        self->held_cursor = t->held_next;
    return t;
}

holder_t *book_holder_first(book_t *self)
{
    return zhashx_first(self->holders);
}

holder_t *book_holder_next(book_t *self)
{
    return zhashx_next(self->holders);
}

//  ---------------------------------------------------------------------------
//  Flushing a batch

static void s_op(book_t *self, op_kind_t kind, const char *key, int64_t score, uint64_t id)
{
    if (self->op_count == self->op_size) {
        size_t size = self->op_size ? self->op_size * 2 : 256;
        op_t *grown = realloc(self->ops, size * sizeof(op_t));
        if (!grown) {
            log_error("out of memory gathering a batch's index changes");
            abort();
        }
        self->ops = grown;
        self->op_size = size;
    }
    self->ops[self->op_count++] = (op_t){kind, key, score, id};
}

//  The steps of a ticket, as one SET or APPEND.
static void s_write_steps(book_t *self, ticket_t *t)
{
    size_t total = 0;
    for (uint32_t s = t->step_first; s != STEP_NONE; s = self->steps[s].next)
        total += self->steps[s].len;
    if (t->redis_exists) {
        journal_write(self->journal, 3);
        journal_arg_str(self->journal, "APPEND");
    } else
        journal_set(self->journal);
    journal_arg_key_u64(self->journal, "tk:", t->id);
    journal_arg_open(self->journal, total);
    for (uint32_t s = t->step_first; s != STEP_NONE; s = self->steps[s].next)
        journal_arg_piece(self->journal, self->step_bytes.data + self->steps[s].offset,
                          self->steps[s].len);
    journal_arg_piece(self->journal, "\r\n", 2);
    t->redis_exists = true;
    t->step_first = t->step_last = STEP_NONE;
}

//  Compare a ticket's place with what Redis has; gather the differences.
static void s_diff(book_t *self, ticket_t *t, bool changed)
{
    if (t->queue >= 0 && !self->queues[t->queue].listed) {
        //  The loader finds queues by name: list it before its first member.
        journal_write(self->journal, 3);
        journal_arg_str(self->journal, "SADD");
        journal_arg_key(self->journal, "queues", NULL);
        journal_arg_str(self->journal, self->queues[t->queue].name);
        self->queues[t->queue].listed = true;
    }
    //  P q:NAME:C, the queue's tickets of one channel.
    int channel = s_channel(t);
    if (t->queue != t->redis_queue ||
        (t->queue >= 0 && (t->score != t->redis_score || channel != t->redis_channel))) {
        if (t->redis_queue >= 0 && (t->redis_queue != t->queue || t->redis_channel != channel))
            s_op(self, OP_ZREM_QUEUE, self->queues[t->redis_queue].key[t->redis_channel], 0, t->id);
        if (t->queue >= 0)
            s_op(self, OP_ZADD_QUEUE, self->queues[t->queue].key[channel], t->score, t->id);
        t->redis_queue = t->queue;
        t->redis_score = t->score;
        t->redis_channel = (int8_t) channel;
    }
    if (t->holder != t->redis_holder) {
        if (t->redis_holder)
            s_op(self, OP_SREM_HELD, t->redis_holder, 0, t->id);
        if (t->holder)
            s_op(self, OP_SADD_HELD, t->holder, 0, t->id);
        t->redis_holder = t->holder;
    }
    //  Beyond its window a ticket is cold, or about to be: Redis indexes
    //  its queued time (P qt:NAME) and timer (P due) too.
    bool cold = book_beyond(self, t);
    if (t->redis_cold >= 0 && (!cold || t->redis_cold != t->queue))
        s_op(self, OP_ZREM_QT, self->queues[t->redis_cold].name, 0, t->id);
    if (cold && (t->redis_cold != t->queue || t->redis_qt_at != t->queued_ms))
        s_op(self, OP_ZADD_QT, self->queues[t->queue].name, t->queued_ms, t->id);
    t->redis_cold = cold ? (int16_t) t->queue : -1;
    t->redis_qt_at = cold ? t->queued_ms : -1;
    int64_t due = 0;
    if (cold && t->timer_pos < heap_count(&self->timers) &&
        self->timers.entries[t->timer_pos].item == t)
        due = self->timers.entries[t->timer_pos].key;
    if (due != t->redis_due) {
        if (due)
            s_op(self, OP_ZADD_DUE, NULL, due, t->id);
        else
            s_op(self, OP_ZREM_DUE, NULL, 0, t->id);
        t->redis_due = due;
    }
    //  A deferral's time may change with a step: score it again then.
    if (t->deferred != t->redis_deferred || (t->deferred && changed)) {
        if (t->deferred)
            s_op(self, OP_ZADD_DEFERRED, NULL, t->promise_ms, t->id);
        else
            s_op(self, OP_ZREM_DEFERRED, NULL, 0, t->id);
        t->redis_deferred = t->deferred;
    }
}

//  One command per (kind, key): ops are chained per group through a small
//  hash table (a batch touches a few queues and its agents' held sets).
static void s_write_ops(book_t *self)
{
    static const char *commands[] = {"ZADD", "ZREM", "SADD", "SREM", "ZADD",
                                     "ZREM", "ZADD", "ZREM", "ZADD", "ZREM"};
    static const char *keys[] = {"q:",       "q:",  "w:",  "w:",  "deferred",
                                 "deferred", "qt:", "qt:", "due", "due"};
    size_t n = self->op_count;
    if (!n)
        return;
    size_t slots = 16;
    while (slots < 2 * n)
        slots *= 2;
    if (slots > self->group_size) {
        free(self->group_head);
        free(self->group_tail);
        free(self->group_count);
        free(self->op_next);
        self->group_head = malloc(slots * sizeof(uint32_t));
        self->group_tail = malloc(slots * sizeof(uint32_t));
        self->group_count = malloc(slots * sizeof(uint32_t));
        self->op_next = malloc(slots * sizeof(uint32_t));
        if (!self->group_head || !self->group_tail || !self->group_count || !self->op_next) {
            log_error("out of memory writing a batch's index changes");
            abort();
        }
        self->group_size = slots;
    }
    memset(self->group_head, 0xff, slots * sizeof(uint32_t));
    for (size_t i = 0; i < n; i++) {
        const op_t *op = &self->ops[i];
        size_t h = ((size_t) op->key * 31 + (size_t) op->kind) * 0x9E3779B97F4A7C15ULL;
        size_t at = (h >> 17) & (slots - 1);
        while (self->group_head[at] != UINT32_MAX) {
            const op_t *first = &self->ops[self->group_head[at]];
            if (first->kind == op->kind && first->key == op->key)
                break;
            at = (at + 1) & (slots - 1);
        }
        self->op_next[i] = UINT32_MAX;
        if (self->group_head[at] == UINT32_MAX) {
            self->group_head[at] = self->group_tail[at] = (uint32_t) i;
            self->group_count[at] = 1;
        } else {
            self->op_next[self->group_tail[at]] = (uint32_t) i;
            self->group_tail[at] = (uint32_t) i;
            self->group_count[at]++;
        }
    }
    for (size_t at = 0; at < slots; at++) {
        if (self->group_head[at] == UINT32_MAX)
            continue;
        const op_t *first = &self->ops[self->group_head[at]];
        op_kind_t kind = first->kind;
        bool scored = kind == OP_ZADD_QUEUE || kind == OP_ZADD_DEFERRED || kind == OP_ZADD_QT ||
                      kind == OP_ZADD_DUE;
        int per = scored ? 2 : 1;
        journal_write(self->journal, 2 + per * (int) self->group_count[at]);
        journal_arg_str(self->journal, commands[kind]);
        journal_arg_key(self->journal, keys[kind], first->key);
        for (uint32_t k = self->group_head[at]; k != UINT32_MAX; k = self->op_next[k]) {
            if (scored)
                journal_arg_i64(self->journal, self->ops[k].score);
            journal_arg_u64(self->journal, self->ops[k].id);
        }
    }
    self->op_count = 0;
}

//  Windows whose upto changed: P qw.
static void s_write_windows(book_t *self)
{
    if (!self->windows_moved)
        return;
    self->windows_moved = false;
    for (size_t index = 0; index < self->queue_count; index++)
        for (int c = 0; c <= BOOK_CHANNELS; c++) {
            window_t *w = &self->queues[index].window[c];
            if (w->upto == w->redis_upto)
                continue;
            if (w->upto == INT64_MAX) {
                journal_write(self->journal, 3);
                journal_arg_str(self->journal, "HDEL");
            } else {
                journal_write(self->journal, 4);
                journal_arg_str(self->journal, "HSET");
            }
            journal_arg_key(self->journal, "qw", NULL);
            journal_arg_str(self->journal, self->queues[index].key[c]);
            if (w->upto != INT64_MAX)
                journal_arg_i64(self->journal, w->upto);
            w->redis_upto = w->upto;
        }
}

void book_flush(book_t *self, book_going_fn *going, void *arg)
{
    for (ticket_t *t = self->dirty, *next; t; t = next) {
        next = t->dirty_next;
        t->dirty = false;
        t->dirty_next = NULL;
        bool changed = t->step_first != STEP_NONE;
        if (changed || !t->redis_exists)
            s_write_steps(self, t);
        s_diff(self, t, changed);
        t->written = journal_filling_batch(self->journal);
        if ((t->closed || book_beyond(self, t)) && going)
            going(arg, t);
    }
    self->dirty = NULL;
    s_write_ops(self);
    s_write_windows(self);
    self->step_count = 0;
    bytes_clear(&self->step_bytes);
}

bool book_beyond(const book_t *self, const ticket_t *t)
{
    return t->queue >= 0 && t->score > self->queues[t->queue].window[s_channel(t)].upto;
}

bool book_evictable(book_t *self, const ticket_t *t)
{
    if (t->dirty || t->written > journal_committed_batches(self->journal))
        return false;
    return t->closed || (book_beyond(self, t) && t->redis_cold == t->queue &&
                         !self->queues[t->queue].window[s_channel(t)].loading);
}

bool book_complete(const book_t *self, size_t index)
{
    for (int c = 0; c <= BOOK_CHANNELS; c++)
        if (self->queues[index].window[c].upto != INT64_MAX)
            return false;
    return true;
}

uint32_t book_cold(const book_t *self, size_t index)
{
    uint32_t n = 0;
    for (int c = 0; c <= BOOK_CHANNELS; c++)
        n += self->queues[index].window[c].cold;
    return n;
}

static int s_score_order(const void *a, const void *b)
{
    int64_t x = *(const int64_t *) a, y = *(const int64_t *) b;
    return x < y ? -1 : x > y;
}

//  A channel over its window keeps its first BOOK_KEEP tickets (and the
//  others of the last one's score): whole scores go, every ticket scored
//  from the cut on, so that "scored up to upto" stays "in memory".
static void s_shrink(book_t *self, queue_t *q, int c)
{
    heap_t *heap = &q->by_channel[c];
    uint32_t n = heap_count(heap);
    int64_t *scores = malloc(n * sizeof(int64_t));
    if (!scores) {
        log_error("out of memory shrinking a queue");
        abort();
    }
    for (uint32_t i = 0; i < n; i++)
        scores[i] = heap->entries[i].key;
    qsort(scores, n, sizeof(int64_t), s_score_order);
    //  The first score after the BOOK_KEEP-th ticket's: all tickets of one
    //  score stay together, however many (else a window of ties would give
    //  them back and read them again without end).
    uint32_t at = BOOK_KEEP;
    while (at < n && scores[at] == scores[BOOK_KEEP - 1])
        at++;
    int64_t cut = at < n ? scores[at] : INT64_MAX;
    free(scores);
    window_t *w = &q->window[c];
    if (cut == INT64_MAX) {
        w->whole = n; //  one score over the window: no cut until more come
        return;
    }
    if (cut > w->upto)
        return; //  the rest is beyond already, on its way out
    w->upto = cut - 1;
    w->epoch++;
    self->windows_moved = true;
    for (uint32_t i = 0; i < n; i++) {
        ticket_t *t = heap->entries[i].item;
        if (t->score >= cut)
            s_dirty(self, t); //  its cold entries go with the batch
    }
    log_debug("queue %s channel %d: %u tickets in memory; from score %lld on, they wait in "
              "Redis",
              q->name, c, n, (long long) cut);
}

void book_shrink(book_t *self)
{
    for (size_t index = 0; index < self->queue_count; index++)
        for (int c = 0; c <= BOOK_CHANNELS; c++) {
            window_t *w = &self->queues[index].window[c];
            uint32_t n = heap_count(&self->queues[index].by_channel[c]);
            if (n <= BOOK_WINDOW)
                w->whole = 0;
            else if (n > w->whole)
                s_shrink(self, &self->queues[index], c);
        }
}

void book_evict(book_t *self, ticket_t *t)
{
    if (t->queue >= 0)
        self->queues[t->queue].window[s_channel(t)].cold++;
    s_unqueue(self, t);
    s_unhold(self, t);
    heap_remove(&self->timers, t);
    s_table_remove(self, t);
    ticket_destroy(&t);
}

//  ---------------------------------------------------------------------------
//  Loading

static ticket_t *s_read(book_t *self, const uint8_t *stored, size_t len, bool closed_too)
{
    ticket_t *t = ticket_new(0);
    if (!t || ticket_apply(t, self->intern, stored, len) || !t->id || !t->policy) {
        log_error("a stored ticket (%zu bytes) is malformed; it stays in Redis as it is", len);
        ticket_destroy(&t);
        return NULL;
    }
    if (book_ticket(self, t->id) || (!closed_too && s_closed_state(t->state))) {
        ticket_destroy(&t);
        return NULL;
    }
    t->redis_exists = true;
    book_add(self, t);
    book_place(self, t);
    //  Redis has it where its state says (both were written by one batch).
    t->redis_queue = t->queue;
    t->redis_score = t->score;
    t->redis_channel = (int8_t) s_channel(t);
    t->redis_holder = t->holder;
    t->redis_deferred = t->deferred;
    if (t->queue >= 0) {
        //  A queued ticket beyond its window comes from the cold. Any may
        //  have cold entries: the next flush writes them again or removes
        //  them.
        window_t *w = &self->queues[t->queue].window[s_channel(t)];
        if (book_beyond(self, t) && w->cold)
            w->cold--;
        t->redis_cold = (int16_t) t->queue;
        t->redis_qt_at = t->redis_due = -1;
        s_dirty(self, t);
    }
    t->written = journal_committed_batches(self->journal);
    return t;
}

ticket_t *book_load(book_t *self, const uint8_t *stored, size_t len, int64_t now_ms)
{
    (void) now_ms;
    return s_read(self, stored, len, false);
}

ticket_t *book_fetched(book_t *self, const uint8_t *stored, size_t len)
{
    return s_read(self, stored, len, true);
}

void book_window_found(book_t *self, size_t index, int channel, int64_t upto)
{
    if (index >= self->queue_count || channel < 0 || channel > BOOK_CHANNELS)
        return;
    window_t *w = &self->queues[index].window[channel];
    w->upto = w->redis_upto = upto;
    w->epoch++;
}

void book_cold_found(book_t *self, size_t index, int channel, uint32_t cold)
{
    if (index >= self->queue_count || channel < 0 || channel > BOOK_CHANNELS)
        return;
    self->queues[index].window[channel].cold = cold;
    self->queues[index].touched = true;
}

uint64_t book_load_begin(book_t *self, size_t index, int channel)
{
    window_t *w = &self->queues[index].window[channel];
    w->loading = true;
    return w->epoch;
}

bool book_loaded(book_t *self, size_t index, int channel, uint64_t epoch, int64_t upto)
{
    if (index >= self->queue_count || channel < 0 || channel > BOOK_CHANNELS)
        return false;
    queue_t *q = &self->queues[index];
    window_t *w = &q->window[channel];
    w->loading = false;
    bool moved = epoch == w->epoch && upto > w->upto;
    if (moved) {
        w->upto = upto;
        self->windows_moved = true;
        if (upto == INT64_MAX)
            w->cold = 0;
        q->touched = true;
    }
    //  What is no longer beyond loses its cold entries with the next flush;
    //  what still is (read after the window moved down, or held back during
    //  the read) goes back.
    heap_t *heap = &q->by_channel[channel];
    for (uint32_t i = 0; i < heap_count(heap); i++) {
        ticket_t *t = heap->entries[i].item;
        if (t->redis_cold >= 0 || t->score > w->upto)
            s_dirty(self, t);
    }
    return moved;
}

void book_redis_held(book_t *self, ticket_t *ticket, const char *agent)
{
    (void) self;
    ticket->redis_holder = agent;
}
