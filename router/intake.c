/*  intake.c — validation, and the intake of new tickets (server_int.h).

    A submit's external id and its customer's history are read first (one
    round trip), then the ticket is taken in (the next): rules, SLA policy,
    lifecycle_intake. A follow-up (cron.c) is taken in the same way.
*/
#include "server_int.h"

//  ---------------------------------------------------------------------------
//  Validation

int intake_validate_placement(server_t *self, int level, const char *department, char *reason,
                              size_t size)
{
    if (level < 0 || level > TIER__V1__LEVEL__LEVEL_L3) {
        snprintf(reason, size, "level %d is not L1, L2 or L3", level);
        return TIER__V1__ERROR_CODE__ERROR_UNKNOWN_LEVEL;
    }
    if (*department && config_department(self->config, department) < 0) {
        snprintf(reason, size, "department \"%.64s\" is not configured", department);
        return TIER__V1__ERROR_CODE__ERROR_UNKNOWN_DEPARTMENT;
    }
    return 0;
}

int intake_validate_ticket(server_t *self, const Tier__V1__Ticket *t, char *reason, size_t size)
{
    if (!t) {
        snprintf(reason, size, "submit has no ticket");
        return TIER__V1__ERROR_CODE__ERROR_MISSING_FIELD;
    }
    const char *s = t->subject;
    while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
        s++;
    if (!*s) {
        snprintf(reason, size, "ticket subject is empty");
        return TIER__V1__ERROR_CODE__ERROR_MISSING_FIELD;
    }
    if (t->channel < TIER__V1__CHANNEL__CHANNEL_CHAT ||
        t->channel > TIER__V1__CHANNEL__CHANNEL_WEB) {
        snprintf(reason, size, "channel %d is not a known channel", t->channel);
        return TIER__V1__ERROR_CODE__ERROR_UNKNOWN_CHANNEL;
    }
    if (t->priority < 0 || t->priority > TIER__V1__PRIORITY__PRIORITY_URGENT) {
        snprintf(reason, size, "priority %d is not low, normal, high or urgent", t->priority);
        return TIER__V1__ERROR_CODE__ERROR_BAD_REQUEST;
    }
    return intake_validate_placement(self, t->level, t->department, reason, size);
}

//  ---------------------------------------------------------------------------
//  Intake: the external id and the customer's history are read first (one
//  round trip), then the ticket is taken in (the next).

//  Reads of an intake's first round trip, in order: GET x:EXT if there is
//  an external id, then per history rule ZCOUNT cc:CUSTOMER (contacts) or
//  EXISTS ce:CUSTOMER (escalated before).
typedef struct {
    uint64_t epoch;
    Tier__V1__Ticket *ticket; //  owned: the submitted ticket
    void *request;            //  owned: what ticket belongs to (ClientRequest), or NULL
    dest_t dest;              //  dest.env_len 0 and no request: a follow-up
    uint32_t first, count;    //  the reads
    const char *intake_key;   //  the external id in self->intakes, or NULL
    uint64_t followup_of;     //  a follow-up: the ticket it follows up
    bool test;                //  tierctl rules test: answer, take nothing in
    bool arena;               //  request was unpacked into the batch arena
    bool read_external;       //  the first read is GET P x:EXTERNAL
} intake_item_t;

static void s_intake_free(server_t *self, intake_item_t *item)
{
    if (item->request)
        tier__v1__client_request__free_unpacked(item->request, server_allocator(self, item->arena));
    else if (item->ticket)
        tier__v1__ticket__free_unpacked(item->ticket, NULL);
    item->request = NULL;
    item->ticket = NULL;
}

//  Submits of an external id whose intake is under way wait for its
//  outcome (a client retrying while the first try is being written).
typedef struct {
    uint8_t env[ENVELOPE_MAX];
    size_t env_len;
    uint64_t request_id;
} waiter_t;

typedef struct {
    waiter_t *list;
    size_t count;
} waiters_t;

#define NO_WAITERS ((void *) 1) //  the value of an intake nobody waits for

void intake_waiters_free(void **item)
{
    if (*item && *item != NO_WAITERS) {
        waiters_t *w = *item;
        free(w->list);
        free(w);
    }
    *item = NULL;
}

