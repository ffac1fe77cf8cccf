/*  server.c — see server.h; the parts it is split into are listed in
    server_int.h.

    Reading order: receiving, dispatch, the batch's end, the journal's
    outcomes, the loop, start and stop.

    Every answer that reports a change waits in the outbox until the batch
    holding the change is in Redis; refusals that change nothing are sent at
    once (send.c).
*/
#include "server_int.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#define BATCH_MAX        512     //  messages read per socket per turn
#define SEND_QUEUE_MAX   1000000 //  messages queued per peer before ZeroMQ drops
#define ARENA_UNPACK_MAX 16384   //  requests up to this size are unpacked into the batch arena

static volatile sig_atomic_t s_stop, s_hangup;

static void s_on_signal(int sig)
{
    if (sig == SIGHUP)
        s_hangup = 1;
    else
        s_stop = 1;
}

static int64_t s_clock_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

//  protobuf-c allocates a request's strings and submessages one by one:
//  small requests go into the batch's arena instead, freed with the batch.
static void *s_arena_alloc(void *data, size_t size)
{
    return outbox_alloc(data, size);
}

static void s_arena_free(void *data, void *pointer)
{
    (void) data;
    (void) pointer;
}

//  ---------------------------------------------------------------------------
//  Reading messages

//  The routing frames of a message just read (parts[0 .. count - 2]).
static size_t s_env_of(server_t *self, size_t count, uint8_t *env)
{
    size_t len = 0;
    for (size_t i = 0; i + 1 < count; i++) {
        size_t frame = zmq_msg_size(&self->parts[i]);
        if (frame > 255 || len + 1 + frame > ENVELOPE_MAX)
            break;
        env[len++] = (uint8_t) frame;
        memcpy(env + len, zmq_msg_data(&self->parts[i]), frame);
        len += frame;
    }
    return len;
}

