/*  cron.c — the periodic work (server_int.h), every CRON_MS: Redis
    reconnects, liveness, presence, follow-ups, cold tickets' timers and
    oldest waits, KPI roll-ups, the lock, the status line; and the SLA
    timers, every turn.
*/
#include "server_int.h"

#define CRON_MS             100   //  periodic work interval
#define ROLLUP_MS           10000 //  roll finished KPI minutes into hours and days
#define ROLLUP_MINUTES      10    //  minutes rolled up per call, at most
#define STATUS_MS           1000  //  systemd STATUS= line
#define FOLLOWUPS_MS        1000  //  look for due follow-ups this often
#define FOLLOWUPS_PER_ROUND 100
#define TIMERS_PER_TURN     1000 //  due tickets handled per turn
#define RENEWALS_PER_CALL   256  //  agents per presence renewal

//  ---------------------------------------------------------------------------
//  Timers, follow-ups and the cron

void cron_fire_timers(server_t *self)
{
    ticket_t *t;
    for (int i = 0; i < TIMERS_PER_TURN && (t = book_due(self->book, self->now_ms)); i++) {
        lifecycle_fired_t fired;
        uint64_t id = t->id;
        lifecycle_fire(self->lifecycle, self->now_ms, t, &fired);
        if (fired.revoke_agent)
            send_revoke_later(self, fired.revoke_agent, id, fired.revoke_attempt,
                              "offer timed out");
        if (fired.away_agent) {
            worker_t *worker = dispatch_by_agent(self->dispatch, fired.away_agent);
            log_warning("agent %s: set away after %d offers in a row timed out", fired.away_agent,
                        self->config->max_offer_misses);
            if (worker)
                worker_set_state(self->dispatch, worker, TIER__V1__AGENT_STATE__AGENT_AWAY);
        }
        if (fired.offer_agent && (t = book_ticket(self->book, id)))
            send_offer_later(self, t);
    }
}

//  Due follow-ups: read the resolved tickets, then take each follow-up in
//  (idempotent on its external id, "followup:ID").
typedef struct {
    uint64_t epoch;
    uint32_t ids, count; //  uint64_t array in the arena
} followup_item_t;

static Tier__V1__Ticket *s_followup_ticket(const redisReply *stored, uint64_t of)
{
    bytes_t wire = {0};
    if (ticket_wire((const uint8_t *) journal_str(stored), journal_len(stored), false, &wire)) {
        bytes_fini(&wire);
        return NULL;
    }
    Tier__V1__Ticket *done = tier__v1__ticket__unpack(NULL, wire.len, wire.data);
    bytes_fini(&wire);
    if (!done)
        return NULL;
    char external[64], subject[512], body[256];
    snprintf(external, sizeof(external), "followup:%llu", (unsigned long long) of);
    snprintf(subject, sizeof(subject), "Follow-up: %s", done->subject);
    snprintf(body, sizeof(body),
             "Check that the customer is satisfied with the resolution of ticket %llu.",
             (unsigned long long) of);
    char *tags[] = {"follow-up"};
    Tier__V1__Ticket t = TIER__V1__TICKET__INIT;
    t.external_id = external;
    t.channel = done->channel;
    t.customer = done->customer;
    t.subject = subject;
    t.body = body;
    t.n_tags = 1;
    t.tags = tags;
    t.level = done->level;
    t.department = done->department;
    t.priority = done->priority;
    size_t size = tier__v1__ticket__get_packed_size(&t);
    uint8_t *packed = malloc(size + 1);
    Tier__V1__Ticket *copy = NULL;
    if (packed) {
        tier__v1__ticket__pack(&t, packed);
        copy = tier__v1__ticket__unpack(NULL, size, packed);
        free(packed);
    }
    tier__v1__ticket__free_unpacked(done, NULL);
    return copy;
}

static void s_item_followup_tickets(void *arg, outbox_batch_t *batch, void *payload,
                                    const redisReply *stored, bool committed)
{
    server_t *self = arg;
    followup_item_t *item = payload;
    const uint64_t *ids = (const uint64_t *) outbox_bytes(batch, item->ids);
    for (uint32_t i = 0; i < item->count; i++) {
        const redisReply *one = journal_elem(stored, i);
        Tier__V1__Ticket *t = NULL;
        if (committed && item->epoch == self->epoch && self->state == STATE_READY &&
            journal_len(one))
            t = s_followup_ticket(one, ids[i]);
        if (t)
            intake_ticket(self, t, NULL, false, NULL, NULL, ids[i], false);
        else {
            intake_followup_done(self, ids[i]);
            if (committed && item->epoch == self->epoch && !journal_len(one))
                intake_followup_unschedule(self, ids[i]); //  its ticket is gone
        }
    }
}