static void s_wait_for_intake(server_t *self, const char *key, const uint8_t *env, size_t env_len,
                              uint64_t request_id)
{
    waiters_t *w = zhashx_lookup(self->intakes, key);
    if (w == NO_WAITERS) {
        w = calloc(1, sizeof(waiters_t));
        if (!w) {
            log_error("out of memory keeping a resent submit");
            abort();
        }
        zhashx_update(self->intakes, key, w);
    }
    waiter_t *grown = realloc(w->list, (w->count + 1) * sizeof(waiter_t));
    if (!grown) {
        log_error("out of memory keeping a resent submit");
        abort();
    }
    w->list = grown;
    waiter_t *one = &w->list[w->count++];
    memcpy(one->env, env, env_len);
    one->env_len = env_len;
    one->request_id = request_id;
}

static void s_send_submitted(server_t *self, const uint8_t *env, size_t env_len,
                             uint64_t request_id, uint64_t ticket, bool duplicate)
{
    char id[ID_TEXT_MAX];
    wire_decimal(ticket, id);
    Tier__V1__SubmitReply submitted = TIER__V1__SUBMIT_REPLY__INIT;
    submitted.id = id;
    submitted.duplicate = duplicate;
    Tier__V1__ClientReply reply = TIER__V1__CLIENT_REPLY__INIT;
    reply.request_id = request_id;
    reply.body_case = TIER__V1__CLIENT_REPLY__BODY_SUBMITTED;
    reply.submitted = &submitted;
    send_packed(self->clients_handle, env, env_len, &reply.base, &self->scratch);
}

//  The intake of `key` is over: with a ticket (committed), or not. Those
//  who sent the same submit meanwhile get the answer (a duplicate of it).
static void s_intake_done(server_t *self, const char *key, bool committed, uint64_t ticket)
{
    if (!key)
        return;
    waiters_t *w = zhashx_lookup(self->intakes, key);
    if (w && w != NO_WAITERS)
        for (size_t i = 0; i < w->count; i++) {
            waiter_t *one = &w->list[i];
            if (committed && ticket)
                s_send_submitted(self, one->env, one->env_len, one->request_id, ticket, true);
            else
                send_error(self, SOCK_CLIENTS, one->env, one->env_len, one->request_id,
                           TIER__V1__ERROR_CODE__ERROR_UNAVAILABLE, server_unavailable(self));
        }
    zhashx_delete(self->intakes, key);
}

//  The answer to a submit, and the end of its intake.
typedef struct {
    dest_t dest;
    uint64_t id;
    bool duplicate;
    const char *intake_key; //  in self->intakes until answered
    uint64_t followup_of;
} submitted_item_t;

static void s_item_submitted(void *arg, outbox_batch_t *batch, void *payload, const redisReply *r,
                             bool committed)
{
    (void) r;
    server_t *self = arg;
    submitted_item_t *item = payload;
    s_intake_done(self, item->intake_key, committed, item->id);
    if (item->followup_of) {
        intake_followup_done(self, item->followup_of);
        if (committed && !item->duplicate)
            log_info("follow-up ticket %llu created for ticket %llu", (unsigned long long) item->id,
                     (unsigned long long) item->followup_of);
        return;
    }
    if (send_refused(self, batch, &item->dest, committed))
        return;
    s_send_submitted(self, outbox_bytes(batch, item->dest.env), item->dest.env_len,
                     item->dest.request_id, item->id, item->duplicate);
}

static void s_submitted_later(server_t *self, const dest_t *dest, uint64_t id, bool duplicate,
                              const char *intake_key, uint64_t followup_of)
{
    //  The key may be in an earlier batch's arena: keep a copy in this one.
    submitted_item_t item = {*dest, id, duplicate,
                             intake_key ? outbox_strdup(self->outbox, intake_key) : NULL,
                             followup_of};
    outbox_add(self->outbox, s_item_submitted, &item, sizeof(item), OUTBOX_NO_READ);
}

