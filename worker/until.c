/*  until.c — the times a handler may promise a customer.

    Hand-written readers rather than strptime: strptime accepts fewer or
    more digits than written, skips blanks and knows no "Z", so "15:0" or
    "2026-11-22T15:00:00Zoops" would pass. Every form here must be read to
    its last character.

    Dates are checked by round trip: timegm and mktime quietly turn
    February 30 into March 2, so a date whose day or month changed on the
    way does not exist.
*/
#include "until.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define MS_PER_S       1000
#define S_PER_MIN      60
#define S_PER_HOUR     3600
#define S_PER_DAY      86400
#define RELATIVE_MAX_S (100LL * 366 * S_PER_DAY) //  "+..." beyond a century is a typo
#define AMOUNT_DIGITS  9                         //  digits of one "+..." amount
#define YEAR_MIN       1970                      //  times before the epoch are no promise
#define TM_YEAR_BASE   1900                      //  struct tm counts years from here
#define HOUR_MAX       23
#define MINUTE_MAX     59
#define SECOND_MAX     59
#define MONTH_MAX      12
#define DAY_MAX        31
#define DECIMAL        10

static const char s_units[] = "smhd"; //  units of "+..." amounts
static const long long s_unit_s[] = {1, S_PER_MIN, S_PER_HOUR, S_PER_DAY}; //  seconds per unit

//  Reads min..max decimal digits at *p into *value and moves *p past them.
static bool s_number(const char **p, int min, int max, long long *value)
{
    int n = 0;
    long long v = 0;
    while (n < max && isdigit((unsigned char) (*p)[n])) {
        v = v * DECIMAL + ((*p)[n] - '0');
        n++;
    }
    if (n < min)
        return false;
    *p += n;
    *value = v;
    return true;
}

static bool s_field(const char **p, int digits, long long max, int *field)
{
    long long v;
    if (!s_number(p, digits, digits, &v) || v > max)
        return false;
    *field = (int) v;
    return true;
}

static bool s_char(const char **p, char c)
{
    if (**p != c)
        return false;
    (*p)++;
    return true;
}

//  "HH:MM" or "HH:MM:SS" into tm; the hour has at least hour_digits digits.
static bool s_clock(const char **p, int hour_digits, struct tm *tm)
{
    long long hour;
    if (!s_number(p, hour_digits, 2, &hour) || hour > HOUR_MAX || !s_char(p, ':'))
        return false;
    tm->tm_hour = (int) hour;
    if (!s_field(p, 2, MINUTE_MAX, &tm->tm_min))
        return false;
    tm->tm_sec = 0;
    return **p != ':' || (s_char(p, ':') && s_field(p, 2, SECOND_MAX, &tm->tm_sec));
}

//  Local time: mktime with tm_isdst -1 lets the C library pick summer or
//  winter time for that day.
static time_t s_local(struct tm *tm)
{
    tm->tm_isdst = -1;
    return mktime(tm);
}

//  "15:00": today at that time, or tomorrow if that time has passed.
static int s_time_of_day(const char *text, uint64_t now_ms, uint64_t *until_ms)
{
    time_t now = (time_t) (now_ms / MS_PER_S);
    struct tm wanted, tm;
    localtime_r(&now, &wanted);
    const char *p = text;
    if (!s_clock(&p, 1, &wanted) || *p)
        return -1;
    tm = wanted;
    time_t t = s_local(&tm);
    if (t != (time_t) -1 && (uint64_t) t * MS_PER_S <= now_ms) {
        tm = wanted;
        tm.tm_mday++;
        t = s_local(&tm);
    }
    if (t == (time_t) -1)
        return -1;
    *until_ms = (uint64_t) t * MS_PER_S;
    return 0;
}

