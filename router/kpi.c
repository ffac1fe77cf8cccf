/*  kpi.c — see kpi.h. */
#include "kpi.h"
#include "log.h"
#include "wire.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MINUTE_MS      60000LL
#define MINUTE_KEEP_S  (2 * 86400LL) //  minute buckets live this long after they end (stats.lua)
#define DIMS           4
#define FIELD_TEXT_MAX 320 //  "value|counter": agent ids are at most 200 bytes, departments shorter

//  The counters' field names (stats.lua's), then rh1 .. rh22: resolutions
//  of at most stats.lua's RES_EDGES[i] ms.
static const char *s_names[KPI_COUNTERS] = {
    "created",     "handled",   "responded",    "frt_sum",   "sla_met", "sla_missed",
    "resp_n",      "resp_sum",  "escalated",    "esc_h",     "esc_f",   "resolved",
    "res_sum",     "one_touch", "self_service", "abandoned", "ratings", "rating_sum",
    "ratings_4_5", "rh1",       "rh2",          "rh3",       "rh4",     "rh5",
    "rh6",         "rh7",       "rh8",          "rh9",       "rh10",    "rh11",
    "rh12",        "rh13",      "rh14",         "rh15",      "rh16",    "rh17",
    "rh18",        "rh19",      "rh20",         "rh21",      "rh22"};

static const int64_t s_edges[] = {1000,      5000,       10000,     30000,    60000,     120000,
                                  300000,    600000,     900000,    1800000,  3600000,   7200000,
                                  14400000,  28800000,   43200000,  86400000, 172800000, 259200000,
                                  604800000, 1209600000, 2592000000};
#define EDGES (sizeof(s_edges) / sizeof(s_edges[0]))

//  The four dimensions, in the order of kpi_t.marked.
typedef enum { DIM_CHAN, DIM_LEVEL, DIM_DEPT, DIM_AGENT } dim_t;
static const char *s_dims[DIMS] = {"chan", "level", "dept", "agent"};

//  Counts gathered for one (minute, channel, level, department, agent).
typedef struct {
    int64_t minute;
    kpi_where_t where;
    int64_t counts[KPI_COUNTERS];
} slot_t;

//  One hash field of one minute bucket, summed over the batch's slots: the
//  value is a number (channel, level) or an interned string (department,
//  agent: pointers compare).
typedef struct {
    int64_t minute;
    const char *text;
    int number;
    uint8_t dim;
    uint8_t counter;
    int64_t sum;
} field_t;

struct kpi {
    slot_t *slots;
    size_t count, size;
    field_t *fields; //  kpi_flush's scratch: the batch's fields, in order found
    size_t nfields, fields_size;
    uint32_t *index; //  open addressing over fields: index[i] valid when stamp[i] == gen
    uint32_t *stamp;
    size_t index_size; //  a power of two, at least twice fields_size
    uint32_t gen;
    int64_t rolled_upto;   //  minutes up to this one are rolled up (or may be)
    int64_t marked_minute; //  the minute whose keys got their expiry
    bool marked[DIMS];
    char keys[DIMS][48]; //  "k:m:MINUTE:DIM" of keys_minute
    int64_t keys_minute;
};

static void s_oom(void)
{
    log_error("out of memory gathering service-level counts");
    abort();
}

kpi_t *kpi_new(void)
{
    kpi_t *self = calloc(1, sizeof(kpi_t));
    if (!self)
        return NULL;
    self->rolled_upto = -1;
    self->marked_minute = -1;
    self->keys_minute = -1;
    return self;
}

void kpi_destroy(kpi_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    kpi_t *self = *self_p;
    free(self->slots);
    free(self->fields);
    free(self->index);
    free(self->stamp);
    free(self);
    *self_p = NULL;
}

kpi_counter_t kpi_resolution_bucket(int64_t ms)
{
    for (size_t i = 0; i < EDGES; i++)
        if (ms <= s_edges[i])
            return (kpi_counter_t) (KPI_RH_FIRST + i);
    return (kpi_counter_t) (KPI_RH_FIRST + EDGES);
}

static bool s_same(const slot_t *s, int64_t minute, const kpi_where_t *w)
{
    //  Departments and agents are interned: pointers compare.
    return s->minute == minute && s->where.channel == w->channel && s->where.level == w->level &&
           s->where.department == w->department && s->where.agent == w->agent;
}