//  The policy a ticket gets at intake (interned), by policy name and
//  priority; cached, since only the UTC offset of business hours changes
//  (DST): the spec is read again once a minute.
static const policy_t *s_policy(server_t *self, const rules_outcome_t *out, int64_t *boost_p,
                                bool vip)
{
    const sla_t *sla = self->config->sla;
    *boost_p = (vip ? sla_vip_boost_ms(sla) : 0) + sla_priority_boost_ms(sla, out->priority);
    if (self->now_ms - self->policies_at >= POLICY_CACHE_MS) {
        char spec[BUSINESS_SPEC_MAX];
        sla_business_spec(sla, spec, sizeof(spec));
        if (strcmp(spec, self->business) != 0)
            self->cached = 0;
        snprintf(self->business, sizeof(self->business), "%s", spec);
        self->policies_at = self->now_ms;
    }
    for (size_t i = 0; i < self->cached; i++)
        if (self->policy_cache[i].priority == out->priority &&
            strcmp(self->policy_cache[i].name, out->sla_policy) == 0)
            return self->policy_cache[i].policy;
    const sla_targets_t *targets = sla_targets(sla, out->sla_policy, out->priority);
    policy_t p;
    memset(&p, 0, sizeof(p));
    p.first_response_ms = targets->first_response_ms;
    p.resolution_ms = targets->resolution_ms;
    for (int level = 1; level <= POLICY_LEVELS; level++)
        p.wait_ms[level] = targets->wait_ms[level];
    p.warn_percent = sla_warn_percent(sla);
    p.action = targets->action;
    for (int prio = 1; prio <= POLICY_PRIORITIES; prio++)
        p.priority_boost_ms[prio] = sla_priority_boost_ms(sla, prio);
    snprintf(p.business, sizeof(p.business), "%s", self->business);
    const policy_t *interned = intern_policy(self->intern, &p);
    if (self->cached < POLICY_CACHE_MAX) {
        policy_cache_t *c = &self->policy_cache[self->cached++];
        snprintf(c->name, sizeof(c->name), "%s", out->sla_policy);
        c->priority = out->priority;
        c->policy = interned;
    }
    return interned;
}

//  "level L3, department billing" for a history rule that fired.
static void s_history_action(const rule_history_t *rule, char *out, size_t size)
{
    snprintf(out, size, "%s%s%s%s", rule->level ? "level " : "", rules_level_name(rule->level),
             !rule->department ? ""
             : rule->level     ? ", department "
                               : "department ",
             rule->department ? rule->department : "");
}

//  Apply the history rules whose reads say they fire; returns how many hits
//  were added to hits (content hits first).
static size_t s_history_hits(server_t *self, rules_outcome_t *out, uint32_t first_read,
                             lifecycle_hit_t *hits, size_t count, char (*actions)[RULE_ACTION_MAX],
                             bool *record_contact)
{
    *record_contact = false;
    for (size_t r = 0; r < out->history_count; r++) {
        const rule_history_t *rule = out->history[r];
        const redisReply *reply = journal_reply(self->journal, first_read + (uint32_t) r);
        if (rule->contacts > 0)
            *record_contact = true;
        //  contacts: the count so far in the window must reach contacts - 1
        //  (this ticket is the Nth); escalated: the customer's flag exists.
        bool fires = rule->contacts > 0 ? (int64_t) journal_u64(reply) >= rule->contacts - 1
                                        : journal_u64(reply) > 0;
        if (!fires || count >= 2 * RULES_HITS_MAX)
            continue;
        if (rule->level > out->level)
            out->level = rule->level;
        if (rule->department && !*out->department)
            out->department = rule->department;
        s_history_action(rule, actions[r], RULE_ACTION_MAX);
        hits[count].rule = rule->name;
        hits[count].action = actions[r];
        count++;
    }
    return count;
}

//  The content part of a submitted ticket, packed: what never changes.
static size_t s_pack_content(const Tier__V1__Ticket *submitted, const rules_outcome_t *out,
                             bytes_t *buf)
{
    Tier__V1__Ticket content = TIER__V1__TICKET__INIT;
    content.external_id = submitted->external_id;
    content.channel = submitted->channel;
    content.customer = submitted->customer;
    content.subject = submitted->subject;
    content.body = submitted->body;
    content.n_tags = out->tag_count;
    content.tags = (char **) out->tags;
    size_t size = tier__v1__ticket__get_packed_size(&content);
    bytes_clear(buf);
    bytes_reserve(buf, size);
    tier__v1__ticket__pack(&content, buf->data);
    buf->len = size;
    return size;
}

