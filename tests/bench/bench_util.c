/*  bench_util.c — the load-side helpers of bench.h. */
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CLIENT_TIMEOUT_MS 10000 //  one try of a synchronous call
#define ERRORS_PRINTED    5     //  failed submits shown, then only counted
#define STALL_MS          30000 //  no answer at all this long: give up
#define POLL_MS           200   //  wake-up while waiting for answers
#define RETRY_MS          200   //  resend an UNAVAILABLE submit after this (protocol.md)
#define STATUS_LINE_MAX   256
#define BASELINE_SUBJECT  "Where is my order?"
#define BASELINE_BODY     "Order 1234 has not arrived yet."
#define FILLER            "The parcel was due on Monday and the tracking page has not moved. "

int64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t) ts.tv_sec * BENCH_NS_PER_S + ts.tv_nsec;
}

static int s_compare_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *) a, y = *(const int64_t *) b;
    return x < y ? -1 : x > y;
}

double bench_percentile_ms(const int64_t *values, size_t count, double p)
{
    if (!count)
        return 0;
    int64_t *sorted = malloc(count * sizeof(int64_t));
    memcpy(sorted, values, count * sizeof(int64_t));
    qsort(sorted, count, sizeof(int64_t), s_compare_i64);
    size_t index = (size_t) ((double) count * p);
    double ms = (double) sorted[index < count ? index : count - 1] / BENCH_NS_PER_MS;
    free(sorted);
    return ms;
}

double bench_proc_mb(int pid, const char *field)
{
    char path[64], line[STATUS_LINE_MAX];
    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    FILE *file = fopen(path, "r");
    double mb = -1;
    while (file && fgets(line, sizeof(line), file))
        if (strncmp(line, field, strlen(field)) == 0)
            mb = strtod(line + strlen(field), NULL) / 1024.0; //  the file says kB
    if (file)
        fclose(file);
    return mb;
}

//  ---------------------------------------------------------------------------
//  Tickets

static void s_set_body(bench_ticket_t *self, size_t length)
{
    free(self->body);
    self->body = malloc(length + 1);
    for (size_t i = 0; i < length; i++)
        self->body[i] = FILLER[i % (sizeof(FILLER) - 1)];
    self->body[length] = 0;
    self->ticket.body = self->body;
}

void bench_ticket_init(bench_ticket_t *self, int level, int ticket_bytes)
{
    memset(self, 0, sizeof(*self));
    tier__v1__ticket__init(&self->ticket);
    tier__v1__customer__init(&self->customer);
    self->ticket.channel = TIER__V1__CHANNEL__CHANNEL_CHAT;
    self->ticket.customer = &self->customer;
    self->ticket.subject = BASELINE_SUBJECT;
    self->ticket.level = (Tier__V1__Level) level;
    self->ticket.external_id = self->external_id;
    self->customer.id = self->customer_id;
    self->tags[0] = self->tag;
    self->body = strdup(BASELINE_BODY);
    self->ticket.body = self->body;
    if (ticket_bytes <= 0)
        return;
    //  Size it as a typical ticket of a long run looks: ids of six digits.
    bench_ticket_next(self, 100000, false);
    size_t length = 0;
    s_set_body(self, length);
    while (tier__v1__ticket__get_packed_size(&self->ticket) < (size_t) ticket_bytes)
        s_set_body(self, ++length);
}

void bench_ticket_fini(bench_ticket_t *self)
{
    free(self->body);
    self->body = NULL;
}

void bench_ticket_next(bench_ticket_t *self, long i, bool stamped)
{
    snprintf(self->external_id, sizeof(self->external_id), "b%d-%ld", (int) getpid(), i);
    snprintf(self->customer_id, sizeof(self->customer_id), "c%ld", i);
    if (stamped) {
        snprintf(self->tag, sizeof(self->tag), "%s%lld", BENCH_TAG_PREFIX,
                 (long long) bench_now_ns());
        self->ticket.n_tags = 1;
        self->ticket.tags = self->tags;
    } else {
        self->ticket.n_tags = 0;
        self->ticket.tags = NULL;
    }
}

