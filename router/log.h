/*  log.h — one line per event on stderr.

    Under systemd (JOURNAL_STREAM set) each line starts with the syslog
    priority in angle brackets, which journald turns into the entry's
    priority; on a terminal it starts with the program name and level word.
*/
#ifndef TIER_LOG_H
#define TIER_LOG_H

#include <syslog.h>

//  Set the most verbose priority printed (LOG_ERR .. LOG_DEBUG).
void log_set_level(int priority);
//  Parse "error", "warning", "notice", "info", "debug"; -1 if unknown.
int log_level_parse(const char *name);
void log_print(int priority, const char *format, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...)   log_print(LOG_ERR, __VA_ARGS__)
#define log_warning(...) log_print(LOG_WARNING, __VA_ARGS__)
#define log_notice(...)  log_print(LOG_NOTICE, __VA_ARGS__)
#define log_info(...)    log_print(LOG_INFO, __VA_ARGS__)
#define log_debug(...)   log_print(LOG_DEBUG, __VA_ARGS__)

#endif
