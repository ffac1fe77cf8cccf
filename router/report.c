/*  report.c — see report.h.

    Reading order: report_call_begin (the request), then the payload parser
    (s_parse_*), the grouping (labels, merging, order) and the arithmetic
    (s_row_new), then report_reply_new, which ties them together.
*/
#include "report.h"
#include "tierjson.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MS_PER_S  1000.0
#define HIST_MAX  32 //  resolution histogram buckets we read (stats.lua has 22)
#define LABEL_MAX 64 //  a row's label: channel, level, department, agent, hour, date
#define P50       0.5
#define P90       0.9

//  Payload positions (stats.lua, tier_report).
enum { PAY_SINCE, PAY_UNTIL, PAY_BY, PAY_EDGES, PAY_CHANNELS, PAY_ROWS, PAY_FIELDS };

//  The counters stats.lua keeps, in the order of s_counter_names.
typedef enum {
    C_CREATED,
    C_HANDLED,
    C_RESPONDED,
    C_FRT_SUM,
    C_RESP_N,
    C_RESP_SUM,
    C_RESOLVED,
    C_RES_SUM,
    C_ONE_TOUCH,
    C_SELF_SERVICE,
    C_ABANDONED,
    C_ESCALATED,
    C_ESC_H,
    C_ESC_F,
    C_RATINGS,
    C_RATINGS_4_5,
    C_RATING_SUM,
    C_SLA_MET,
    C_SLA_MISSED,
    COUNTERS
} counter_t;

static const char *s_counter_names[COUNTERS] = {
    "created", "handled",     "responded",    "frt_sum",   "resp_n",    "resp_sum", "resolved",
    "res_sum", "one_touch",   "self_service", "abandoned", "escalated", "esc_h",    "esc_f",
    "ratings", "ratings_4_5", "rating_sum",   "sla_met",   "sla_missed"};

//  A group's counters: one report row before the arithmetic.
typedef struct {
    char *key;              //  the group as stats.lua names it (owned)
    char label[LABEL_MAX];  //  the group as people read it
    long long order;        //  sort key for numbered groups (channel, level)
    double count[COUNTERS]; //  counters; sums are in ms
    double hist[HIST_MAX];  //  resolutions per histogram bucket
} tally_t;

typedef struct {
    tally_t *items; //  array (owned)
    size_t count;   //  items in use
} tallies_t;

//  A tier_report payload, parsed.
typedef struct {
    uint64_t since_ms, until_ms; //  the range actually read
    const char *by;              //  grouping (borrowed from the reply)
    double edges_ms[HIST_MAX];   //  upper bounds of the histogram buckets
    size_t edges;                //  how many; the bucket after the last is open
    tallies_t channels;          //  one per channel: the total and its grade
    tallies_t rows;              //  one per group of `by`
} parsed_t;

//  ---------------------------------------------------------------------------
//  The request

static const char *s_groupings[] = {"", "channel", "level", "department", "agent", "hour", "day"};
#define GROUPINGS (sizeof(s_groupings) / sizeof(s_groupings[0]))

static bool s_known_grouping(const char *by)
{
    for (size_t i = 0; i < GROUPINGS; i++)
        if (strcmp(by, s_groupings[i]) == 0)
            return true;
    return false;
}

int report_read(journal_t *journal, const Tier__V1__ReportRequest *request, int64_t now_ms,
                char *reason, size_t reason_size, uint32_t *read_p)
{
    const char *by = request->by ? request->by : "";
    if (!s_known_grouping(by)) {
        snprintf(reason, reason_size,
                 "by \"%.32s\" is not channel, level, department, agent, hour or day "
                 "(or empty: the total only)",
                 by);
        return TIER__V1__ERROR_CODE__ERROR_BAD_REQUEST;
    }
    uint64_t until = request->until_ms ? request->until_ms : (uint64_t) now_ms;
    uint64_t since = request->since_ms;
    if (!since)
        since = until > REPORT_DEFAULT_RANGE_MS ? until - REPORT_DEFAULT_RANGE_MS : 0;
    if (since >= until) {
        snprintf(reason, reason_size, "since_ms %llu is not before until_ms %llu",
                 (unsigned long long) since, (unsigned long long) until);
        return TIER__V1__ERROR_CODE__ERROR_BAD_REQUEST;
    }
    if (until - since > REPORT_MAX_RANGE_MS) {
        snprintf(reason, reason_size, "a report covers at most %lld days; ask for a shorter range",
                 REPORT_MAX_RANGE_MS / (24 * 3600 * 1000LL));
        return TIER__V1__ERROR_CODE__ERROR_BAD_REQUEST;
    }
    *read_p = journal_read(journal, 8);
    journal_arg_str(journal, "FCALL_RO");
    journal_arg_str(journal, "tier_report");
    journal_arg_str(journal, "0");
    journal_arg_str(journal, journal_prefix(journal));
    journal_arg_i64(journal, now_ms);
    journal_arg_u64(journal, since);
    journal_arg_u64(journal, until);
    journal_arg_str(journal, by);
    return 0;
}

