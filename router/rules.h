/*  rules.h — intake rules: what a ticket's content and its customer's history
    say about where it should go.

    The rules file is INI, one section per rule, conditions ANDed:

        [rule outage]
        match = outage, data loss     ; keywords in subject or body (any)
        level = L3
        priority = urgent

    Conditions: match, regex, in (subject|body|both), channel, vip,
    contacts ("3 in 7d": at least the 3rd contact in 7 days),
    escalated_before (yes). Actions: level, department, priority, tags, sla.
    When several rules fire: the highest level and priority win, the first
    department and SLA policy win, tags add up. Content conditions are
    checked here; history conditions (contacts, escalated_before) need the
    customer's record and are checked inside Redis by tier_submit, so such
    rules may only set level and department.
*/
#ifndef TIER_RULES_H
#define TIER_RULES_H

#include "config.h"
#include "sla.h"
#include "tier.pb-c.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RULES_HITS_MAX  32
#define RULES_TAGS_MAX  32
#define RULE_ACTION_MAX 160

typedef struct _rules_t rules_t;

//  A rule whose history conditions Redis must check.
typedef struct {
    const char *name;       //  rule name
    int contacts;           //  fire at the Nth contact in window_ms; 0 = no such condition
    int64_t window_ms;      //  for contacts
    bool escalated_before;  //  fire if the customer had a ticket escalated before
    int level;              //  action, 0 = none
    const char *department; //  action, NULL = none
} rule_history_t;

typedef struct {
    const char *rule;             //  name (borrowed from the rules)
    char action[RULE_ACTION_MAX]; //  "level L3, priority urgent"
} rule_hit_t;

//  Where a ticket goes after the content rules. Strings are borrowed from the
//  rules or the ticket.
typedef struct {
    int level;                        //  1..3
    const char *department;           //  "" = general
    int priority;                     //  1..4
    const char *tags[RULES_TAGS_MAX]; //  the ticket's and the rules'
    size_t tag_count;
    const char *sla_policy;          //  policy name
    rule_hit_t hits[RULES_HITS_MAX]; //  content rules that fired
    size_t hit_count;
    const rule_history_t *history[RULES_HITS_MAX]; //  left for Redis to check
    size_t history_count;
} rules_outcome_t;

//  Load a rules file. On error returns NULL and err says "FILE:LINE: what".
rules_t *rules_load(const char *path, const config_t *config, const sla_t *sla, char *err,
                    size_t err_size);
//  No rules at all (no file configured).
rules_t *rules_empty(void);
void rules_destroy(rules_t **self_p);
size_t rules_count(const rules_t *self);

//  Apply the content rules to a (validated) submitted ticket.
void rules_apply(const rules_t *self, const Tier__V1__Ticket *ticket, rules_outcome_t *out);

//  "L1".."L3" or "" for an invalid level; "low".."urgent".
const char *rules_level_name(int level);
const char *rules_priority_name(int priority);

#endif
