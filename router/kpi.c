/*  kpi.c — see kpi.h. */
#include "kpi.h"
#include "log.h"

#include <czmq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MINUTE_MS     60000LL
#define MINUTE_KEEP_S (2 * 86400LL) //  minute buckets live this long after they end (stats.lua)
#define SLOTS_MAX     4096 //  distinct (minute, where) per batch before an early flush is moot
#define FIELD_MAX     160

static const char *s_names[KPI_RH_FIRST] = {
    "created",      "handled",   "responded", "frt_sum",    "sla_met",    "sla_missed", "resp_n",
    "resp_sum",     "escalated", "esc_h",     "esc_f",      "resolved",   "res_sum",    "one_touch",
    "self_service", "abandoned", "ratings",   "rating_sum", "ratings_4_5"};

//  stats.lua's RES_EDGES: rh<i> counts resolutions of at most edge i ms.
static const int64_t s_edges[] = {1000,      5000,       10000,     30000,    60000,     120000,
                                  300000,    600000,     900000,    1800000,  3600000,   7200000,
                                  14400000,  28800000,   43200000,  86400000, 172800000, 259200000,
                                  604800000, 1209600000, 2592000000};
#define EDGES (sizeof(s_edges) / sizeof(s_edges[0]))

//  Counts gathered for one (minute, channel, level, department, agent).
typedef struct {
    int64_t minute;
    kpi_where_t where;
    int64_t counts[KPI_COUNTERS];
    bool used;
} slot_t;

struct kpi {
    slot_t *slots;
    size_t count, size;
    zhashx_t *fields;      //  "minute|dim|value|counter" -> int64_t* sum (flush scratch)
    int64_t rolled_upto;   //  minutes up to this one are rolled up (or may be)
    int64_t marked_minute; //  the minute whose keys got their expiry
    bool marked[4];        //  per dimension: chan, level, dept, agent
};

static void s_free_sum(void **item)
{
    free(*item);
    *item = NULL;
}

kpi_t *kpi_new(void)
{
    kpi_t *self = calloc(1, sizeof(kpi_t));
    if (!self)
        return NULL;
    self->fields = zhashx_new();
    zhashx_set_destructor(self->fields, s_free_sum);
    self->rolled_upto = -1;
    self->marked_minute = -1;
    return self;
}

