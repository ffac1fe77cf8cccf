/*  notify.c — see notify.h. Uses libsystemd's sd_notify when built with it. */
#include "notify.h"

#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#ifdef HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#define NOTIFY(text) sd_notify(0, text)
#define NOTIFYF(...) sd_notifyf(0, __VA_ARGS__)
#else
#define NOTIFY(text) ((void) 0)
#define NOTIFYF(...) ((void) 0)
#endif

void notify_ready(void)
{
    NOTIFY("READY=1");
}

void notify_reloading(void)
{
    NOTIFY("RELOADING=1");
}

void notify_stopping(void)
{
    NOTIFY("STOPPING=1");
}

void notify_status(const char *status)
{
    NOTIFYF("STATUS=%s", status);
    (void) status;
}

void notify_watchdog(void)
{
#ifdef HAVE_SYSTEMD
    static uint64_t interval_us = 0, last_us = 0;
    static int enabled = -1;
    if (enabled < 0)
        enabled = sd_watchdog_enabled(0, &interval_us) > 0;
    if (!enabled)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t now_us = (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
    if (now_us - last_us >= interval_us / 2) {
        last_us = now_us;
        NOTIFY("WATCHDOG=1");
    }
#endif
}
