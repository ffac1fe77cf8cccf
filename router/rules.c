/*  rules.c — see rules.h. */
#include "rules.h"

#include "ini_lines.h"
#include <ini.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define RULES_MAX    256
#define KEYWORDS_MAX 32
#define CHANNELS_MAX 8
#define NAME_MAX_LEN 64

typedef enum { IN_BOTH, IN_SUBJECT, IN_BODY } where_t;

typedef struct {
    char name[NAME_MAX_LEN];      //  from [rule NAME]
    int line;                     //  where it starts, for messages
    char *keywords[KEYWORDS_MAX]; //  match: any of them, case-insensitive
    size_t keyword_count;
    regex_t regex; //  regex, if has_regex
    bool has_regex;
    where_t where;              //  in = subject|body|both
    int channels[CHANNELS_MAX]; //  channel = ...; none = any
    size_t channel_count;
    int vip;                    //  -1 any, 0 not VIP, 1 VIP
    int level;                  //  action, 0 = none
    char *department;           //  action
    int priority;               //  action, 0 = none
    char *tags[RULES_TAGS_MAX]; //  action
    size_t tag_count;
    char *sla;              //  action: policy name
    rule_history_t history; //  contacts / escalated_before
} rule_t;

struct _rules_t {
    rule_t *rules[RULES_MAX];
    size_t count;
};

typedef struct {
    rules_t *rules;         //  being built
    const config_t *config; //  departments
    const sla_t *sla;       //  policy names
    const char *path;
    ini_lines_t in; //  the file, and the line being handled
    char *err;      //  first error, "FILE:LINE: what"
    size_t err_size;
    bool failed;
} load_t;

static const char *s_levels[] = {"", "L1", "L2", "L3"};
static const char *s_priorities[] = {"", "low", "normal", "high", "urgent"};
static const char *s_channels[] = {"",    "chat",     "email",  "phone",
                                   "sms", "whatsapp", "social", "web"};

const char *rules_level_name(int level)
{
    return level >= 1 && level <= 3 ? s_levels[level] : "";
}

const char *rules_priority_name(int priority)
{
    return priority >= 1 && priority <= 4 ? s_priorities[priority] : "";
}

static int s_lookup(const char *const *names, int count, const char *name)
{
    for (int i = 1; i < count; i++)
        if (strcasecmp(names[i], name) == 0)
            return i;
    return -1;
}

static void s_rule_destroy(rule_t *rule)
{
    for (size_t i = 0; i < rule->keyword_count; i++)
        free(rule->keywords[i]);
    for (size_t i = 0; i < rule->tag_count; i++)
        free(rule->tags[i]);
    if (rule->has_regex)
        regfree(&rule->regex);
    free(rule->department);
    free(rule->sla);
    free(rule);
}

void rules_destroy(rules_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    for (size_t i = 0; i < (*self_p)->count; i++)
        s_rule_destroy((*self_p)->rules[i]);
    free(*self_p);
    *self_p = NULL;
}

rules_t *rules_empty(void)
{
    return calloc(1, sizeof(rules_t));
}

size_t rules_count(const rules_t *self)
{
    return self->count;
}

//  Split "a, b ,c" into trimmed copies.
static size_t s_split(const char *value, char **out, size_t max)
{
    size_t count = 0;
    char *copy = strdup(value), *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok && count < max;
         tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ' || *tok == '\t')
            tok++;
        size_t len = strlen(tok);
        while (len && (tok[len - 1] == ' ' || tok[len - 1] == '\t'))
            tok[--len] = 0;
        if (len)
            out[count++] = strdup(tok);
    }
    free(copy);
    return count;
}

static int s_fail(load_t *load, const char *format, const char *value)
{
    if (!load->failed)
        snprintf(load->err, load->err_size, "%s:%d: ", load->path, load->in.line);
    size_t used = strlen(load->err);
    if (!load->failed)
        snprintf(load->err + used, load->err_size - used, format, value);
    load->failed = true;
    return 0;
}

static int s_yes_no(const char *value)
{
    if (!strcasecmp(value, "yes") || !strcasecmp(value, "true") || !strcmp(value, "1"))
        return 1;
    if (!strcasecmp(value, "no") || !strcasecmp(value, "false") || !strcmp(value, "0"))
        return 0;
    return -1;
}