void kpi_destroy(kpi_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    kpi_t *self = *self_p;
    free(self->slots);
    zhashx_destroy(&self->fields);
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
            if (!grown) {
                log_error("out of memory gathering service-level counts");
                abort();
            }
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

static void s_counter_name(kpi_counter_t counter, char *out, size_t size)
{
    if (counter < KPI_RH_FIRST)
        snprintf(out, size, "%s", s_names[counter]);
    else
        snprintf(out, size, "rh%d", (int) (counter - KPI_RH_FIRST) + 1);
}

static void s_sum(kpi_t *self, int64_t minute, const char *dim, const char *value,
                  kpi_counter_t counter, int64_t n)
{
    char name[32], key[FIELD_MAX];
    s_counter_name(counter, name, sizeof(name));
    snprintf(key, sizeof(key), "%lld|%s|%s|%s", (long long) minute, dim, value, name);
    int64_t *sum = zhashx_lookup(self->fields, key);
    if (!sum) {
        sum = calloc(1, sizeof(int64_t));
        if (!sum) {
            log_error("out of memory gathering service-level counts");
            abort();
        }
        zhashx_insert(self->fields, key, sum);
    }
    *sum += n;
}

//  The hash field "value|counter" and its key's parts, from a merged key
//  "minute|dim|value|counter" (the value may hold '|': an agent id).
static bool s_split(const char *key, int64_t *minute, const char **dim, size_t *dim_len,
                    const char **field)
{
    const char *a = strchr(key, '|');
    const char *b = a ? strchr(a + 1, '|') : NULL;
    if (!a || !b)
        return false;
    *minute = strtoll(key, NULL, 10);
    *dim = a + 1;
    *dim_len = (size_t) (b - a - 1);
    *field = b + 1;
    return true;
}

//  A minute bucket is written with plain HINCRBYs in the batch's
//  transaction; the first time this router writes a (minute, dimension)
//  the key gets its expiry and the minute goes to k:pending for the
//  rollup (stats.lua, tier_rollup).
static void s_write_plain(kpi_t *self, journal_t *journal, int64_t minute, const char *dim,
                          size_t dim_len, const char *field, int64_t n)
{
    char key[96];
    int len = snprintf(key, sizeof(key), "k:m:%lld:%.*s", (long long) minute, (int) dim_len, dim);
    if (len <= 0 || (size_t) len >= sizeof(key))
        return;
    journal_write(journal, 4);
    journal_arg_str(journal, "HINCRBY");
    journal_arg_key(journal, key, NULL);
    journal_arg_str(journal, field);
    journal_arg_i64(journal, n);
    if (minute != self->marked_minute) {
        self->marked_minute = minute;
        memset(self->marked, 0, sizeof(self->marked));
        journal_write(journal, 4);
        journal_arg_str(journal, "ZADD");
        journal_arg_key(journal, "k:pending", NULL);
        journal_arg_i64(journal, minute);
        journal_arg_i64(journal, minute);
    }
    int d = dim_len == 4 && !memcmp(dim, "chan", 4)    ? 0
            : dim_len == 5 && !memcmp(dim, "level", 5) ? 1
            : dim_len == 4 && !memcmp(dim, "dept", 4)  ? 2
                                                       : 3;
    if (!self->marked[d]) {
        self->marked[d] = true;
        journal_write(journal, 3);
        journal_arg_str(journal, "EXPIREAT");
        journal_arg_key(journal, key, NULL);
        journal_arg_i64(journal, (minute + MINUTE_MS) / 1000 + MINUTE_KEEP_S);
    }
}

void kpi_flush(kpi_t *self, journal_t *journal, int64_t now_ms)
{
    if (!self->count)
        return;
    for (size_t i = 0; i < self->count; i++) {
        const slot_t *s = &self->slots[i];
        char chan[8], level[8];
        snprintf(chan, sizeof(chan), "%d", s->where.channel);
        snprintf(level, sizeof(level), "%d", s->where.level);
        for (int c = 0; c < KPI_COUNTERS; c++) {
            if (!s->counts[c])
                continue;
            s_sum(self, s->minute, "chan", chan, (kpi_counter_t) c, s->counts[c]);
            s_sum(self, s->minute, "level", level, (kpi_counter_t) c, s->counts[c]);
            s_sum(self, s->minute, "dept", s->where.department ? s->where.department : "",
                  (kpi_counter_t) c, s->counts[c]);
            if (s->where.agent)
                s_sum(self, s->minute, "agent", s->where.agent, (kpi_counter_t) c, s->counts[c]);
        }
    }
    //  Minutes already rolled up into hours and days (a clock that went
    //  back, another router's) need stats.lua's care: FCALL tier_kpi.
    size_t late = 0;
    for (int64_t *sum = zhashx_first(self->fields); sum; sum = zhashx_next(self->fields)) {
        int64_t minute;
        const char *dim, *field;
        size_t dim_len;
        if (!s_split(zhashx_cursor(self->fields), &minute, &dim, &dim_len, &field))
            continue;
        if (minute <= self->rolled_upto)
            late++;
        else
            s_write_plain(self, journal, minute, dim, dim_len, field, *sum);
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
        for (int64_t *sum = zhashx_first(self->fields); sum; sum = zhashx_next(self->fields)) {
            int64_t minute;
            const char *dim, *field;
            size_t dim_len;
            if (!s_split(zhashx_cursor(self->fields), &minute, &dim, &dim_len, &field) ||
                minute > self->rolled_upto)
                continue;
            journal_arg_i64(journal, minute);
            journal_arg(journal, dim, dim_len);
            journal_arg_str(journal, field);
            journal_arg_i64(journal, *sum);
        }
    }
    zhashx_purge(self->fields);
    self->count = 0;
}

void kpi_rolled(kpi_t *self, int64_t minute)
{
    if (minute > self->rolled_upto)
        self->rolled_upto = minute;
}