//  Receive one multipart message into self->parts; returns its part count
//  (0: none waiting).
static size_t s_recv(server_t *self, void *handle)
{
    size_t count = 0;
    for (;;) {
        zmq_msg_t *part = &self->parts[count < FRAMES_MAX ? count : FRAMES_MAX - 1];
        if (count >= FRAMES_MAX)
            zmq_msg_close(part);
        zmq_msg_init(part);
        if (zmq_msg_recv(part, handle, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(part);
            return count;
        }
        if (count < FRAMES_MAX)
            count++;
        if (!zmq_msg_more(part))
            return count;
    }
}

static void s_parts_close(server_t *self, size_t count)
{
    for (size_t i = 0; i < count; i++)
        zmq_msg_close(&self->parts[i]);
}

static void s_on_message(server_t *self, int sock, size_t count)
{
    //  A ROUTER always prepends the identity: fewer than two frames cannot be.
    if (count < 2)
        return;
    uint8_t env[ENVELOPE_MAX];
    size_t env_len = s_env_of(self, count, env);
    zmq_msg_t *body = &self->parts[count - 1];
    size_t size = zmq_msg_size(body);
    const uint8_t *data = zmq_msg_data(body);
    if ((int) size > self->config->max_message_bytes) {
        char reason[128];
        snprintf(reason, sizeof(reason), "%s of %zu bytes exceeds the limit of %d",
                 sock == SOCK_CLIENTS ? "request" : "message", size,
                 self->config->max_message_bytes);
        send_error(self, sock, env, env_len, 0, TIER__V1__ERROR_CODE__ERROR_TOO_LARGE, reason);
        return;
    }
    bool arena = size <= ARENA_UNPACK_MAX;
    ProtobufCAllocator *allocator = server_allocator(self, arena);
    if (sock == SOCK_CLIENTS) {
        Tier__V1__ClientRequest *req = tier__v1__client_request__unpack(allocator, size, data);
        if (!req)
            send_error(self, sock, env, env_len, 0, TIER__V1__ERROR_CODE__ERROR_BAD_MESSAGE,
                       "frame is not a ClientRequest");
        else if (req->protocol_version > 1)
            send_error(self, sock, env, env_len, req->request_id,
                       TIER__V1__ERROR_CODE__ERROR_UNSUPPORTED_VERSION,
                       "this router speaks protocol_version 1");
        else if (requests_client(self, env, env_len, req, arena))
            req = NULL;
        if (req)
            tier__v1__client_request__free_unpacked(req, allocator);
    } else {
        Tier__V1__WorkerMessage *msg = tier__v1__worker_message__unpack(allocator, size, data);
        if (!msg)
            send_error(self, sock, env, env_len, 0, TIER__V1__ERROR_CODE__ERROR_BAD_MESSAGE,
                       "frame is not a WorkerMessage");
        else if (msg->protocol_version > 1)
            send_error(self, sock, env, env_len, msg->request_id,
                       TIER__V1__ERROR_CODE__ERROR_UNSUPPORTED_VERSION,
                       "this router speaks protocol_version 1");
        else if (workers_message(self, env, env_len, msg, arena))
            msg = NULL;
        if (msg)
            tier__v1__worker_message__free_unpacked(msg, allocator);
    }
}

static void s_drain(server_t *self, int sock)
{
    void *handle = send_handle(self, sock);
    for (int i = 0; i < BATCH_MAX; i++) {
        size_t count = s_recv(self, handle);
        if (!count)
            break;
        self->received++;
        s_on_message(self, sock, count);
        s_parts_close(self, count);
    }
}

//  ---------------------------------------------------------------------------
//  Dispatch: one ticket for a worker, the best head of its queues that its
//  channel limits allow.

static bool s_pick(void *arg, worker_t *worker)
{
    server_t *self = arg;
    bool allowed[BOOK_CHANNELS + 1];
    if (!worker_room(self->dispatch, worker, allowed))
        return false;
    size_t count;
    const int *queues = worker_queues(worker, &count);
    ticket_t *best = NULL;
    for (size_t i = 0; i < count; i++) {
        if (queues[i] < 0)
            continue;
        ticket_t *t = book_head(self->book, (size_t) queues[i], allowed);
        if (t && (!best || t->score < best->score || (t->score == best->score && t->id < best->id)))
            best = t;
    }
    if (!best)
        return false;
    if (lifecycle_offer(self->lifecycle, self->now_ms, best, worker_agent(worker)))
        send_offer_later(self, best);
    return true;
}

//  lifecycle_available_fn: a promise coming due goes back to its agent if so.
static bool s_available(void *arg, const char *agent, int channel)
{
    server_t *self = arg;
    worker_t *worker = dispatch_by_agent(self->dispatch, agent);
    return worker && worker_room_for(self->dispatch, worker, channel);
}

//  A ticket closed in a batch, or given back to Redis by a queue over its
//  window (book_shrink), is forgotten once that batch is in Redis (not
//  before: a read of it in flight meanwhile would bring back its old state).
typedef struct {
    uint64_t epoch;
    uint64_t ticket;
} evict_item_t;

static void s_item_evict(void *arg, outbox_batch_t *batch, void *payload, const redisReply *r,
                         bool committed)
{
    (void) batch;
    (void) r;
    server_t *self = arg;
    evict_item_t *item = payload;
    if (!committed || item->epoch != self->epoch)
        return;
    ticket_t *t = book_ticket(self->book, item->ticket);
    if (t && book_evictable(self->book, t))
        book_evict(self->book, t);
}

static void s_on_going(void *arg, ticket_t *t)
{
    server_t *self = arg;
    evict_item_t item = {self->epoch, t->id};
    outbox_add(self->outbox, s_item_evict, &item, sizeof(item), OUTBOX_NO_READ);
}

//  The run state, and why (what refusals and the status line say).
void server_set_state(server_t *self, run_state_t state, const char *why)
{
    self->state = state;
    snprintf(self->state_why, sizeof(self->state_why), "%s", why ? why : "");
    metrics_redis_up(self->metrics, state == STATE_READY);
}

//  ---------------------------------------------------------------------------
//  The batch's end: what the turn changed goes to Redis.

static void s_persist_counters(server_t *self)
{
    journal_t *j = self->journal;
    if (self->seq != self->seq_written) {
        journal_set(j);
        journal_arg_key(j, "seq", NULL);
        journal_arg_u64(j, self->seq);
        self->seq_written = self->seq;
    }
    uint64_t last_id = lifecycle_last_id(self->lifecycle);
    if (last_id != self->id_written) {
        journal_set(j);
        journal_arg_key(j, "nextid", NULL);
        journal_arg_u64(j, last_id);
        self->id_written = last_id;
    }
}

static void s_end_turn(server_t *self)
{
    for (int round = 0; round < 4; round++) {
        if (self->state == STATE_READY) {
            lifecycle_queue_events(self->lifecycle, self->now_ms);
            kpi_flush(self->kpi, self->journal, self->now_ms);
            filter_flush(self->filter, self->journal);
            s_persist_counters(self);
            book_shrink(self->book);
            book_flush(self->book, s_on_going, self);
        }
        int sent = journal_send(self->journal, self->now_ms);
        //  Items that needed nothing from Redis, with nothing in flight to
        //  wait for, run now (they may queue more work: go round again).
        if (sent == 0 && !journal_busy(self->journal) && !journal_pending(self->journal) &&
            outbox_filling(self->outbox)) {
            outbox_run_filling(self->outbox);
            continue;
        }
        break;
    }
}

//  ---------------------------------------------------------------------------
//  The journal's and the loader's news

static void s_on_sent(void *arg)
{
    server_t *self = arg;
    outbox_sent(self->outbox);
}

//  Redis was lost (or another router took over): what memory holds may be
//  ahead of Redis. Answer what waits, forget the tickets, load again.
static void s_reset(server_t *self, journal_status_t status)
{
    self->epoch++;
    run_state_t next = status == JOURNAL_FENCED ? STATE_STANDBY : STATE_DOWN;
    server_set_state(self, next,
                     next == STATE_STANDBY ? "standby: another tierd took over this Redis prefix"
                                           : "redis is unavailable; reconnecting");
    outbox_fail_all(self->outbox);
    book_clear(self->book);
    kpi_clear(self->kpi);
    filter_clear(self->filter);
    zhashx_purge(self->intakes);
    zhashx_purge(self->followups_busy);
    self->cold_reading = false;
    dispatch_changed(self->dispatch);
    workers_unpark(self, false);
    self->next_cron_ms = 0; //  reconnect at once
}

static void s_on_done(void *arg, journal_status_t status)
{
    server_t *self = arg;
    if (status == JOURNAL_COMMITTED)
        outbox_done(self->outbox, true);
    else
        s_reset(self, status);
}

//  The core state is loaded: connected workers get their tickets' offers
//  again (a lost batch may have made offers that never went out; a worker
//  ignores an offer of an attempt it holds).
static void s_on_loaded(void *arg, uint64_t seq)
{
    server_t *self = arg;
    self->seq = self->seq_written = seq;
    self->id_written = lifecycle_last_id(self->lifecycle);
    kpi_rolled(self->kpi, loader_rolled_upto(self->loader));
    server_set_state(self, STATE_READY, "");
    for (worker_t *w = dispatch_first(self->dispatch); w; w = dispatch_next(self->dispatch)) {
        holder_t *h = book_holder_get(self->book, worker_agent(w));
        h->lease_until_ms = 0;
        h->bot = worker_bot(w);
        size_t resent = 0;
        for (ticket_t *t = book_held_first(self->book, worker_agent(w)); t;
             t = book_held_next(self->book))
            if (t->state == TIER__V1__TICKET_STATE__STATE_OFFERED) {
                send_offer_later(self, t);
                resent++;
            }
        if (resent)
            log_notice("agent %s: %zu offers sent again after the redis reconnect", worker_agent(w),
                       resent);
    }
    dispatch_changed(self->dispatch);
    workers_unpark(self, true);
}

//  The loader brought cold tickets in (book.h): they may go to free workers.
static void s_on_more(void *arg)
{
    server_t *self = arg;
    dispatch_changed(self->dispatch);
}

static void s_on_unusable(void *arg, const char *why)
{
    server_t *self = arg;
    log_error("redis: %s", why);
    server_set_state(self, STATE_UNUSABLE, why);
    workers_unpark(self, false);
}

//  ---------------------------------------------------------------------------
//  The loop

//  Whether a ZeroMQ socket has a message waiting. It also takes in the
//  socket's pending commands, so that its ZMQ_FD is readable again only when
//  something new comes (the ZMQ_FD contract, zmq_getsockopt(3)).
static bool s_has_input(void *handle)
{
    uint32_t events = 0;
    size_t size = sizeof(events);
    return zmq_getsockopt(handle, ZMQ_EVENTS, &events, &size) == 0 && (events & ZMQ_POLLIN);
}

//  One turn: wait for messages or the reply of the batch in flight; take
//  the reply (which sends the next batch before its items run); read the
//  messages waiting; timers and cron; plan; send what the turn queued.
//
//  The wait is a poll(2) of the three sockets' ZMQ_FDs and Redis's socket,
//  not zmq_poll: zmq_poll asks every socket for ZMQ_EVENTS before and after
//  it sleeps, and a turn then reads every socket, each question a getpid
//  and a poll inside libzmq: ~20 system calls a turn, a third of tierd's
//  time at 1,000 tickets/s. Here each socket is asked once, before the
//  sleep (what a send may have taken in is seen), and after it only the
//  sockets whose ZMQ_FD woke are read.
static void s_turn(server_t *self, int timeout_ms)
{
    bool ready[SOCKETS];
    struct pollfd fds[SOCKETS + 1];
    bool any = false;
    for (int i = 0; i < SOCKETS; i++) {
        ready[i] = s_has_input(send_handle(self, i));
        any = any || ready[i];
        fds[i] = (struct pollfd){.fd = self->zmq_fds[i], .events = POLLIN};
    }
    int redis_fd = journal_fd(self->journal);
    fds[SOCKETS] = (struct pollfd){.fd = redis_fd, .events = POLLIN};
    if (poll(fds, redis_fd >= 0 ? SOCKETS + 1 : SOCKETS, any ? 0 : timeout_ms) < 0 &&
        errno != EINTR)
        log_error("poll failed: %s", strerror(errno));
    for (int i = 0; i < SOCKETS; i++)
        ready[i] = ready[i] || (fds[i].revents & POLLIN);
    self->now_ms = s_clock_ms();
    if (ready[SOCK_EVENTS])
        events_read_subscriptions(self->events);
    if (redis_fd >= 0 && (fds[SOCKETS].revents & POLLIN))
        journal_receive(self->journal, self->now_ms);
    if (ready[SOCK_CLIENTS])
        s_drain(self, SOCK_CLIENTS);
    if (ready[SOCK_WORKERS])
        s_drain(self, SOCK_WORKERS);
    if (self->state == STATE_READY) {
        cron_fire_timers(self);
        loader_step(self->loader, self->now_ms);
    }
    if (self->now_ms >= self->next_cron_ms)
        cron_run(self);
    if (self->state == STATE_READY)
        dispatch_plan(self->dispatch, s_pick, self, self->now_ms);
    s_end_turn(self);
}

//  Load the rules file named in the config; an empty name means no rules.
static rules_t *s_load_rules(server_t *self)
{
    if (!*self->config->rules_path)
        return rules_empty();
    char err[512];
    rules_t *rules =
        rules_load(self->config->rules_path, self->config, self->config->sla, err, sizeof(err));
    if (!rules)
        log_error("rules: %s", err);
    return rules;
}

//  SIGHUP: re-read the rules file. A bad file is refused with file:line and
//  the old rules stay; tickets in flight are not touched either way.
static void s_reload(server_t *self)
{
    notify_reloading();
    rules_t *rules = s_load_rules(self);
    if (rules) {
        rules_destroy(&self->rules);
        self->rules = rules;
        log_notice("SIGHUP: %zu rules loaded from %s", rules_count(rules),
                   *self->config->rules_path ? self->config->rules_path : "(none)");
    } else
        log_error("SIGHUP: kept the %zu rules in force", rules_count(self->rules));
    notify_ready();
}

//  The next time something is due: the cron, or the earliest timer.
static int s_wait_ms(server_t *self)
{
    int64_t until = self->next_cron_ms;
    int64_t next = book_next_due(self->book);
    if (next && next < until)
        until = next;
    int64_t wait = until - s_clock_ms();
    return wait > 0 ? (int) wait : 0;
}

int server_run(server_t *self)
{
    struct sigaction action = {.sa_handler = s_on_signal};
    sigemptyset(&action.sa_mask);
    sigaction(SIGTERM, &action, NULL);
    sigaction(SIGINT, &action, NULL);
    sigaction(SIGHUP, &action, NULL);
    self->now_ms = s_clock_ms();
    cron_run(self);
    s_end_turn(self);
    notify_ready();
    log_notice("ready: clients %s, workers %s, events %s", self->config->clients,
               self->config->workers, self->config->events);
    while (!s_stop) {
        if (s_hangup) {
            s_hangup = 0;
            s_reload(self);
        }
        //  More work waiting (items queued work, the plan has work): don't
        //  sleep, unless a batch is in flight: its reply (or a message)
        //  wakes us.
        bool more = !journal_busy(self->journal) &&
                    (journal_pending(self->journal) || dispatch_dirty(self->dispatch) ||
                     outbox_filling(self->outbox));
        s_turn(self, more ? 0 : s_wait_ms(self));
    }
    //  Answer what is in flight or queued, then let go of the lock.
    self->now_ms = s_clock_ms();
    for (int i = 0; i < 16 && (journal_busy(self->journal) || journal_pending(self->journal));
         i++) {
        if (journal_busy(self->journal))
            journal_receive(self->journal, self->now_ms);
        s_end_turn(self);
    }
    journal_release(self->journal);
    notify_stopping();
    log_notice("stopping: every acknowledged ticket is in Redis; workers keep their "
               "leases until they re-register or expire");
    return 0;
}

static zsock_t *s_bind(int type, const char *endpoint, const char *what)
{
    zsock_t *sock = zsock_new(type);
    if (!sock) {
        log_error("cannot create the %s socket: %s", what, zmq_strerror(zmq_errno()));
        return NULL;
    }
    zsock_set_linger(sock, 0);
    //  A ROUTER drops what it cannot queue for a peer, silently: an answer
    //  or an offer lost that way is a stall (the peer waits for it). Queue a
    //  great deal instead; a peer that stops reading is dropped by liveness.
    //  Set before bind: a listener gives its peers the options it had then.
    zsock_set_sndhwm(sock, SEND_QUEUE_MAX);
    zsock_set_rcvhwm(sock, SEND_QUEUE_MAX);
    if (zsock_bind(sock, "%s", endpoint) < 0) {
        log_error("cannot bind %s endpoint %s: %s", what, endpoint, zmq_strerror(zmq_errno()));
        zsock_destroy(&sock);
        return NULL;
    }
    return sock;
}

extern const char store_lua_source[];
extern const size_t store_lua_size;

server_t *server_new(config_t *config)
{
    server_t *self = calloc(1, sizeof(server_t));
    if (!self)
        return NULL;
    self->config = config;
    self->clients = s_bind(ZMQ_ROUTER, config->clients, "clients");
    self->workers = s_bind(ZMQ_ROUTER, config->workers, "workers");
    self->events = self->clients && self->workers ? events_new(config->events) : NULL;
    if (!self->events) {
        server_destroy(&self);
        return NULL;
    }
    self->clients_handle = zsock_resolve(self->clients);
    self->workers_handle = zsock_resolve(self->workers);
    for (int i = 0; i < SOCKETS; i++) {
        size_t size = sizeof(self->zmq_fds[i]);
        if (zmq_getsockopt(send_handle(self, i), ZMQ_FD, &self->zmq_fds[i], &size) != 0) {
            log_error("cannot get a socket's ZMQ_FD: %s", zmq_strerror(errno));
            server_destroy(&self);
            return NULL;
        }
    }
    journal_config_t jc = {.url = config->redis_url,
                           .prefix = config->redis_prefix,
                           .connect_timeout_ms = config->connect_timeout_ms,
                           .command_timeout_ms = config->command_timeout_ms,
                           .lock_lease_ms = config->lock_lease_ms,
                           .library = store_lua_source,
                           .library_size = store_lua_size,
                           .done = s_on_done,
                           .sent = s_on_sent,
                           .arg = self};
    self->journal = journal_new(&jc);
    if (!self->journal) {
        server_destroy(&self);
        return NULL;
    }
    self->outbox = outbox_new(self->journal, self);
    self->arena = (ProtobufCAllocator){s_arena_alloc, s_arena_free, self->outbox};
    self->intern = intern_new();
    self->book = book_new(self->intern, self->journal, (const char *const *) config->departments,
                          config->department_count);
    self->kpi = kpi_new();
    self->filter = filter_new((size_t) config->idempotency_filter_mb << 20);
    lifecycle_config_t lc = {.book = self->book,
                             .journal = self->journal,
                             .kpi = self->kpi,
                             .config = config,
                             .event = send_on_event,
                             .available = s_available,
                             .arg = self};
    self->lifecycle = lifecycle_new(&lc);
    loader_config_t ldc = {.book = self->book,
                           .journal = self->journal,
                           .outbox = self->outbox,
                           .lifecycle = self->lifecycle,
                           .filter = self->filter,
                           .lease_ms = workers_lease_ms(self),
                           .ready = s_on_loaded,
                           .failed = s_on_unusable,
                           .more = s_on_more,
                           .arg = self};
    self->loader = loader_new(&ldc);
    self->dispatch = dispatch_new(config, self->book);
    self->metrics = metrics_new();
    self->intakes = zhashx_new();
    zhashx_set_destructor(self->intakes, intake_waiters_free);
    self->followups_busy = zhashx_new();
    server_set_state(self, STATE_DOWN, "redis is not connected yet");
    if (strcmp(config->metrics_listen, METRICS_LISTEN_OFF) != 0) //  NULL: logged, goes on
        self->http = http_new(config->metrics_listen, self->metrics);
    self->rules = s_load_rules(self);
    if (!self->rules)
        server_destroy(&self);
    return self;
}

void server_destroy(server_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    server_t *self = *self_p;
    if (self->outbox)
        outbox_fail_all(self->outbox);
    workers_parked_free(self);
    rules_destroy(&self->rules);
    http_destroy(&self->http);
    zhashx_destroy(&self->intakes);
    zhashx_destroy(&self->followups_busy);
    dispatch_destroy(&self->dispatch);
    loader_destroy(&self->loader);
    lifecycle_destroy(&self->lifecycle);
    kpi_destroy(&self->kpi);
    filter_destroy(&self->filter);
    book_destroy(&self->book);
    intern_destroy(&self->intern);
    outbox_destroy(&self->outbox);
    journal_destroy(&self->journal);
    metrics_destroy(&self->metrics);
    events_destroy(&self->events);
    zsock_destroy(&self->workers);
    zsock_destroy(&self->clients);
    bytes_fini(&self->scratch);
    bytes_fini(&self->scratch2);
    free(self);
    *self_p = NULL;
}
