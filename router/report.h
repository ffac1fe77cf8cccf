/*  report.h — service-level reports (docs/metrics.md).

    Redis keeps the counters (stats.lua: per-minute buckets rolled up into
    hours and days); this module asks for a range and turns the counters
    into what a team lead reads: means, rates, resolution-time percentiles
    and the seed's grade per channel (grades.h).

    In the server: report_read queues the read; once its reply is in,
    report_reply_new turns it into the reply.
*/
#ifndef TIER_REPORT_H
#define TIER_REPORT_H

#include "grades.h"
#include "journal.h"
#include "tier.pb-c.h"

#include <stdint.h>

#define REPORT_DEFAULT_RANGE_MS (24 * 3600 * 1000LL)       //  since_ms 0: the last 24 h
#define REPORT_MAX_RANGE_MS     (400 * 24 * 3600 * 1000LL) //  a year and some

//  Check a ReportRequest and queue its read (FCALL_RO tier_report) in the
//  journal's batch: *read_p is its index. Returns 0, or a
//  Tier__V1__ErrorCode with reason filled and nothing queued.
int report_read(journal_t *journal, const Tier__V1__ReportRequest *request, int64_t now_ms,
                char *reason, size_t reason_size, uint32_t *read_p);

//  The reply for a tier_report payload, each channel graded with grades
//  (borrowed), the total graded as its weakest channel. Hours and days are
//  the router's local time. NULL if the payload is malformed. The reply and
//  everything in it are the caller's: free with report_reply_destroy, not
//  with protobuf-c.
Tier__V1__ReportReply *report_reply_new(const redisReply *payload, const grades_t *grades);
void report_reply_destroy(Tier__V1__ReportReply **reply_p);

#endif
