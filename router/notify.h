/*  notify.h — tell systemd how we are (Type=notify). No-ops elsewhere. */
#ifndef TIER_NOTIFY_H
#define TIER_NOTIFY_H

void notify_ready(void);
void notify_reloading(void);
void notify_stopping(void);
void notify_status(const char *status);
//  Pet the watchdog; rate-limited to half of WatchdogSec.
void notify_watchdog(void);

#endif
