/*  filter.h — a Bloom filter of the external ids Redis holds (P xf).

    A submit with an external id must not create a second ticket: before the
    intake, the router reads P x:EXTERNAL. That read is a round trip of its
    own, before the one that writes the ticket. The filter answers the common
    case without it: "never stored" is certain (the filter has a bit set for
    every id ever stored, in the same transaction as its P x: key), "maybe"
    means read as before. Sized 8 MB by default ([redis]
    idempotency_filter_mb) with 3 bits per id, it answers "maybe" for a new
    id about once in 1,500 after 2 million tickets, once in 20 after 10
    million (then more: never "no" for a stored one). Three bits, not the
    optimal five: each bit is a BITFIELD operation in Redis.

    Redis keeps the filter in P xf, a string whose bits are set with
    BITFIELD in the batch that stores the id; the router reads it back when it
    loads its state. A prefix whose filter is missing while it holds tickets
    (written with the filter off) gets none: every such submit is read.
*/
#ifndef TIER_FILTER_H
#define TIER_FILTER_H

#include "journal.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct filter filter_t;

//  A filter of `bytes` bytes (0: off, every submit is read).
filter_t *filter_new(size_t bytes);
void filter_destroy(filter_t **self_p);

//  Start over from Redis: the value of P xf (NULL if absent) and whether
//  the prefix holds no ticket yet. Queues the write that creates P xf when
//  it is new. The filter is usable afterwards, or not (see filter.h).
void filter_load(filter_t *self, const uint8_t *stored, size_t len, bool fresh, journal_t *journal);
//  Forget everything (Redis was lost: it is loaded again).
void filter_clear(filter_t *self);

//  false: this external id was never stored (no read needed).
bool filter_maybe(const filter_t *self, const char *external_id);
//  The id is being stored: set its bits here, and in Redis with the batch.
void filter_add(filter_t *self, const char *external_id);
//  Write the bits added since the last flush (one BITFIELD) into the batch.
void filter_flush(filter_t *self, journal_t *journal);

#endif
