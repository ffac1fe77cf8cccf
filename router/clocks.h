/*  clocks.h — a ticket's SLA clocks: when each is due, the queue order they
    give, and when the ticket next needs attention.

    Three clocks (docs/sla-and-rules.md): first response (from creation until
    the first agent response), resolution (from creation until resolved,
    paused while waiting on the customer) and wait (from entering the
    current queue until offered). Targets are business-time durations of
    the ticket's policy; a clock fires first at the policy's warning share
    of its target, then at the target; the ticket's stage of each clock
    makes each fire once.
*/
#ifndef TIER_CLOCKS_H
#define TIER_CLOCKS_H

#include "ticket.h"

#include <stdbool.h>
#include <stdint.h>

//  `duration` of business time after `start`, by the spec
//  "0111110,480,1080,-180" (open days from Sunday, opening and closing
//  minute of local time, UTC offset in minutes); "" = 24/7.
int64_t clocks_business_add(const char *spec, int64_t start, int64_t duration);

//  A running clock: its start, due and warning times. Returns false when
//  the clock does not run (no target, stopped, paused, not queued).
typedef struct {
    int64_t start, due, warn;
} sla_clock_t;
bool clocks_get(const ticket_t *t, int kind, sla_clock_t *out);

//  The one place that orders a queue: the earliest of the ticket's running
//  deadlines, less its boost; without targets its creation time. Real-time
//  channels, having shorter targets, so go before e-mail.
int64_t clocks_order(const ticket_t *t);

//  When the ticket next needs attention: the earliest of its clocks'
//  next firing (warning, then due), its offer deadline, its promise and the
//  promise check. 0 = never.
int64_t clocks_next(const ticket_t *t);

//  A policy's boost for a priority (1..4), 0 otherwise.
int64_t clocks_priority_boost(const policy_t *policy, int priority);

#endif
