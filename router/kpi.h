/*  kpi.h — service-level counts, gathered per batch and written with it.

    Every transition that a KPI measures (docs/metrics.md) adds counts here,
    under the minute it happened and the ticket's channel, level,
    department and agent at that moment. kpi_flush spreads them over the four
    dimensions, adds up what falls in the same (minute, dimension, field),
    and writes them as plain HINCRBYs inside the batch's transaction: a
    thousand resolutions in one minute cost one HINCRBY per field, and the
    counts commit with the changes they count.
    Rolling finished minutes up into hours and days is stats.lua's
    (tier_rollup, from the cron).
*/
#ifndef TIER_KPI_H
#define TIER_KPI_H

#include "journal.h"
#include "ticket.h"

#include <stdbool.h>
#include <stdint.h>

//  The counters (stats.lua's field names, in this order).
typedef enum {
    KPI_CREATED,
    KPI_HANDLED,
    KPI_RESPONDED,
    KPI_FRT_SUM,
    KPI_SLA_MET,
    KPI_SLA_MISSED,
    KPI_RESP_N,
    KPI_RESP_SUM,
    KPI_ESCALATED,
    KPI_ESC_H,
    KPI_ESC_F,
    KPI_RESOLVED,
    KPI_RES_SUM,
    KPI_ONE_TOUCH,
    KPI_SELF_SERVICE,
    KPI_ABANDONED,
    KPI_RATINGS,
    KPI_RATING_SUM,
    KPI_RATINGS_4_5,
    KPI_RH_FIRST, //  rh1 .. rh22: the resolution-time histogram
    KPI_COUNTERS = KPI_RH_FIRST + 22
} kpi_counter_t;

typedef struct kpi kpi_t;

kpi_t *kpi_new(void);
void kpi_destroy(kpi_t **self_p);

//  Where a count goes: the ticket's channel, and the level, department and
//  agent given (an escalation counts where it left from).
typedef struct {
    int channel;
    int level;
    const char *department; //  NULL = general
    const char *agent;      //  NULL = none (then not counted by agent)
} kpi_where_t;

void kpi_add(kpi_t *self, int64_t now_ms, const kpi_where_t *where, kpi_counter_t counter,
             int64_t n);
//  The histogram bucket counter of a resolution that took `ms`.
kpi_counter_t kpi_resolution_bucket(int64_t ms);

//  Write what was gathered into the journal's batch: HINCRBYs of the minute
//  buckets (with their expiry and k:pending, the first time each minute);
//  counts of minutes already rolled up go through FCALL tier_kpi, which
//  adds them to their hours and days too.
void kpi_flush(kpi_t *self, journal_t *journal, int64_t now_ms);
//  Minutes up to `minute` are (or may be) rolled up: a tier_rollup call at
//  time T rolls up every finished minute before T's (stats.lua, rollup()).
void kpi_rolled(kpi_t *self, int64_t minute);
//  Forget what was gathered (the batch failed).
void kpi_clear(kpi_t *self);

#endif
