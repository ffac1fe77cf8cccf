// tierclient — the C client of tierd's clients endpoint.
//
// Every request gets a fresh request_id; a retry resends the very same bytes
// (same request_id, same external_id), so the router can answer any of the
// tries and tierd's idempotent submit creates the ticket once. Answers whose
// request_id is not the one awaited are from an earlier call that gave up:
// they are dropped. Retries go out on the same socket: ZeroMQ reconnects by
// itself, and a request queued while tierd was down is delivered when it
// comes back, which is harmless for the calls we resend.
//
// The pipelined path is built for thousands of answers a second: a request
// is packed straight into the zmq_msg_t that carries it, an answer is read
// with ZMQ_DONTWAIT into one reused zmq_msg_t before anything waits (a
// zmq_poll costs system calls; a message already queued costs none), and
// tierclient_recv_borrowed decodes into an arena that is emptied, not freed,
// between answers.
#include "tierclient.h"
#include "tierarena.h"

#include <czmq.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define PROTOCOL_VERSION  1
#define ERRSTR_MAX        1024   // longest error text kept, with terminator
#define HWM_MESSAGES      100000 // queue limit per direction: room for pipelined load
#define EXTERNAL_ID_BYTES 16     // random bytes in a made-up external_id (32 hex chars)
#define UNDECODABLE_ID    0      // request_id of an answer to a request tierd could not read

#define ARENA_KEEP_MAX (1024 * 1024) // the answers' arena grows to the largest one up to this

#define NO_WAIT     -2 // a deadline: do not wait at all
#define READ_OK     1  // s_recv_*: a whole answer is in self->frame
#define READ_NONE   0  // s_recv_*: nothing came before the deadline
#define READ_INTR   -1 // s_recv_*: the wait was interrupted
#define READ_FAILED -2 // s_recv_*: the receive failed; the error is set

struct _tierclient_t {
    zsock_t *dealer;          // DEALER connected to tierd's clients endpoint
    void *handle;             // the libzmq socket of dealer
    zmq_msg_t frame;          // receive buffer, reused for every frame
    char *endpoint;           // where it connects, for error messages
    int timeout_ms;           // how long one try waits for its answer
    int retries;              // resends after a timeout, on safe calls
    uint64_t last_request_id; // the next request_id is this plus one; ids are never 0
    int errcode;              // last error: Tier__V1__ErrorCode or TIERCLIENT_*
    char errstr[ERRSTR_MAX];  // last error for people, "" after success
    int timeout_errstr_ms;    // >= 0: errstr is a timeout of this many ms, not written yet
    tier_arena_t *arena;      // holds the answer tierclient_recv_borrowed lent out
};

// ---------------------------------------------------------------------
// Errors

