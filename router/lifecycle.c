/*  lifecycle.c — see lifecycle.h.

    This is store.lua's transitions, moved into the router: the same checks,
    the same history entries and events, the same service-level counts, in
    the same order. Reading order: helpers (steps, events, placing), intake,
    dispatch, worker results, customer and operator requests, agents,
    timers.
*/
#include "lifecycle.h"
#include "clocks.h"
#include "log.h"
#include "sla.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HISTORY_KEEP_MS (90 * 86400000LL) //  customer history for rules
#define ID_TEXT_MAX     24

//  Shorter names for the enums of tier.proto.
#define S_QUEUED     TIER__V1__TICKET_STATE__STATE_QUEUED
#define S_OFFERED    TIER__V1__TICKET_STATE__STATE_OFFERED
#define S_ASSIGNED   TIER__V1__TICKET_STATE__STATE_ASSIGNED
#define S_RESOLVED   TIER__V1__TICKET_STATE__STATE_RESOLVED
#define S_ABANDONED  TIER__V1__TICKET_STATE__STATE_ABANDONED
#define S_DEFERRED   TIER__V1__TICKET_STATE__STATE_DEFERRED
#define S_DEAD       TIER__V1__TICKET_STATE__STATE_DEAD
#define H(kind)      TIER__V1__HISTORY_KIND__HISTORY_##kind
#define E(kind)      TIER__V1__EVENT_KIND__EVENT_##kind
#define A_READY      TIER__V1__AGENT_STATE__AGENT_READY
#define A_AWAY       TIER__V1__AGENT_STATE__AGENT_AWAY
#define A_GONE       TIER__V1__AGENT_STATE__AGENT_GONE
#define LEVEL_MAX    3
#define PRIORITY_MAX 4

struct lifecycle {
    lifecycle_config_t config;
    book_t *book;
    journal_t *journal;
    kpi_t *kpi;
    const config_t *cfg;
    intern_t *intern;
    uint64_t last_id; //  last ticket id handed out
};

lifecycle_t *lifecycle_new(const lifecycle_config_t *config)
{
    lifecycle_t *self = calloc(1, sizeof(lifecycle_t));
    if (!self)
        return NULL;
    self->config = *config;
    self->book = config->book;
    self->journal = config->journal;
    self->kpi = config->kpi;
    self->cfg = config->config;
    self->intern = book_intern(config->book);
    return self;
}

void lifecycle_destroy(lifecycle_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free(*self_p);
    *self_p = NULL;
}

void lifecycle_set_next_id(lifecycle_t *self, uint64_t last_id)
{
    self->last_id = last_id;
}

uint64_t lifecycle_last_id(const lifecycle_t *self)
{
    return self->last_id;
}

//  ---------------------------------------------------------------------------
//  Helpers

static void s_id_text(uint64_t id, char *out)
{
    wire_decimal(id, out);
}

static const char *s_str(const char *s)
{
    return s ? s : "";
}

static bool s_open(int state)
{
    return state == S_QUEUED || state == S_OFFERED || state == S_ASSIGNED || state == S_DEFERRED;
}

//  Overrides of an event's fields; zero/NULL = the ticket's.
typedef struct {
    int level;
    const char *department;
    bool no_department; //  department "" even if the ticket has one
    const char *agent;
    bool no_agent; //  agent "" even if the ticket has one
    int from_level;
    const char *from_department;
    const char *reason;
    uint32_t depth;
    int64_t oldest_ms;
    int state;
    uint32_t attempt;
    uint32_t csat;
    int agent_state;
} ev_t;

static void s_event(lifecycle_t *self, int64_t now_ms, int kind, const ticket_t *t, const ev_t *o)
{
    static const ev_t none = {0};
    if (!o)
        o = &none;
    Tier__V1__Event e = TIER__V1__EVENT__INIT;
    e.at_ms = (uint64_t) now_ms;
    e.kind = (Tier__V1__EventKind) kind;
    e.level = (Tier__V1__Level) (o->level ? o->level : t ? t->level : 0);
    e.department = (char *) (o->department            ? o->department
                             : o->no_department || !t ? ""
                                                      : s_str(t->department));
    e.agent = (char *) (o->agent ? o->agent : o->no_agent || !t ? "" : s_str(t->agent));
    e.from_level = (Tier__V1__Level) o->from_level;
    e.from_department = (char *) s_str(o->from_department);
    e.reason = (char *) s_str(o->reason);
    e.depth = o->depth;
    e.oldest_ms = (uint64_t) o->oldest_ms;
    e.state = (Tier__V1__TicketState) (o->state ? o->state : t ? t->state : 0);
    e.attempt = o->attempt ? o->attempt : t ? t->attempt : 0;
    e.csat = o->csat;
    e.agent_state = (Tier__V1__AgentState) o->agent_state;
    if (t) {
        e.channel = (Tier__V1__Channel) t->channel;
        e.priority = (Tier__V1__Priority) t->priority;
        e.created_ms = (uint64_t) t->created_ms;
        e.queued_ms = (uint64_t) t->queued_ms;
    }
    self->config.event(self->config.arg, &e, t ? t->id : 0);
}

static void s_history(bytes_t *step, int64_t now_ms, int kind, const char *actor, const char *text,
                      const char *reason, bool automatic)
{
    history_t h = {.at_ms = now_ms,
                   .kind = kind,
                   .actor = actor,
                   .text = text,
                   .reason = reason,
                   .automatic = automatic};
    step_history(step, &h);
}

static void s_schedule(lifecycle_t *self, ticket_t *t)
{
    book_timer(self->book, t, clocks_next(t));
}

//  Put the ticket where its state says and arm its next timer. A queued
//  ticket gets its score: the order of its clocks (or `score` if forced).
static void s_place(lifecycle_t *self, ticket_t *t, int64_t now_ms, bool force, int64_t score)
{
    (void) now_ms;
    if (t->state == S_QUEUED) {
        int64_t want = force ? score : clocks_order(t);
        if (want != t->score || force) {
            bytes_t *step = book_step(self->book, t);
            wire_u64(step, TK_SCORE, (uint64_t) want);
            book_step_end(self->book, t);
        }
    }
    book_place(self->book, t);
    s_schedule(self, t);
}

