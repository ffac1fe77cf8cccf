/*  loader.h — the router's state, read back from Redis.

    At start, and after every reconnect (the outcome of the batches in
    flight when Redis went away is unknown, so memory starts over), the
    loader reads what the book needs, in this order:

      1. the format, the last ticket id and event seq, the known agents,
         the deferred tickets, the queue names and the idempotency filter;
      2. what each agent holds (P w:AGENT), every held and deferred ticket,
         and per queue and channel its warm tickets (those that were in
         memory: P q:NAME:C up to its window, P qw) and how many are cold
         (beyond it, book.h);
      3. the warm tickets, a few MGETs per round trip.

    Then the router is ready. Its queues' cold tickets stay in Redis: as a
    channel's memory runs low (loader_step), the next of them are read, a
    chunk per round trip. With a million queued tickets it dispatches again
    within milliseconds, and holds a few thousand per queue in memory.
    Agents known to Redis that do not register again are given a lease
    (2 x liveness x heartbeat from the moment the state is loaded); then what
    they hold goes back to its queues.
*/
#ifndef TIER_LOADER_H
#define TIER_LOADER_H

#include "book.h"
#include "filter.h"
#include "journal.h"
#include "lifecycle.h"
#include "outbox.h"

#include <stdbool.h>
#include <stdint.h>

#define STORE_FORMAT "3" //  P format: the data model of docs/data-model.md

typedef struct loader loader_t;

//  The loader reports: ready (the core is loaded: seq is the last event
//  number), or failed (the Redis data cannot be used: why).
typedef void(loader_ready_fn)(void *arg, uint64_t seq);
typedef void(loader_failed_fn)(void *arg, const char *why);
//  Cold tickets came into memory: dispatch may find work it did not before.
typedef void(loader_more_fn)(void *arg);

typedef struct {
    book_t *book;
    journal_t *journal;
    outbox_t *outbox;
    lifecycle_t *lifecycle;
    filter_t *filter; //  the idempotency filter, loaded with the rest
    int64_t lease_ms; //  for agents that do not come back
    loader_ready_fn *ready;
    loader_failed_fn *failed;
    loader_more_fn *more;
    void *arg;
} loader_config_t;

loader_t *loader_new(const loader_config_t *config);
void loader_destroy(loader_t **self_p);

//  Start over (the book was cleared): queue the first reads.
void loader_start(loader_t *self, int64_t now_ms);
//  Cold tickets: call every loop turn; queues the next chunk's reads of a
//  channel whose memory runs low.
void loader_step(loader_t *self, int64_t now_ms);
bool loader_ready(const loader_t *self);
//  The last KPI minute rolled up into hours and days (P k:done), -1 if none.
int64_t loader_rolled_upto(const loader_t *self);
//  Tickets loaded so far (for status lines).
uint64_t loader_loaded(const loader_t *self);

#endif