//  "+1h30m": now plus a sum of amounts with units s, m, h, d.
static int s_relative(const char *text, uint64_t now_ms, uint64_t *until_ms)
{
    const char *p = text + 1;
    long long total_s = 0;
    do {
        long long amount;
        if (!s_number(&p, 1, AMOUNT_DIGITS, &amount))
            return -1;
        const char *unit = *p ? strchr(s_units, *p) : NULL;
        if (!unit)
            return -1;
        total_s += amount * s_unit_s[unit - s_units];
        if (total_s > RELATIVE_MAX_S)
            return -1;
        p++;
    } while (*p);
    *until_ms = now_ms + (uint64_t) total_s * MS_PER_S;
    return 0;
}

//  "Z", "+01:00", "-0530" or nothing (local time). Sets *offset_s (east
//  of UTC) and *zoned.
static bool s_zone(const char **p, long *offset_s, bool *zoned)
{
    *offset_s = 0;
    *zoned = **p != 0;
    if (s_char(p, 'Z') || s_char(p, 'z') || !**p)
        return true;
    int sign = **p == '-' ? -1 : 1;
    if (!s_char(p, '+') && !s_char(p, '-'))
        return false;
    int hours, minutes;
    if (!s_field(p, 2, HOUR_MAX, &hours))
        return false;
    s_char(p, ':');
    if (!s_field(p, 2, MINUTE_MAX, &minutes))
        return false;
    *offset_s = sign * (hours * S_PER_HOUR + minutes * S_PER_MIN);
    return true;
}

//  ".5", ".123456": the milliseconds of a fraction of a second.
static bool s_fraction(const char **p, int *ms)
{
    *ms = 0;
    if (!s_char(p, '.'))
        return true;
    if (!isdigit((unsigned char) **p))
        return false;
    //  Digits past the milliseconds are read and ignored.
    for (int scale = MS_PER_S / DECIMAL; isdigit((unsigned char) **p); (*p)++, scale /= DECIMAL)
        *ms += (**p - '0') * scale;
    return true;
}

//  "2026-11-22T15:00:00Z" and friends, see until.h.
static int s_iso(const char *text, uint64_t *until_ms)
{
    const char *p = text;
    struct tm tm = {0};
    long long year;
    int ms = 0;
    long offset_s;
    bool zoned;
    if (!s_number(&p, 4, 4, &year) || year < YEAR_MIN || !s_char(&p, '-') ||
        !s_field(&p, 2, MONTH_MAX, &tm.tm_mon) || !s_char(&p, '-') ||
        !s_field(&p, 2, DAY_MAX, &tm.tm_mday) || (!s_char(&p, 'T') && !s_char(&p, ' ')))
        return -1;
    if (!s_clock(&p, 2, &tm) || !s_fraction(&p, &ms) || !s_zone(&p, &offset_s, &zoned) || *p)
        return -1;
    int mday = tm.tm_mday, mon = tm.tm_mon - 1;
    tm.tm_year = (int) year - TM_YEAR_BASE;
    tm.tm_mon = mon;
    time_t t = zoned ? timegm(&tm) - offset_s : s_local(&tm);
    if (t == (time_t) -1 || t < 0 || tm.tm_mday != mday || tm.tm_mon != mon)
        return -1;
    *until_ms = (uint64_t) t * MS_PER_S + (uint64_t) ms;
    return 0;
}

int until_parse(const char *text, uint64_t now_ms, uint64_t *until_ms)
{
    if (!text || !*text)
        return -1;
    if (*text == '+')
        return s_relative(text, now_ms, until_ms);
    if (strchr(text, '-'))
        return s_iso(text, until_ms);
    return s_time_of_day(text, now_ms, until_ms);
}

const char *until_format(uint64_t ms, char *buffer, size_t size)
{
    time_t seconds = (time_t) (ms / MS_PER_S);
    struct tm tm;
    localtime_r(&seconds, &tm);
    if (!strftime(buffer, size, "%Y-%m-%dT%H:%M:%S%z", &tm) && size)
        *buffer = 0;
    return buffer;
}