static kpi_where_t s_where(const ticket_t *t)
{
    return (kpi_where_t){t->channel, t->level, t->department, t->agent};
}

static void s_count(lifecycle_t *self, int64_t now_ms, const ticket_t *t, kpi_counter_t c,
                    int64_t n)
{
    kpi_where_t where = s_where(t);
    kpi_add(self->kpi, now_ms, &where, c, n);
}

static bool s_bot(lifecycle_t *self, const char *agent)
{
    holder_t *h = book_holder(self->book, agent);
    return h && h->bot;
}

static void s_write_agent_field(lifecycle_t *self, const char *agent, const char *field,
                                uint64_t value)
{
    journal_write(self->journal, 4);
    journal_arg_str(self->journal, "HSET");
    journal_arg_key(self->journal, "a:", agent);
    journal_arg_str(self->journal, field);
    journal_arg_u64(self->journal, value);
}

//  ---------------------------------------------------------------------------
//  Intake

static void s_record_contact(lifecycle_t *self, int64_t now_ms, const char *customer, uint64_t id)
{
    journal_write(self->journal, 4);
    journal_arg_str(self->journal, "ZADD");
    journal_arg_key(self->journal, "cc:", customer);
    journal_arg_i64(self->journal, now_ms);
    journal_arg_u64(self->journal, id);
    journal_write(self->journal, 4);
    journal_arg_str(self->journal, "ZREMRANGEBYSCORE");
    journal_arg_key(self->journal, "cc:", customer);
    journal_arg_str(self->journal, "-inf");
    journal_arg_i64(self->journal, now_ms - HISTORY_KEEP_MS);
    journal_write(self->journal, 3);
    journal_arg_str(self->journal, "PEXPIRE");
    journal_arg_key(self->journal, "cc:", customer);
    journal_arg_i64(self->journal, HISTORY_KEEP_MS);
}

ticket_t *lifecycle_intake(lifecycle_t *self, int64_t now_ms, const lifecycle_intake_t *in)
{
    ticket_t *t = ticket_new(++self->last_id);
    if (!t) {
        log_error("out of memory taking a ticket in");
        abort();
    }
    char id[ID_TEXT_MAX];
    s_id_text(t->id, id);
    const policy_t *p = in->policy;
    bytes_t *step = book_step(self->book, t);
    wire_str(step, TK_ID, id);
    bytes_put(step, in->content, in->content_len);
    wire_u64(step, TK_PRIORITY, (uint64_t) in->priority);
    wire_u64(step, TK_LEVEL, (uint64_t) in->level);
    wire_str(step, TK_DEPARTMENT, in->department);
    wire_u64(step, TK_STATE, S_QUEUED);
    wire_u64(step, TK_CREATED, (uint64_t) now_ms);
    wire_u64(step, TK_UPDATED, (uint64_t) now_ms);
    wire_u64(step, TK_QUEUED, (uint64_t) now_ms);
    step_policy(step, p);
    wire_u64(step, TK_BOOST, (uint64_t) in->boost_ms);
    wire_u64(step, TK_VIP, in->vip);
    wire_u64(step, TK_FIRST_DUE,
             p->first_response_ms > 0
                 ? (uint64_t) clocks_business_add(p->business, now_ms, p->first_response_ms)
                 : 0);
    wire_u64(step, TK_RESOLUTION_DUE,
             p->resolution_ms > 0
                 ? (uint64_t) clocks_business_add(p->business, now_ms, p->resolution_ms)
                 : 0);
    wire_u64(step, TK_RESOLUTION_START, (uint64_t) now_ms);
    wire_u64(step, TK_WAITING_SINCE, (uint64_t) now_ms);
    s_history(step, now_ms, H(CREATED), "customer", in->subject, NULL, false);
    for (size_t i = 0; i < in->hit_count; i++)
        s_history(step, now_ms, H(RULE), in->hits[i].rule, in->hits[i].action, NULL, true);
    book_add(self->book, t);
    book_created(self->book, t);
    book_step_end(self->book, t);
    s_event(self, now_ms, E(CREATED), t, NULL);
    for (size_t i = 0; i < in->hit_count; i++) {
        char reason[LIFECYCLE_REASON_MAX];
        snprintf(reason, sizeof(reason), "%s: %s", in->hits[i].rule, in->hits[i].action);
        s_event(self, now_ms, E(RULE), t, &(ev_t){.reason = reason});
    }
    if (in->record_contact && *in->customer)
        s_record_contact(self, now_ms, in->customer, t->id);
    if (*in->external_id) {
        journal_set(self->journal);
        journal_arg_key(self->journal, "x:", in->external_id);
        journal_arg_str(self->journal, id);
    }
    s_place(self, t, now_ms, false, 0);
    s_event(self, now_ms, E(QUEUED), t, NULL);
    s_count(self, now_ms, t, KPI_CREATED, 1);
    return t;
}

//  ---------------------------------------------------------------------------
//  Dispatch

static void s_dead_letter(lifecycle_t *self, int64_t now_ms, ticket_t *t, const char *reason,
                          uint32_t attempt)
{
    bytes_t *step = book_step(self->book, t);
    wire_u64(step, TK_STATE, S_DEAD);
    wire_str(step, TK_AGENT, "");
    wire_u64(step, TK_UPDATED, (uint64_t) now_ms);
    s_history(step, now_ms, H(DEAD_LETTERED), "router", NULL, reason, false);
    book_step_end(self->book, t);
    s_place(self, t, now_ms, false, 0);
    char id[ID_TEXT_MAX];
    s_id_text(t->id, id);
    journal_write(self->journal, 4);
    journal_arg_str(self->journal, "ZADD");
    journal_arg_key(self->journal, "dead", NULL);
    journal_arg_i64(self->journal, now_ms);
    journal_arg_str(self->journal, id);
    s_event(self, now_ms, E(DEAD), t, &(ev_t){.reason = reason, .attempt = attempt});
}

