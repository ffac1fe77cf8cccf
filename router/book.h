/*  book.h — the open tickets, in memory: the router's authority.

    The book holds every open ticket (queued, offered, assigned, deferred)
    the router has loaded, the queues they wait in (one per level and
    department), who holds what, and when each ticket next needs attention
    (its timer). Transitions (lifecycle.c) change tickets only through
    steps: book_step gives a buffer, book_step_end applies it to the ticket
    and keeps it for the batch. After each change the caller puts the ticket
    where its state says (book_place), which maintains the indexes.

    book_flush writes the batch to Redis through the journal: per changed
    ticket one SET or APPEND of its steps, and the index changes that differ
    from what Redis has (queue sorted sets, agents' held sets, P deferred),
    gathered per key. The ticket's Redis side is then assumed to be what
    memory says: if the batch fails the router reloads everything anyway.

    Queues are kept per channel (a heap by dispatch order for each), so the
    best ticket an agent may take, given its per-channel limits, is found by
    looking at seven heads, and oldest-first (a heap by queued time) for the
    queue's oldest wait.

    A queue keeps at most BOOK_WINDOW tickets of each channel in memory
    (more only of one score: a window never splits a score): the first
    ones in dispatch order, every ticket of the channel scored up to its
    window's `upto`. Redis has the queue's tickets of channel C in
    P q:NAME:C (by score) and each window's upto in P qw (field NAME:C; none
    when every ticket is in memory): the members beyond it are "cold", in
    Redis only, and indexed there for what memory cannot do without them,
    P qt:NAME (their queued times, for the queue's oldest wait) and P due
    (their next timer). book_flush writes a window's upto and the entries of
    a ticket put beyond it in the same batch, so that this holds in Redis at
    every commit and after any restart. A channel over its window gives its
    tail back (book_shrink; book_evict once the batch is in); the loader
    brings the next cold tickets in as the head drains.
*/
#ifndef TIER_BOOK_H
#define TIER_BOOK_H

#include "heap.h"
#include "journal.h"
#include "ticket.h"
#include "wire.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BOOK_LEVELS   3
#define BOOK_CHANNELS 7    //  Tier__V1__Channel 1..7
#define BOOK_WINDOW   1024 //  queued tickets of one queue and channel in memory, at most
#define BOOK_KEEP     768  //  what a channel over its window keeps
#define BOOK_REFILL   512  //  under this, the loader brings the next cold tickets in

typedef struct book book_t;

//  What of one channel of a queue is in memory (the top of this file).
typedef struct {
    int64_t upto;       //  every queued ticket scored <= upto is in memory; INT64_MAX: all
    uint32_t cold;      //  its tickets in Redis only
    uint64_t epoch;     //  +1 when upto moves down (a read in flight is then of no use)
    bool loading;       //  the loader reads its next cold tickets: none leaves memory meanwhile
    int64_t redis_upto; //  as P qw has it (INT64_MAX: no field)
    uint32_t whole;     //  tickets when a shrink last found one score over the window: not
                        //  looked at again until there are more (0: none)
} window_t;

//  One queue: a level and a department (NULL = the level's general queue).
typedef struct {
    int level;                            //  1..3
    const char *department;               //  interned, NULL = general
    char name[80];                        //  "L:dept", as in Redis keys (q:L:dept)
    heap_t by_channel[BOOK_CHANNELS + 1]; //  dispatch order, per channel (0 unused)
    heap_t by_wait;                       //  queued_ms, oldest first
    window_t window[BOOK_CHANNELS + 1];   //  per channel
    char key[BOOK_CHANNELS + 1][88];      //  "NAME:C": its tickets of channel C are P q:NAME:C
    int64_t cold_oldest;                  //  queued_ms of the oldest cold ticket, 0 = none
    bool touched;                         //  its depth changed in this batch (a QUEUE event is due)
    bool listed;                          //  in P queues (the loader finds it there)
    int64_t told_depth;                   //  depth in the last QUEUE event (-1: none yet)
    int64_t told_oldest;                  //  and oldest
} queue_t;

//  What an agent holds. Every agent that holds tickets or is known to Redis
//  has one, connected or not.
typedef struct {
    const char *agent; //  interned
    uint32_t held;     //  offered or assigned to it
    uint32_t per_channel[BOOK_CHANNELS + 1];
    uint32_t misses;        //  offers in a row that timed out
    int64_t lease_until_ms; //  not connected: forgotten then (0 = connected)
    bool bot;               //  as it registered
} holder_t;

book_t *book_new(intern_t *intern, journal_t *journal, const char *const *departments,
                 int department_count);
void book_destroy(book_t **self_p);
//  Forget every ticket and holder (Redis was lost: the loader starts over).
void book_clear(book_t *self);
intern_t *book_intern(book_t *self);

//  Tickets
ticket_t *book_ticket(book_t *self, uint64_t id);
//  Add a new ticket (id unused; the caller made it with ticket_new). Takes it.
void book_add(book_t *self, ticket_t *ticket);
size_t book_count(const book_t *self);
//  Every ticket: first, then next until NULL (no changes meanwhile).
ticket_t *book_first(book_t *self);
ticket_t *book_next(book_t *self);