static int s_condition(load_t *load, rule_t *rule, const char *key, const char *value)
{
    if (strcmp(key, "match") == 0) {
        rule->keyword_count = s_split(value, rule->keywords, KEYWORDS_MAX);
        return rule->keyword_count ? 1 : s_fail(load, "match = \"%s\" has no keyword", value);
    }
    if (strcmp(key, "regex") == 0) {
        if (rule->has_regex)
            regfree(&rule->regex);
        rule->has_regex = regcomp(&rule->regex, value, REG_EXTENDED | REG_ICASE | REG_NOSUB) == 0;
        return rule->has_regex ? 1
                               : s_fail(load, "regex \"%s\" does not compile (POSIX ERE)", value);
    }
    if (strcmp(key, "in") == 0) {
        rule->where = !strcmp(value, "subject") ? IN_SUBJECT
                      : !strcmp(value, "body")  ? IN_BODY
                                                : IN_BOTH;
        if (rule->where == IN_BOTH && strcmp(value, "both") != 0)
            return s_fail(load, "in = \"%s\" is not subject, body or both", value);
        return 1;
    }
    if (strcmp(key, "channel") == 0) {
        char *names[CHANNELS_MAX];
        size_t count = s_split(value, names, CHANNELS_MAX);
        for (size_t i = 0; i < count; i++) {
            int channel = s_lookup(s_channels, 8, names[i]);
            if (channel < 0)
                s_fail(load,
                       "channel \"%s\" is not chat, email, phone, sms, whatsapp, social "
                       "or web",
                       names[i]);
            else
                rule->channels[rule->channel_count++] = channel;
            free(names[i]);
        }
        return 1;
    }
    if (strcmp(key, "vip") == 0) {
        rule->vip = s_yes_no(value);
        return rule->vip >= 0 ? 1 : s_fail(load, "vip = \"%s\" is not yes or no", value);
    }
    if (strcmp(key, "contacts") == 0) {
        char window[32];
        if (sscanf(value, "%d in %31s", &rule->history.contacts, window) != 2 ||
            rule->history.contacts < 1 || sla_parse_duration(window, &rule->history.window_ms))
            return s_fail(load, "contacts = \"%s\" is not like \"3 in 7d\"", value);
        return 1;
    }
    if (strcmp(key, "escalated_before") == 0) {
        int yes = s_yes_no(value);
        rule->history.escalated_before = yes == 1;
        return yes >= 0 ? 1 : s_fail(load, "escalated_before = \"%s\" is not yes or no", value);
    }
    return -1; //  not a condition
}

static int s_action(load_t *load, rule_t *rule, const char *key, const char *value)
{
    if (strcmp(key, "level") == 0) {
        rule->level = s_lookup(s_levels, 4, value);
        return rule->level > 0 ? 1 : s_fail(load, "level \"%s\" is not L1, L2 or L3", value);
    }
    if (strcmp(key, "department") == 0) {
        free(rule->department);
        rule->department = strdup(value);
        return config_department(load->config, value) >= 0
                   ? 1
                   : s_fail(load, "department \"%s\" is not in [router] departments", value);
    }
    if (strcmp(key, "priority") == 0) {
        rule->priority = s_lookup(s_priorities, 5, value);
        return rule->priority > 0
                   ? 1
                   : s_fail(load, "priority \"%s\" is not low, normal, high or urgent", value);
    }
    if (strcmp(key, "tags") == 0) {
        rule->tag_count = s_split(value, rule->tags, RULES_TAGS_MAX);
        return 1;
    }
    if (strcmp(key, "sla") == 0) {
        free(rule->sla);
        rule->sla = strdup(value);
        return sla_known(load->sla, value)
                   ? 1
                   : s_fail(load, "sla policy \"%s\" is not defined in the config", value);
    }
    return s_fail(load,
                  "unknown key \"%s\" (conditions: match, regex, in, channel, vip, "
                  "contacts, escalated_before; actions: level, department, priority, "
                  "tags, sla)",
                  key);
}

static rule_t *s_rule_for(load_t *load, const char *section)
{
    rules_t *rules = load->rules;
    if (strncmp(section, "rule ", 5) != 0 || !section[5]) {
        s_fail(load, "section [%s] is not [rule NAME]", section);
        return NULL;
    }
    if (rules->count && strcmp(rules->rules[rules->count - 1]->name, section + 5) == 0)
        return rules->rules[rules->count - 1];
    if (rules->count == RULES_MAX) {
        s_fail(load, "more than %s rules", "256");
        return NULL;
    }
    rule_t *rule = calloc(1, sizeof(rule_t));
    snprintf(rule->name, sizeof(rule->name), "%s", section + 5);
    rule->line = load->in.line;
    rule->vip = -1;
    rule->history.name = rule->name;
    rules->rules[rules->count++] = rule;
    return rule;
}

static int s_on_ini(void *arg, const char *section, const char *key, const char *value)
{
    load_t *load = arg;
    rule_t *rule = s_rule_for(load, section);
    if (rule && s_condition(load, rule, key, value) < 0)
        s_action(load, rule, key, value);
    return 1;
}

//  Rules whose history part Redis checks may only set level and department.
static int s_check_rule(load_t *load, rule_t *rule)
{
    bool history = rule->history.contacts || rule->history.escalated_before;
    load->in.line = rule->line;
    if (history && (rule->priority || rule->tag_count || rule->sla))
        return s_fail(load,
                      "rule %s: a rule on customer history may only set level and "
                      "department",
                      rule->name);
    if (!rule->level && !rule->department && !rule->priority && !rule->tag_count && !rule->sla)
        return s_fail(load, "rule %s has no action (level, department, priority, tags, sla)",
                      rule->name);
    rule->history.level = rule->level;
    rule->history.department = rule->department;
    return 1;
}