void kpi_add(kpi_t *self, int64_t now_ms, const kpi_where_t *where, kpi_counter_t counter,
             int64_t n)
{
    int64_t minute = now_ms - now_ms % MINUTE_MS;
    slot_t *slot = NULL;
    //  A batch touches few slots (agents x channels): a short scan, newest first.
    for (size_t i = self->count; i-- > 0;)
        if (s_same(&self->slots[i], minute, where)) {
            slot = &self->slots[i];
            break;
        }
    if (!slot) {
        if (self->count == self->size) {
            size_t size = self->size ? self->size * 2 : 16;
            slot_t *grown = realloc(self->slots, size * sizeof(slot_t));
            if (!grown)
                s_oom();
            self->slots = grown;
            self->size = size;
        }
        slot = &self->slots[self->count++];
        memset(slot, 0, sizeof(*slot));
        slot->minute = minute;
        slot->where = *where;
    }
    slot->counts[counter] += n;
}

void kpi_clear(kpi_t *self)
{
    self->count = 0;
    //  The batch that gave a minute its expiry and k:pending entry may be
    //  the one that failed: give them again.
    self->marked_minute = -1;
}

//  Room for `fields` fields in the scratch, and an empty index.
static void s_reserve(kpi_t *self, size_t fields)
{
    if (fields > self->fields_size) {
        field_t *grown = realloc(self->fields, fields * sizeof(field_t));
        if (!grown)
            s_oom();
        self->fields = grown;
        self->fields_size = fields;
    }
    if (self->index_size < 2 * fields) {
        size_t size = 64;
        while (size < 2 * fields)
            size *= 2;
        free(self->index);
        free(self->stamp);
        self->index = malloc(size * sizeof(uint32_t));
        self->stamp = calloc(size, sizeof(uint32_t));
        if (!self->index || !self->stamp)
            s_oom();
        self->index_size = size;
        self->gen = 0;
    }
    if (++self->gen == 0) { //  wrapped: every stamp is stale again
        memset(self->stamp, 0, self->index_size * sizeof(uint32_t));
        self->gen = 1;
    }
    self->nfields = 0;
}

static void s_sum(kpi_t *self, int64_t minute, dim_t dim, const char *text, int number, int counter,
                  int64_t n)
{
    uint64_t h = (uint64_t) minute * 0x9E3779B97F4A7C15ULL;
    h ^= ((uint64_t) (uintptr_t) text + (uint64_t) (uint32_t) number) * 0xC2B2AE3D27D4EB4FULL;
    h ^= (uint64_t) (dim * KPI_COUNTERS + counter) * 0x165667B19E3779F9ULL;
    h ^= h >> 29;
    size_t mask = self->index_size - 1;
    for (size_t i = (size_t) h & mask;; i = (i + 1) & mask) {
        if (self->stamp[i] != self->gen) {
            self->stamp[i] = self->gen;
            self->index[i] = (uint32_t) self->nfields;
            self->fields[self->nfields++] =
                (field_t){minute, text, number, (uint8_t) dim, (uint8_t) counter, n};
            return;
        }
        field_t *f = &self->fields[self->index[i]];
        if (f->minute == minute && f->text == text && f->number == number && f->dim == dim &&
            f->counter == counter) {
            f->sum += n;
            return;
        }
    }
}

//  The hash field "value|counter" of a field; returns its length (out has
//  FIELD_TEXT_MAX bytes). Made by hand: snprintf was most of kpi_flush.
static size_t s_field_name(const field_t *f, char *out)
{
    size_t len = 0;
    if (f->text) {
        len = strnlen(f->text, FIELD_TEXT_MAX - 16);
        memcpy(out, f->text, len);
    } else {
        if (f->number < 0)
            out[len++] = '-';
        len += wire_decimal(f->number < 0 ? -(uint64_t) (int64_t) f->number : (uint64_t) f->number,
                            out + len);
    }
    out[len++] = '|';
    size_t name = strlen(s_names[f->counter]);
    memcpy(out + len, s_names[f->counter], name);
    return len + name;
}

