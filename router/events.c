/*  events.c — see events.h. */
#include "events.h"
#include "log.h"
#include "store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOPIC_MAX       256
#define EVENT_BYTES_MAX 8192 //  events are small: ids, names, a reason

struct _events_t {
    zsock_t *pub;                    //  PUB socket
    void *handle;                    //  its libzmq handle
    uint64_t published;              //  events sent
    uint8_t buffer[EVENT_BYTES_MAX]; //  packed event, reused
};

events_t *events_new(const char *endpoint)
{
    zsock_t *pub = zsock_new(ZMQ_PUB);
    if (!pub)
        return NULL;
    //  A slow subscriber must not make the router buffer without bound; it
    //  loses events instead and re-synchronises with a snapshot (seq gap).
    //  Set before bind: a listener gives its peers the options it had then.
    zsock_set_sndhwm(pub, 100000);
    if (zsock_bind(pub, "%s", endpoint) < 0) {
        log_error("cannot bind events endpoint %s: %s", endpoint, zmq_strerror(zmq_errno()));
        zsock_destroy(&pub);
        return NULL;
    }
    events_t *self = calloc(1, sizeof(events_t));
    self->pub = pub;
    self->handle = zsock_resolve(pub);
    return self;
}

void events_destroy(events_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    zsock_destroy(&(*self_p)->pub);
    free(*self_p);
    *self_p = NULL;
}

const char *events_level_name(int level)
{
    static const char *names[] = {"", "L1", "L2", "L3"};
    return level >= 1 && level <= 3 ? names[level] : "";
}

//  An event from store.lua is one string: its fields in STORE_EV_ order,
//  each ended by a NUL byte (the last by the one hiredis adds).
void events_decode(const redisReply *packed, uint64_t seq, int64_t now_ms, Tier__V1__Event *event)
{
    static char empty[] = "";
    char *f[STORE_EV_FIELDS];
    size_t n = 0;
    if (packed && packed->type == REDIS_REPLY_STRING) {
        char *p = packed->str, *end = packed->str + packed->len;
        while (n < STORE_EV_FIELDS && p <= end) {
            f[n++] = p;
            p += strlen(p) + 1;
        }
    }
    while (n < STORE_EV_FIELDS)
        f[n++] = empty;
    tier__v1__event__init(event);
    event->seq = seq;
    event->at_ms = (uint64_t) now_ms;
    event->kind = (Tier__V1__EventKind) strtoul(f[STORE_EV_KIND], NULL, 10);
    event->ticket_id = f[STORE_EV_TICKET];
    event->level = (Tier__V1__Level) strtoul(f[STORE_EV_LEVEL], NULL, 10);
    event->department = f[STORE_EV_DEPT];
    event->agent = f[STORE_EV_AGENT];
    event->from_level = (Tier__V1__Level) strtoul(f[STORE_EV_FROM_LEVEL], NULL, 10);
    event->from_department = f[STORE_EV_FROM_DEPT];
    event->reason = f[STORE_EV_REASON];
    event->depth = (uint32_t) strtoul(f[STORE_EV_DEPTH], NULL, 10);
    event->oldest_ms = strtoull(f[STORE_EV_OLDEST], NULL, 10);
    event->state = (Tier__V1__TicketState) strtoul(f[STORE_EV_STATE], NULL, 10);
    event->attempt = (uint32_t) strtoul(f[STORE_EV_ATTEMPT], NULL, 10);
    event->channel = (Tier__V1__Channel) strtoul(f[STORE_EV_CHANNEL], NULL, 10);
    event->priority = (Tier__V1__Priority) strtoul(f[STORE_EV_PRIORITY], NULL, 10);
    event->csat = (uint32_t) strtoul(f[STORE_EV_CSAT], NULL, 10);
    event->created_ms = strtoull(f[STORE_EV_CREATED], NULL, 10);
    event->queued_ms = strtoull(f[STORE_EV_QUEUED], NULL, 10);
    event->agent_state = (Tier__V1__AgentState) strtoul(f[STORE_EV_AGENT_STATE], NULL, 10);
}

static void s_send(events_t *self, const char *topic, size_t size)
{
    //  PUB never blocks; a full pipe to a slow subscriber drops the message.
    zmq_send(self->handle, topic, strlen(topic), ZMQ_SNDMORE | ZMQ_DONTWAIT);
    zmq_send(self->handle, self->buffer, size, ZMQ_DONTWAIT);
}

void events_publish(events_t *self, const Tier__V1__Event *event)
{
    size_t size = tier__v1__event__get_packed_size(event);
    if (size > sizeof(self->buffer)) {
        log_warning("event %llu of %zu bytes is too large to publish",
                    (unsigned long long) event->seq, size);
        return;
    }
    tier__v1__event__pack(event, self->buffer);
    char topic[TOPIC_MAX];
    s_send(self, "all/", size);
    //  An escalation concerns the level and department it left as well.
    const char *level = events_level_name(event->level);
    const char *from_level = events_level_name(event->from_level);
    if (*level) {
        snprintf(topic, sizeof(topic), "level/%s/", level);
        s_send(self, topic, size);
    }
    if (*from_level && event->from_level != event->level) {
        snprintf(topic, sizeof(topic), "level/%s/", from_level);
        s_send(self, topic, size);
    }
    if (*event->department) {
        snprintf(topic, sizeof(topic), "dept/%s/", event->department);
        s_send(self, topic, size);
    }
    if (*event->from_department && strcmp(event->from_department, event->department) != 0) {
        snprintf(topic, sizeof(topic), "dept/%s/", event->from_department);
        s_send(self, topic, size);
    }
    if (*event->ticket_id) {
        snprintf(topic, sizeof(topic), "ticket/%s/", event->ticket_id);
        s_send(self, topic, size);
    }
    if (*event->agent) {
        snprintf(topic, sizeof(topic), "agent/%s/", event->agent);
        s_send(self, topic, size);
    }
    self->published++;
}

uint64_t events_published(events_t *self)
{
    return self->published;
}