//  Offer (store.lua offer()): the next attempt, to `agent`.
static void s_offer(lifecycle_t *self, int64_t now_ms, ticket_t *t, const char *agent,
                    uint32_t attempt)
{
    char reason[32] = "attempt ";
    wire_decimal(attempt, reason + 8);
    bytes_t *step = book_step(self->book, t);
    wire_u64(step, TK_STATE, S_OFFERED);
    wire_str(step, TK_AGENT, agent);
    wire_u64(step, TK_ATTEMPT, attempt);
    wire_str(step, TK_APPLIED, "");
    wire_u64(step, TK_UPDATED, (uint64_t) now_ms);
    s_history(step, now_ms, H(OFFERED), agent, NULL, reason, false);
    book_step_end(self->book, t);
    t->offer_deadline_ms = now_ms + self->cfg->offer_timeout_ms;
    s_place(self, t, now_ms, false, 0);
    s_event(self, now_ms, E(OFFERED), t, NULL);
}

int lifecycle_offer(lifecycle_t *self, int64_t now_ms, ticket_t *t, const char *agent)
{
    uint32_t attempt = t->attempt + 1;
    if ((int) attempt > self->cfg->max_attempts) {
        char reason[96];
        snprintf(reason, sizeof(reason), "delivered %d times without a result",
                 self->cfg->max_attempts);
        s_dead_letter(self, now_ms, t, reason, attempt);
        return 0;
    }
    s_offer(self, now_ms, t, intern_name(self->intern, agent, strlen(agent)), attempt);
    return 1;
}

//  ---------------------------------------------------------------------------
//  Worker results

//  A result must come from the agent holding this very attempt.
static int s_holder_check(const ticket_t *t, const lifecycle_result_t *r, lifecycle_outcome_t *out)
{
    if (!t) {
        snprintf(out->reason, sizeof(out->reason), "no such ticket");
        return out->code = TIER__V1__ERROR_CODE__ERROR_UNKNOWN_TICKET;
    }
    if (!t->agent || strcmp(t->agent, r->agent) != 0 || t->attempt != r->attempt) {
        snprintf(out->reason, sizeof(out->reason), "ticket %llu attempt %u is not held by %.64s",
                 (unsigned long long) t->id, r->attempt, r->agent);
        return out->code = TIER__V1__ERROR_CODE__ERROR_STALE;
    }
    if (t->state != S_OFFERED && t->state != S_ASSIGNED) {
        snprintf(out->reason, sizeof(out->reason), "ticket %llu is no longer open",
                 (unsigned long long) t->id);
        return out->code = TIER__V1__ERROR_CODE__ERROR_STALE;
    }
    return 0;
}

//  "agent:attempt:request_id," of a result; false if it does not fit.
static bool s_applied_entry(const lifecycle_result_t *r, char *out, size_t size)
{
    size_t len = strlen(r->agent);
    if (len + 2 * 21 + 4 > size)
        return false;
    memcpy(out, r->agent, len);
    out[len++] = ':';
    len += wire_decimal(r->attempt, out + len);
    out[len++] = ':';
    len += wire_decimal(r->request_id, out + len);
    out[len++] = ',';
    out[len] = 0;
    return true;
}

//  A resent result (same agent, attempt and request id) is answered, not
//  redone: every result applied for the current attempt is remembered,
//  because a worker that lost replies resends all of its pending results.
static bool s_duplicate(const ticket_t *t, const lifecycle_result_t *r)
{
    if (!t || !t->applied)
        return false;
    char entry[LIFECYCLE_REASON_MAX];
    entry[0] = ',';
    return s_applied_entry(r, entry + 1, sizeof(entry) - 1) && strstr(t->applied, entry) != NULL;
}

//  The step of a valid result starts by remembering it.
static bytes_t *s_applying(lifecycle_t *self, int64_t now_ms, ticket_t *t,
                           const lifecycle_result_t *r)
{
    char entry[LIFECYCLE_REASON_MAX];
    if (!s_applied_entry(r, entry, sizeof(entry)))
        entry[0] = 0; //  an agent id this long is refused at registration
    const char *before = t->applied && *t->applied ? t->applied : ",";
    size_t lb = strlen(before), le = strlen(entry);
    bytes_t *step = book_step(self->book, t);
    wire_tag(step, TK_APPLIED, WIRE_LEN);
    wire_varint(step, lb + le);
    bytes_put(step, before, lb);
    bytes_put(step, entry, le);
    wire_u64(step, TK_UPDATED, (uint64_t) now_ms);
    return step;
}

//  An offer accepted (explicitly, or by the first result): into the step.
static bool s_accept(lifecycle_t *self, int64_t now_ms, ticket_t *t, bytes_t *step)
{
    if (t->state != S_OFFERED)
        return false;
    wire_u64(step, TK_STATE, S_ASSIGNED);
    s_history(step, now_ms, H(ASSIGNED), t->agent, NULL, NULL, false);
    if (!s_bot(self, t->agent))
        wire_u64(step, TK_PERSON, 1);
    lifecycle_misses_clear(self, t->agent);
    return true;
}

static void s_accepted(lifecycle_t *self, int64_t now_ms, ticket_t *t)
{
    s_event(self, now_ms, E(ASSIGNED), t, NULL);
    s_count(self, now_ms, t, KPI_HANDLED, 1);
}

static void s_respond(lifecycle_t *self, int64_t now_ms, ticket_t *t, const lifecycle_result_t *r)
{
    bytes_t *step = s_applying(self, now_ms, t, r);
    bool accepted = s_accept(self, now_ms, t, step);
    bool first = t->first_response_ms == 0;
    if (first)
        wire_u64(step, TK_FIRST_RESPONSE, (uint64_t) now_ms);
    if (r->awaiting_customer && t->paused_ms == 0)
        wire_u64(step, TK_PAUSED, (uint64_t) now_ms);
    wire_u64(step, TK_RESPONSES, t->responses + 1);
    int64_t since = t->waiting_since_ms;
    wire_u64(step, TK_WAITING_SINCE, 0);
    s_history(step, now_ms, H(AGENT_RESPONSE), t->agent, r->text, NULL, false);
    int64_t created = t->created_ms, first_due = t->first_due_ms;
    book_step_end(self->book, t);
    s_place(self, t, now_ms, false, 0);
    if (accepted)
        s_accepted(self, now_ms, t);
    if (first) {
        s_count(self, now_ms, t, KPI_RESPONDED, 1);
        s_count(self, now_ms, t, KPI_FRT_SUM, now_ms - created);
        if (first_due > 0)
            s_count(self, now_ms, t, now_ms <= first_due ? KPI_SLA_MET : KPI_SLA_MISSED, 1);
    }
    if (since > 0) {
        s_count(self, now_ms, t, KPI_RESP_N, 1);
        s_count(self, now_ms, t, KPI_RESP_SUM, now_ms - since);
    }
    s_event(self, now_ms, E(RESPONDED), t, NULL);
}

