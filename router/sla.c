/*  sla.c — see sla.h. */
#include "sla.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define MINUTE_MS            60000LL
#define HOUR_MS              (60 * MINUTE_MS)
#define DAY_MS               (24 * HOUR_MS)
#define DAYS_A_WEEK          7
#define DEFAULT_WARN_PERCENT 80

//  Which fields a section set explicitly, so that "[sla chat]" refines every
//  priority of chat without undoing "[sla chat urgent]", in any order.
enum { SET_FIRST = 1, SET_RESOLUTION = 2, SET_WAIT = 4, SET_ACTION = 32 };

typedef struct {
    char name[SLA_NAME_MAX];               //  "chat", "premium"
    sla_targets_t targets[SLA_PRIORITIES]; //  per priority
    int explicit_fields[SLA_PRIORITIES];   //  SET_* set by a priority section
} policy_t;

struct _sla_t {
    policy_t policies[SLA_POLICIES_MAX];
    int count;
    int warn_percent;                          //  warn at this share of a target
    int64_t vip_boost_ms;                      //  subtracted from VIP deadlines
    int64_t priority_boost_ms[SLA_PRIORITIES]; //  per priority
    int scale_percent[SLA_PRIORITIES];         //  default target scaling per priority
    bool business_hours;                       //  false = 24/7
    int business_days;                         //  bit 0 = Sunday .. bit 6 = Saturday
    int business_start_min, business_end_min;  //  local time, minutes after midnight
};

static const char *s_priority_names[SLA_PRIORITIES] = {"", "low", "normal", "high", "urgent"};

int sla_parse_duration(const char *text, int64_t *ms_p)
{
    char *end = NULL;
    double value = strtod(text, &end);
    if (end == text || value < 0)
        return -1;
    double unit = 1000;
    if (strcmp(end, "ms") == 0)
        unit = 1;
    else if (strcmp(end, "s") == 0 || *end == 0)
        unit = 1000;
    else if (strcmp(end, "m") == 0 || strcmp(end, "min") == 0)
        unit = MINUTE_MS;
    else if (strcmp(end, "h") == 0)
        unit = HOUR_MS;
    else if (strcmp(end, "d") == 0)
        unit = DAY_MS;
    else
        return -1;
    *ms_p = (int64_t) (value * unit);
    return 0;
}

static void s_policy(sla_t *self, const char *name, int64_t first, int64_t resolution, int64_t w1,
                     int64_t w2, int64_t w3, sla_action_t action)
{
    policy_t *p = &self->policies[self->count++];
    snprintf(p->name, sizeof(p->name), "%s", name);
    for (int prio = 0; prio < SLA_PRIORITIES; prio++) {
        int64_t scale = self->scale_percent[prio];
        sla_targets_t *t = &p->targets[prio];
        t->first_response_ms = first * scale / 100;
        t->resolution_ms = resolution * scale / 100;
        t->wait_ms[1] = w1 * scale / 100;
        t->wait_ms[2] = w2 * scale / 100;
        t->wait_ms[3] = w3 * scale / 100;
        t->action = action;
    }
}

sla_t *sla_new(void)
{
    sla_t *self = calloc(1, sizeof(sla_t));
    self->warn_percent = DEFAULT_WARN_PERCENT;
    //  Urgent tickets get a quarter of the time, high half, low double.
    int scale[SLA_PRIORITIES] = {100, 200, 100, 50, 25};
    memcpy(self->scale_percent, scale, sizeof(scale));
    self->vip_boost_ms = 2 * MINUTE_MS;
    //  The seed's "above average" grade: real-time channels answered within
    //  5 minutes, e-mail and social within 4 hours.
    const int64_t m = MINUTE_MS, h = HOUR_MS;
    s_policy(self, "chat", 5 * m, 1 * h, 5 * m, 15 * m, 30 * m, SLA_ESCALATE);
    s_policy(self, "sms", 5 * m, 1 * h, 5 * m, 15 * m, 30 * m, SLA_ESCALATE);
    s_policy(self, "phone", 5 * m, 1 * h, 5 * m, 15 * m, 30 * m, SLA_ESCALATE);
    s_policy(self, "whatsapp", 5 * m, 1 * h, 5 * m, 15 * m, 30 * m, SLA_ESCALATE);
    s_policy(self, "social", 4 * h, 24 * h, 4 * h, 8 * h, 8 * h, SLA_NOTIFY);
    s_policy(self, "email", 4 * h, 24 * h, 4 * h, 8 * h, 8 * h, SLA_NOTIFY);
    s_policy(self, "web", 4 * h, 24 * h, 4 * h, 8 * h, 8 * h, SLA_NOTIFY);
    return self;
}