//  ---------------------------------------------------------------------------
//  The payload

static double s_number(const redisReply *r)
{
    return strtod(journal_str(r), NULL);
}

//  Add one "counter, n" pair of a row; "rh<i>" is histogram bucket i (from 1).
static void s_tally_field(tally_t *t, const char *field, double n)
{
    if (field[0] == 'r' && field[1] == 'h' && isdigit((unsigned char) field[2])) {
        long bucket = strtol(field + 2, NULL, 10);
        if (bucket >= 1 && bucket <= HIST_MAX)
            t->hist[bucket - 1] += n;
        return;
    }
    for (int c = 0; c < COUNTERS; c++)
        if (strcmp(field, s_counter_names[c]) == 0) {
            t->count[c] += n;
            return;
        }
    //  A counter this router does not know (a newer stats.lua): ignored.
}

//  Rows are { value, { counter, n, counter, n, ... } }.
static int s_parse_rows(const redisReply *list, tallies_t *out)
{
    if (!list || list->type != REDIS_REPLY_ARRAY)
        return -1;
    out->items = calloc(list->elements + 1, sizeof(tally_t));
    if (!out->items)
        return -1;
    for (size_t i = 0; i < list->elements; i++) {
        const redisReply *flat = journal_elem(list->element[i], 1);
        if (!flat || flat->type != REDIS_REPLY_ARRAY)
            return -1;
        tally_t *t = &out->items[out->count++];
        t->key = strdup(journal_str(journal_elem(list->element[i], 0)));
        if (!t->key)
            return -1;
        for (size_t j = 0; j + 1 < flat->elements; j += 2)
            s_tally_field(t, journal_str(flat->element[j]), s_number(flat->element[j + 1]));
    }
    return 0;
}

static void s_tallies_fini(tallies_t *tallies)
{
    for (size_t i = 0; i < tallies->count; i++)
        free(tallies->items[i].key);
    free(tallies->items);
    tallies->items = NULL;
    tallies->count = 0;
}

static int s_parse(const redisReply *payload, parsed_t *p)
{
    memset(p, 0, sizeof(*p));
    const redisReply *edges = journal_elem(payload, PAY_EDGES);
    if (!payload || payload->type != REDIS_REPLY_ARRAY || payload->elements < PAY_FIELDS ||
        !edges || edges->type != REDIS_REPLY_ARRAY || edges->elements >= HIST_MAX)
        return -1;
    p->since_ms = (uint64_t) s_number(journal_elem(payload, PAY_SINCE));
    p->until_ms = (uint64_t) s_number(journal_elem(payload, PAY_UNTIL));
    p->by = journal_str(journal_elem(payload, PAY_BY));
    p->edges = edges->elements;
    for (size_t i = 0; i < p->edges; i++)
        p->edges_ms[i] = s_number(edges->element[i]);
    if (s_parse_rows(journal_elem(payload, PAY_CHANNELS), &p->channels) ||
        s_parse_rows(journal_elem(payload, PAY_ROWS), &p->rows))
        return -1;
    return 0;
}

//  ---------------------------------------------------------------------------
//  Grouping: labels, merging (hours and days), order