//  A step for `ticket`: write fields into the buffer returned, then
//  book_step_end applies them to the ticket and keeps them for the batch.
bytes_t *book_step(book_t *self, ticket_t *ticket);
void book_step_end(book_t *self, ticket_t *ticket);
//  The ticket's whole stored form is the steps of this batch (new, or loaded
//  and rewritten): SET instead of APPEND.
void book_created(book_t *self, ticket_t *ticket);
//  A ticket made in this batch: its whole stored form is its steps so far.
//  Appends them to out and returns true; false if it is in Redis already.
bool book_new_bytes(book_t *self, const ticket_t *ticket, bytes_t *out);

//  Put a ticket where its state says: in its queue (QUEUED, at its score),
//  in its holder's set (OFFERED, ASSIGNED), in the deferred set (DEFERRED),
//  or nowhere (closed: it is forgotten once the batch is written). Call after
//  every step that changes state, level, department, channel, score or
//  agent. Returns 0, or -1 when its department has no queue (cannot be).
int book_place(book_t *self, ticket_t *ticket);
//  When the ticket next needs attention (a timer), or 0 for never.
void book_timer(book_t *self, ticket_t *ticket, int64_t due_ms);
//  The next ticket whose timer is due at now_ms, or NULL.
ticket_t *book_due(book_t *self, int64_t now_ms);
//  When the earliest timer is due; 0 if none.
int64_t book_next_due(const book_t *self);

//  Queues
size_t book_queue_count(const book_t *self);
queue_t *book_queue(book_t *self, size_t index);
//  The queue of a level and department; -1 if there is none.
int book_queue_index(book_t *self, int level, const char *department);
//  The same, made if missing (a department Redis knows and the config no
//  longer has).
int book_queue_ensure(book_t *self, int level, const char *department);
//  Tickets waiting (loaded or not).
uint32_t book_depth(const book_t *self, size_t index);
//  The queued_ms of the longest waiting loaded ticket, 0 if none.
int64_t book_oldest(const book_t *self, size_t index);
//  The best head of a queue that an agent may take: any channel for which
//  allowed[channel] is true (NULL = every channel). NULL if none (or only
//  tickets not loaded yet are next).
ticket_t *book_head(book_t *self, size_t index, const bool *allowed);

//  Holders
holder_t *book_holder(book_t *self, const char *agent);
holder_t *book_holder_get(book_t *self, const char *agent); //  made if missing
void book_holder_forget(book_t *self, const char *agent);
//  Every ticket the agent holds: first, then next (the list may change
//  only by removing the ticket last returned).
ticket_t *book_held_first(book_t *self, const char *agent);
ticket_t *book_held_next(book_t *self);
holder_t *book_holder_first(book_t *self);
holder_t *book_holder_next(book_t *self);

//  Write the batch's ticket changes into the journal. A ticket that leaves
//  memory with the batch (closed, or queued beyond its window) stays until
//  the batch is in Redis (a read of it in flight meanwhile would bring back
//  its old state): `going` is called for each, and the caller gives it to
//  book_evict once the batch committed.
typedef void(book_going_fn)(void *arg, ticket_t *ticket);
void book_flush(book_t *self, book_going_fn *going, void *arg);
//  Channels over their window move it down; the tickets now beyond it go
//  with the next book_flush. Call before it.
void book_shrink(book_t *self);
//  Whether a ticket may be forgotten now: closed, or queued beyond its
//  window, and written by a batch that committed.
bool book_evictable(book_t *self, const ticket_t *ticket);
//  Forget a ticket (it is in Redis); a queued one becomes cold.
void book_evict(book_t *self, ticket_t *ticket);
//  Whether a queued ticket is beyond its window (cold, or about to be).
bool book_beyond(const book_t *self, const ticket_t *ticket);
//  Whether every ticket of the queue is in memory.
bool book_complete(const book_t *self, size_t index);
//  Cold tickets of the queue.
uint32_t book_cold(const book_t *self, size_t index);
//  Queues whose depth changed since the last call: index, or -1 when done.
int book_touched_next(book_t *self);

//  Loading (loader.c): a ticket read from Redis as it is there. Returns the
//  ticket added, or NULL if it was in memory already or malformed.
ticket_t *book_load(book_t *self, const uint8_t *stored, size_t len, int64_t now_ms);
//  A ticket read from Redis to act on it, open or closed. NULL if
//  malformed or in memory already.
ticket_t *book_fetched(book_t *self, const uint8_t *stored, size_t len);
//  What the loader found of a queue's channel: its window's upto (P qw),
//  then how many members are beyond it.
void book_window_found(book_t *self, size_t index, int channel, int64_t upto);
void book_cold_found(book_t *self, size_t index, int channel, uint32_t cold);
//  The loader reads the next cold tickets of a channel: returns the
//  window's epoch, to give back to book_loaded. Until then no ticket of the
//  channel leaves memory (it might be missed by the read).
uint64_t book_load_begin(book_t *self, size_t index, int channel);
//  The loader brought the cold tickets of a channel in up to score `upto`
//  (INT64_MAX: every one), or gave up (upto = INT64_MIN). Ignored if the
//  window moved down since (book_shrink): returns false then.
bool book_loaded(book_t *self, size_t index, int channel, uint64_t epoch, int64_t upto);
//  Redis has `id` in agent's held set (or not): what the loader found, so
//  that book_flush removes what does not belong there.
void book_redis_held(book_t *self, ticket_t *ticket, const char *agent);

#endif