static void s_item_followups_due(void *arg, outbox_batch_t *batch, void *payload,
                                 const redisReply *due, bool committed)
{
    (void) batch;
    server_t *self = arg;
    followup_item_t *item = payload;
    if (!server_current(self, committed, item->epoch))
        return;
    uint64_t ids[FOLLOWUPS_PER_ROUND];
    uint32_t count = 0;
    for (size_t i = 0; due && i < due->elements && count < FOLLOWUPS_PER_ROUND; i++) {
        const char *key = journal_str(due->element[i]);
        if (zhashx_lookup(self->followups_busy, key))
            continue;
        zhashx_insert(self->followups_busy, key, (void *) 1);
        ids[count++] = strtoull(key, NULL, 10);
    }
    if (!count)
        return;
    journal_t *j = self->journal;
    uint32_t read = journal_read_mget_ids(j, "tk:", ids, count);
    followup_item_t next = {self->epoch, outbox_put(self->outbox, ids, count * sizeof(uint64_t)),
                            count};
    outbox_add(self->outbox, s_item_followup_tickets, &next, sizeof(next), read);
}

//  A read of the first `limit` members of sorted set P KEY scored up to now.
static uint32_t s_read_due(server_t *self, const char *key, uint64_t limit)
{
    journal_t *j = self->journal;
    uint32_t read = journal_read(j, 7);
    journal_arg_str(j, "ZRANGEBYSCORE");
    journal_arg_key(j, key, NULL);
    journal_arg_str(j, "-inf");
    journal_arg_i64(j, self->now_ms);
    journal_arg_str(j, "LIMIT");
    journal_arg_str(j, "0");
    journal_arg_u64(j, limit);
    return read;
}

static void s_followups(server_t *self)
{
    uint32_t read = s_read_due(self, "followups", FOLLOWUPS_PER_ROUND);
    followup_item_t item = {self->epoch, 0, 0};
    outbox_add(self->outbox, s_item_followups_due, &item, sizeof(item), read);
}

//  Cold tickets (book.h): their timers are in P due and their queued times
//  in P qt:NAME. Every COLD_MS the due ones are read back, so that their
//  timers fire in memory, and each queue with a cold tail learns its oldest
//  wait.
#define COLD_MS        100
#define COLD_PER_ROUND 256

typedef struct {
    uint64_t epoch;
    uint32_t first; //  read: ZRANGEBYSCORE P due, then one ZRANGE qt per queue
    uint32_t queues;
} cold_item_t;

static void s_item_cold_tickets(void *arg, outbox_batch_t *batch, void *payload,
                                const redisReply *stored, bool committed)
{
    (void) batch;
    server_t *self = arg;
    cold_item_t *item = payload;
    self->cold_reading = false;
    if (!server_current(self, committed, item->epoch))
        return;
    for (size_t i = 0; stored && i < stored->elements; i++) {
        const redisReply *one = stored->element[i];
        if (!journal_len(one))
            continue;
        ticket_t *t =
            book_fetched(self->book, (const uint8_t *) journal_str(one), journal_len(one));
        if (t)
            lifecycle_loaded(self->lifecycle, self->now_ms, t); //  fires this turn
    }
}

static void s_item_cold(void *arg, outbox_batch_t *batch, void *payload, const redisReply *due,
                        bool committed)
{
    (void) batch;
    server_t *self = arg;
    cold_item_t *item = payload;
    self->cold_reading = false;
    if (!server_current(self, committed, item->epoch))
        return;
    for (uint32_t q = 0; q < item->queues && q < book_queue_count(self->book); q++) {
        const redisReply *oldest = journal_reply(self->journal, item->first + 1 + q);
        queue_t *queue = book_queue(self->book, q);
        queue->cold_oldest = (int64_t) journal_u64(journal_elem(oldest, 1));
    }
    size_t wanted = 0;
    for (size_t i = 0; due && i < due->elements; i++)
        if (!book_ticket(self->book, journal_u64(due->element[i])))
            wanted++;
    if (!wanted)
        return;
    journal_t *j = self->journal;
    uint32_t read = journal_read(j, 1 + (int) wanted);
    journal_arg_str(j, "MGET");
    for (size_t i = 0; due && i < due->elements; i++) {
        uint64_t id = journal_u64(due->element[i]);
        if (!book_ticket(self->book, id))
            journal_arg_key_u64(j, "tk:", id);
    }
    cold_item_t next = {self->epoch, read, 0};
    outbox_add(self->outbox, s_item_cold_tickets, &next, sizeof(next), read);
    self->cold_reading = true;
}

static void s_cold(server_t *self)
{
    size_t queues = book_queue_count(self->book);
    bool any = false;
    for (size_t q = 0; q < queues; q++)
        any = any || !book_complete(self->book, q);
    if (!any || self->cold_reading)
        return;
    journal_t *j = self->journal;
    uint32_t first = s_read_due(self, "due", COLD_PER_ROUND);
    for (size_t q = 0; q < queues; q++) {
        journal_read(j, 5);
        journal_arg_str(j, "ZRANGE");
        journal_arg_key(j, "qt:", book_queue(self->book, q)->name);
        journal_arg_str(j, "0");
        journal_arg_str(j, "0");
        journal_arg_str(j, "WITHSCORES");
    }
    cold_item_t item = {self->epoch, first, (uint32_t) queues};
    outbox_add(self->outbox, s_item_cold, &item, sizeof(item), first);
    self->cold_reading = true;
}