//  The label of a row by `by`; hours and days are the router's local time
//  (stats.lua's keys are the start of UTC hours).
static void s_label(tally_t *t, const char *by)
{
    long long number = strtoll(t->key, NULL, 10);
    const char *text = t->key;
    if (strcmp(by, "channel") == 0)
        text = tierjson_enum_name(&tier__v1__channel__descriptor, (int) number);
    else if (strcmp(by, "level") == 0)
        text = tierjson_enum_name(&tier__v1__level__descriptor, (int) number);
    else if (strcmp(by, "department") == 0 && !*t->key)
        text = "(general)";
    if (strcmp(by, "hour") == 0 || strcmp(by, "day") == 0) {
        time_t seconds = (time_t) (number / (long long) MS_PER_S);
        struct tm tm;
        localtime_r(&seconds, &tm);
        strftime(t->label, sizeof(t->label), strcmp(by, "hour") == 0 ? "%H" : "%Y-%m-%d", &tm);
    } else
        snprintf(t->label, sizeof(t->label), "%s", text);
    t->order = strcmp(by, "channel") == 0 || strcmp(by, "level") == 0 ? number : 0;
}

static int s_compare(const void *a, const void *b)
{
    const tally_t *x = a, *y = b;
    if (x->order != y->order)
        return x->order < y->order ? -1 : 1;
    return strcmp(x->label, y->label);
}

static void s_tally_add(tally_t *into, const tally_t *from)
{
    for (int c = 0; c < COUNTERS; c++)
        into->count[c] += from->count[c];
    for (int i = 0; i < HIST_MAX; i++)
        into->hist[i] += from->hist[i];
}

//  Label and sort the rows, merging those with the same label (the same
//  hour of different days, the same local date of different UTC hours).
static void s_group(tallies_t *rows, const char *by)
{
    for (size_t i = 0; i < rows->count; i++)
        s_label(&rows->items[i], by);
    qsort(rows->items, rows->count, sizeof(tally_t), s_compare);
    size_t kept = 0;
    for (size_t i = 0; i < rows->count; i++) {
        tally_t *last = kept ? &rows->items[kept - 1] : NULL;
        if (last && s_compare(last, &rows->items[i]) == 0) {
            s_tally_add(last, &rows->items[i]);
            free(rows->items[i].key);
        } else
            rows->items[kept++] = rows->items[i];
    }
    rows->count = kept;
}

//  ---------------------------------------------------------------------------
//  The arithmetic

static double s_ratio(double part, double whole)
{
    return whole > 0 ? part / whole : 0;
}

//  Estimated like Prometheus' histogram_quantile: find the bucket holding
//  the q-th resolution and interpolate linearly inside it; the open last
//  bucket answers its lower bound.
static double s_quantile_s(const tally_t *t, const parsed_t *p, double q)
{
    double total = 0, below = 0;
    for (size_t i = 0; i <= p->edges; i++)
        total += t->hist[i];
    double rank = q * total;
    for (size_t i = 0; total > 0 && i <= p->edges; i++) {
        double in = t->hist[i], lower = i ? p->edges_ms[i - 1] : 0;
        if (in > 0 && below + in >= rank) {
            if (i == p->edges)
                return lower / MS_PER_S;
            return (lower + (p->edges_ms[i] - lower) * (rank - below) / in) / MS_PER_S;
        }
        below += in;
    }
    return 0;
}

static grade_t s_grade(const tally_t *t, int channel, const grades_t *grades)
{
    const double *n = t->count;
    double frt_s = n[C_RESPONDED] > 0 ? n[C_FRT_SUM] / n[C_RESPONDED] / MS_PER_S : -1;
    double csat_mean = n[C_RATINGS] > 0 ? n[C_RATING_SUM] / n[C_RATINGS] : -1;
    return grades_of(grades, channel, frt_s, csat_mean);
}