static void s_set_error(tierclient_t *self, int code, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

static void s_set_error(tierclient_t *self, int code, const char *format, ...)
{
    self->errcode = code;
    self->timeout_errstr_ms = -1;
    va_list args;
    va_start(args, format);
    vsnprintf(self->errstr, sizeof self->errstr, format, args);
    va_end(args);
}

static void s_clear_error(tierclient_t *self)
{
    self->errcode = TIER__V1__ERROR_CODE__ERROR_NONE;
    self->errstr[0] = '\0';
    self->timeout_errstr_ms = -1;
}

// "No answer yet" is what a pipelined reader hears at the end of every
// batch: its text is written only if somebody asks for it.
static void s_set_timeout_error(tierclient_t *self, int timeout_ms)
{
    self->errcode = TIERCLIENT_TIMEOUT;
    self->timeout_errstr_ms = timeout_ms;
}

tierclient_t *tierclient_new(const char *endpoint, int timeout_ms)
{
    if (!endpoint)
        return NULL;
    tierclient_t *self = calloc(1, sizeof(tierclient_t));
    if (!self)
        return NULL;
    zmq_msg_init(&self->frame);
    self->arena = tier_arena_new(ARENA_KEEP_MAX);
    self->timeout_errstr_ms = -1;
    self->endpoint = strdup(endpoint);
    self->dealer = zsock_new(ZMQ_DEALER);
    self->retries = TIERCLIENT_DEFAULT_RETRIES;
    if (self->endpoint && self->dealer && self->arena) {
        self->handle = zsock_resolve(self->dealer);
        // Limits must be set before connecting to apply to the connection.
        zsock_set_linger(self->dealer, 0);
        zsock_set_sndhwm(self->dealer, HWM_MESSAGES);
        zsock_set_rcvhwm(self->dealer, HWM_MESSAGES);
        tierclient_set_timeout(self, timeout_ms);
        if (zsock_attach(self->dealer, endpoint, false) == 0)
            return self;
    }
    tierclient_destroy(&self);
    return NULL;
}

void tierclient_destroy(tierclient_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    tierclient_t *self = *self_p;
    zsock_destroy(&self->dealer);
    zmq_msg_close(&self->frame);
    tier_arena_destroy(&self->arena);
    free(self->endpoint);
    free(self);
    *self_p = NULL;
}

void tierclient_set_retries(tierclient_t *self, int retries)
{
    self->retries = retries > 0 ? retries : 0;
}

void tierclient_set_timeout(tierclient_t *self, int timeout_ms)
{
    self->timeout_ms = timeout_ms >= 0 ? timeout_ms : 0;
    // A full send queue must not block a caller longer than an answer would.
    zsock_set_sndtimeo(self->dealer, self->timeout_ms);
}

int tierclient_errcode(tierclient_t *self)
{
    return self->errcode;
}

const char *tierclient_errname(tierclient_t *self)
{
    if (self->errcode == TIERCLIENT_TIMEOUT)
        return "TIMEOUT";
    if (self->errcode == TIERCLIENT_FAILED)
        return "FAILED";
    const ProtobufCEnumValue *v =
        protobuf_c_enum_descriptor_get_value(&tier__v1__error_code__descriptor, self->errcode);
    if (!v)
        return "UNKNOWN";
    const char *suffix = strchr(v->name, '_'); // "ERROR_UNKNOWN_TICKET" -> "UNKNOWN_TICKET"
    return suffix ? suffix + 1 : v->name;
}

const char *tierclient_errstr(tierclient_t *self)
{
    if (self->timeout_errstr_ms >= 0) {
        snprintf(self->errstr, sizeof self->errstr, "no answer from %s within %d ms",
                 self->endpoint, self->timeout_errstr_ms);
        self->timeout_errstr_ms = -1;
    }
    return self->errstr;
}

void *tierclient_socket(tierclient_t *self)
{
    return self->handle;
}

// ---------------------------------------------------------------------
// Sending and receiving

// Sends one request, packed straight into the message that carries it;
// 0 or -1 with the error set.
static int s_send(tierclient_t *self, const Tier__V1__ClientRequest *request)
{
    size_t size = tier__v1__client_request__get_packed_size(request);
    zmq_msg_t msg;
    if (zmq_msg_init_size(&msg, size) == -1) {
        s_set_error(self, TIERCLIENT_FAILED, "out of memory packing a %zu-byte request", size);
        return -1;
    }
    tier__v1__client_request__pack(request, (uint8_t *) zmq_msg_data(&msg));
    if (zmq_msg_send(&msg, self->handle, 0) != -1)
        return 0;
    zmq_msg_close(&msg);
    s_set_error(self, TIERCLIENT_FAILED,
                "cannot send to %s within %d ms: %s (too many requests in flight?)", self->endpoint,
                self->timeout_ms, zmq_strerror(zmq_errno()));
    return -1;
}

// Waits until the socket is readable or deadline (zclock_mono ms, -1 = never)
// passes. Returns 1 readable, 0 timed out, -1 interrupted.
static int s_wait(tierclient_t *self, int64_t deadline)
{
    zmq_pollitem_t item = {self->handle, 0, ZMQ_POLLIN, 0};
    long wait_ms = -1;
    if (deadline >= 0) {
        int64_t left = deadline - zclock_mono();
        wait_ms = left > 0 ? (long) left : 0;
    }
    int rc = zmq_poll(&item, 1, wait_ms);
    if (rc < 0)
        return -1;
    return rc > 0 && (item.revents & ZMQ_POLLIN);
}

// The error of a wait that returned ready (0 timed out, -1 interrupted).
static void s_set_wait_error(tierclient_t *self, int ready, int timeout_ms)
{
    if (ready < 0)
        s_set_error(self, TIERCLIENT_FAILED, "interrupted waiting for %s", self->endpoint);
    else
        s_set_timeout_error(self, timeout_ms);
}

// Reads one whole message that is waiting into self->frame: its last frame
// is the answer (frames before it are an envelope, tolerated and dropped).
// Never blocks. Returns READ_OK, READ_NONE or READ_FAILED.
static int s_recv_frame(tierclient_t *self)
{
    int rc = zmq_msg_recv(&self->frame, self->handle, ZMQ_DONTWAIT);
    if (rc == -1 && zmq_errno() == EAGAIN)
        return READ_NONE;
    // The frames of a message arrive together: the rest is there already.
    while (rc != -1 && zmq_msg_more(&self->frame))
        rc = zmq_msg_recv(&self->frame, self->handle, ZMQ_DONTWAIT);
    if (rc != -1)
        return READ_OK;
    s_set_error(self, TIERCLIENT_FAILED, "receive from %s failed: %s", self->endpoint,
                zmq_strerror(zmq_errno()));
    return READ_FAILED;
}

// Reads the next answer into self->frame, waiting up to deadline (zclock_mono
// ms, -1 = forever, NO_WAIT = not at all) if none is queued yet. An answer
// already queued costs no system call: only an empty socket is polled.
static int s_recv_until(tierclient_t *self, int64_t deadline)
{
    while (true) {
        int got = s_recv_frame(self);
        if (got != READ_NONE || deadline == NO_WAIT)
            return got;
        int ready = s_wait(self, deadline);
        if (ready <= 0)
            return ready < 0 ? READ_INTR : READ_NONE;
    }
}

// Decodes the answer in self->frame into allocator (NULL: malloc, the
// caller frees), then lets the frame go: a frame kept would pin libzmq's
// receive buffer and make it allocate another. NULL with the error set if
// it is not a ClientReply: never trust the network.
static Tier__V1__ClientReply *s_decode(tierclient_t *self, ProtobufCAllocator *allocator)
{
    Tier__V1__ClientReply *reply = tier__v1__client_reply__unpack(
        allocator, zmq_msg_size(&self->frame), (const uint8_t *) zmq_msg_data(&self->frame));
    zmq_msg_close(&self->frame);
    zmq_msg_init(&self->frame);
    if (!reply)
        s_set_error(self, TIERCLIENT_FAILED,
                    "%s sent an answer that is not a ClientReply (is it tierd's clients "
                    "endpoint, and the same protocol version?)",
                    self->endpoint);
    return reply;
}

// Waits up to deadline for the answer to request_id, dropping any other.
// Returns the answer, or NULL with the error set (timeout or failure).
static Tier__V1__ClientReply *s_await(tierclient_t *self, uint64_t request_id, int64_t deadline)
{
    bool garbled = false; // an undecodable answer came: say so rather than "no answer"
    while (true) {
        int got = s_recv_until(self, deadline);
        if (got == READ_NONE || got == READ_INTR) {
            if (!garbled)
                s_set_wait_error(self, got == READ_INTR ? -1 : 0, self->timeout_ms);
            return NULL; // else keep the error of the garbage
        }
        Tier__V1__ClientReply *reply = got == READ_OK ? s_decode(self, NULL) : NULL;
        if (!reply) {
            garbled = true; // garbage is not our answer; keep waiting for it
            continue;
        }
        // tierd answers request_id 0 when it could not read the request at all;
        // with one request in flight, that refusal is ours.
        bool refused_unread = reply->request_id == UNDECODABLE_ID && reply->error &&
                              reply->error->code != TIER__V1__ERROR_CODE__ERROR_NONE;
        if (reply->request_id == request_id || refused_unread)
            return reply;
        tier__v1__client_reply__free_unpacked(reply, NULL); // stale: an earlier call's
    }
}

// Turns a router refusal into the object's error; frees the reply then.
// Returns the reply if it is a success.
static Tier__V1__ClientReply *s_check(tierclient_t *self, Tier__V1__ClientReply *reply)
{
    const Tier__V1__Error *error = reply->error;
    if (!error || error->code == TIER__V1__ERROR_CODE__ERROR_NONE) {
        s_clear_error(self);
        return reply;
    }
    bool has_hint = error->hint && *error->hint;
    s_set_error(self, error->code, "%s%s%s%s", error->reason ? error->reason : "",
                has_hint ? " (" : "", has_hint ? error->hint : "", has_hint ? ")" : "");
    if (!*self->errstr)
        s_set_error(self, error->code, "refused without a reason");
    tier__v1__client_reply__free_unpacked(reply, NULL);
    return NULL;
}

// One synchronous exchange: sends request (setting its request_id and
// version), resends it after each timeout if resend, up to retries times.
// Returns the successful answer (caller frees) or NULL with the error set.
static Tier__V1__ClientReply *s_call(tierclient_t *self, Tier__V1__ClientRequest *request,
                                     bool resend)
{
    request->request_id = ++self->last_request_id;
    request->protocol_version = PROTOCOL_VERSION;
    int tries = 1 + (resend ? self->retries : 0);
    for (int attempt = 0; attempt < tries; attempt++) {
        if (s_send(self, request))
            return NULL;
        Tier__V1__ClientReply *reply =
            s_await(self, request->request_id, zclock_mono() + self->timeout_ms);
        if (reply)
            return s_check(self, reply);
        if (self->errcode != TIERCLIENT_TIMEOUT)
            return NULL;
    }
    if (tries > 1)
        s_set_error(self, TIERCLIENT_TIMEOUT, "no answer from %s within %d ms, %d tries",
                    self->endpoint, self->timeout_ms, tries);
    return NULL;
}

// Checks that a successful answer carries the expected body, else frees it
// and sets the error. Returns reply or NULL.
static Tier__V1__ClientReply *s_expect(tierclient_t *self, Tier__V1__ClientReply *reply,
                                       Tier__V1__ClientReply__BodyCase body_case, const char *what)
{
    if (!reply || reply->body_case == body_case)
        return reply;
    s_set_error(self, TIERCLIENT_FAILED, "%s answered without %s (a router bug?)", self->endpoint,
                what);
    tier__v1__client_reply__free_unpacked(reply, NULL);
    return NULL;
}

// Exchanges a request whose answer is a ticket, and hands the ticket over.
static Tier__V1__Ticket *s_ticket_call(tierclient_t *self, Tier__V1__ClientRequest *request,
                                       bool resend)
{
    Tier__V1__ClientReply *reply = s_expect(self, s_call(self, request, resend),
                                            TIER__V1__CLIENT_REPLY__BODY_TICKET, "a ticket");
    if (!reply)
        return NULL;
    Tier__V1__Ticket *ticket = reply->ticket;
    // Detach it: protobuf-c allocates each sub-message on its own, and
    // free_unpacked skips a oneof member whose case is not set.
    reply->ticket = NULL;
    reply->body_case = TIER__V1__CLIENT_REPLY__BODY__NOT_SET;
    tier__v1__client_reply__free_unpacked(reply, NULL);
    return ticket;
}

// Writes a made-up external_id (2 hex chars per random byte) into buffer.
static int s_make_external_id(tierclient_t *self, char *buffer, size_t size)
{
    unsigned char bytes[EXTERNAL_ID_BYTES];
    if (size < 2 * sizeof bytes + 1 ||
        getrandom(bytes, sizeof bytes, 0) != (ssize_t) sizeof bytes) {
        s_set_error(self, TIERCLIENT_FAILED, "cannot make an external_id: %s", strerror(errno));
        return -1;
    }
    for (size_t i = 0; i < sizeof bytes; i++)
        snprintf(buffer + 2 * i, 3, "%02x", bytes[i]);
    return 0;
}

// The submit request for ticket, with only the fields intake reads, and
// external_id if the ticket has none.
static void s_submit_ticket(const Tier__V1__Ticket *ticket, char *external_id,
                            Tier__V1__Ticket *copy)
{
    tier__v1__ticket__init(copy);
    copy->external_id =
        ticket->external_id && *ticket->external_id ? ticket->external_id : external_id;
    copy->channel = ticket->channel;
    copy->customer = ticket->customer;
    copy->subject = ticket->subject;
    copy->body = ticket->body;
    copy->priority = ticket->priority;
    copy->level = ticket->level;
    copy->department = ticket->department;
    copy->n_tags = ticket->n_tags;
    copy->tags = ticket->tags;
}

int tierclient_submit(tierclient_t *self, const Tier__V1__Ticket *ticket, char **id_p,
                      bool *duplicate_p)
{
    char external_id[2 * EXTERNAL_ID_BYTES + 1] = "";
    bool made_up = !ticket->external_id || !*ticket->external_id;
    if (made_up && s_make_external_id(self, external_id, sizeof external_id))
        return -1;
    Tier__V1__Ticket copy;
    s_submit_ticket(ticket, external_id, &copy);
    Tier__V1__SubmitRequest submit = TIER__V1__SUBMIT_REQUEST__INIT;
    submit.ticket = &copy;
    Tier__V1__ClientRequest request = TIER__V1__CLIENT_REQUEST__INIT;
    request.body_case = TIER__V1__CLIENT_REQUEST__BODY_SUBMIT;
    request.submit = &submit;
    Tier__V1__ClientReply *reply = s_expect(self, s_call(self, &request, true),
                                            TIER__V1__CLIENT_REPLY__BODY_SUBMITTED, "an id");
    if (!reply)
        return -1;
    int rc = 0;
    if (id_p && !(*id_p = strdup(reply->submitted->id ? reply->submitted->id : ""))) {
        s_set_error(self, TIERCLIENT_FAILED, "out of memory");
        rc = -1;
    }
    // A made-up external_id is known only to our own earlier tries.
    if (duplicate_p)
        *duplicate_p = made_up ? false : reply->submitted->duplicate;
    tier__v1__client_reply__free_unpacked(reply, NULL);
    return rc;
}

Tier__V1__Ticket *tierclient_get(tierclient_t *self, const char *id, bool with_history)
{
    Tier__V1__GetRequest get = TIER__V1__GET_REQUEST__INIT;
    get.id = (char *) id;
    get.with_history = with_history;
    Tier__V1__ClientRequest request = TIER__V1__CLIENT_REQUEST__INIT;
    request.body_case = TIER__V1__CLIENT_REQUEST__BODY_GET;
    request.get = &get;
    return s_ticket_call(self, &request, true);
}

Tier__V1__Ticket *tierclient_cancel(tierclient_t *self, const char *id, const char *reason)
{
    Tier__V1__CancelRequest cancel = TIER__V1__CANCEL_REQUEST__INIT;
    cancel.id = (char *) id;
    cancel.reason = (char *) (reason ? reason : "");
    Tier__V1__ClientRequest request = TIER__V1__CLIENT_REQUEST__INIT;
    request.body_case = TIER__V1__CLIENT_REQUEST__BODY_CANCEL;
    request.cancel = &cancel;
    return s_ticket_call(self, &request, true);
}

Tier__V1__Ticket *tierclient_message(tierclient_t *self, const char *id, const char *text)
{
    Tier__V1__CustomerMessageRequest message = TIER__V1__CUSTOMER_MESSAGE_REQUEST__INIT;
    message.id = (char *) id;
    message.text = (char *) text;
    Tier__V1__ClientRequest request = TIER__V1__CLIENT_REQUEST__INIT;
    request.body_case = TIER__V1__CLIENT_REQUEST__BODY_MESSAGE;
    request.message = &message;
    return s_ticket_call(self, &request, false);
}

Tier__V1__Ticket *tierclient_rate(tierclient_t *self, const char *id, unsigned csat,
                                  const char *comment)
{
    Tier__V1__RateRequest rate = TIER__V1__RATE_REQUEST__INIT;
    rate.id = (char *) id;
    rate.csat = csat;
    rate.comment = (char *) (comment ? comment : "");
    Tier__V1__ClientRequest request = TIER__V1__CLIENT_REQUEST__INIT;
    request.body_case = TIER__V1__CLIENT_REQUEST__BODY_RATE;
    request.rate = &rate;
    return s_ticket_call(self, &request, true);
}

Tier__V1__QueuesReply *tierclient_queues(tierclient_t *self)
{
    Tier__V1__QueuesRequest queues = TIER__V1__QUEUES_REQUEST__INIT;
    Tier__V1__ClientRequest request = TIER__V1__CLIENT_REQUEST__INIT;
    request.body_case = TIER__V1__CLIENT_REQUEST__BODY_QUEUES;
    request.queues = &queues;
    Tier__V1__ClientReply *reply =
        s_expect(self, s_call(self, &request, true), TIER__V1__CLIENT_REPLY__BODY_QUEUES, "queues");
    if (!reply)
        return NULL;
    Tier__V1__QueuesReply *result = reply->queues;
    reply->queues = NULL;
    reply->body_case = TIER__V1__CLIENT_REPLY__BODY__NOT_SET;
    tier__v1__client_reply__free_unpacked(reply, NULL);
    return result;
}

Tier__V1__AgentsReply *tierclient_agents(tierclient_t *self)
{
    Tier__V1__AgentsRequest agents = TIER__V1__AGENTS_REQUEST__INIT;
    Tier__V1__ClientRequest request = TIER__V1__CLIENT_REQUEST__INIT;
    request.body_case = TIER__V1__CLIENT_REQUEST__BODY_AGENTS;
    request.agents = &agents;
    Tier__V1__ClientReply *reply =
        s_expect(self, s_call(self, &request, true), TIER__V1__CLIENT_REPLY__BODY_AGENTS, "agents");
    if (!reply)
        return NULL;
    Tier__V1__AgentsReply *result = reply->agents;
    reply->agents = NULL;
    reply->body_case = TIER__V1__CLIENT_REPLY__BODY__NOT_SET;
    tier__v1__client_reply__free_unpacked(reply, NULL);
    return result;
}

Tier__V1__SnapshotReply *tierclient_snapshot(tierclient_t *self)
{
    Tier__V1__SnapshotRequest snapshot = TIER__V1__SNAPSHOT_REQUEST__INIT;
    Tier__V1__ClientRequest request = TIER__V1__CLIENT_REQUEST__INIT;
    request.body_case = TIER__V1__CLIENT_REQUEST__BODY_SNAPSHOT;
    request.snapshot = &snapshot;
    Tier__V1__ClientReply *reply = s_expect(self, s_call(self, &request, true),
                                            TIER__V1__CLIENT_REPLY__BODY_SNAPSHOT, "a snapshot");
    if (!reply)
        return NULL;
    Tier__V1__SnapshotReply *result = reply->snapshot;
    reply->snapshot = NULL;
    reply->body_case = TIER__V1__CLIENT_REPLY__BODY__NOT_SET;
    tier__v1__client_reply__free_unpacked(reply, NULL);
    return result;
}

Tier__V1__DeadLettersReply *tierclient_dead_letters(tierclient_t *self, unsigned limit)
{
    Tier__V1__DeadLettersRequest dead = TIER__V1__DEAD_LETTERS_REQUEST__INIT;
    dead.limit = limit;
    Tier__V1__ClientRequest request = TIER__V1__CLIENT_REQUEST__INIT;
    request.body_case = TIER__V1__CLIENT_REQUEST__BODY_DEAD_LETTERS;
    request.dead_letters = &dead;
    Tier__V1__ClientReply *reply =
        s_expect(self, s_call(self, &request, true), TIER__V1__CLIENT_REPLY__BODY_DEAD_LETTERS,
                 "dead letters");
    if (!reply)
        return NULL;
    Tier__V1__DeadLettersReply *result = reply->dead_letters;
    reply->dead_letters = NULL;
    reply->body_case = TIER__V1__CLIENT_REPLY__BODY__NOT_SET;
    tier__v1__client_reply__free_unpacked(reply, NULL);
    return result;
}

Tier__V1__Ticket *tierclient_requeue(tierclient_t *self, const char *id, Tier__V1__Level level,
                                     const char *department, const char *reason)
{
    Tier__V1__RequeueRequest requeue = TIER__V1__REQUEUE_REQUEST__INIT;
    requeue.id = (char *) id;
    requeue.level = level;
    requeue.department = (char *) (department ? department : "");
    requeue.reason = (char *) (reason ? reason : "");
    Tier__V1__ClientRequest request = TIER__V1__CLIENT_REQUEST__INIT;
    request.body_case = TIER__V1__CLIENT_REQUEST__BODY_REQUEUE;
    request.requeue = &requeue;
    return s_ticket_call(self, &request, true);
}

Tier__V1__RulesTestReply *tierclient_rules_test(tierclient_t *self, const Tier__V1__Ticket *ticket)
{
    Tier__V1__Ticket copy;
    s_submit_ticket(ticket, "", &copy);
    Tier__V1__RulesTestRequest test = TIER__V1__RULES_TEST_REQUEST__INIT;
    test.ticket = &copy;
    Tier__V1__ClientRequest request = TIER__V1__CLIENT_REQUEST__INIT;
    request.body_case = TIER__V1__CLIENT_REQUEST__BODY_RULES_TEST;
    request.rules_test = &test;
    Tier__V1__ClientReply *reply =
        s_expect(self, s_call(self, &request, true), TIER__V1__CLIENT_REPLY__BODY_RULES_TEST,
                 "a rules test");
    if (!reply)
        return NULL;
    Tier__V1__RulesTestReply *result = reply->rules_test;
    reply->rules_test = NULL;
    reply->body_case = TIER__V1__CLIENT_REPLY__BODY__NOT_SET;
    tier__v1__client_reply__free_unpacked(reply, NULL);
    return result;
}

Tier__V1__ReportReply *tierclient_report(tierclient_t *self, uint64_t since_ms, uint64_t until_ms,
                                         const char *by)
{
    Tier__V1__ReportRequest report = TIER__V1__REPORT_REQUEST__INIT;
    report.since_ms = since_ms;
    report.until_ms = until_ms;
    report.by = (char *) (by ? by : "");
    Tier__V1__ClientRequest request = TIER__V1__CLIENT_REQUEST__INIT;
    request.body_case = TIER__V1__CLIENT_REQUEST__BODY_REPORT;
    request.report = &report;
    Tier__V1__ClientReply *reply = s_expect(self, s_call(self, &request, true),
                                            TIER__V1__CLIENT_REPLY__BODY_REPORT, "a report");
    if (!reply)
        return NULL;
    Tier__V1__ReportReply *result = reply->report;
    reply->report = NULL;
    reply->body_case = TIER__V1__CLIENT_REPLY__BODY__NOT_SET;
    tier__v1__client_reply__free_unpacked(reply, NULL);
    return result;
}

uint64_t tierclient_send_submit(tierclient_t *self, const Tier__V1__Ticket *ticket)
{
    char external_id[2 * EXTERNAL_ID_BYTES + 1] = "";
    bool made_up = !ticket->external_id || !*ticket->external_id;
    if (made_up && s_make_external_id(self, external_id, sizeof external_id))
        return 0;
    Tier__V1__Ticket copy;
    s_submit_ticket(ticket, external_id, &copy);
    Tier__V1__SubmitRequest submit = TIER__V1__SUBMIT_REQUEST__INIT;
    submit.ticket = &copy;
    Tier__V1__ClientRequest request = TIER__V1__CLIENT_REQUEST__INIT;
    request.request_id = ++self->last_request_id;
    request.protocol_version = PROTOCOL_VERSION;
    request.body_case = TIER__V1__CLIENT_REQUEST__BODY_SUBMIT;
    request.submit = &submit;
    if (s_send(self, &request))
        return 0;
    s_clear_error(self);
    return request.request_id;
}

// Reads the next answer for tierclient_recv and _recv_borrowed: its frame is
// in self->frame on success; -1 with the error set otherwise.
static int s_recv_next(tierclient_t *self, int timeout_ms)
{
    int64_t deadline = timeout_ms < 0 ? -1 : timeout_ms == 0 ? NO_WAIT : zclock_mono() + timeout_ms;
    int got = s_recv_until(self, deadline);
    if (got == READ_OK)
        return 0;
    if (got != READ_FAILED)
        s_set_wait_error(self, got == READ_INTR ? -1 : 0, timeout_ms);
    return -1;
}

int tierclient_recv(tierclient_t *self, int timeout_ms, Tier__V1__ClientReply **reply_p)
{
    *reply_p = NULL;
    if (s_recv_next(self, timeout_ms) || !(*reply_p = s_decode(self, NULL)))
        return -1;
    s_clear_error(self);
    return 0;
}

int tierclient_recv_borrowed(tierclient_t *self, int timeout_ms,
                             const Tier__V1__ClientReply **reply_p)
{
    *reply_p = NULL;
    tier_arena_reset(self->arena); // the answer lent out last time goes now
    if (s_recv_next(self, timeout_ms) ||
        !(*reply_p = s_decode(self, tier_arena_allocator(self->arena))))
        return -1;
    s_clear_error(self);
    return 0;
}
