/*  filter.c — see filter.h.

    Bit i of the filter is bit (7 - i % 8) of byte i / 8, as Redis numbers
    the bits of a string (SETBIT, BITFIELD u1), so the value read back with
    GET is the filter itself. HASHES bit positions per id, by double hashing
    of two 64-bit FNV-1a variants.
*/
#include "filter.h"
#include "log.h"

#include <stdlib.h>
#include <string.h>

#define HASHES 3

struct filter {
    uint8_t *bits;     //  the filter
    size_t bytes;      //  its size (power of two), 0 = off
    size_t configured; //  the size asked for
    bool usable;       //  loaded and trustworthy
    uint64_t *pending; //  bit offsets to write to Redis
    size_t pending_count, pending_size;
};

filter_t *filter_new(size_t bytes)
{
    filter_t *self = calloc(1, sizeof(filter_t));
    if (!self)
        return NULL;
    size_t size = 1;
    while (size < bytes)
        size *= 2;
    self->configured = bytes ? size : 0;
    return self;
}

void filter_destroy(filter_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free((*self_p)->bits);
    free((*self_p)->pending);
    free(*self_p);
    *self_p = NULL;
}

void filter_clear(filter_t *self)
{
    free(self->bits);
    self->bits = NULL;
    self->bytes = 0;
    self->usable = false;
    self->pending_count = 0;
}

void filter_load(filter_t *self, const uint8_t *stored, size_t len, bool fresh, journal_t *journal)
{
    filter_clear(self);
    if (!self->configured)
        return;
    size_t size = len ? len : self->configured;
    if (size & (size - 1)) {
        log_warning("redis: the idempotency filter %sxf has %zu bytes, not a power of two; "
                    "it is not used (submits with an external id read Redis first)",
                    journal_prefix(journal), len);
        return;
    }
    if (!len && !fresh) {
        log_notice("redis: no idempotency filter (%sxf) for a prefix that holds tickets: "
                   "submits with an external id read Redis first",
                   journal_prefix(journal));
        return;
    }
    self->bits = calloc(1, size);
    if (!self->bits) {
        log_error("out of memory for the idempotency filter (%zu bytes); going on without it",
                  size);
        return;
    }
    self->bytes = size;
    if (len)
        memcpy(self->bits, stored, len);
    else {
        //  A new prefix: make the whole string now (one allocation in
        //  Redis, not a growth with the first high bit).
        journal_write(journal, 4);
        journal_arg_str(journal, "SETBIT");
        journal_arg_key(journal, "xf", NULL);
        journal_arg_u64(journal, (uint64_t) size * 8 - 1);
        journal_arg_str(journal, "0");
    }
    if (len && len != self->configured)
        log_notice("redis: the idempotency filter has %zu bytes (kept; [redis] "
                   "idempotency_filter_mb applies to new prefixes)",
                   len);
    self->usable = true;
}

static void s_hashes(const char *id, uint64_t *h1, uint64_t *h2)
{
    uint64_t a = 1469598103934665603ULL, b = 1099511628211ULL ^ 0x9E3779B97F4A7C15ULL;
    for (const unsigned char *p = (const unsigned char *) id; *p; p++) {
        a = (a ^ *p) * 1099511628211ULL;
        b = (b ^ *p) * 0x100000001b3ULL + (b >> 29);
    }
    *h1 = a;
    *h2 = b | 1;
}

static inline bool s_get(const filter_t *self, uint64_t bit)
{
    return self->bits[bit >> 3] & (0x80 >> (bit & 7));
}

bool filter_maybe(const filter_t *self, const char *external_id)
{
    if (!self->usable)
        return true;
    uint64_t h1, h2, mask = (uint64_t) self->bytes * 8 - 1;
    s_hashes(external_id, &h1, &h2);
    for (int i = 0; i < HASHES; i++)
        if (!s_get(self, (h1 + (uint64_t) i * h2) & mask))
            return false;
    return true;
}

void filter_add(filter_t *self, const char *external_id)
{
    if (!self->usable)
        return;
    uint64_t h1, h2, mask = (uint64_t) self->bytes * 8 - 1;
    s_hashes(external_id, &h1, &h2);
    for (int i = 0; i < HASHES; i++) {
        uint64_t bit = (h1 + (uint64_t) i * h2) & mask;
        if (s_get(self, bit))
            continue;
        self->bits[bit >> 3] |= (uint8_t) (0x80 >> (bit & 7));
        if (self->pending_count == self->pending_size) {
            size_t size = self->pending_size ? self->pending_size * 2 : 256;
            uint64_t *grown = realloc(self->pending, size * sizeof(uint64_t));
            if (!grown) {
                log_error("out of memory for the idempotency filter");
                abort();
            }
            self->pending = grown;
            self->pending_size = size;
        }
        self->pending[self->pending_count++] = bit;
    }
}

void filter_flush(filter_t *self, journal_t *journal)
{
    if (!self->pending_count)
        return;
    //  BITFIELD P xf SET u1 OFFSET 1 ...
    journal_write(journal, 2 + 4 * (int) self->pending_count);
    journal_arg_str(journal, "BITFIELD");
    journal_arg_key(journal, "xf", NULL);
    for (size_t i = 0; i < self->pending_count; i++) {
        journal_arg_str(journal, "SET");
        journal_arg_str(journal, "u1");
        journal_arg_u64(journal, self->pending[i]);
        journal_arg_str(journal, "1");
    }
    self->pending_count = 0;
}