void sla_destroy(sla_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free(*self_p);
    *self_p = NULL;
}

static policy_t *s_find(const sla_t *self, const char *name)
{
    for (int i = 0; i < self->count; i++)
        if (strcasecmp(self->policies[i].name, name) == 0)
            return (policy_t *) &self->policies[i];
    return NULL;
}

bool sla_known(const sla_t *self, const char *name)
{
    return s_find(self, name) != NULL;
}

static int s_priority(const char *name)
{
    for (int i = 1; i < SLA_PRIORITIES; i++)
        if (strcasecmp(name, s_priority_names[i]) == 0)
            return i;
    return -1;
}

//  "mon-fri 08:00-18:00" or "24/7".
static int s_business_hours(sla_t *self, const char *value)
{
    static const char *days[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};
    if (strcmp(value, "24/7") == 0) {
        self->business_hours = false;
        return 0;
    }
    char from[4], to[4];
    int h1, m1, h2, m2;
    if (sscanf(value, "%3[a-z]-%3[a-z] %d:%d-%d:%d", from, to, &h1, &m1, &h2, &m2) != 6)
        return -1;
    int d1 = -1, d2 = -1;
    for (int d = 0; d < DAYS_A_WEEK; d++) {
        if (strcmp(from, days[d]) == 0)
            d1 = d;
        if (strcmp(to, days[d]) == 0)
            d2 = d;
    }
    if (d1 < 0 || d2 < 0 || h1 < 0 || h1 > 24 || h2 < 0 || h2 > 24 || m1 < 0 || m1 > 59 || m2 < 0 ||
        m2 > 59 || h1 * 60 + m1 >= h2 * 60 + m2)
        return -1;
    self->business_days = 0;
    for (int d = d1;; d = (d + 1) % DAYS_A_WEEK) {
        self->business_days |= 1 << d;
        if (d == d2)
            break;
    }
    self->business_start_min = h1 * 60 + m1;
    self->business_end_min = h2 * 60 + m2;
    self->business_hours = true;
    return 0;
}

static int s_set_global(sla_t *self, const char *key, const char *value, char *err, size_t err_size)
{
    int64_t ms;
    if (strcmp(key, "warn_at") == 0) {
        int percent = atoi(value);
        if (percent < 1 || percent > 99) {
            snprintf(err, err_size, "warn_at = \"%s\" is not a percentage from 1 to 99", value);
            return -1;
        }
        self->warn_percent = percent;
        return 0;
    }
    if (strcmp(key, "business_hours") == 0) {
        if (s_business_hours(self, value) == 0)
            return 0;
        snprintf(err, err_size,
                 "business_hours = \"%s\" is not 24/7 or like \"mon-fri "
                 "08:00-18:00\"",
                 value);
        return -1;
    }
    if (sla_parse_duration(value, &ms)) {
        snprintf(err, err_size, "%s = \"%s\" is not a duration like 90s, 5m or 4h", key, value);
        return -1;
    }
    if (strcmp(key, "vip_boost") == 0)
        self->vip_boost_ms = ms;
    else if (strncmp(key, "boost_", 6) == 0 && s_priority(key + 6) > 0)
        self->priority_boost_ms[s_priority(key + 6)] = ms;
    else {
        snprintf(err, err_size,
                 "unknown key \"%s\" in [sla] (warn_at, business_hours, "
                 "vip_boost, boost_low .. boost_urgent)",
                 key);
        return -1;
    }
    return 0;
}

