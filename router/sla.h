/*  sla.h — service-level policies: the targets a ticket is measured against.

    A policy has a first-response target, a resolution target and, per level,
    the longest a ticket may wait in that level's queue. Policies are named:
    one per channel ("chat", "email", ...) by default, plus any named in the
    config ("[sla premium]"); each may be refined per priority
    ("[sla chat urgent]"). Intake picks the channel's policy unless a rule
    names another. The deadlines are computed here once, at intake, and
    stored on the ticket as durations; Redis (store.lua) computes the due
    times, in business hours when configured, and runs the clocks.
*/
#ifndef TIER_SLA_H
#define TIER_SLA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SLA_POLICIES_MAX 32
#define SLA_NAME_MAX     32
#define SLA_LEVELS       3
#define SLA_PRIORITIES   5 //  index = Tier__V1__Priority (0 unused: normal)

typedef enum { SLA_NOTIFY = 0, SLA_ESCALATE = 1, SLA_RAISE_PRIORITY = 2 } sla_action_t;

typedef struct {
    int64_t first_response_ms;       //  0 = no target
    int64_t resolution_ms;           //  0 = no target
    int64_t wait_ms[SLA_LEVELS + 1]; //  per level 1..3, 0 = no target
    sla_action_t action;             //  on a breach while queued
} sla_targets_t;

typedef struct _sla_t sla_t;

//  Policies with the defaults of the seed's "above average" grade.
sla_t *sla_new(void);
void sla_destroy(sla_t **self_p);

//  Set a key of section "sla" or "sla NAME" or "sla NAME PRIORITY".
//  Returns -1 and fills err on a bad key or value.
int sla_set(sla_t *self, const char *section, const char *key, const char *value, char *err,
            size_t err_size);

//  Whether a policy of that name exists.
bool sla_known(const sla_t *self, const char *name);

//  The targets of a policy for a priority (PRIORITY_* value, 0 = normal).
//  Unknown names fall back to "chat".
const sla_targets_t *sla_targets(const sla_t *self, const char *name, int priority);

//  Business hours as store.lua reads them: "0111110,480,1080,OFFSET" (open
//  days from Sunday, opening and closing minute, UTC offset in minutes now),
//  or "" for 24/7. Returns buf.
const char *sla_business_spec(const sla_t *self, char *buf, size_t size);

//  Warn at this share of each target, percent (default 80).
int sla_warn_percent(const sla_t *self);
//  Ordering boosts (ms subtracted from a deadline): VIP, and per priority.
int64_t sla_vip_boost_ms(const sla_t *self);
int64_t sla_priority_boost_ms(const sla_t *self, int priority);

//  Parse "250ms", "30s", "5m", "4h", "2d" (a bare number is seconds).
int sla_parse_duration(const char *text, int64_t *ms_p);

#endif