rules_t *rules_load(const char *path, const config_t *config, const sla_t *sla, char *err,
                    size_t err_size)
{
    load_t load = {rules_empty(), config, sla, path, {fopen(path, "r"), 0}, err, err_size, false};
    if (!load.in.file) {
        snprintf(err, err_size, "%s: cannot open the rules file: %m", path);
        rules_destroy(&load.rules);
        return NULL;
    }
    int rc = ini_parse_stream(ini_lines_read, &load.in, s_on_ini, &load);
    fclose(load.in.file);
    if (rc > 0 && !load.failed) {
        load.in.line = rc;
        s_fail(&load, "%s", "not an INI line (expected [rule NAME] or key = value)");
    }
    for (size_t i = 0; i < load.rules->count && !load.failed; i++)
        s_check_rule(&load, load.rules->rules[i]);
    if (load.failed)
        rules_destroy(&load.rules);
    return load.rules;
}

static bool s_text_matches(const rule_t *rule, const char *text)
{
    for (size_t i = 0; i < rule->keyword_count; i++)
        if (strcasestr(text, rule->keywords[i]))
            return true;
    return rule->has_regex && regexec(&rule->regex, text, 0, NULL, 0) == 0;
}

static bool s_content_fires(const rule_t *rule, const Tier__V1__Ticket *t)
{
    if (rule->keyword_count || rule->has_regex) {
        bool hit = (rule->where != IN_BODY && s_text_matches(rule, t->subject)) ||
                   (rule->where != IN_SUBJECT && s_text_matches(rule, t->body));
        if (!hit)
            return false;
    }
    if (rule->channel_count) {
        bool hit = false;
        for (size_t i = 0; i < rule->channel_count; i++)
            hit |= rule->channels[i] == (int) t->channel;
        if (!hit)
            return false;
    }
    bool vip = t->customer && t->customer->vip;
    return rule->vip < 0 || rule->vip == (int) vip;
}

static void s_describe(const rule_t *rule, char *text, size_t size)
{
    text[0] = 0;
    size_t used = 0;
#define APPEND(...)                                                                                \
    used += (size_t) snprintf(text + used, used < size ? size - used : 0, __VA_ARGS__)
    if (rule->level)
        APPEND("%slevel %s", used ? ", " : "", s_levels[rule->level]);
    if (rule->department)
        APPEND("%sdepartment %s", used ? ", " : "", rule->department);
    if (rule->priority)
        APPEND("%spriority %s", used ? ", " : "", s_priorities[rule->priority]);
    for (size_t i = 0; i < rule->tag_count; i++)
        APPEND("%stag %s", used ? ", " : "", rule->tags[i]);
    if (rule->sla)
        APPEND("%ssla %s", used ? ", " : "", rule->sla);
#undef APPEND
}

static void s_add_tag(rules_outcome_t *out, const char *tag)
{
    for (size_t i = 0; i < out->tag_count; i++)
        if (strcmp(out->tags[i], tag) == 0)
            return;
    if (out->tag_count < RULES_TAGS_MAX)
        out->tags[out->tag_count++] = tag;
}

static void s_fire(const rule_t *rule, rules_outcome_t *out, bool *department_set)
{
    if (rule->level > out->level)
        out->level = rule->level;
    if (rule->department && !*department_set) {
        out->department = rule->department;
        *department_set = true;
    }
    if (rule->priority > out->priority)
        out->priority = rule->priority;
    for (size_t i = 0; i < rule->tag_count; i++)
        s_add_tag(out, rule->tags[i]);
    if (rule->sla && !out->sla_policy)
        out->sla_policy = rule->sla;
    if (out->hit_count < RULES_HITS_MAX) {
        rule_hit_t *hit = &out->hits[out->hit_count++];
        hit->rule = rule->name;
        s_describe(rule, hit->action, sizeof(hit->action));
    }
}

void rules_apply(const rules_t *self, const Tier__V1__Ticket *t, rules_outcome_t *out)
{
    memset(out, 0, sizeof(*out));
    out->level = t->level ? t->level : TIER__V1__LEVEL__LEVEL_L1;
    out->department = t->department;
    out->priority = t->priority ? t->priority : TIER__V1__PRIORITY__PRIORITY_NORMAL;
    for (size_t i = 0; i < t->n_tags; i++)
        s_add_tag(out, t->tags[i]);
    //  An integrator's explicit department stands; rules fill in a missing one.
    bool department_set = *t->department != 0;
    for (size_t i = 0; i < self->count; i++) {
        const rule_t *rule = self->rules[i];
        if (!s_content_fires(rule, t))
            continue;
        if (rule->history.contacts || rule->history.escalated_before) {
            if (out->history_count < RULES_HITS_MAX)
                out->history[out->history_count++] = &rule->history;
        } else
            s_fire(rule, out, &department_set);
    }
    if (!out->sla_policy)
        out->sla_policy = s_channels[t->channel >= 1 && t->channel <= 7 ? t->channel : 1];
}