static void s_followup_timer(lifecycle_t *self, int64_t now_ms, const ticket_t *t)
{
    int64_t after =
        t->level >= 1 && t->level <= CONFIG_LEVELS ? self->cfg->followup_ms[t->level] : 0;
    if (after <= 0 || t->followup)
        return;
    journal_write(self->journal, 4);
    journal_arg_str(self->journal, "ZADD");
    journal_arg_key(self->journal, "followups", NULL);
    journal_arg_i64(self->journal, now_ms + after);
    journal_arg_u64(self->journal, t->id);
}

static void s_resolve(lifecycle_t *self, int64_t now_ms, ticket_t *t, const lifecycle_result_t *r)
{
    bytes_t *step = s_applying(self, now_ms, t, r);
    bool accepted = s_accept(self, now_ms, t, step);
    wire_u64(step, TK_STATE, S_RESOLVED);
    wire_u64(step, TK_RESOLVED, (uint64_t) now_ms);
    s_history(step, now_ms, H(RESOLVED), t->agent, r->text, NULL, false);
    book_step_end(self->book, t);
    s_followup_timer(self, now_ms, t);
    s_place(self, t, now_ms, false, 0);
    if (accepted)
        s_accepted(self, now_ms, t);
    s_event(self, now_ms, E(RESOLVED), t, NULL);
    int64_t took = now_ms - t->created_ms;
    s_count(self, now_ms, t, KPI_RESOLVED, 1);
    s_count(self, now_ms, t, KPI_RES_SUM, took);
    s_count(self, now_ms, t, kpi_resolution_bucket(took), 1);
    if (t->responses == 1)
        s_count(self, now_ms, t, KPI_ONE_TOUCH, 1);
    if (!t->person && s_bot(self, t->agent))
        s_count(self, now_ms, t, KPI_SELF_SERVICE, 1);
}

//  Give a held ticket back to its queue (agent lost, offer expired,
//  release): one step, placed, with its events.
static void s_requeue(lifecycle_t *self, int64_t now_ms, ticket_t *t, bytes_t *step, int hkind,
                      int ekind, const char *actor, const char *reason)
{
    const char *was = t->agent;
    if (!step)
        step = book_step(self->book, t);
    wire_u64(step, TK_STATE, S_QUEUED);
    wire_str(step, TK_AGENT, "");
    wire_u64(step, TK_QUEUED, (uint64_t) now_ms);
    wire_u64(step, TK_UPDATED, (uint64_t) now_ms);
    wire_u64(step, TK_STAGE_WAIT, 0);
    s_history(step, now_ms, hkind, actor, NULL, reason, false);
    book_step_end(self->book, t);
    s_place(self, t, now_ms, false, 0);
    s_event(self, now_ms, ekind, t, &(ev_t){.agent = s_str(was), .reason = reason});
    s_event(self, now_ms, E(QUEUED), t, NULL);
}

//  Where an escalation goes: to_level 0 and no department = the next level.
static int s_escalation_target(const ticket_t *t, int to_level, const char *to_dept, int *level_p,
                               int *kind_p, lifecycle_outcome_t *out)
{
    if (to_level == 0) {
        to_level = t->level;
        if (!to_dept)
            to_level = t->level + 1;
    }
    if (to_level > LEVEL_MAX) {
        snprintf(out->reason, sizeof(out->reason),
                 "ticket %llu is at L%d and there is no level above it", (unsigned long long) t->id,
                 t->level);
        return out->code = TIER__V1__ERROR_CODE__ERROR_UNKNOWN_LEVEL;
    }
    if (to_level == t->level && to_dept == t->department) {
        snprintf(out->reason, sizeof(out->reason), "ticket %llu is already at L%d%s%s",
                 (unsigned long long) t->id, t->level, t->department ? " " : "",
                 s_str(t->department));
        return out->code = TIER__V1__ERROR_CODE__ERROR_BAD_REQUEST;
    }
    *level_p = to_level;
    *kind_p = to_level != t->level ? TIER__V1__ESCALATION_KIND__ESCALATION_HIERARCHICAL
                                   : TIER__V1__ESCALATION_KIND__ESCALATION_FUNCTIONAL;
    return 0;
}

//  Move a ticket to another queue, by an agent or automatically (actor is
//  then the rule or "sla"). `step` is the step begun by the caller, or NULL.
static void s_escalate(lifecycle_t *self, int64_t now_ms, ticket_t *t, bytes_t *step, int to_level,
                       const char *to_dept, int kind, const char *actor, const char *reason,
                       const char *notes, bool automatic)
{
    int from_level = t->level;
    const char *from_dept = t->department, *agent = t->agent;
    if (!step)
        step = book_step(self->book, t);
    wire_u64(step, TK_STATE, S_QUEUED);
    wire_str(step, TK_AGENT, "");
    wire_u64(step, TK_LEVEL, (uint64_t) to_level);
    wire_str(step, TK_DEPARTMENT, to_dept);
    wire_u64(step, TK_QUEUED, (uint64_t) now_ms);
    wire_u64(step, TK_UPDATED, (uint64_t) now_ms);
    wire_u64(step, TK_STAGE_WAIT, 0);
    wire_u64(step, TK_ESCALATIONS, t->escalations + 1);
    history_t h = {.at_ms = now_ms,
                   .kind = H(ESCALATED),
                   .actor = actor,
                   .reason = reason,
                   .from_level = from_level,
                   .to_level = to_level,
                   .from_dept = from_dept,
                   .to_dept = to_dept,
                   .escalation = kind,
                   .automatic = automatic};
    step_history(step, &h);
    if (notes && *notes)
        s_history(step, now_ms, H(NOTE), actor, notes, NULL, false);
    book_step_end(self->book, t);
    if (t->customer) {
        journal_write(self->journal, 5);
        journal_arg_str(self->journal, "SET");
        journal_arg_key(self->journal, "ce:", t->customer);
        journal_arg_str(self->journal, "1");
        journal_arg_str(self->journal, "PX");
        journal_arg_i64(self->journal, HISTORY_KEEP_MS);
    }
    s_place(self, t, now_ms, false, 0);
    s_event(self, now_ms, E(ESCALATED), t,
            &(ev_t){.agent = s_str(agent),
                    .from_level = from_level,
                    .from_department = s_str(from_dept),
                    .reason = reason});
    kpi_where_t where = {t->channel, from_level, from_dept, agent};
    kpi_add(self->kpi, now_ms, &where, KPI_ESCALATED, 1);
    kpi_add(self->kpi, now_ms, &where,
            kind == TIER__V1__ESCALATION_KIND__ESCALATION_HIERARCHICAL ? KPI_ESC_H : KPI_ESC_F, 1);
    s_event(self, now_ms, E(QUEUED), t, NULL);
}

