/*  log.c — see log.h. */
#include "log.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int s_level = LOG_INFO;
static int s_journal = -1; //  -1 = not decided yet

static const char *s_names[] = {"emerg",   "alert",  "crit", "error",
                                "warning", "notice", "info", "debug"};

void log_set_level(int priority)
{
    s_level = priority;
}

int log_level_parse(const char *name)
{
    for (int i = LOG_ERR; i <= LOG_DEBUG; i++)
        if (strcmp(name, s_names[i]) == 0)
            return i;
    if (strcmp(name, "warn") == 0)
        return LOG_WARNING;
    return -1;
}

void log_print(int priority, const char *format, ...)
{
    if (priority > s_level)
        return;
    if (s_journal < 0)
        s_journal = getenv("JOURNAL_STREAM") != NULL;
    char line[2048];
    va_list args;
    va_start(args, format);
    vsnprintf(line, sizeof(line), format, args);
    va_end(args);
    if (s_journal)
        fprintf(stderr, "<%d>%s\n", priority, line);
    else
        fprintf(stderr, "tierd: %s: %s\n", s_names[priority], line);
}
