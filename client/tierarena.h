/*  tierarena.h — a bump allocator for protobuf-c, one message at a time.

    A message unpacked into an arena costs no malloc once the arena's block
    has grown to the largest message seen: the arena is emptied, not freed,
    before the next one. What does not fit goes into chunks of its own, and
    the block grows by their size at the next reset, up to keep_max.

    Used by libtierclient (the answer tierclient_recv_borrowed lends out)
    and libtierworker (each job's Offer, and the message being handled).
*/
#ifndef TIER_ARENA_H
#define TIER_ARENA_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>

typedef struct tier_arena tier_arena_t;

//  NULL when out of memory. The block grows to at most keep_max bytes.
tier_arena_t *tier_arena_new(size_t keep_max);
void tier_arena_destroy(tier_arena_t **arena_p);

//  What protobuf-c unpacks into; free is a no-op.
ProtobufCAllocator *tier_arena_allocator(tier_arena_t *arena);

//  Forgets everything handed out; the memory stays for the next message.
void tier_arena_reset(tier_arena_t *arena);

#endif