static void s_defer(lifecycle_t *self, int64_t now_ms, ticket_t *t, const lifecycle_result_t *r)
{
    bytes_t *step = s_applying(self, now_ms, t, r);
    bool accepted = s_accept(self, now_ms, t, step);
    const char *agent = t->agent;
    char until[ID_TEXT_MAX];
    snprintf(until, sizeof(until), "%llu", (unsigned long long) r->until_ms);
    wire_u64(step, TK_STATE, S_DEFERRED);
    wire_str(step, TK_AGENT, "");
    wire_str(step, TK_PROMISED_AGENT, agent);
    wire_u64(step, TK_PROMISE, r->until_ms);
    s_history(step, now_ms, H(DEFERRED), agent, until, r->reason, false);
    book_step_end(self->book, t);
    s_place(self, t, now_ms, false, 0);
    if (accepted)
        s_accepted(self, now_ms, t);
    s_event(self, now_ms, E(DEFERRED), t, &(ev_t){.agent = s_str(agent), .reason = r->reason});
}

void lifecycle_result(lifecycle_t *self, int64_t now_ms, ticket_t *t, const lifecycle_result_t *r,
                      lifecycle_outcome_t *out)
{
    memset(out, 0, sizeof(*out));
    if (s_duplicate(t, r)) {
        out->duplicate = true;
        out->state = t->state;
        return;
    }
    if (s_holder_check(t, r, out))
        return;
    switch (r->kind) {
    case RESULT_ACCEPT: {
        bytes_t *step = s_applying(self, now_ms, t, r);
        bool accepted = s_accept(self, now_ms, t, step);
        book_step_end(self->book, t);
        s_place(self, t, now_ms, false, 0);
        if (accepted)
            s_accepted(self, now_ms, t);
        break;
    }
    case RESULT_RESPOND:
        s_respond(self, now_ms, t, r);
        break;
    case RESULT_RESOLVE:
        s_resolve(self, now_ms, t, r);
        break;
    case RESULT_ESCALATE: {
        int level, kind;
        if (s_escalation_target(t, r->to_level, r->to_department, &level, &kind, out))
            return;
        bytes_t *step = s_applying(self, now_ms, t, r);
        s_escalate(self, now_ms, t, step, level, r->to_department, kind, t->agent, r->reason,
                   r->notes, false);
        break;
    }
    case RESULT_RELEASE: {
        bytes_t *step = s_applying(self, now_ms, t, r);
        s_requeue(self, now_ms, t, step, H(RELEASED), E(RELEASED), t->agent, r->reason);
        break;
    }
    case RESULT_DEFER:
        s_defer(self, now_ms, t, r);
        break;
    }
    out->state = t->state;
}

//  ---------------------------------------------------------------------------
//  Customer and operator requests

static int s_open_ticket(const ticket_t *t, lifecycle_outcome_t *out)
{
    if (!t) {
        snprintf(out->reason, sizeof(out->reason), "no such ticket");
        return out->code = TIER__V1__ERROR_CODE__ERROR_UNKNOWN_TICKET;
    }
    if (!s_open(t->state)) {
        snprintf(out->reason, sizeof(out->reason), "ticket %llu is closed",
                 (unsigned long long) t->id);
        return out->code = TIER__V1__ERROR_CODE__ERROR_INVALID_STATE;
    }
    return 0;
}

void lifecycle_cancel(lifecycle_t *self, int64_t now_ms, ticket_t *t, const char *reason,
                      lifecycle_outcome_t *out, const char **revoke_agent_p,
                      uint32_t *revoke_attempt_p)
{
    memset(out, 0, sizeof(*out));
    *revoke_agent_p = NULL;
    if (s_open_ticket(t, out))
        return;
    bool held = t->state == S_OFFERED || t->state == S_ASSIGNED;
    const char *agent = held ? t->agent : NULL;
    *revoke_agent_p = agent;
    *revoke_attempt_p = t->attempt;
    bytes_t *step = book_step(self->book, t);
    wire_u64(step, TK_STATE, S_ABANDONED);
    wire_str(step, TK_AGENT, "");
    wire_u64(step, TK_RESOLVED, (uint64_t) now_ms);
    wire_u64(step, TK_UPDATED, (uint64_t) now_ms);
    wire_u64(step, TK_PROMISE_CHECK, 0);
    s_history(step, now_ms, H(ABANDONED), "customer", NULL, reason, false);
    book_step_end(self->book, t);
    s_place(self, t, now_ms, false, 0);
    s_event(self, now_ms, E(ABANDONED), t, &(ev_t){.agent = s_str(agent), .reason = reason});
    kpi_where_t where = s_where(t);
    where.agent = agent;
    kpi_add(self->kpi, now_ms, &where, KPI_ABANDONED, 1);
    out->state = t->state;
}

