/*  events.h — the PUB side: every state change, under every topic it concerns.

    Events are numbered inside Redis (store.lua) in the same transaction as
    the change they describe; this module only converts and publishes them.
*/
#ifndef TIER_EVENTS_H
#define TIER_EVENTS_H

#include "tier.pb-c.h"
#include <czmq.h>
#include <hiredis/hiredis.h>
#include <stdint.h>

typedef struct _events_t events_t;

//  Bind a PUB socket on endpoint; NULL (and a log line) if it cannot.
events_t *events_new(const char *endpoint);
void events_destroy(events_t **self_p);

//  Fill `event` from one event of a store reply (a string of NUL-ended
//  fields). Strings are borrowed from the reply.
void events_decode(const redisReply *packed, uint64_t seq, int64_t now_ms, Tier__V1__Event *event);

//  Publish under "all/", "level/Ln/", "dept/D/", "ticket/ID/", "agent/A/".
void events_publish(events_t *self, const Tier__V1__Event *event);

//  Events published so far (copies under several topics count once).
uint64_t events_published(events_t *self);

//  "L1".."L3", or "" for anything else.
const char *events_level_name(int level);

#endif
