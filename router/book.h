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
#define BOOK_CHANNELS 7 //  Tier__V1__Channel 1..7

typedef struct book book_t;

//  One queue: a level and a department (NULL = the level's general queue).
typedef struct {
    int level;                            //  1..3
    const char *department;               //  interned, NULL = general
    char name[80];                        //  "L:dept", as in Redis keys (q:L:dept)
    heap_t by_channel[BOOK_CHANNELS + 1]; //  dispatch order, per channel (0 unused)
    heap_t by_wait;                       //  queued_ms, oldest first
    uint32_t unloaded;                    //  members in Redis not loaded yet (after a restart)
    int64_t loaded_upto;                  //  every member scored <= this is loaded
    bool complete;                        //  every member is loaded
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

//  Write the batch's ticket changes into the journal. Closed tickets stay
//  in memory until the batch is in Redis (a read of one in flight
//  meanwhile would bring back its old state): `closed` is called for each,
//  and the caller forgets them with book_evict once the batch committed.
typedef void(book_closed_fn)(void *arg, ticket_t *ticket);
void book_flush(book_t *self, book_closed_fn *closed, void *arg);
//  Forget a closed ticket (it is in Redis).
void book_evict(book_t *self, ticket_t *ticket);
//  Queues whose depth changed since the last call: index, or -1 when done.
int book_touched_next(book_t *self);

//  Loading (loader.c): a ticket read from Redis as it is there. Returns the
//  ticket added, or NULL if it was in memory already or malformed.
ticket_t *book_load(book_t *self, const uint8_t *stored, size_t len, int64_t now_ms);
//  A ticket read from Redis to act on it, open or closed. NULL if
//  malformed or in memory already.
ticket_t *book_fetched(book_t *self, const uint8_t *stored, size_t len);
//  A queue's load progress.
void book_loading(book_t *self, size_t index, uint32_t unloaded, int64_t loaded_upto,
                  bool complete);
//  Redis has `id` in agent's held set (or not): what the loader found, so
//  that book_flush removes what does not belong there.
void book_redis_held(book_t *self, ticket_t *ticket, const char *agent);

#endif
