/*  tierarena.c — see tierarena.h. */
#include "tierarena.h"

#include <stdalign.h>
#include <stdint.h>
#include <stdlib.h>

#define ARENA_INITIAL 1024 //  bytes of the block at first use
#define ARENA_ALIGN   alignof(max_align_t)

//  One allocation that did not fit in the block, freed at the reset.
typedef struct chunk {
    struct chunk *next; //  the chunk allocated before this one
} chunk_t;

struct tier_arena {
    ProtobufCAllocator allocator; //  what protobuf-c calls; allocator_data is the arena
    uint8_t *block;               //  the reused block, or NULL before the first use
    size_t size;                  //  bytes in block
    size_t used;                  //  bytes of block handed out since the reset
    chunk_t *chunks;              //  overflow allocations since the reset
    size_t overflow;              //  bytes in chunks
    size_t keep_max;              //  the block grows up to this
};

static void *s_alloc(void *data, size_t size)
{
    tier_arena_t *arena = (tier_arena_t *) data;
    size = size ? (size + ARENA_ALIGN - 1) & ~(ARENA_ALIGN - 1) : ARENA_ALIGN;
    if (arena->block && arena->size - arena->used >= size) {
        void *pointer = arena->block + arena->used;
        arena->used += size;
        return pointer;
    }
    //  The header takes ARENA_ALIGN bytes so that what follows stays aligned.
    chunk_t *chunk = (chunk_t *) malloc(ARENA_ALIGN + size);
    if (!chunk)
        return NULL;
    chunk->next = arena->chunks;
    arena->chunks = chunk;
    arena->overflow += size;
    return (uint8_t *) chunk + ARENA_ALIGN;
}

static void s_free(void *data, void *pointer)
{
    (void) data; //  everything goes at the next reset
    (void) pointer;
}

static void s_release_chunks(tier_arena_t *arena)
{
    while (arena->chunks) {
        chunk_t *next = arena->chunks->next;
        free(arena->chunks);
        arena->chunks = next;
    }
    arena->overflow = 0;
}

tier_arena_t *tier_arena_new(size_t keep_max)
{
    tier_arena_t *arena = (tier_arena_t *) calloc(1, sizeof(tier_arena_t));
    if (arena) {
        arena->allocator.alloc = s_alloc;
        arena->allocator.free = s_free;
        arena->allocator.allocator_data = arena;
        arena->keep_max = keep_max;
    }
    return arena;
}

void tier_arena_destroy(tier_arena_t **arena_p)
{
    if (!arena_p || !*arena_p)
        return;
    s_release_chunks(*arena_p);
    free((*arena_p)->block);
    free(*arena_p);
    *arena_p = NULL;
}

ProtobufCAllocator *tier_arena_allocator(tier_arena_t *arena)
{
    return &arena->allocator;
}

void tier_arena_reset(tier_arena_t *arena)
{
    size_t want = arena->block ? arena->size + arena->overflow : ARENA_INITIAL;
    if (want > arena->size && want <= arena->keep_max) {
        uint8_t *block = (uint8_t *) malloc(want);
        if (block) {
            free(arena->block);
            arena->block = block;
            arena->size = want;
        }
    }
    s_release_chunks(arena);
    arena->used = 0;
}