//  "k:m:MINUTE:DIM", made once per minute.
static const char *s_key(kpi_t *self, int64_t minute, dim_t dim)
{
    if (minute != self->keys_minute) {
        for (int d = 0; d < DIMS; d++)
            snprintf(self->keys[d], sizeof(self->keys[d]), "k:m:%lld:%s", (long long) minute,
                     s_dims[d]);
        self->keys_minute = minute;
    }
    return self->keys[dim];
}

//  A minute bucket is written with plain HINCRBYs in the batch's
//  transaction; the first time this router writes a (minute, dimension)
//  the key gets its expiry and the minute goes to k:pending for the
//  rollup (stats.lua, tier_rollup).
static void s_write_plain(kpi_t *self, journal_t *journal, const field_t *f)
{
    const char *key = s_key(self, f->minute, (dim_t) f->dim);
    char field[FIELD_TEXT_MAX];
    size_t field_len = s_field_name(f, field);
    journal_write(journal, 4);
    journal_arg_str(journal, "HINCRBY");
    journal_arg_key(journal, key, NULL);
    journal_arg(journal, field, field_len);
    journal_arg_i64(journal, f->sum);
    if (f->minute != self->marked_minute) {
        self->marked_minute = f->minute;
        memset(self->marked, 0, sizeof(self->marked));
        journal_write(journal, 4);
        journal_arg_str(journal, "ZADD");
        journal_arg_key(journal, "k:pending", NULL);
        journal_arg_i64(journal, f->minute);
        journal_arg_i64(journal, f->minute);
    }
    if (!self->marked[f->dim]) {
        self->marked[f->dim] = true;
        journal_write(journal, 3);
        journal_arg_str(journal, "EXPIREAT");
        journal_arg_key(journal, key, NULL);
        journal_arg_i64(journal, (f->minute + MINUTE_MS) / 1000 + MINUTE_KEEP_S);
    }
}

void kpi_flush(kpi_t *self, journal_t *journal, int64_t now_ms)
{
    if (!self->count)
        return;
    size_t used = 0;
    for (size_t i = 0; i < self->count; i++)
        for (int c = 0; c < KPI_COUNTERS; c++)
            used += self->slots[i].counts[c] != 0;
    s_reserve(self, used * DIMS);
    for (size_t i = 0; i < self->count; i++) {
        const slot_t *s = &self->slots[i];
        const char *dept = s->where.department ? s->where.department : "";
        for (int c = 0; c < KPI_COUNTERS; c++) {
            int64_t n = s->counts[c];
            if (!n)
                continue;
            s_sum(self, s->minute, DIM_CHAN, NULL, s->where.channel, c, n);
            s_sum(self, s->minute, DIM_LEVEL, NULL, s->where.level, c, n);
            s_sum(self, s->minute, DIM_DEPT, dept, 0, c, n);
            if (s->where.agent)
                s_sum(self, s->minute, DIM_AGENT, s->where.agent, 0, c, n);
        }
    }
    //  Minutes already rolled up into hours and days (a clock that went
    //  back, another router's) need stats.lua's care: FCALL tier_kpi.
    size_t late = 0;
    for (size_t i = 0; i < self->nfields; i++) {
        if (self->fields[i].minute <= self->rolled_upto)
            late++;
        else
            s_write_plain(self, journal, &self->fields[i]);
    }
    if (late) {
        //  FCALL tier_kpi 0 prefix now n (minute dim field increment)...
        journal_write(journal, 6 + 4 * (int) late);
        journal_arg_str(journal, "FCALL");
        journal_arg_str(journal, "tier_kpi");
        journal_arg_str(journal, "0");
        journal_arg_str(journal, journal_prefix(journal));
        journal_arg_i64(journal, now_ms);
        journal_arg_u64(journal, late);
        for (size_t i = 0; i < self->nfields; i++) {
            const field_t *f = &self->fields[i];
            if (f->minute > self->rolled_upto)
                continue;
            char field[FIELD_TEXT_MAX];
            size_t field_len = s_field_name(f, field);
            journal_arg_i64(journal, f->minute);
            journal_arg_str(journal, s_dims[f->dim]);
            journal_arg(journal, field, field_len);
            journal_arg_i64(journal, f->sum);
        }
    }
    self->count = 0;
}

void kpi_rolled(kpi_t *self, int64_t minute)
{
    if (minute > self->rolled_upto)
        self->rolled_upto = minute;
}
