/*  events.c — see events.h.

    The socket is an XPUB: it hands the router every subscription as it
    comes and goes (without ZMQ_XPUB_VERBOSE: a topic once when the first
    subscriber takes it, once when the last leaves it). The router keeps them
    in a small trie and sends an event only under the topics some
    subscription is a prefix of: with a thousand desktop clients on
    ticket/ID/ topics, or only the benchmark's all/, an event costs what its
    subscribers ask for, not five sends. The event is encoded once, by hand
    (wire.h), for all of its topics.
*/
#include "events.h"
#include "log.h"
#include "wire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOPIC_MAX      256
#define SUB_POLL_MAX   1024 //  subscription messages read per call
#define SEND_QUEUE_MAX 100000

//  A trie of subscribed prefixes: children by byte, sorted; `subscribed`
//  when a subscription ends here.
typedef struct node {
    struct node **children;
    uint8_t *bytes; //  the byte of each child
    uint16_t count;
    bool subscribed;
} node_t;

struct _events_t {
    zsock_t *pub;       //  XPUB socket
    void *handle;       //  its libzmq handle
    uint64_t published; //  events sent
    node_t root;        //  subscriptions
    size_t subscriptions;
    bytes_t buffer; //  the encoded event, reused
};

events_t *events_new(const char *endpoint)
{
    zsock_t *pub = zsock_new(ZMQ_XPUB);
    if (!pub)
        return NULL;
    //  A slow subscriber must not make the router buffer without bound; it
    //  loses events instead and re-synchronises with a snapshot (seq gap).
    //  Set before bind: a listener gives its peers the options it had then.
    zsock_set_sndhwm(pub, SEND_QUEUE_MAX);
    if (zsock_bind(pub, "%s", endpoint) < 0) {
        log_error("cannot bind events endpoint %s: %s", endpoint, zmq_strerror(zmq_errno()));
        zsock_destroy(&pub);
        return NULL;
    }
    events_t *self = calloc(1, sizeof(events_t));
    if (!self) {
        zsock_destroy(&pub);
        return NULL;
    }
    self->pub = pub;
    self->handle = zsock_resolve(pub);
    return self;
}

static void s_node_free(node_t *node)
{
    for (uint16_t i = 0; i < node->count; i++) {
        s_node_free(node->children[i]);
        free(node->children[i]);
    }
    free(node->children);
    free(node->bytes);
}

void events_destroy(events_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    events_t *self = *self_p;
    zsock_destroy(&self->pub);
    s_node_free(&self->root);
    bytes_fini(&self->buffer);
    free(self);
    *self_p = NULL;
}

void *events_socket(events_t *self)
{
    return self->handle;
}

//  ---------------------------------------------------------------------------
//  Subscriptions

static node_t *s_child(node_t *node, uint8_t byte, bool make)
{
    uint16_t at = 0;
    while (at < node->count && node->bytes[at] < byte)
        at++;
    if (at < node->count && node->bytes[at] == byte)
        return node->children[at];
    if (!make)
        return NULL;
    node_t **children = realloc(node->children, (node->count + 1) * sizeof(node_t *));
    uint8_t *bytes = realloc(node->bytes, node->count + 1u);
    node_t *child = calloc(1, sizeof(node_t));
    if (!children || !bytes || !child) {
        log_error("out of memory keeping a subscription");
        abort();
    }
    memmove(children + at + 1, children + at, (node->count - at) * sizeof(node_t *));
    memmove(bytes + at + 1, bytes + at, (size_t) (node->count - at));
    children[at] = child;
    bytes[at] = byte;
    node->children = children;
    node->bytes = bytes;
    node->count++;
    return child;
}

static void s_subscribe(events_t *self, const uint8_t *topic, size_t len, bool on)
{
    node_t *node = &self->root;
    for (size_t i = 0; i < len && node; i++)
        node = s_child(node, topic[i], on);
    if (!node || node->subscribed == on)
        return;
    //  Nodes of a subscription gone are kept: topics are few and come back.
    node->subscribed = on;
    self->subscriptions += on ? 1 : (size_t) -1;
}

void events_read_subscriptions(events_t *self)
{
    uint8_t buf[TOPIC_MAX + 1];
    for (int i = 0; i < SUB_POLL_MAX; i++) {
        int n = zmq_recv(self->handle, buf, sizeof(buf), ZMQ_DONTWAIT);
        if (n < 0)
            return;
        //  1 + topic: subscribe; 0 + topic: unsubscribe; others: not ours.
        if (n >= 1 && n <= (int) sizeof(buf) && (buf[0] == 0 || buf[0] == 1))
            s_subscribe(self, buf + 1, (size_t) n - 1, buf[0] == 1);
    }
}