static int s_set_field(sla_targets_t *t, const char *key, const char *value, int *field, char *err,
                       size_t err_size)
{
    int64_t ms = 0;
    if (strcmp(key, "action") == 0) {
        *field = SET_ACTION;
        if (strcmp(value, "notify") == 0)
            t->action = SLA_NOTIFY;
        else if (strcmp(value, "escalate") == 0)
            t->action = SLA_ESCALATE;
        else if (strcmp(value, "raise_priority") == 0)
            t->action = SLA_RAISE_PRIORITY;
        else {
            snprintf(err, err_size, "action = \"%s\" is not notify, escalate or raise_priority",
                     value);
            return -1;
        }
        return 0;
    }
    if (strcmp(value, "none") != 0 && sla_parse_duration(value, &ms)) {
        snprintf(err, err_size, "%s = \"%s\" is not a duration like 90s, 5m or 4h (or none)", key,
                 value);
        return -1;
    }
    if (strcmp(key, "first_response") == 0)
        *field = SET_FIRST, t->first_response_ms = ms;
    else if (strcmp(key, "resolution") == 0)
        *field = SET_RESOLUTION, t->resolution_ms = ms;
    else if (strncmp(key, "wait_L", 6) == 0 && key[6] >= '1' && key[6] <= '3' && !key[7])
        *field = SET_WAIT << (key[6] - '1'), t->wait_ms[key[6] - '0'] = ms;
    else {
        snprintf(err, err_size,
                 "unknown key \"%s\" in an [sla NAME] section (first_response, "
                 "resolution, wait_L1, wait_L2, wait_L3, action)",
                 key);
        return -1;
    }
    return 0;
}

int sla_set(sla_t *self, const char *section, const char *key, const char *value, char *err,
            size_t err_size)
{
    char name[SLA_NAME_MAX] = "", prio_name[16] = "";
    int words = sscanf(section, "sla %31s %15s", name, prio_name);
    if (strcmp(section, "sla") == 0)
        return s_set_global(self, key, value, err, err_size);
    int prio = words == 2 ? s_priority(prio_name) : 0;
    if (words < 1 || prio < 0) {
        snprintf(err, err_size, "section [%s] is not [sla], [sla NAME] or [sla NAME PRIORITY]",
                 section);
        return -1;
    }
    policy_t *p = s_find(self, name);
    if (!p) {
        if (self->count == SLA_POLICIES_MAX) {
            snprintf(err, err_size, "more than %d SLA policies", SLA_POLICIES_MAX);
            return -1;
        }
        s_policy(self, name, 0, 0, 0, 0, 0, SLA_NOTIFY);
        p = &self->policies[self->count - 1];
    }
    for (int i = 0; i < SLA_PRIORITIES; i++) {
        if (prio && i != prio)
            continue;
        int field = 0;
        sla_targets_t scratch = p->targets[i];
        if (s_set_field(&scratch, key, value, &field, err, err_size))
            return -1;
        //  A whole-policy value scales per priority, and never overrides a
        //  value given for that priority explicitly.
        if (!prio && (p->explicit_fields[i] & field))
            continue;
        if (!prio && field != SET_ACTION) {
            int64_t *slot = field == SET_FIRST        ? &scratch.first_response_ms
                            : field == SET_RESOLUTION ? &scratch.resolution_ms
                                                      : NULL;
            for (int l = 1; !slot && l <= SLA_LEVELS; l++)
                if (field == SET_WAIT << (l - 1))
                    slot = &scratch.wait_ms[l];
            *slot = *slot * self->scale_percent[i] / 100;
        }
        if (prio)
            p->explicit_fields[i] |= field;
        p->targets[i] = scratch;
    }
    return 0;
}

const sla_targets_t *sla_targets(const sla_t *self, const char *name, int priority)
{
    const policy_t *p = s_find(self, name);
    if (!p)
        p = s_find(self, "chat");
    if (priority < 1 || priority >= SLA_PRIORITIES)
        priority = 2; //  normal
    return &p->targets[priority];
}

const char *sla_business_spec(const sla_t *self, char *buf, size_t size)
{
    if (!self->business_hours) {
        snprintf(buf, size, "%s", "");
        return buf;
    }
    char days[DAYS_A_WEEK + 1];
    for (int d = 0; d < DAYS_A_WEEK; d++)
        days[d] = self->business_days & (1 << d) ? '1' : '0';
    days[DAYS_A_WEEK] = 0;
    time_t now = time(NULL);
    struct tm local;
    localtime_r(&now, &local);
    snprintf(buf, size, "%s,%d,%d,%ld", days, self->business_start_min, self->business_end_min,
             (long) (local.tm_gmtoff / 60));
    return buf;
}

int sla_warn_percent(const sla_t *self)
{
    return self->warn_percent;
}

int64_t sla_vip_boost_ms(const sla_t *self)
{
    return self->vip_boost_ms;
}

int64_t sla_priority_boost_ms(const sla_t *self, int priority)
{
    return priority >= 0 && priority < SLA_PRIORITIES ? self->priority_boost_ms[priority] : 0;
}
