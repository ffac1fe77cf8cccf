/*  grades.c — see grades.h. */
#include "grades.h"
#include "sla.h"
#include "tierjson.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define CSAT_MIN  1.0
#define VALUE_MAX 256 //  longest [grades] value
#define MS_PER_S  1000.0
#define CSAT_MAX  5.0

//  The seed's response times per kind of channel (seconds): real-time
//  channels in minutes, social media in hours but stellar at 15 min, e-mail
//  and web forms in hours and days. Between "average: 10 min" and "below
//  average: 30-60 min" for chat the seed says nothing: that goes to average.
static const double s_realtime[GRADE_LIMITS] = {60, 300, 1800, 3600};
static const double s_social[GRADE_LIMITS] = {900, 14400, 86400, 259200};
static const double s_written[GRADE_LIMITS] = {3600, 14400, 86400, 259200};
//  Mean rating: stellar is "consistently 5s", above average 4.8 or more,
//  average "consistent 4s and 5s", below average "mostly 3s or more".
static const double s_csat[GRADE_LIMITS] = {4.9, 4.8, 4.0, 3.0};

static const char *s_grade_names[] = {"",        "unacceptable",  "below_average",
                                      "average", "above_average", "stellar"};

static const char *s_channel_name(int channel)
{
    return tierjson_enum_name(&tier__v1__channel__descriptor, channel);
}

//  The channel a key names, or -1.
static int s_channel_of(const char *name)
{
    int channel;
    if (tierjson_enum_value(&tier__v1__channel__descriptor, name, &channel) || channel <= 0 ||
        channel >= GRADES_CHANNELS_MAX)
        return -1;
    return channel;
}

void grades_init(grades_t *self)
{
    for (int channel = 0; channel < GRADES_CHANNELS_MAX; channel++) {
        const double *limits = s_written;
        if (channel == TIER__V1__CHANNEL__CHANNEL_CHAT ||
            channel == TIER__V1__CHANNEL__CHANNEL_PHONE ||
            channel == TIER__V1__CHANNEL__CHANNEL_SMS ||
            channel == TIER__V1__CHANNEL__CHANNEL_WHATSAPP)
            limits = s_realtime;
        else if (channel == TIER__V1__CHANNEL__CHANNEL_SOCIAL)
            limits = s_social;
        memcpy(self->frt_s[channel], limits, sizeof(self->frt_s[channel]));
    }
    memcpy(self->csat, s_csat, sizeof(self->csat));
}

//  Four comma-separated items, each read by parse into a number; -1 if the
//  text is anything else.
static int s_parse_limits(const char *value, double limits[GRADE_LIMITS],
                          int (*parse)(const char *item, double *number))
{
    char copy[VALUE_MAX];
    if (snprintf(copy, sizeof(copy), "%s", value) >= (int) sizeof(copy))
        return -1;
    int count = 0;
    char *save = NULL;
    for (char *item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        while (isspace((unsigned char) *item))
            item++;
        size_t len = strlen(item);
        while (len && isspace((unsigned char) item[len - 1]))
            item[--len] = '\0';
        if (count == GRADE_LIMITS || parse(item, &limits[count++]))
            return -1;
    }
    return count == GRADE_LIMITS ? 0 : -1;
}

//  "90", "90s", "5m", "4h", "2d" (sla.h) into seconds.
static int s_parse_seconds(const char *item, double *seconds)
{
    int64_t ms;
    if (sla_parse_duration(item, &ms))
        return -1;
    *seconds = (double) ms / MS_PER_S;
    return 0;
}

static int s_parse_rating(const char *item, double *rating)
{
    char *end;
    *rating = strtod(item, &end);
    return end == item || *end || *rating < CSAT_MIN || *rating > CSAT_MAX ? -1 : 0;
}

static int s_set_frt(double target[GRADE_LIMITS], const char *key, const char *value, char *err,
                     size_t err_size)
{
    double limits[GRADE_LIMITS];
    bool ok = s_parse_limits(value, limits, s_parse_seconds) == 0;
    for (int i = 1; ok && i < GRADE_LIMITS; i++)
        ok = limits[i] >= limits[i - 1];
    if (!ok) {
        snprintf(err, err_size,
                 "%s = \"%s\": expected 4 rising durations, the slowest mean first response "
                 "for stellar, above average, average and below average, e.g. \"1m, 5m, 30m, "
                 "1h\" (a bare number is seconds)",
                 key, value);
        return -1;
    }
    memcpy(target, limits, sizeof(limits));
    return 0;
}

static int s_set_csat(grades_t *self, const char *value, char *err, size_t err_size)
{
    double limits[GRADE_LIMITS];
    bool ok = s_parse_limits(value, limits, s_parse_rating) == 0;
    for (int i = 1; ok && i < GRADE_LIMITS; i++)
        ok = limits[i] <= limits[i - 1];
    if (!ok) {
        snprintf(err, err_size,
                 "csat = \"%s\": expected 4 falling ratings from 1 to 5, the lowest mean rating "
                 "for stellar, above average, average and below average, e.g. \"4.9, 4.8, 4, 3\"",
                 value);
        return -1;
    }
    memcpy(self->csat, limits, sizeof(limits));
    return 0;
}

int grades_set(grades_t *self, const char *key, const char *value, char *err, size_t err_size)
{
    if (strcmp(key, "csat") == 0)
        return s_set_csat(self, value, err, err_size);
    int channel = s_channel_of(key);
    if (channel > 0)
        return s_set_frt(self->frt_s[channel], key, value, err, err_size);
    snprintf(err, err_size,
             "unknown key \"%s\" in [grades] (use a channel: chat, email, phone, sms, whatsapp, "
             "social, web; or csat)",
             key);
    return -1;
}

grade_t grades_of(const grades_t *self, int channel, double frt_s, double csat_mean)
{
    grade_t by_frt = GRADE_NONE, by_csat = GRADE_NONE;
    if (frt_s >= 0 && channel > 0 && channel < GRADES_CHANNELS_MAX) {
        by_frt = GRADE_UNACCEPTABLE;
        for (int i = GRADE_LIMITS - 1; i >= 0; i--)
            if (frt_s <= self->frt_s[channel][i])
                by_frt = (grade_t) (GRADE_STELLAR - i);
    }
    if (csat_mean >= 0) {
        by_csat = GRADE_UNACCEPTABLE;
        for (int i = GRADE_LIMITS - 1; i >= 0; i--)
            if (csat_mean >= self->csat[i])
                by_csat = (grade_t) (GRADE_STELLAR - i);
    }
    if (by_frt == GRADE_NONE)
        return by_csat;
    if (by_csat == GRADE_NONE)
        return by_frt;
    return by_frt < by_csat ? by_frt : by_csat;
}

const char *grades_name(grade_t grade)
{
    return grade >= GRADE_NONE && grade <= GRADE_STELLAR ? s_grade_names[grade] : "";
}

static void s_print_limits(FILE *out, const char *key, const double limits[GRADE_LIMITS])
{
    fprintf(out, "%s = %g, %g, %g, %g\n", key, limits[0], limits[1], limits[2], limits[3]);
}

void grades_print(const grades_t *self, FILE *out)
{
    fprintf(out, "\n[grades]\n");
    const ProtobufCEnumDescriptor *d = &tier__v1__channel__descriptor;
    for (unsigned i = 0; i < d->n_values; i++) {
        int channel = d->values[i].value;
        if (channel > 0 && channel < GRADES_CHANNELS_MAX)
            s_print_limits(out, s_channel_name(channel), self->frt_s[channel]);
    }
    s_print_limits(out, "csat", self->csat);
}