static Tier__V1__ReportRow *s_row_new(const tally_t *t, const parsed_t *p, grade_t grade)
{
    Tier__V1__ReportRow *row = calloc(1, sizeof(Tier__V1__ReportRow));
    if (!row)
        return NULL;
    tier__v1__report_row__init(row);
    const double *n = t->count;
    row->key = strdup(t->label);
    row->created = (uint64_t) n[C_CREATED];
    row->resolved = (uint64_t) n[C_RESOLVED];
    row->abandoned = (uint64_t) n[C_ABANDONED];
    row->escalated = (uint64_t) n[C_ESCALATED];
    row->responded = (uint64_t) n[C_RESPONDED];
    row->frt_seconds = s_ratio(n[C_FRT_SUM], n[C_RESPONDED]) / MS_PER_S;
    row->response_seconds = s_ratio(n[C_RESP_SUM], n[C_RESP_N]) / MS_PER_S;
    row->resolution_seconds = s_ratio(n[C_RES_SUM], n[C_RESOLVED]) / MS_PER_S;
    row->resolution_p50_seconds = s_quantile_s(t, p, P50);
    row->resolution_p90_seconds = s_quantile_s(t, p, P90);
    row->one_touch_rate = s_ratio(n[C_ONE_TOUCH], n[C_RESOLVED]);
    row->escalation_rate = s_ratio(n[C_ESCALATED], n[C_HANDLED]);
    row->self_service_rate = s_ratio(n[C_SELF_SERVICE], n[C_RESOLVED]);
    row->abandonment_rate = s_ratio(n[C_ABANDONED], n[C_CREATED]);
    row->csat = s_ratio(n[C_RATINGS_4_5], n[C_RATINGS]);
    row->ratings = (uint64_t) n[C_RATINGS];
    row->sla_attainment = s_ratio(n[C_SLA_MET], n[C_SLA_MET] + n[C_SLA_MISSED]);
    row->sla_responses = (uint64_t) (n[C_SLA_MET] + n[C_SLA_MISSED]);
    row->csat_score = s_ratio(n[C_RATING_SUM], n[C_RATINGS]);
    row->escalated_hierarchical = (uint64_t) n[C_ESC_H];
    row->escalated_functional = (uint64_t) n[C_ESC_F];
    row->grade = (char *) grades_name(grade); //  static: never freed
    row->grade_level = grade;
    if (!row->key) {
        free(row);
        return NULL;
    }
    return row;
}

//  ---------------------------------------------------------------------------
//  The reply

//  The total: every channel summed, graded as its weakest channel.
static Tier__V1__ReportRow *s_total_new(const parsed_t *p, const grades_t *grades)
{
    tally_t total = {.label = ""};
    grade_t weakest = GRADE_NONE;
    for (size_t i = 0; i < p->channels.count; i++) {
        const tally_t *t = &p->channels.items[i];
        s_tally_add(&total, t);
        grade_t grade = s_grade(t, (int) strtol(t->key, NULL, 10), grades);
        if (grade != GRADE_NONE && (weakest == GRADE_NONE || grade < weakest))
            weakest = grade;
    }
    return s_row_new(&total, p, weakest);
}

//  Rows by channel are graded; other groupings mix channels and are not.
static int s_rows_new(Tier__V1__ReportReply *reply, parsed_t *p, const grades_t *grades)
{
    bool by_channel = strcmp(p->by, "channel") == 0;
    tallies_t *rows = by_channel ? &p->channels : &p->rows;
    s_group(rows, p->by);
    reply->rows = calloc(rows->count + 1, sizeof(Tier__V1__ReportRow *));
    if (!reply->rows)
        return -1;
    for (size_t i = 0; i < rows->count; i++) {
        const tally_t *t = &rows->items[i];
        grade_t grade = by_channel ? s_grade(t, (int) t->order, grades) : GRADE_NONE;
        if (!(reply->rows[reply->n_rows] = s_row_new(t, p, grade)))
            return -1;
        reply->n_rows++;
    }
    return 0;
}

Tier__V1__ReportReply *report_reply_new(const redisReply *payload, const grades_t *grades)
{
    parsed_t p;
    Tier__V1__ReportReply *reply = calloc(1, sizeof(Tier__V1__ReportReply));
    int rc = reply ? s_parse(payload, &p) : -1;
    if (reply)
        tier__v1__report_reply__init(reply);
    if (rc == 0) {
        reply->since_ms = p.since_ms;
        reply->until_ms = p.until_ms;
        reply->by = strdup(p.by);
        reply->total = s_total_new(&p, grades);
        rc = reply->by && reply->total ? s_rows_new(reply, &p, grades) : -1;
    }
    if (reply) {
        s_tallies_fini(&p.channels);
        s_tallies_fini(&p.rows);
    }
    if (rc)
        report_reply_destroy(&reply);
    return reply;
}

static void s_row_destroy(Tier__V1__ReportRow *row)
{
    if (!row)
        return;
    free(row->key);
    free(row);
}

void report_reply_destroy(Tier__V1__ReportReply **reply_p)
{
    if (!reply_p || !*reply_p)
        return;
    Tier__V1__ReportReply *reply = *reply_p;
    for (size_t i = 0; i < reply->n_rows; i++)
        s_row_destroy(reply->rows[i]);
    free(reply->rows);
    s_row_destroy(reply->total);
    if (reply->by != protobuf_c_empty_string)
        free(reply->by);
    free(reply);
    *reply_p = NULL;
}