//  ---------------------------------------------------------------------------
//  Pipelined submits

bench_submitter_t *bench_submitter_new(const char *endpoint, bool keep_ids, bench_ticket_t *ticket)
{
    tierclient_t *client = tierclient_new(endpoint, CLIENT_TIMEOUT_MS);
    if (!client) {
        fprintf(stderr, "tier_bench: cannot use clients endpoint %s\n", endpoint);
        return NULL;
    }
    bench_submitter_t *self = calloc(1, sizeof(bench_submitter_t));
    self->client = client;
    self->ticket = ticket;
    if (keep_ids) {
        self->ids_size = 1024;
        self->ids = calloc((size_t) self->ids_size, sizeof(char *));
    }
    return self;
}

void bench_submitter_destroy(bench_submitter_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    bench_submitter_t *self = *self_p;
    tierclient_destroy(&self->client);
    for (long i = 0; self->ids && i < self->acked; i++)
        free(self->ids[i]);
    free(self->ids);
    free(self->numbers);
    free(self->retry);
    free(self);
    *self_p = NULL;
}

static void *s_grow(void *array, size_t *size, size_t need, size_t elem)
{
    if (need <= *size)
        return array;
    size_t grown = *size ? *size : 1024;
    while (grown < need)
        grown *= 2;
    array = realloc(array, grown * elem);
    memset((char *) array + *size * elem, 0, (grown - *size) * elem);
    *size = grown;
    return array;
}

int bench_submitter_send(bench_submitter_t *self, const bench_ticket_t *ticket, long number)
{
    uint64_t request_id = tierclient_send_submit(self->client, &ticket->ticket);
    if (request_id == 0) {
        fprintf(stderr, "tier_bench: submit not sent: %s\n", tierclient_errstr(self->client));
        return -1;
    }
    self->numbers = s_grow(self->numbers, &self->numbers_size, request_id + 1, sizeof(long));
    self->numbers[request_id] = number;
    self->sent++;
    return 0;
}

static void s_keep_id(bench_submitter_t *self, Tier__V1__ClientReply *reply)
{
    if (self->acked == self->ids_size) {
        self->ids_size *= 2;
        self->ids = realloc(self->ids, (size_t) self->ids_size * sizeof(char *));
    }
    self->ids[self->acked] = strdup(reply->submitted ? reply->submitted->id : "");
}

static void s_on_reply(bench_submitter_t *self, Tier__V1__ClientReply *reply)
{
    self->answered++;
    Tier__V1__ErrorCode code = reply->error ? reply->error->code : TIER__V1__ERROR_CODE__ERROR_NONE;
    if (code == TIER__V1__ERROR_CODE__ERROR_UNAVAILABLE && reply->request_id < self->numbers_size) {
        self->retry = s_grow(self->retry, &self->retry_size, self->retry_count + 1, sizeof(long));
        self->retry[self->retry_count++] = self->numbers[reply->request_id];
        if (self->retry_count == 1)
            self->retry_at_ns = bench_now_ns() + RETRY_MS * BENCH_NS_PER_MS;
        self->retried++;
    } else if (code != TIER__V1__ERROR_CODE__ERROR_NONE) {
        if (self->failed++ < ERRORS_PRINTED)
            fprintf(stderr, "tier_bench: submit refused: %s (%s)\n", reply->error->reason,
                    reply->error->hint);
    } else {
        if (self->ids)
            s_keep_id(self, reply);
        self->acked++;
    }
}

static void s_resend_due(bench_submitter_t *self)
{
    if (!self->retry_count || bench_now_ns() < self->retry_at_ns)
        return;
    size_t count = self->retry_count;
    self->retry_count = 0;
    for (size_t i = 0; i < count; i++) {
        bench_ticket_next(self->ticket, self->retry[i], false);
        if (bench_submitter_send(self, self->ticket, self->retry[i]))
            self->failed++;
    }
}

void bench_submitter_read(bench_submitter_t *self)
{
    Tier__V1__ClientReply *reply;
    while (tierclient_recv(self->client, 0, &reply) == 0 ||
           tierclient_errcode(self->client) != TIERCLIENT_TIMEOUT) {
        if (!reply)
            continue; //  undecodable answer: dropped; the stall check reports it
        s_on_reply(self, reply);
        tier__v1__client_reply__free_unpacked(reply, NULL);
    }
    s_resend_due(self);
}