void lifecycle_message(lifecycle_t *self, int64_t now_ms, ticket_t *t, const char *text,
                       lifecycle_outcome_t *out)
{
    memset(out, 0, sizeof(*out));
    if (s_open_ticket(t, out))
        return;
    bytes_t *step = book_step(self->book, t);
    wire_u64(step, TK_UPDATED, (uint64_t) now_ms);
    if (t->paused_ms > 0) {
        //  The customer answered: the resolution clock runs again, its due
        //  time moved by the time spent waiting on the customer.
        int64_t start = (t->resolution_start_ms > 0 ? t->resolution_start_ms : t->created_ms) +
                        now_ms - t->paused_ms;
        wire_u64(step, TK_RESOLUTION_START, (uint64_t) start);
        if (t->policy && t->policy->resolution_ms > 0)
            wire_u64(step, TK_RESOLUTION_DUE,
                     (uint64_t) clocks_business_add(t->policy->business, start,
                                                    t->policy->resolution_ms));
        wire_u64(step, TK_PAUSED, 0);
    }
    if (t->waiting_since_ms == 0)
        wire_u64(step, TK_WAITING_SINCE, (uint64_t) now_ms);
    s_history(step, now_ms, H(CUSTOMER_MESSAGE), "customer", text, NULL, false);
    book_step_end(self->book, t);
    s_place(self, t, now_ms, false, 0);
    s_event(self, now_ms, E(MESSAGE), t, NULL);
    out->state = t->state;
}

void lifecycle_rate(lifecycle_t *self, int64_t now_ms, ticket_t *t, uint32_t csat,
                    const char *comment, lifecycle_outcome_t *out)
{
    memset(out, 0, sizeof(*out));
    if (!t) {
        snprintf(out->reason, sizeof(out->reason), "no such ticket");
        out->code = TIER__V1__ERROR_CODE__ERROR_UNKNOWN_TICKET;
        return;
    }
    if (t->state != S_RESOLVED) {
        snprintf(out->reason, sizeof(out->reason), "ticket %llu is not resolved; rate it after",
                 (unsigned long long) t->id);
        out->code = TIER__V1__ERROR_CODE__ERROR_INVALID_STATE;
        return;
    }
    bool first = !t->rated;
    char text[8];
    snprintf(text, sizeof(text), "%u", csat);
    bytes_t *step = book_step(self->book, t);
    wire_u64(step, TK_CSAT, csat);
    wire_u64(step, TK_UPDATED, (uint64_t) now_ms);
    wire_u64(step, TK_RATED, 1);
    s_history(step, now_ms, H(RATED), "customer", text, comment, false);
    book_step_end(self->book, t);
    s_place(self, t, now_ms, false, 0);
    s_event(self, now_ms, E(RATED), t, &(ev_t){.csat = csat});
    //  Only a ticket's first rating counts: a resent or changed rating would
    //  otherwise count twice, in buckets that may be gone by then.
    if (first) {
        s_count(self, now_ms, t, KPI_RATINGS, 1);
        s_count(self, now_ms, t, KPI_RATING_SUM, csat);
        if (csat >= 4)
            s_count(self, now_ms, t, KPI_RATINGS_4_5, 1);
    }
    out->state = t->state;
}

void lifecycle_requeue(lifecycle_t *self, int64_t now_ms, ticket_t *t, int level,
                       const char *department, const char *reason, lifecycle_outcome_t *out)
{
    memset(out, 0, sizeof(*out));
    if (!t) {
        snprintf(out->reason, sizeof(out->reason), "no such ticket");
        out->code = TIER__V1__ERROR_CODE__ERROR_UNKNOWN_TICKET;
        return;
    }
    if (t->state != S_DEAD) {
        snprintf(out->reason, sizeof(out->reason), "ticket %llu is not a dead letter",
                 (unsigned long long) t->id);
        out->code = TIER__V1__ERROR_CODE__ERROR_INVALID_STATE;
        return;
    }
    bytes_t *step = book_step(self->book, t);
    wire_u64(step, TK_STATE, S_QUEUED);
    wire_str(step, TK_AGENT, "");
    wire_u64(step, TK_ATTEMPT, 0);
    if (level) {
        wire_u64(step, TK_LEVEL, (uint64_t) level);
        wire_str(step, TK_DEPARTMENT, department);
    }
    wire_u64(step, TK_QUEUED, (uint64_t) now_ms);
    wire_u64(step, TK_UPDATED, (uint64_t) now_ms);
    wire_u64(step, TK_STAGE_WAIT, 0);
    s_history(step, now_ms, H(REQUEUED), "operator", NULL, reason, false);
    book_step_end(self->book, t);
    char id[ID_TEXT_MAX];
    s_id_text(t->id, id);
    journal_write(self->journal, 3);
    journal_arg_str(self->journal, "ZREM");
    journal_arg_key(self->journal, "dead", NULL);
    journal_arg_str(self->journal, id);
    s_place(self, t, now_ms, false, 0);
    s_event(self, now_ms, E(REQUEUED), t, &(ev_t){.reason = reason});
    s_event(self, now_ms, E(QUEUED), t, NULL);
    out->state = t->state;
}

//  ---------------------------------------------------------------------------
//  Agents

