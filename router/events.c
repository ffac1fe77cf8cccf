/*  events.c — see events.h. */
#include "events.h"
#include "log.h"

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