static void s_rules_test_reply(server_t *self, const dest_t *dest, const Tier__V1__Ticket *t,
                               const rules_outcome_t *out, const lifecycle_hit_t *hits,
                               size_t count);

//  The ticket taken in, its reads (if any) in. `batch` is the batch the
//  item was kept in (NULL: called at once, dest is in the filling batch).
static void s_intake_apply(server_t *self, outbox_batch_t *batch, intake_item_t *item)
{
    const Tier__V1__Ticket *t = item->ticket;
    bool followup = item->followup_of != 0;
    uint32_t read = item->first;
    dest_t dest = batch && !followup ? send_dest_copy(self, batch, &item->dest) : item->dest;
    if (item->read_external) {
        const redisReply *existing = journal_reply(self->journal, read++);
        if (journal_len(existing)) {
            if (followup) //  made before (a router stopped before clearing the timer)
                intake_followup_unschedule(self, item->followup_of);
            s_submitted_later(self, &dest, journal_u64(existing), true, item->intake_key,
                              item->followup_of);
            return;
        }
    }
    rules_outcome_t out;
    rules_apply(self->rules, t, &out);
    lifecycle_hit_t hits[2 * RULES_HITS_MAX];
    char actions[RULES_HITS_MAX][RULE_ACTION_MAX];
    size_t count = 0;
    for (size_t i = 0; i < out.hit_count; i++)
        hits[count++] = (lifecycle_hit_t){out.hits[i].rule, out.hits[i].action};
    bool record_contact;
    count = s_history_hits(self, &out, read, hits, count, actions, &record_contact);
    if (item->test) {
        s_rules_test_reply(self, &dest, t, &out, hits, count);
        return;
    }
    bool vip = t->customer && t->customer->vip;
    int64_t boost;
    const policy_t *policy = s_policy(self, &out, &boost, vip);
    size_t content_len = s_pack_content(t, &out, &self->scratch2);
    lifecycle_intake_t in = {.content = self->scratch2.data,
                             .content_len = content_len,
                             .external_id = t->external_id,
                             .customer = t->customer ? server_str(t->customer->id) : "",
                             .vip = vip,
                             .channel = t->channel,
                             .subject = t->subject,
                             .level = out.level,
                             .department = server_dept(self, out.department),
                             .priority = out.priority,
                             .policy = policy,
                             .boost_ms = boost,
                             .hits = hits,
                             .hit_count = count,
                             .record_contact = record_contact};
    ticket_t *ticket = lifecycle_intake(self->lifecycle, self->now_ms, &in);
    if (*t->external_id)
        filter_add(self->filter, t->external_id);
    if (followup)
        intake_followup_unschedule(self, item->followup_of);
    s_submitted_later(self, &dest, ticket->id, false, item->intake_key, item->followup_of);
}

void intake_followup_done(server_t *self, uint64_t of)
{
    char key[ID_TEXT_MAX];
    snprintf(key, sizeof(key), "%llu", (unsigned long long) of);
    zhashx_delete(self->followups_busy, key);
}

void intake_followup_unschedule(server_t *self, uint64_t of)
{
    journal_write(self->journal, 3);
    journal_arg_str(self->journal, "ZREM");
    journal_arg_key(self->journal, "followups", NULL);
    journal_arg_u64(self->journal, of);
}

//  The second round trip of an intake: the reads are in.
static void s_item_intake(void *arg, outbox_batch_t *batch, void *payload, const redisReply *r,
                          bool committed)
{
    (void) r;
    server_t *self = arg;
    intake_item_t *item = payload;
    if (!server_current(self, committed, item->epoch)) {
        if (!item->followup_of)
            send_error_dest(self, batch, &item->dest, TIER__V1__ERROR_CODE__ERROR_UNAVAILABLE,
                            server_unavailable(self));
        else
            intake_followup_done(self, item->followup_of);
        s_intake_done(self, item->intake_key, false, 0);
    } else
        s_intake_apply(self, batch, item);
    s_intake_free(self, item);
}

