/*  heap.h — an indexed binary min-heap of items with an int64 key.

    Each item keeps its own position (a uint32_t slot inside the item, given
    by the caller as an offset), so an item can be removed or re-keyed in
    O(log n) without a search. The router keeps its queues (one heap per
    channel of a queue, keyed by dispatch order) and its timers (keyed by due
    time) this way: the next ticket out and the next deadline cost the same
    with 100 or 1,000,000 tickets.

    Ties are broken by a second key, the tie value the caller gives (a
    ticket id), so the order is total and the same after a restart.
*/
#ifndef TIER_HEAP_H
#define TIER_HEAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HEAP_NONE UINT32_MAX //  position of an item in no heap

typedef struct {
    int64_t key;  //  smaller first
    uint64_t tie; //  then smaller first
    void *item;   //  the caller's
} heap_entry_t;

typedef struct {
    heap_entry_t *entries; //  entries[0] is the minimum
    uint32_t count;        //  entries used
    uint32_t size;         //  entries allocated
    size_t pos_offset;     //  where an item keeps its position (uint32_t)
} heap_t;

//  An empty heap whose items keep their position at pos_offset
//  (offsetof(item_type, field)); the field must be set to HEAP_NONE first.
void heap_init(heap_t *self, size_t pos_offset);
void heap_fini(heap_t *self);

//  Insert item, or move it to the new key if it is in this heap already.
void heap_set(heap_t *self, void *item, int64_t key, uint64_t tie);
//  Remove item if it is in this heap.
void heap_remove(heap_t *self, void *item);
//  Whether item is in a heap (this one, if the caller only uses one per slot).
bool heap_contains(const heap_t *self, const void *item);

static inline uint32_t heap_count(const heap_t *self)
{
    return self->count;
}
//  The minimum, or NULL.
static inline const heap_entry_t *heap_min(const heap_t *self)
{
    return self->count ? &self->entries[0] : NULL;
}

#endif