long bench_submitter_in_flight(const bench_submitter_t *self)
{
    return self->sent - self->answered + (long) self->retry_count;
}

int bench_submitter_run(bench_submitter_t *self, long first, long n, int window)
{
    long target = self->acked + self->failed + n, next = first, last = first + n;
    int64_t progress_ns = bench_now_ns();
    while (self->acked + self->failed < target) {
        while (next < last && bench_submitter_in_flight(self) < window) {
            bench_ticket_next(self->ticket, next, false);
            if (bench_submitter_send(self, self->ticket, next++))
                return -1;
        }
        zmq_pollitem_t item = {tierclient_socket(self->client), 0, ZMQ_POLLIN, 0};
        zmq_poll(&item, 1, POLL_MS);
        long before = self->acked + self->failed; //  an UNAVAILABLE is no progress
        bench_submitter_read(self);
        if (self->acked + self->failed > before)
            progress_ns = bench_now_ns();
        else if (bench_now_ns() - progress_ns > STALL_MS * BENCH_NS_PER_MS) {
            fprintf(stderr, "tier_bench: no submit answered for %d ms (%ld of %ld answered)\n",
                    STALL_MS, self->acked + self->failed - (target - n), n);
            return -1;
        }
    }
    return self->failed ? -1 : 0;
}

//  ---------------------------------------------------------------------------
//  Events

bench_events_t *bench_events_new(const char *endpoint)
{
    zsock_t *sub = zsock_new(ZMQ_SUB);
    if (!sub)
        return NULL;
    zsock_set_rcvhwm(sub, 0); //  never drop on our side
    zsock_set_subscribe(sub, "all/");
    if (zsock_connect(sub, "%s", endpoint) == -1) {
        fprintf(stderr, "tier_bench: cannot connect to events endpoint %s\n", endpoint);
        zsock_destroy(&sub);
        return NULL;
    }
    bench_events_t *self = calloc(1, sizeof(bench_events_t));
    self->sub = sub;
    return self;
}

void bench_events_destroy(bench_events_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    zsock_destroy(&(*self_p)->sub);
    free(*self_p);
    *self_p = NULL;
}

static void s_on_event(bench_events_t *self, zmq_msg_t *body)
{
    Tier__V1__Event *event =
        tier__v1__event__unpack(NULL, zmq_msg_size(body), (const uint8_t *) zmq_msg_data(body));
    if (!event)
        return;
    if (self->last_seq && event->seq > self->last_seq + 1) {
        self->missed += event->seq - self->last_seq - 1;
        if (getenv("TIER_BENCH_PROGRESS"))
            fprintf(stderr, "tier_bench: events %llu..%llu missing (next: kind %d ticket %s)\n",
                    (unsigned long long) self->last_seq + 1, (unsigned long long) event->seq - 1,
                    event->kind, event->ticket_id);
    }
    if (event->seq > self->last_seq)
        self->last_seq = event->seq;
    if (event->kind == TIER__V1__EVENT_KIND__EVENT_RESOLVED &&
        strtoull(event->ticket_id, NULL, 10) >= self->first_counted)
        self->resolved++;
    tier__v1__event__free_unpacked(event, NULL);
}

void bench_events_read(bench_events_t *self)
{
    void *handle = zsock_resolve(self->sub);
    zmq_msg_t topic, body;
    zmq_msg_init(&topic);
    zmq_msg_init(&body);
    while (zmq_msg_recv(&topic, handle, ZMQ_DONTWAIT) != -1) {
        if (zmq_msg_more(&topic) && zmq_msg_recv(&body, handle, ZMQ_DONTWAIT) != -1)
            s_on_event(self, &body);
        while (zmq_msg_more(&body) && zmq_msg_recv(&body, handle, ZMQ_DONTWAIT) != -1)
            ; //  not an event frame pair: skip the rest
    }
    zmq_msg_close(&topic);
    zmq_msg_close(&body);
}
