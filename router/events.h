/*  events.h — the PUB side: every state change, under every topic it concerns.

    Events are numbered by the router as the change they describe is made
    (lifecycle.c), and published once the batch holding the change is in
    Redis (server.c); the number goes to Redis with the batch (P seq).
*/
#ifndef TIER_EVENTS_H
#define TIER_EVENTS_H

#include "tier.pb-c.h"
#include <czmq.h>
#include <stdint.h>

typedef struct _events_t events_t;

//  Bind the socket (XPUB) on endpoint; NULL (and a log line) if it cannot.
events_t *events_new(const char *endpoint);
void events_destroy(events_t **self_p);

//  The socket, to poll for subscriptions (borrowed).
void *events_socket(events_t *self);
//  Take in the subscriptions that came and went; call before publishing.
void events_read_subscriptions(events_t *self);
//  Distinct topics subscribed now.
size_t events_subscriptions(const events_t *self);

//  Publish under "all/", "level/Ln/", "dept/D/", "ticket/ID/", "agent/A/":
//  those some subscription is a prefix of.
void events_publish(events_t *self, const Tier__V1__Event *event);

//  Events published so far (copies under several topics count once).
uint64_t events_published(events_t *self);

//  "L1".."L3", or "" for anything else.
const char *events_level_name(int level);

#endif