//  Whether some subscription is a prefix of topic.
static bool s_wanted(const events_t *self, const char *topic)
{
    const node_t *node = &self->root;
    for (const uint8_t *p = (const uint8_t *) topic;; p++) {
        if (node->subscribed)
            return true;
        if (!*p)
            return false;
        node = s_child((node_t *) node, *p, false);
        if (!node)
            return false;
    }
}

size_t events_subscriptions(const events_t *self)
{
    return self->subscriptions;
}

//  ---------------------------------------------------------------------------
//  Publishing

const char *events_level_name(int level)
{
    static const char *names[] = {"", "L1", "L2", "L3"};
    return level >= 1 && level <= 3 ? names[level] : "";
}

//  tier.v1.Event, field by field (only what is set; tier.proto's numbers).
static void s_encode(bytes_t *b, const Tier__V1__Event *e)
{
    bytes_clear(b);
    wire_u64_opt(b, 1, e->seq);
    wire_u64_opt(b, 2, e->at_ms);
    wire_u64_opt(b, 3, (uint64_t) e->kind);
    wire_str_opt(b, 4, e->ticket_id);
    wire_u64_opt(b, 5, (uint64_t) e->level);
    wire_str_opt(b, 6, e->department);
    wire_str_opt(b, 7, e->agent);
    wire_u64_opt(b, 8, (uint64_t) e->from_level);
    wire_str_opt(b, 9, e->from_department);
    wire_str_opt(b, 10, e->reason);
    wire_u64_opt(b, 11, e->depth);
    wire_u64_opt(b, 12, e->oldest_ms);
    wire_u64_opt(b, 13, (uint64_t) e->state);
    wire_u64_opt(b, 14, (uint64_t) e->agent_state);
    wire_u64_opt(b, 15, (uint64_t) e->channel);
    wire_u64_opt(b, 16, (uint64_t) e->priority);
    wire_u64_opt(b, 17, e->csat);
    wire_u64_opt(b, 18, e->attempt);
    wire_u64_opt(b, 19, e->created_ms);
    wire_u64_opt(b, 20, e->queued_ms);
}

//  "kind/name/" into topic; false if it does not fit.
static bool s_topic(char *topic, const char *kind, const char *name)
{
    size_t lk = strlen(kind), ln = strlen(name);
    if (lk + ln + 2 >= TOPIC_MAX)
        return false;
    memcpy(topic, kind, lk);
    topic[lk] = '/';
    memcpy(topic + lk + 1, name, ln);
    topic[lk + 1 + ln] = '/';
    topic[lk + 2 + ln] = 0;
    return true;
}

static void s_send(events_t *self, const char *topic, bool *encoded, const Tier__V1__Event *e)
{
    if (!s_wanted(self, topic))
        return;
    if (!*encoded) {
        s_encode(&self->buffer, e);
        *encoded = true;
    }
    //  PUB never blocks; a full pipe to a slow subscriber drops the message.
    zmq_send(self->handle, topic, strlen(topic), ZMQ_SNDMORE | ZMQ_DONTWAIT);
    zmq_send(self->handle, self->buffer.data, self->buffer.len, ZMQ_DONTWAIT);
}

void events_publish(events_t *self, const Tier__V1__Event *event)
{
    self->published++;
    if (!self->subscriptions)
        return;
    bool encoded = false;
    char topic[TOPIC_MAX];
    s_send(self, "all/", &encoded, event);
    //  An escalation concerns the level and department it left as well.
    const char *level = events_level_name(event->level);
    const char *from_level = events_level_name(event->from_level);
    if (*level && s_topic(topic, "level", level))
        s_send(self, topic, &encoded, event);
    if (*from_level && event->from_level != event->level && s_topic(topic, "level", from_level))
        s_send(self, topic, &encoded, event);
    if (*event->department && s_topic(topic, "dept", event->department))
        s_send(self, topic, &encoded, event);
    if (*event->from_department && strcmp(event->from_department, event->department) != 0 &&
        s_topic(topic, "dept", event->from_department))
        s_send(self, topic, &encoded, event);
    if (*event->ticket_id && s_topic(topic, "ticket", event->ticket_id))
        s_send(self, topic, &encoded, event);
    if (*event->agent && s_topic(topic, "agent", event->agent))
        s_send(self, topic, &encoded, event);
}

uint64_t events_published(events_t *self)
{
    return self->published;
}
