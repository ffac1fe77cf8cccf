/*  wire.c — see wire.h. */
#include "wire.h"
#include "log.h"

#include <stdlib.h>

#define BYTES_SIZE_MIN  256
#define WIRE_LEN_INLINE 1 //  bytes reserved for a length by wire_open
#define WIRE_VARINT_MAX 10

void bytes_grow(bytes_t *b, size_t more)
{
    if (b->len + more <= b->size)
        return;
    size_t size = b->size ? b->size : BYTES_SIZE_MIN;
    while (size < b->len + more)
        size *= 2;
    uint8_t *grown = realloc(b->data, size);
    if (!grown) {
        log_error("out of memory growing a buffer to %zu bytes", size);
        abort();
    }
    b->data = grown;
    b->size = size;
}

void bytes_fini(bytes_t *b)
{
    free(b->data);
    *b = (bytes_t){0};
}

size_t wire_open(bytes_t *b, int field)
{
    wire_tag(b, field, WIRE_LEN);
    bytes_reserve(b, WIRE_LEN_INLINE);
    b->len += WIRE_LEN_INLINE;
    return b->len;
}

void wire_close(bytes_t *b, size_t mark)
{
    size_t len = b->len - mark;
    size_t need = wire_varint_size(len);
    if (need > WIRE_LEN_INLINE) {
        bytes_reserve(b, need - WIRE_LEN_INLINE);
        memmove(b->data + mark + need - WIRE_LEN_INLINE, b->data + mark, len);
        b->len += need - WIRE_LEN_INLINE;
    }
    uint8_t *p = b->data + mark - WIRE_LEN_INLINE;
    uint64_t v = len;
    while (v >= 0x80) {
        *p++ = (uint8_t) (v | 0x80);
        v >>= 7;
    }
    *p = (uint8_t) v;
}

static bool s_varint(wire_reader_t *r, uint64_t *v)
{
    uint64_t out = 0;
    for (int shift = 0, i = 0; i < WIRE_VARINT_MAX; i++, shift += 7) {
        if (r->p >= r->end)
            return false;
        uint8_t byte = *r->p++;
        out |= (uint64_t) (byte & 0x7f) << shift;
        if (!(byte & 0x80)) {
            *v = out;
            return true;
        }
    }
    return false;
}

bool wire_next(wire_reader_t *r, wire_field_t *f)
{
    if (!r->p || r->p >= r->end)
        return false;
    f->start = r->p;
    uint64_t tag;
    if (!s_varint(r, &tag))
        goto malformed;
    f->field = (int) (tag >> 3);
    f->type = (int) (tag & 7);
    f->value = 0;
    f->data = NULL;
    f->len = 0;
    switch (f->type) {
    case WIRE_VARINT:
        if (!s_varint(r, &f->value))
            goto malformed;
        return true;
    case WIRE_I64:
        if (r->end - r->p < 8)
            goto malformed;
        memcpy(&f->value, r->p, 8);
        r->p += 8;
        return true;
    case WIRE_I32:
        if (r->end - r->p < 4)
            goto malformed;
        f->value = 0;
        memcpy(&f->value, r->p, 4);
        r->p += 4;
        return true;
    case WIRE_LEN:
        if (!s_varint(r, &f->value) || f->value > (uint64_t) (r->end - r->p))
            goto malformed;
        f->data = r->p;
        f->len = (size_t) f->value;
        r->p += f->len;
        return true;
    default:
        goto malformed;
    }
malformed:
    r->p = NULL;
    return false;
}
