/*  until.h — the times a handler may promise a customer, as tier-worker
    reads them in {"action":"defer","until":...}.

    Text forms (a number of ms since the epoch is read by the caller):

      "15:00", "15:00:30"           local time today, or tomorrow if that
                                    time of day has passed already
      "+30m", "+2h", "+1h30m", "+90s", "+1d"
                                    from now; units s, m, h, d
      "2026-11-22T15:00:00Z"        ISO 8601 in UTC; seconds optional,
      "2026-11-22T16:00+01:00"      a fraction of a second is allowed, an
      "2026-11-22T15:00:00"         offset instead of Z, none = local time

    Local time is the process's TZ, as for every other tool on the host.
*/
#ifndef UNTIL_H_INCLUDED
#define UNTIL_H_INCLUDED

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

//  Reads text relative to now_ms (ms since the epoch). Returns 0 and sets
//  *until_ms, or -1 if text is none of the forms above (or names a date
//  that does not exist, such as February 30).
int until_parse(const char *text, uint64_t now_ms, uint64_t *until_ms);

//  Writes ms as local time with its offset, "2026-11-22T16:00:00+0100",
//  into buffer. Returns buffer.
const char *until_format(uint64_t ms, char *buffer, size_t size);

#ifdef __cplusplus
}
#endif

#endif
