/*  clocks.c — see clocks.h. A port of store.lua's clock(), order() and
    business_add(), with the same results to the millisecond.
*/
#include "clocks.h"
#include "tier.pb-c.h"

#include <stdio.h>
#include <string.h>

#define DAY_MS        86400000LL
#define MINUTE_MS     60000LL
#define BUSINESS_DAYS 800 //  two years of days at most
#define WEEKDAYS      7

static int64_t s_floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

int64_t clocks_business_add(const char *spec, int64_t start, int64_t duration)
{
    if (!spec || !*spec || duration <= 0)
        return start + duration;
    char days[WEEKDAYS + 1];
    int open_min, close_min, offset;
    if (sscanf(spec, "%7[01],%d,%d,%d", days, &open_min, &close_min, &offset) != 4 ||
        strlen(days) != WEEKDAYS)
        return start + duration;
    int64_t off = (int64_t) offset * MINUTE_MS;
    int64_t t = start + off, left = duration;
    for (int i = 0; i < BUSINESS_DAYS; i++) {
        int64_t day = t - (((t % DAY_MS) + DAY_MS) % DAY_MS);
        int weekday = (int) ((s_floor_div(day, DAY_MS) + 4) % WEEKDAYS); //  1970-01-01: Thursday
        if (weekday < 0)
            weekday += WEEKDAYS;
        int64_t open = day + open_min * MINUTE_MS, close = day + close_min * MINUTE_MS;
        if (days[weekday] == '1' && t < close) {
            if (t < open)
                t = open;
            if (left <= close - t)
                return t + left - off;
            left -= close - t;
        }
        t = day + DAY_MS;
    }
    return t - off;
}

bool clocks_get(const ticket_t *t, int kind, sla_clock_t *out)
{
    const policy_t *p = t->policy;
    if (!p)
        return false;
    int64_t start, target;
    if (kind == CLOCK_FIRST) {
        if (t->first_response_ms)
            return false;
        start = t->created_ms;
        target = p->first_response_ms;
    } else if (kind == CLOCK_RESOLUTION) {
        if (t->paused_ms > 0)
            return false;
        start = t->resolution_start_ms ? t->resolution_start_ms : t->created_ms;
        target = p->resolution_ms;
    } else {
        if (t->state != TIER__V1__TICKET_STATE__STATE_QUEUED || t->level < 1 || t->level > 3)
            return false;
        start = t->queued_ms;
        target = p->wait_ms[t->level];
    }
    if (target <= 0)
        return false;
    out->start = start;
    out->due = clocks_business_add(p->business, start, target);
    //  math.floor(target * warn / 100) in store.lua
    out->warn = clocks_business_add(p->business, start, target * p->warn_percent / 100);
    return true;
}

int64_t clocks_order(const ticket_t *t)
{
    int64_t best = 0;
    bool any = false;
    for (int kind = 0; kind < CLOCKS; kind++) {
        sla_clock_t c;
        if (clocks_get(t, kind, &c) && (!any || c.due < best)) {
            best = c.due;
            any = true;
        }
    }
    return (any ? best : t->created_ms) - t->boost_ms;
}

static void s_earliest(int64_t *best, int64_t at)
{
    if (at > 0 && (*best == 0 || at < *best))
        *best = at;
}

int64_t clocks_next(const ticket_t *t)
{
    int state = t->state;
    if (state == TIER__V1__TICKET_STATE__STATE_RESOLVED ||
        state == TIER__V1__TICKET_STATE__STATE_ABANDONED ||
        state == TIER__V1__TICKET_STATE__STATE_DEAD)
        return 0;
    int64_t next = 0;
    for (int kind = 0; kind < CLOCKS; kind++) {
        sla_clock_t c;
        if (t->stage[kind] < 2 && clocks_get(t, kind, &c))
            s_earliest(&next, t->stage[kind] == 0 ? c.warn : c.due);
    }
    if (state == TIER__V1__TICKET_STATE__STATE_OFFERED)
        s_earliest(&next, t->offer_deadline_ms);
    if (state == TIER__V1__TICKET_STATE__STATE_DEFERRED)
        s_earliest(&next, t->promise_ms);
    if (t->promise_check_ms)
        s_earliest(&next, t->promise_check_ms);
    return next;
}

int64_t clocks_priority_boost(const policy_t *policy, int priority)
{
    return policy && priority >= 1 && priority <= POLICY_PRIORITIES
               ? policy->priority_boost_ms[priority]
               : 0;
}
