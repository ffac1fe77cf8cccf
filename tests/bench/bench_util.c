/*  bench_util.c — the load-side helpers of bench.h. */
#include "bench.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CLIENT_TIMEOUT_MS 10000 //  one try of a synchronous call
#define ERRORS_PRINTED    5     //  failed submits shown, then only counted
#define STALL_MS          30000 //  no answer at all this long: give up
#define POLL_MS           200   //  wake-up while waiting for answers
#define RETRY_MS          200   //  resend an UNAVAILABLE submit after this (protocol.md)
#define STATUS_LINE_MAX   256
#define BASELINE_SUBJECT  "Where is my order?"
#define BASELINE_BODY     "Order 1234 has not arrived yet."
#define ID_CHUNK          65536 //  bytes of kept ticket ids allocated at once
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

//  Writes value in decimal at out, without a terminator; returns the end.
static char *s_put_decimal(char *out, long long value)
{
    char digits[24];
    size_t count = 0;
    unsigned long long magnitude =
        value < 0 ? 0ULL - (unsigned long long) value : (unsigned long long) value;
    do {
        digits[count++] = (char) ('0' + magnitude % 10);
        magnitude /= 10;
    } while (magnitude);
    if (value < 0)
        *out++ = '-';
    while (count)
        *out++ = digits[--count];
    return out;
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
    //  "b<pid>-": the external ids of two benchmark processes never meet.
    self->external_prefix =
        (size_t) snprintf(self->external_id, sizeof(self->external_id), "b%d-", (int) getpid());
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
    *s_put_decimal(self->external_id + self->external_prefix, i) = 0;
    self->customer_id[0] = 'c';
    *s_put_decimal(self->customer_id + 1, i) = 0;
    if (stamped) {
        memcpy(self->tag, BENCH_TAG_PREFIX, strlen(BENCH_TAG_PREFIX));
        *s_put_decimal(self->tag + strlen(BENCH_TAG_PREFIX), bench_now_ns()) = 0;
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

//  Each chunk of kept ids starts with a pointer to the chunk before it.
static void s_free_id_chunks(bench_submitter_t *self)
{
    while (self->id_chunk) {
        char *previous;
        memcpy(&previous, self->id_chunk, sizeof(previous));
        free(self->id_chunk);
        self->id_chunk = previous;
    }
}

void bench_submitter_destroy(bench_submitter_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    bench_submitter_t *self = *self_p;
    tierclient_destroy(&self->client);
    s_free_id_chunks(self);
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

//  Ids are copied into large chunks, not one allocation each.
static void s_keep_id(bench_submitter_t *self, const Tier__V1__ClientReply *reply)
{
    if (self->acked == self->ids_size) {
        self->ids_size *= 2;
        self->ids = realloc(self->ids, (size_t) self->ids_size * sizeof(char *));
    }
    const char *id = reply->submitted && reply->submitted->id ? reply->submitted->id : "";
    size_t size = strlen(id) + 1;
    if (!self->id_chunk || self->id_chunk_size - self->id_chunk_used < size) {
        size_t chunk_size = sizeof(char *) + (size > ID_CHUNK ? size : ID_CHUNK);
        char *chunk = malloc(chunk_size);
        memcpy(chunk, &self->id_chunk, sizeof(char *));
        self->id_chunk = chunk;
        self->id_chunk_used = sizeof(char *);
        self->id_chunk_size = chunk_size;
    }
    char *kept = self->id_chunk + self->id_chunk_used;
    memcpy(kept, id, size);
    self->id_chunk_used += size;
    self->ids[self->acked] = kept;
}

static void s_on_reply(bench_submitter_t *self, const Tier__V1__ClientReply *reply)
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

long bench_submitter_read(bench_submitter_t *self)
{
    const Tier__V1__ClientReply *reply;
    long count = 0;
    while (tierclient_recv_borrowed(self->client, 0, &reply) == 0 ||
           tierclient_errcode(self->client) != TIERCLIENT_TIMEOUT) {
        count++;
        if (reply)
            s_on_reply(self, reply);
        //  else an undecodable answer: dropped; the stall check reports it
    }
    s_resend_due(self);
    return count;
}

void bench_submitter_reset(bench_submitter_t *self)
{
    self->sent = self->answered = self->acked = self->retried = 0;
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

//  The number of an Event field in tier.proto, from the generated descriptor.
static uint32_t s_event_field(const char *name)
{
    const ProtobufCFieldDescriptor *field =
        protobuf_c_message_descriptor_get_field_by_name(&tier__v1__event__descriptor, name);
    assert(field);
    return field->id;
}

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
    self->handle = zsock_resolve(sub);
    self->seq_field = s_event_field("seq");
    self->kind_field = s_event_field("kind");
    self->ticket_field = s_event_field("ticket_id");
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

//  The protobuf wire format, as far as reading three fields needs it.
#define WIRE_VARINT  0
#define WIRE_FIXED64 1
#define WIRE_LENGTH  2
#define WIRE_FIXED32 5

//  Reads the varint at at into *value. Returns where it ends, or NULL if it
//  runs past end or past 10 bytes.
static const uint8_t *s_varint(const uint8_t *at, const uint8_t *end, uint64_t *value)
{
    if (at < end && !(*at & 0x80)) { //  one byte: every key here, most values
        *value = *at;
        return at + 1;
    }
    uint64_t result = 0;
    for (unsigned shift = 0; shift < 64 && at < end; shift += 7) {
        uint8_t byte = *at++;
        result |= (uint64_t) (byte & 0x7f) << shift;
        if (!(byte & 0x80)) {
            *value = result;
            return at;
        }
    }
    return NULL;
}

//  What the benchmark needs of an Event; absent fields are 0, as in proto3.
typedef struct {
    uint64_t seq;    //  Event.seq
    uint64_t kind;   //  Event.kind
    uint64_t ticket; //  Event.ticket_id as a number (the digits it starts with)
} event_fields_t;

static uint64_t s_decimal(const uint8_t *at, uint64_t length)
{
    uint64_t value = 0;
    for (uint64_t i = 0; i < length && at[i] >= '0' && at[i] <= '9'; i++)
        value = value * 10 + (uint64_t) (at[i] - '0');
    return value;
}

//  Walks the fields of a serialised Event, keeping seq, kind and ticket_id
//  (the last occurrence wins, as in a full decode) and skipping the rest.
//  Returns -1 if the bytes are not a well-formed message.
static int s_event_fields(const bench_events_t *self, const uint8_t *at, size_t size,
                          event_fields_t *fields)
{
    const uint8_t *end = at + size;
    memset(fields, 0, sizeof(*fields));
    while (at < end) {
        uint64_t key, value;
        if (!(at = s_varint(at, end, &key)) || key >> 3 == 0 || key >> 3 > UINT32_MAX)
            return -1;
        uint32_t number = (uint32_t) (key >> 3);
        switch (key & 7) {
        case WIRE_VARINT:
            if (!(at = s_varint(at, end, &value)))
                return -1;
            if (number == self->seq_field)
                fields->seq = value;
            else if (number == self->kind_field)
                fields->kind = value;
            break;
        case WIRE_LENGTH:
            if (!(at = s_varint(at, end, &value)) || value > (uint64_t) (end - at))
                return -1;
            if (number == self->ticket_field)
                fields->ticket = s_decimal(at, value);
            at += value;
            break;
        case WIRE_FIXED64:
        case WIRE_FIXED32:
            value = (key & 7) == WIRE_FIXED64 ? 8 : 4;
            if (value > (uint64_t) (end - at))
                return -1;
            at += value;
            break;
        default: //  groups: not in tier.proto
            return -1;
        }
    }
    return 0;
}

static void s_on_event(bench_events_t *self, zmq_msg_t *body)
{
    event_fields_t event;
    if (s_event_fields(self, (const uint8_t *) zmq_msg_data(body), zmq_msg_size(body), &event)) {
        self->undecodable++;
        return;
    }
    if (self->last_seq && event.seq > self->last_seq + 1) {
        self->missed += event.seq - self->last_seq - 1;
        if (getenv("TIER_BENCH_PROGRESS"))
            fprintf(stderr, "tier_bench: events %llu..%llu missing (next: kind %d ticket %llu)\n",
                    (unsigned long long) self->last_seq + 1, (unsigned long long) event.seq - 1,
                    (int) event.kind, (unsigned long long) event.ticket);
    }
    if (event.seq > self->last_seq)
        self->last_seq = event.seq;
    if (event.kind == TIER__V1__EVENT_KIND__EVENT_RESOLVED && event.ticket >= self->first_counted)
        self->resolved++;
}

long bench_events_read(bench_events_t *self)
{
    zmq_msg_t topic, body;
    zmq_msg_init(&topic);
    zmq_msg_init(&body);
    long count = 0;
    while (zmq_msg_recv(&topic, self->handle, ZMQ_DONTWAIT) != -1) {
        count++;
        if (zmq_msg_more(&topic) && zmq_msg_recv(&body, self->handle, ZMQ_DONTWAIT) != -1)
            s_on_event(self, &body);
        while (zmq_msg_more(&body) && zmq_msg_recv(&body, self->handle, ZMQ_DONTWAIT) != -1)
            ; //  not an event frame pair: skip the rest
    }
    zmq_msg_close(&topic);
    zmq_msg_close(&body);
    self->armed = true;
    return count;
}
