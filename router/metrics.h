/*  metrics.h — what this router has seen, for Prometheus (docs/metrics.md).

    The server feeds it every event it publishes (metrics_on_event), every
    refusal (metrics_rejected), the queue depths it reads and the state of
    Redis; http.c renders it on GET /metrics from its own thread, so every
    verb takes the object's mutex. Counters count since this router started,
    as Prometheus expects (it handles restarts); the shared, durable figures
    are the reports (report.h). Labels are only level, channel, department,
    state, reason, from, to and kind: never a ticket or an agent id.
*/
#ifndef TIER_METRICS_H
#define TIER_METRICS_H

#include "tier.pb-c.h"

#include <stdbool.h>
#include <stdint.h>

#define METRICS_LISTEN_OFF "off" //  [metrics] listen value that disables /metrics

typedef struct _metrics_t metrics_t;

metrics_t *metrics_new(void);
void metrics_destroy(metrics_t **self_p);

//  Count an event the server published (any kind; irrelevant ones are
//  ignored). Reads created_ms and queued_ms for the latency histograms.
void metrics_on_event(metrics_t *self, const Tier__V1__Event *event);

//  A queue's depth and oldest ticket as read from Redis (the periodic
//  refresh), so the gauges are right from the start, not only after the
//  queue's next event.
void metrics_set_queue(metrics_t *self, int level, const char *department, uint32_t depth,
                       uint64_t oldest_ms);

//  A message refused with this Tier__V1__ErrorCode.
void metrics_rejected(metrics_t *self, int error_code);

void metrics_redis_up(metrics_t *self, bool up);

//  The Prometheus text exposition (format 0.0.4) as of now_ms. Caller frees.
//  NULL when out of memory.
char *metrics_render(metrics_t *self, int64_t now_ms);

#endif