//  A worker silent for `liveness` heartbeats is gone: its tickets go back;
//  so are agents known from Redis that did not come back within their lease.
static void s_check_liveness(server_t *self)
{
    int64_t silence = (int64_t) self->config->liveness * self->config->heartbeat_ms;
    worker_t *worker;
    while ((worker = dispatch_next_silent(self->dispatch, self->now_ms, silence))) {
        const char *agent = worker_agent(worker);
        log_warning("agent %s: silent for %lld ms; taking its tickets back", agent,
                    (long long) silence);
        dispatch_remove(self->dispatch, agent);
        lifecycle_agent_gone(self->lifecycle, self->now_ms, agent, "agent stopped heartbeating");
    }
    for (holder_t *h = book_holder_first(self->book); h; h = book_holder_next(self->book))
        if (h->lease_until_ms && h->lease_until_ms <= self->now_ms &&
            !dispatch_by_agent(self->dispatch, h->agent)) {
            const char *agent = h->agent;
            log_warning("agent %s: lease expired; its tickets went back to their queues", agent);
            lifecycle_agent_gone(self->lifecycle, self->now_ms, agent, "agent lease expired");
            break; //  the holders changed: look again next cron
        }
}

static void s_renew_presence(server_t *self)
{
    const char *agents[RENEWALS_PER_CALL];
    size_t count;
    while ((count = dispatch_due_renewals(self->dispatch, self->now_ms, self->config->heartbeat_ms,
                                          agents, RENEWALS_PER_CALL)) > 0) {
        lifecycle_renew(self->lifecycle, self->now_ms, agents, count);
        if (count < RENEWALS_PER_CALL)
            break;
    }
}

static void s_status(server_t *self)
{
    char status[512];
    if (self->state == STATE_READY) {
        uint64_t cold = 0;
        for (size_t q = 0; q < book_queue_count(self->book); q++)
            cold += book_cold(self->book, q);
        char waiting[64] = "";
        if (cold)
            snprintf(waiting, sizeof(waiting), ", %llu queued in Redis only",
                     (unsigned long long) cold);
        snprintf(status, sizeof(status),
                 "%zu workers, %zu open tickets in memory%s, %llu messages, %llu events",
                 dispatch_workers(self->dispatch), book_count(self->book), waiting,
                 (unsigned long long) self->received,
                 (unsigned long long) events_published(self->events));
    } else
        snprintf(status, sizeof(status), "%s; refusing new work", server_unavailable(self));
    notify_status(status);
}

static void s_connect(server_t *self)
{
    const char *who = NULL;
    int rc = journal_reconnect(self->journal, self->now_ms, &who);
    if (rc < 0) {
        char why[sizeof(self->state_why) - 40];
        snprintf(why, sizeof(why), "redis is unavailable (%s)", journal_error(self->journal));
        server_set_state(self, STATE_DOWN, why);
        return;
    }
    if (rc == 1) {
        char why[sizeof(self->state_why)];
        snprintf(why, sizeof(why),
                 "standby: another tierd (%s) owns this Redis prefix; taking over when it "
                 "lets go",
                 who ? who : "?");
        if (self->state != STATE_STANDBY)
            log_warning("%s", why);
        server_set_state(self, STATE_STANDBY, why);
        return;
    }
    server_set_state(self, STATE_LOADING,
                     "tierd is loading its state from Redis; retry in a moment");
    loader_start(self->loader, self->now_ms);
}

void cron_run(server_t *self)
{
    journal_check(self->journal, self->now_ms);
    if (self->state == STATE_DOWN || self->state == STATE_STANDBY)
        s_connect(self);
    if (self->state == STATE_READY) {
        s_check_liveness(self);
        s_renew_presence(self);
        if (self->now_ms >= self->next_followups_ms) {
            s_followups(self);
            self->next_followups_ms = self->now_ms + FOLLOWUPS_MS;
        }
        if (self->now_ms >= self->next_cold_ms) {
            s_cold(self);
            self->next_cold_ms = self->now_ms + COLD_MS;
        }
        if (self->now_ms >= self->next_rollup_ms) {
            journal_t *j = self->journal;
            journal_write(j, 6);
            journal_arg_str(j, "FCALL");
            journal_arg_str(j, "tier_rollup");
            journal_arg_str(j, "0");
            journal_arg_str(j, journal_prefix(j));
            journal_arg_i64(j, self->now_ms);
            journal_arg_u64(j, ROLLUP_MINUTES);
            //  It rolls up minutes before the one before now's.
            kpi_rolled(self->kpi, self->now_ms - self->now_ms % 60000 - 60000);
            self->next_rollup_ms = self->now_ms + ROLLUP_MS;
        }
        //  The lock expires unless a batch with writes renews it.
        if (self->now_ms - journal_last_write_ms(self->journal) > self->config->lock_lease_ms / 4) {
            journal_write(self->journal, 1);
            journal_arg_str(self->journal, "PING");
        }
    }
    if (self->now_ms >= self->next_status_ms) {
        s_status(self);
        self->next_status_ms = self->now_ms + STATUS_MS;
    }
    notify_watchdog();
    self->next_cron_ms = self->now_ms + CRON_MS;
}
