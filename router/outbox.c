/*  outbox.c — see outbox.h. */
#include "outbox.h"
#include "poison.h"
#include "log.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

//  With AddressSanitizer, memory of a batch's arena is poisoned when the
//  batch is done, so an item that keeps a pointer into an earlier batch's
//  arena (a bug: copy what outlives the batch) is reported at once
//  (poison.h).

#define BATCHES     3 //  filling, in flight, being delivered
#define CHUNK_BYTES 65536

typedef struct {
    _Alignas(max_align_t) uint8_t payload[OUTBOX_PAYLOAD_MAX]; //  items cast it to their struct
    outbox_fn *fn;
    uint32_t read;
    bool first; //  outbox_add_first's
} item_t;

//  Strings handed out by outbox_strdup must not move: they live in chunks.
typedef struct chunk {
    struct chunk *next;
    size_t used, size;
    max_align_t data[];
} chunk_t;

struct outbox_batch {
    item_t *items;
    size_t count, size;
    size_t firsts;  //  items added with outbox_add_first
    uint8_t *bytes; //  the arena of outbox_put (may move: offsets only)
    size_t bytes_used, bytes_size;
    chunk_t *chunks; //  outbox_strdup's
};

struct outbox {
    journal_t *journal;
    void *arg;
    outbox_batch_t batches[BATCHES];
    int filling;       //  index of the filling batch
    int sent[BATCHES]; //  indexes of the batches sent, oldest first
    int sent_count;
};

outbox_t *outbox_new(journal_t *journal, void *arg)
{
    outbox_t *self = calloc(1, sizeof(outbox_t));
    if (!self)
        return NULL;
    self->journal = journal;
    self->arg = arg;
    return self;
}

static void s_chunks_free(outbox_batch_t *b)
{
    while (b->chunks) {
        chunk_t *next = b->chunks->next;
        UNPOISON(b->chunks->data, b->chunks->size);
        free(b->chunks);
        b->chunks = next;
    }
}

void outbox_destroy(outbox_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    outbox_t *self = *self_p;
    for (int i = 0; i < BATCHES; i++) {
        free(self->batches[i].items);
        UNPOISON(self->batches[i].bytes, self->batches[i].bytes_size);
        free(self->batches[i].bytes);
        s_chunks_free(&self->batches[i]);
    }
    free(self);
    *self_p = NULL;
}

static void s_oom(const char *what)
{
    log_error("out of memory growing %s", what);
    abort();
}

static void s_add(outbox_t *self, outbox_fn *fn, const void *payload, size_t size, uint32_t read,
                  bool first)
{
    outbox_batch_t *b = &self->batches[self->filling];
    if (b->count == b->size) {
        size_t grown_size = b->size ? b->size * 2 : 256;
        item_t *grown = realloc(b->items, grown_size * sizeof(item_t));
        if (!grown)
            s_oom("the outbox");
        b->items = grown;
        b->size = grown_size;
    }
    item_t *item = &b->items[b->count++];
    item->fn = fn;
    item->read = read;
    item->first = first;
    b->firsts += first;
    if (size > OUTBOX_PAYLOAD_MAX) {
        log_error("outbox payload of %zu bytes is too large (a bug)", size);
        abort();
    }
    if (size)
        memcpy(item->payload, payload, size);
}

void outbox_add(outbox_t *self, outbox_fn *fn, const void *payload, size_t size, uint32_t read)
{
    s_add(self, fn, payload, size, read, false);
}

void outbox_add_first(outbox_t *self, outbox_fn *fn, const void *payload, size_t size,
                      uint32_t read)
{
    s_add(self, fn, payload, size, read, true);
}

uint32_t outbox_put(outbox_t *self, const void *data, size_t len)
{
    outbox_batch_t *b = &self->batches[self->filling];
    //  Offsets stay 8-aligned: items keep arrays of structs here.
    b->bytes_used = (b->bytes_used + 7) & ~(size_t) 7;
    if (b->bytes_used + len > b->bytes_size) {
        size_t size = b->bytes_size ? b->bytes_size : CHUNK_BYTES;
        while (size < b->bytes_used + len)
            size *= 2;
        UNPOISON(b->bytes, b->bytes_size);
        uint8_t *grown = realloc(b->bytes, size);
        if (!grown)
            s_oom("the outbox arena");
        b->bytes = grown;
        b->bytes_size = size;
    }
    uint32_t offset = (uint32_t) b->bytes_used;
    UNPOISON(b->bytes + offset, len);
    if (len)
        memcpy(b->bytes + offset, data, len);
    b->bytes_used += len;
    return offset;
}

