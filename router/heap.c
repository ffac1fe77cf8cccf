/*  heap.c — see heap.h. */
#include "heap.h"
#include "log.h"

#include <stdlib.h>

#define HEAP_SIZE_MIN 64

static inline uint32_t *s_pos(const heap_t *self, const void *item)
{
    return (uint32_t *) ((char *) item + self->pos_offset);
}

static inline bool s_less(const heap_entry_t *a, const heap_entry_t *b)
{
    return a->key < b->key || (a->key == b->key && a->tie < b->tie);
}

static inline void s_place(heap_t *self, uint32_t at, heap_entry_t entry)
{
    self->entries[at] = entry;
    *s_pos(self, entry.item) = at;
}

static void s_up(heap_t *self, uint32_t at)
{
    heap_entry_t entry = self->entries[at];
    while (at > 0) {
        uint32_t parent = (at - 1) / 2;
        if (!s_less(&entry, &self->entries[parent]))
            break;
        s_place(self, at, self->entries[parent]);
        at = parent;
    }
    s_place(self, at, entry);
}

static void s_down(heap_t *self, uint32_t at)
{
    heap_entry_t entry = self->entries[at];
    for (;;) {
        uint32_t child = 2 * at + 1;
        if (child >= self->count)
            break;
        if (child + 1 < self->count && s_less(&self->entries[child + 1], &self->entries[child]))
            child++;
        if (!s_less(&self->entries[child], &entry))
            break;
        s_place(self, at, self->entries[child]);
        at = child;
    }
    s_place(self, at, entry);
}

void heap_init(heap_t *self, size_t pos_offset)
{
    *self = (heap_t){.pos_offset = pos_offset};
}

void heap_fini(heap_t *self)
{
    for (uint32_t i = 0; i < self->count; i++)
        *s_pos(self, self->entries[i].item) = HEAP_NONE;
    free(self->entries);
    self->entries = NULL;
    self->count = self->size = 0;
}

bool heap_contains(const heap_t *self, const void *item)
{
    uint32_t at = *s_pos(self, item);
    return at < self->count && self->entries[at].item == item;
}

void heap_set(heap_t *self, void *item, int64_t key, uint64_t tie)
{
    heap_entry_t entry = {key, tie, item};
    if (heap_contains(self, item)) {
        uint32_t at = *s_pos(self, item);
        bool up = s_less(&entry, &self->entries[at]);
        self->entries[at] = entry;
        if (up)
            s_up(self, at);
        else
            s_down(self, at);
        return;
    }
    if (self->count == self->size) {
        uint32_t size = self->size ? self->size * 2 : HEAP_SIZE_MIN;
        heap_entry_t *grown = realloc(self->entries, size * sizeof(heap_entry_t));
        if (!grown) {
            log_error("out of memory growing a heap to %u entries", size);
            abort();
        }
        self->entries = grown;
        self->size = size;
    }
    self->entries[self->count++] = entry;
    s_up(self, self->count - 1);
}

void heap_remove(heap_t *self, void *item)
{
    if (!heap_contains(self, item))
        return;
    uint32_t at = *s_pos(self, item);
    *s_pos(self, item) = HEAP_NONE;
    self->count--;
    if (at == self->count)
        return;
    heap_entry_t last = self->entries[self->count];
    self->entries[at] = last;
    *s_pos(self, last.item) = at;
    if (at > 0 && s_less(&last, &self->entries[(at - 1) / 2]))
        s_up(self, at);
    else
        s_down(self, at);
}