//  First round trip of an intake (or a rules test): the reads it needs.
//  Takes ticket (and request, which owns it, if not NULL). dest is in the
//  filling batch, or NULL for a follow-up.
void intake_ticket(server_t *self, Tier__V1__Ticket *ticket, void *request, bool arena,
                   const dest_t *dest, const uint8_t *env, uint64_t followup_of, bool test)
{
    intake_item_t item = {.epoch = self->epoch,
                          .ticket = ticket,
                          .request = request,
                          .dest = dest ? *dest : (dest_t){0},
                          .followup_of = followup_of,
                          .test = test,
                          .arena = arena,
                          .first = UINT32_MAX};
    if (*ticket->external_id && !test) {
        if (zhashx_lookup(self->intakes, ticket->external_id)) {
            //  The same ticket, sent again while its intake is under way:
            //  it gets the first one's answer.
            if (env)
                s_wait_for_intake(self, ticket->external_id, env, dest->env_len, dest->request_id);
            s_intake_free(self, &item);
            return;
        }
        zhashx_insert(self->intakes, ticket->external_id, NO_WAITERS);
        item.intake_key = outbox_strdup(self->outbox, ticket->external_id);
    }
    rules_outcome_t out;
    rules_apply(self->rules, ticket, &out);
    journal_t *j = self->journal;
    if (*ticket->external_id && !test && filter_maybe(self->filter, ticket->external_id)) {
        item.first = journal_read(j, 2);
        journal_arg_str(j, "GET");
        journal_arg_key(j, "x:", ticket->external_id);
        item.count++;
        item.read_external = true;
    }
    const char *customer = ticket->customer ? server_str(ticket->customer->id) : "";
    for (size_t r = 0; r < out.history_count; r++) {
        const rule_history_t *rule = out.history[r];
        uint32_t read;
        if (*customer && rule->contacts > 0) {
            read = journal_read(j, 4);
            journal_arg_str(j, "ZCOUNT");
            journal_arg_key(j, "cc:", customer);
            journal_arg_i64(j, self->now_ms - rule->window_ms);
            journal_arg_str(j, "+inf");
        } else {
            //  escalated before; without a customer, a read that gives 0
            read = journal_read(j, 2);
            journal_arg_str(j, "EXISTS");
            journal_arg_key(j, "ce:", customer);
        }
        if (item.first == UINT32_MAX)
            item.first = read;
        item.count++;
    }
    if (!item.count) { //  nothing to read: take it in now
        s_intake_apply(self, NULL, &item);
        s_intake_free(self, &item);
        return;
    }
    outbox_add(self->outbox, s_item_intake, &item, sizeof(item), OUTBOX_NO_READ);
}

//  tierctl rules test: the ticket as intake would queue it.
static void s_rules_test_reply(server_t *self, const dest_t *dest, const Tier__V1__Ticket *t,
                               const rules_outcome_t *out, const lifecycle_hit_t *hits,
                               size_t count)
{
    Tier__V1__RuleHit hit_items[2 * RULES_HITS_MAX], *hit_ptrs[2 * RULES_HITS_MAX];
    for (size_t i = 0; i < count; i++) {
        tier__v1__rule_hit__init(&hit_items[i]);
        hit_items[i].rule = (char *) hits[i].rule;
        hit_items[i].action = (char *) hits[i].action;
        hit_ptrs[i] = &hit_items[i];
    }
    Tier__V1__Ticket shown = *t;
    shown.level = (Tier__V1__Level) out->level;
    shown.department = (char *) out->department;
    shown.priority = (Tier__V1__Priority) out->priority;
    shown.n_tags = out->tag_count;
    shown.tags = (char **) out->tags;
    const sla_targets_t *targets = sla_targets(self->config->sla, out->sla_policy, out->priority);
    Tier__V1__RulesTestReply test = TIER__V1__RULES_TEST_REPLY__INIT;
    test.n_hits = count;
    test.hits = hit_ptrs;
    test.ticket = &shown;
    test.sla_policy = (char *) out->sla_policy;
    test.first_response_due_ms = (uint64_t) targets->first_response_ms;
    test.resolution_due_ms = (uint64_t) targets->resolution_ms;
    Tier__V1__ClientReply reply = TIER__V1__CLIENT_REPLY__INIT;
    reply.request_id = dest->request_id;
    reply.body_case = TIER__V1__CLIENT_REPLY__BODY_RULES_TEST;
    reply.rules_test = &test;
    send_reply_later(self, dest, &reply.base);
}