void *outbox_alloc(outbox_t *self, size_t size)
{
    outbox_batch_t *b = &self->batches[self->filling];
    size = (size + sizeof(max_align_t) - 1) & ~(sizeof(max_align_t) - 1);
    if (!b->chunks || b->chunks->used + size > b->chunks->size) {
        size_t want = size > CHUNK_BYTES ? size : CHUNK_BYTES;
        chunk_t *chunk = malloc(sizeof(chunk_t) + want);
        if (!chunk)
            s_oom("the outbox arena");
        chunk->next = b->chunks;
        chunk->used = 0;
        chunk->size = want;
        b->chunks = chunk;
    }
    void *p = (char *) b->chunks->data + b->chunks->used;
    b->chunks->used += size;
    UNPOISON(p, size);
    return p;
}

const char *outbox_strdup(outbox_t *self, const char *s)
{
    size_t len = strlen(s) + 1;
    char *copy = outbox_alloc(self, len);
    memcpy(copy, s, len);
    return copy;
}

const uint8_t *outbox_bytes(outbox_batch_t *batch, uint32_t offset)
{
    return batch->bytes + offset;
}

size_t outbox_filling(const outbox_t *self)
{
    return self->batches[self->filling].count;
}

static void s_reset(outbox_batch_t *b)
{
    b->count = 0;
    b->firsts = 0;
    b->bytes_used = 0;
    POISON(b->bytes, b->bytes_size);
    //  Keep one chunk for the next batch.
    if (b->chunks) {
        chunk_t *keep = b->chunks;
        while (keep->next) {
            chunk_t *next = keep->next;
            keep->next = next->next;
            free(next);
        }
        keep->used = 0;
        POISON(keep->data, keep->size);
    }
}

static void s_call(outbox_t *self, outbox_batch_t *b, item_t *item, bool committed)
{
    const redisReply *reply =
        committed && item->read != OUTBOX_NO_READ ? journal_reply(self->journal, item->read) : NULL;
    item->fn(self->arg, b, item->payload, reply, committed);
}

static void s_run(outbox_t *self, int index, bool committed)
{
    outbox_batch_t *b = &self->batches[index];
    //  Items may add items: to the filling batch, never to this one.
    if (b->firsts)
        for (size_t i = 0; i < b->count; i++)
            if (b->items[i].first)
                s_call(self, b, &b->items[i], committed);
    for (size_t i = 0; i < b->count; i++)
        if (!b->items[i].first)
            s_call(self, b, &b->items[i], committed);
    s_reset(b);
}

static int s_free_batch(const outbox_t *self)
{
    for (int i = 0; i < BATCHES; i++) {
        bool used = i == self->filling;
        for (int k = 0; k < self->sent_count; k++)
            used = used || self->sent[k] == i;
        if (!used)
            return i;
    }
    log_error("outbox: no free batch (a bug)");
    abort();
}

void outbox_sent(outbox_t *self)
{
    if (self->sent_count == BATCHES - 1) {
        log_error("outbox: more batches in flight than the journal allows (a bug)");
        abort();
    }
    self->sent[self->sent_count++] = self->filling;
    self->filling = s_free_batch(self);
}

//  Run the oldest batch sent; it stays reserved (in sent) while its items run.
static void s_pop(outbox_t *self, bool committed)
{
    int index = self->sent[0];
    s_run(self, index, committed);
    memmove(self->sent, self->sent + 1, (size_t) (self->sent_count - 1) * sizeof(int));
    self->sent_count--;
}

void outbox_done(outbox_t *self, bool committed)
{
    if (self->sent_count)
        s_pop(self, committed);
}

void outbox_run_filling(outbox_t *self)
{
    int index = self->filling;
    self->sent[self->sent_count++] = index; //  reserve it while it runs
    self->filling = s_free_batch(self);
    s_run(self, index, true);
    self->sent_count--;
}

void outbox_fail_all(outbox_t *self)
{
    while (self->sent_count)
        s_pop(self, false);
    //  The filling one; its items answer, they do not queue more work.
    for (int round = 0; round < 4 && self->batches[self->filling].count; round++) {
        outbox_sent(self);
        s_pop(self, false);
    }
}