uint32_t lifecycle_register(lifecycle_t *self, int64_t now_ms, const lifecycle_register_t *reg,
                            Tier__V1__Held *stale_out, size_t stale_max, size_t *stale_count_p)
{
    const char *agent = intern_name(self->intern, reg->agent, strlen(reg->agent));
    uint32_t kept = 0;
    size_t stale = 0;
    bool *matched = calloc(reg->held_count + 1, sizeof(bool));
    //  What it holds, as the router knows it: keep what it declares, take
    //  back the rest.
    ticket_t *t = book_held_first(self->book, agent);
    while (t) {
        ticket_t *next = book_held_next(self->book);
        char id[ID_TEXT_MAX];
        s_id_text(t->id, id);
        bool declared = false;
        for (size_t i = 0; i < reg->held_count; i++)
            if (!matched[i] && strcmp(reg->held[i]->ticket_id, id) == 0 &&
                reg->held[i]->attempt == t->attempt) {
                matched[i] = declared = true;
                break;
            }
        if (declared)
            kept++;
        else {
            char reason[160];
            snprintf(reason, sizeof(reason), "agent %.100s registered again without it", agent);
            s_requeue(self, now_ms, t, NULL, H(REQUEUED), E(REQUEUED), "router", reason);
        }
        t = next;
    }
    for (size_t i = 0; i < reg->held_count && stale < stale_max; i++)
        if (!matched[i]) {
            tier__v1__held__init(&stale_out[stale]);
            stale_out[stale].ticket_id = reg->held[i]->ticket_id;
            stale_out[stale].attempt = reg->held[i]->attempt;
            stale++;
        }
    free(matched);
    *stale_count_p = stale;
    holder_t *h = book_holder_get(self->book, agent);
    h->bot = reg->bot;
    h->misses = 0;
    h->lease_until_ms = 0;
    journal_write(self->journal, 18);
    journal_arg_str(self->journal, "HSET");
    journal_arg_key(self->journal, "a:", agent);
    journal_arg_str(self->journal, "level");
    journal_arg_u64(self->journal, (uint64_t) reg->level);
    journal_arg_str(self->journal, "depts");
    journal_arg_str(self->journal, reg->departments);
    journal_arg_str(self->journal, "cap");
    journal_arg_u64(self->journal, reg->capacity);
    journal_arg_str(self->journal, "bot");
    journal_arg_u64(self->journal, reg->bot);
    journal_arg_str(self->journal, "state");
    journal_arg_u64(self->journal, A_READY);
    journal_arg_str(self->journal, "seen");
    journal_arg_i64(self->journal, now_ms);
    journal_arg_str(self->journal, "misses");
    journal_arg_str(self->journal, "0");
    journal_arg_str(self->journal, "ccap");
    journal_arg_str(self->journal, reg->channel_limits);
    lifecycle_renew(self, now_ms, &agent, 1);
    s_event(self, now_ms, E(AGENT), NULL,
            &(ev_t){.agent = agent, .level = reg->level, .agent_state = A_READY});
    return kept;
}

void lifecycle_agent_gone(lifecycle_t *self, int64_t now_ms, const char *agent, const char *reason)
{
    agent = intern_name(self->intern, agent, strlen(agent));
    ticket_t *t = book_held_first(self->book, agent);
    while (t) {
        ticket_t *next = book_held_next(self->book);
        s_requeue(self, now_ms, t, NULL, H(REQUEUED), E(REQUEUED), "router", reason);
        t = next;
    }
    book_holder_forget(self->book, agent);
    journal_write(self->journal, 3);
    journal_arg_str(self->journal, "DEL");
    journal_arg_key(self->journal, "a:", agent);
    journal_arg_key(self->journal, "w:", agent);
    journal_write(self->journal, 3);
    journal_arg_str(self->journal, "ZREM");
    journal_arg_key(self->journal, "agents", NULL);
    journal_arg_str(self->journal, agent);
    s_event(self, now_ms, E(AGENT), NULL,
            &(ev_t){.agent = agent, .agent_state = A_GONE, .reason = reason});
}

void lifecycle_agent_state(lifecycle_t *self, int64_t now_ms, const char *agent, int state,
                           const char *reason)
{
    s_write_agent_field(self, agent, "state", (uint64_t) state);
    s_event(self, now_ms, E(AGENT), NULL,
            &(ev_t){.agent = agent, .agent_state = state, .reason = reason});
}

void lifecycle_renew(lifecycle_t *self, int64_t now_ms, const char *const *agents, size_t count)
{
    if (!count)
        return;
    journal_write(self->journal, 2 + 2 * (int) count);
    journal_arg_str(self->journal, "ZADD");
    journal_arg_key(self->journal, "agents", NULL);
    for (size_t i = 0; i < count; i++) {
        journal_arg_i64(self->journal, now_ms);
        journal_arg_str(self->journal, agents[i]);
    }
}

void lifecycle_misses_clear(lifecycle_t *self, const char *agent)
{
    holder_t *h = book_holder(self->book, agent);
    if (!h || !h->misses)
        return;
    h->misses = 0;
    s_write_agent_field(self, agent, "misses", 0);
}

//  ---------------------------------------------------------------------------
//  Timers

static const char *s_clock_names[CLOCKS] = {"first response", "resolution", "wait at this level"};
static const int s_stage_fields[CLOCKS] = {TK_STAGE_FIRST, TK_STAGE_RESOLUTION, TK_STAGE_WAIT};
static const char *s_priority_names[] = {"", "low", "normal", "high", "urgent"};

static void s_offer_expired(lifecycle_t *self, int64_t now_ms, ticket_t *t, lifecycle_fired_t *out)
{
    const char *agent = t->agent;
    uint32_t attempt = t->attempt;
    char reason[160];
    snprintf(reason, sizeof(reason), "offer to %.100s timed out", s_str(agent));
    s_requeue(self, now_ms, t, NULL, H(REQUEUED), E(REQUEUED), "router", reason);
    out->revoke_agent = agent;
    out->revoke_attempt = attempt;
    holder_t *h = agent ? book_holder_get(self->book, agent) : NULL;
    if (!h)
        return;
    h->misses++;
    s_write_agent_field(self, agent, "misses", h->misses);
    int max = self->cfg->max_offer_misses;
    if (max > 0 && (int) h->misses >= max) {
        char why[64];
        snprintf(why, sizeof(why), "%u offers in a row timed out", h->misses);
        lifecycle_agent_state(self, now_ms, agent, A_AWAY, why);
        out->away_agent = agent;
    }
}

