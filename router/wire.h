/*  wire.h — protobuf's wire format by hand, for the router's hot paths.

    protobuf-c packs and unpacks whole messages through their descriptors;
    the router's stored tickets are concatenations of small steps
    (proto/store.proto) that it writes and reads field by field, and offers
    wrap those bytes without decoding them. These helpers write and read the
    encoding directly into a growable byte buffer: varints, tags,
    length-delimited fields. A field is always written, zero values
    included, because in a concatenation of steps a later zero must override
    an earlier value.
*/
#ifndef TIER_WIRE_H
#define TIER_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define WIRE_VARINT 0
#define WIRE_I64    1
#define WIRE_LEN    2
#define WIRE_I32    5

//  A growable byte buffer. Zero-initialise it; free with bytes_fini.
typedef struct {
    uint8_t *data; //  the bytes
    size_t len;    //  used
    size_t size;   //  allocated
} bytes_t;

//  Make room for `more` bytes past len; aborts when out of memory.
void bytes_grow(bytes_t *b, size_t more);
static inline void bytes_reserve(bytes_t *b, size_t more)
{
    if (b->len + more > b->size)
        bytes_grow(b, more);
}
void bytes_fini(bytes_t *b);
static inline void bytes_clear(bytes_t *b)
{
    b->len = 0;
}
static inline void bytes_put(bytes_t *b, const void *data, size_t len)
{
    bytes_reserve(b, len);
    if (len)
        memcpy(b->data + b->len, data, len);
    b->len += len;
}

static inline size_t wire_varint_size(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}
static inline void wire_varint(bytes_t *b, uint64_t v)
{
    bytes_reserve(b, 10);
    uint8_t *p = b->data + b->len;
    while (v >= 0x80) {
        *p++ = (uint8_t) (v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t) v;
    b->len = (size_t) (p - b->data);
}
static inline void wire_tag(bytes_t *b, int field, int type)
{
    wire_varint(b, ((uint64_t) field << 3) | (uint64_t) type);
}
//  uint32/uint64/enum/bool fields; int64 fields as two's complement, as
//  protobuf encodes int64 (negative values take ten bytes).
static inline void wire_u64(bytes_t *b, int field, uint64_t v)
{
    wire_tag(b, field, WIRE_VARINT);
    wire_varint(b, v);
}
static inline void wire_bytes(bytes_t *b, int field, const void *data, size_t len)
{
    wire_tag(b, field, WIRE_LEN);
    wire_varint(b, len);
    bytes_put(b, data, len);
}
static inline void wire_str(bytes_t *b, int field, const char *s)
{
    wire_bytes(b, field, s ? s : "", s ? strlen(s) : 0);
}
//  Strings with a default: nothing written for "" (for messages built once,
//  not for steps).
static inline void wire_str_opt(bytes_t *b, int field, const char *s)
{
    if (s && *s)
        wire_str(b, field, s);
}
static inline void wire_u64_opt(bytes_t *b, int field, uint64_t v)
{
    if (v)
        wire_u64(b, field, v);
}

//  v in decimal into out (at least 21 bytes), NUL-terminated; returns the
//  length. For hot paths, where snprintf is a large share of the cost.
static inline size_t wire_decimal(uint64_t v, char *out)
{
    char tmp[21];
    size_t n = 0;
    do {
        tmp[n++] = (char) ('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    out[n] = 0;
    return n;
}

//  A length-delimited field whose content is written after: open returns a
//  mark, close writes the length in front of the content (the content is
//  moved when its length takes more than one byte).
size_t wire_open(bytes_t *b, int field);
void wire_close(bytes_t *b, size_t mark);

//  Reading: a cursor over bytes.
typedef struct {
    const uint8_t *p;   //  next byte
    const uint8_t *end; //  one past the last
} wire_reader_t;

//  One field: its number and type, and its value (varint) or bytes (length
//  delimited). Returns false at the end or on malformed input (then
//  reader->p == NULL).
typedef struct {
    int field;
    int type;
    uint64_t value;
    const uint8_t *data;
    size_t len;
    const uint8_t *start; //  where the field's tag began
} wire_field_t;

bool wire_next(wire_reader_t *reader, wire_field_t *f);

#endif
