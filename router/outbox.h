/*  outbox.h — what to do once a batch is in Redis.

    Nothing the router decides is told to anyone before the batch holding it
    has committed: answers, offers, events all wait in the outbox of their
    batch. An item is a function, a small payload copied in (up to
    OUTBOX_PAYLOAD_MAX bytes), and optionally the index of one of the
    batch's reads, whose reply the function gets. Bytes an item needs
    (identities, packed messages, event strings) go in the batch's arena.

    The outbox keeps the batch being filled, and those sent, oldest first:
    outbox_sent when the journal sends the filling one, outbox_done when the
    oldest sent one has its outcome. Items then run in the order they were
    added, those added with outbox_add_first before the others; with
    committed = false when the batch failed (they should answer
    "unavailable" and let go of what they own).
*/
#ifndef TIER_OUTBOX_H
#define TIER_OUTBOX_H

#include "journal.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define OUTBOX_PAYLOAD_MAX 96
#define OUTBOX_NO_READ     UINT32_MAX

typedef struct outbox outbox_t;
typedef struct outbox_batch outbox_batch_t;

//  reply: the read's reply (NULL without a read, or when not committed).
typedef void(outbox_fn)(void *arg, outbox_batch_t *batch, void *payload, const redisReply *reply,
                        bool committed);

outbox_t *outbox_new(journal_t *journal, void *arg);
void outbox_destroy(outbox_t **self_p);

//  Add an item to the filling batch.
void outbox_add(outbox_t *self, outbox_fn *fn, const void *payload, size_t size, uint32_t read);
//  The same, for an item that runs before the batch's others (in the order
//  such items were added): what goes to workers, whose offers are the
//  latency that matters (docs/performance.md 6.2). An item that must follow
//  another must be added the same way as that one.
void outbox_add_first(outbox_t *self, outbox_fn *fn, const void *payload, size_t size,
                      uint32_t read);
//  Copy bytes into the filling batch's arena; returns their offset (a
//  multiple of 8: arrays of structs may be kept there).
uint32_t outbox_put(outbox_t *self, const void *data, size_t len);
//  A string into the filling batch's arena, NUL-terminated; returns it. The
//  pointer stays valid until the batch is done (the arena grows by chunks).
const char *outbox_strdup(outbox_t *self, const char *s);
//  size bytes (aligned) in the filling batch's arena, valid until the batch
//  is done (not moved as the arena grows). For protobuf-c's unpack of a
//  request whose items are in this batch.
void *outbox_alloc(outbox_t *self, size_t size);
//  Bytes of a batch's arena (during its items).
const uint8_t *outbox_bytes(outbox_batch_t *batch, uint32_t offset);

//  Items waiting in the filling batch.
size_t outbox_filling(const outbox_t *self);
//  The journal sent the filling batch.
void outbox_sent(outbox_t *self);
//  The oldest batch sent has this outcome: run its items.
void outbox_done(outbox_t *self, bool committed);
//  Run the filling batch's items now, as committed (nothing in it needed
//  Redis and nothing is in flight).
void outbox_run_filling(outbox_t *self);
//  Fail every batch: those sent and the filling one.
void outbox_fail_all(outbox_t *self);

#endif
