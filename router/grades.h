/*  grades.h — the seed's five service grades, from first response time and CSAT.

    A team is graded per channel, because customers expect different speeds
    on each: a chat answered in 5 minutes is "above average", an e-mail
    answered in 5 minutes is "stellar". The mean first response time is held
    against the channel's limits, the mean rating (1..5) against the CSAT
    limits, and the grade is the lower of the two (either alone when the
    other has no data). The limits are settings, section [grades] of
    tierd.conf, with the seed's figures as defaults (docs/metrics.md):

        [grades]
        chat  = 1m, 5m, 30m, 1h         ; slowest mean FRT (90s, 5m, 4h,
                                         ; 2d; a number is seconds) for
                                         ; stellar, above average, average,
                                         ; below average; slower: unacceptable
        csat  = 4.9, 4.8, 4, 3          ; lowest mean rating, same order

    Keys: every channel name (chat, email, phone, sms, whatsapp, social, web)
    and csat.
*/
#ifndef TIER_GRADES_H
#define TIER_GRADES_H

#include <stddef.h>
#include <stdio.h>

#define GRADES_CHANNELS_MAX 16 //  room for Tier__V1__Channel values
#define GRADE_LIMITS        4  //  stellar, above average, average, below average

typedef enum {
    GRADE_NONE = 0, //  no data to grade
    GRADE_UNACCEPTABLE,
    GRADE_BELOW_AVERAGE,
    GRADE_AVERAGE,
    GRADE_ABOVE_AVERAGE,
    GRADE_STELLAR
} grade_t;

typedef struct {
    double frt_s[GRADES_CHANNELS_MAX][GRADE_LIMITS]; //  per channel: slowest mean FRT
                                                     //  (s) for stellar .. below average
    double csat[GRADE_LIMITS]; //  lowest mean rating for stellar .. below average
} grades_t;

//  The seed's limits.
void grades_init(grades_t *self);

//  Set one key of [grades]. Returns -1 and fills err (what is wrong and
//  what to write instead) on an unknown key or a bad value.
int grades_set(grades_t *self, const char *key, const char *value, char *err, size_t err_size);

//  The grade of a channel (Tier__V1__Channel) with this mean first response
//  time and mean rating; a negative value means "no data" for that part.
grade_t grades_of(const grades_t *self, int channel, double frt_s, double csat_mean);

//  "unacceptable", "below_average", "average", "above_average", "stellar";
//  "" for GRADE_NONE.
const char *grades_name(grade_t grade);

//  The settings in INI form, as config_print shows the others.
void grades_print(const grades_t *self, FILE *out);

#endif
