/*  until_test.c — self-test of until.c: every form tier-worker documents
    for "until", and the near misses it must refuse. Exits 0 if all pass.

    Runs in fixed time zones so that "local time" means something known:
    UTC, then a zone with summer time to check that "HH:MM" is read in the
    offset of the day it names.
*/
#include "until.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MS_PER_S   1000ULL
#define MS_PER_MIN (60 * MS_PER_S)
#define MS_PER_H   (60 * MS_PER_MIN)
#define MS_PER_DAY (24 * MS_PER_H)

//  2026-03-28T14:00:00Z, a Saturday; Europe/Lisbon moves to summer time
//  (UTC+1) at 01:00 UTC the next day.
#define NOW_MS 1774706400000ULL

static int s_failures;

static void s_expect(const char *text, uint64_t now_ms, uint64_t want_ms)
{
    uint64_t got = 0;
    if (until_parse(text, now_ms, &got) != 0 || got != want_ms) {
        fprintf(stderr, "FAIL: \"%s\" gave %llu, want %llu\n", text, (unsigned long long) got,
                (unsigned long long) want_ms);
        s_failures++;
    }
}

static void s_refuse(const char *text)
{
    uint64_t got = 0;
    if (until_parse(text, NOW_MS, &got) == 0) {
        fprintf(stderr, "FAIL: \"%s\" accepted as %llu\n", text, (unsigned long long) got);
        s_failures++;
    }
}

static void s_zone(const char *tz)
{
    setenv("TZ", tz, 1);
    tzset();
}

static void s_test_utc(void)
{
    s_zone("UTC");
    s_expect("15:00", NOW_MS, NOW_MS + MS_PER_H);
    s_expect("9:30", NOW_MS, NOW_MS - 4 * MS_PER_H - 30 * MS_PER_MIN + MS_PER_DAY);
    s_expect("14:00", NOW_MS, NOW_MS + MS_PER_DAY); //  "now" has passed: tomorrow
    s_expect("14:00:01", NOW_MS, NOW_MS + MS_PER_S);
    s_expect("+30m", NOW_MS, NOW_MS + 30 * MS_PER_MIN);
    s_expect("+1h30m", NOW_MS, NOW_MS + 90 * MS_PER_MIN);
    s_expect("+90s", NOW_MS, NOW_MS + 90 * MS_PER_S);
    s_expect("+2d", NOW_MS, NOW_MS + 2 * MS_PER_DAY);
    s_expect("2026-03-28T15:00:00Z", 0, NOW_MS + MS_PER_H);
    s_expect("2026-03-28T15:00Z", 0, NOW_MS + MS_PER_H);
    s_expect("2026-03-28T15:00:00.25Z", 0, NOW_MS + MS_PER_H + 250);
    s_expect("2026-03-28T15:00:00.123456Z", 0, NOW_MS + MS_PER_H + 123);
    s_expect("2026-03-28T16:00:00+01:00", 0, NOW_MS + MS_PER_H);
    s_expect("2026-03-28T09:30:00-0530", 0, NOW_MS + MS_PER_H);
    s_expect("2026-03-28 15:00:00", 0, NOW_MS + MS_PER_H); //  no zone: local (UTC here)
}

static void s_test_summer_time(void)
{
    s_zone("Europe/Lisbon");
    //  Today is still winter time (UTC+0); tomorrow 10:00 is summer time.
    s_expect("15:00", NOW_MS, NOW_MS + MS_PER_H);
    s_expect("10:00", NOW_MS, NOW_MS + 19 * MS_PER_H);
    s_expect("2026-03-29T10:00:00", 0, NOW_MS + 19 * MS_PER_H);
}

static void s_test_refused(void)
{
    s_zone("UTC");
    const char *bad[] = {"",
                         "15",
                         "15:0",
                         "24:00",
                         "15:60",
                         "15:00:61",
                         "15:00 ",
                         "+",
                         "+30",
                         "+30x",
                         "+m",
                         "-30m",
                         "+999999999999d",
                         "2026-02-30T10:00:00Z",
                         "2026-13-01T10:00:00Z",
                         "2026-11-22",
                         "2026-11-22T5:00Z",
                         "2026-11-22T15:00:00Zoops",
                         "2026-11-22T15:00:00+1",
                         "1969-12-31T23:00:00Z",
                         "tomorrow"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        s_refuse(bad[i]);
}

int main(void)
{
    s_test_utc();
    s_test_summer_time();
    s_test_refused();
    char text[64];
    s_zone("UTC");
    if (strcmp(until_format(NOW_MS, text, sizeof text), "2026-03-28T14:00:00+0000") != 0) {
        fprintf(stderr, "FAIL: until_format gave %s\n", text);
        s_failures++;
    }
    printf("until: %s\n", s_failures ? "FAILED" : "ok");
    return s_failures ? EXIT_FAILURE : EXIT_SUCCESS;
}