//  On a breach while the ticket still waits in a queue: the policy's action.
static void s_sla_act(lifecycle_t *self, int64_t now_ms, ticket_t *t, const char *reason)
{
    int action = t->policy ? t->policy->action : SLA_NOTIFY;
    if (t->state != S_QUEUED || action == SLA_NOTIFY)
        return;
    if (action == SLA_ESCALATE && t->level < LEVEL_MAX) {
        s_escalate(self, now_ms, t, NULL, t->level + 1, t->department,
                   TIER__V1__ESCALATION_KIND__ESCALATION_HIERARCHICAL, "sla", reason, NULL, true);
        return;
    }
    if (t->priority >= PRIORITY_MAX)
        return;
    int old = t->priority, prio = t->priority + 1;
    char text[48];
    snprintf(text, sizeof(text), "priority raised to %s", s_priority_names[prio]);
    bytes_t *step = book_step(self->book, t);
    wire_u64(step, TK_PRIORITY, (uint64_t) prio);
    wire_u64(step, TK_BOOST,
             (uint64_t) (t->boost_ms - clocks_priority_boost(t->policy, old) +
                         clocks_priority_boost(t->policy, prio)));
    s_history(step, now_ms, H(SLA), "sla", text, reason, true);
    book_step_end(self->book, t);
    s_place(self, t, now_ms, false, 0);
}

static void s_sla_fire(lifecycle_t *self, int64_t now_ms, ticket_t *t, int kind)
{
    sla_clock_t c;
    if (t->stage[kind] >= 2 || !clocks_get(t, kind, &c))
        return;
    int stage = t->stage[kind];
    if (stage == 0 && now_ms >= c.warn) {
        char reason[96];
        snprintf(reason, sizeof(reason), "%s target %d%% used", s_clock_names[kind],
                 t->policy->warn_percent);
        bytes_t *step = book_step(self->book, t);
        wire_u64(step, s_stage_fields[kind], 1);
        s_history(step, now_ms, H(SLA), "sla", "warning", reason, true);
        book_step_end(self->book, t);
        s_event(self, now_ms, E(SLA_WARNING), t, &(ev_t){.reason = reason});
        stage = 1;
    }
    if (stage == 1 && now_ms >= c.due) {
        char reason[96];
        snprintf(reason, sizeof(reason), "%s target missed", s_clock_names[kind]);
        bytes_t *step = book_step(self->book, t);
        wire_u64(step, s_stage_fields[kind], 2);
        s_history(step, now_ms, H(SLA), "sla", "breach", reason, true);
        book_step_end(self->book, t);
        s_event(self, now_ms, E(SLA_BREACH), t, &(ev_t){.reason = reason});
        s_sla_act(self, now_ms, t, reason);
    }
}

//  The promised time came: back to the same agent if it can take it now,
//  else to the front of its level's queue.
static void s_promise_due(lifecycle_t *self, int64_t now_ms, ticket_t *t, lifecycle_fired_t *out)
{
    const char *agent = t->promised;
    bytes_t *step = book_step(self->book, t);
    wire_u64(step, TK_PROMISE_CHECK, (uint64_t) (now_ms + self->cfg->promise_grace_ms));
    book_step_end(self->book, t);
    s_event(self, now_ms, E(PROMISE_DUE), t, &(ev_t){.agent = s_str(agent)});
    if (agent && self->config.available &&
        self->config.available(self->config.arg, agent, t->channel)) {
        s_offer(self, now_ms, t, agent, t->attempt + 1);
        out->offer_agent = agent;
        return;
    }
    char reason[160];
    snprintf(reason, sizeof(reason), "promise due; %.100s is not available",
             agent ? agent : "the agent");
    step = book_step(self->book, t);
    wire_u64(step, TK_STATE, S_QUEUED);
    wire_u64(step, TK_QUEUED, (uint64_t) now_ms);
    wire_u64(step, TK_UPDATED, (uint64_t) now_ms);
    wire_u64(step, TK_STAGE_WAIT, 0);
    s_history(step, now_ms, H(REQUEUED), "router", NULL, reason, false);
    book_step_end(self->book, t);
    s_place(self, t, now_ms, true, 0); //  a promise due now goes first
    s_event(self, now_ms, E(QUEUED), t, NULL);
}

//  A promise is kept if an agent took the ticket within the grace period.
static void s_promise_check(lifecycle_t *self, int64_t now_ms, ticket_t *t)
{
    bool missed = t->state == S_QUEUED || t->state == S_OFFERED || t->state == S_DEFERRED;
    bytes_t *step = book_step(self->book, t);
    wire_u64(step, TK_PROMISE_CHECK, 0);
    if (missed)
        s_history(step, now_ms, H(SLA), "sla", "breach", "promise missed", true);
    book_step_end(self->book, t);
    if (missed)
        s_event(self, now_ms, E(SLA_BREACH), t, &(ev_t){.reason = "promise missed"});
}

void lifecycle_fire(lifecycle_t *self, int64_t now_ms, ticket_t *t, lifecycle_fired_t *out)
{
    memset(out, 0, sizeof(*out));
    if (t->state == S_OFFERED && t->offer_deadline_ms && t->offer_deadline_ms <= now_ms)
        s_offer_expired(self, now_ms, t, out);
    for (int kind = 0; kind < CLOCKS && s_open(t->state); kind++)
        s_sla_fire(self, now_ms, t, kind);
    if (t->state == S_DEFERRED && t->promise_ms <= now_ms)
        s_promise_due(self, now_ms, t, out);
    else if (t->promise_check_ms && t->promise_check_ms <= now_ms)
        s_promise_check(self, now_ms, t);
    if (!t->closed) {
        book_place(self->book, t);
        s_schedule(self, t);
    }
}

void lifecycle_loaded(lifecycle_t *self, int64_t now_ms, ticket_t *t)
{
    (void) now_ms;
    if (t->state == S_OFFERED)
        t->offer_deadline_ms = t->updated_ms + self->cfg->offer_timeout_ms;
    s_schedule(self, t);
}

void lifecycle_queue_events(lifecycle_t *self, int64_t now_ms)
{
    int index;
    while ((index = book_touched_next(self->book)) >= 0) {
        queue_t *q = book_queue(self->book, (size_t) index);
        uint32_t depth = book_depth(self->book, (size_t) index);
        int64_t oldest = book_oldest(self->book, (size_t) index);
        //  A ticket in and out again in the same batch changed nothing.
        if ((int64_t) depth == q->told_depth && oldest == q->told_oldest)
            continue;
        q->told_depth = depth;
        q->told_oldest = oldest;
        s_event(self, now_ms, E(QUEUE), NULL,
                &(ev_t){.level = q->level,
                        .department = s_str(q->department),
                        .depth = depth,
                        .oldest_ms = oldest});
    }
}
