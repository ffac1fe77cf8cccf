/*  ticket.c — see ticket.h. */
#include "ticket.h"
#include "heap.h"
#include "log.h"

#include <czmq.h>
#include <stdlib.h>
#include <string.h>

//  Customer and Policy field numbers (tier.proto, store.proto).
enum { CUSTOMER_ID = 1, CUSTOMER_VIP = 3 };
enum {
    POLICY_FIRST = 1,
    POLICY_RESOLUTION = 2,
    POLICY_WAIT = 3,
    POLICY_WARN = 4,
    POLICY_ACTION = 5,
    POLICY_BOOST = 6,
    POLICY_BUSINESS = 7
};

struct intern {
    policy_t *policies; //  list of shared policies (owned)
    zhashx_t *names;    //  name -> the same name (owned copies)
};

static void s_free_name(void **item)
{
    free(*item);
    *item = NULL;
}

intern_t *intern_new(void)
{
    intern_t *self = calloc(1, sizeof(intern_t));
    if (!self)
        return NULL;
    self->names = zhashx_new(); //  keys are duplicated and freed by zhashx
    zhashx_set_destructor(self->names, s_free_name);
    return self;
}

void intern_destroy(intern_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    intern_t *self = *self_p;
    while (self->policies) {
        policy_t *next = self->policies->next;
        free(self->policies);
        self->policies = next;
    }
    zhashx_destroy(&self->names);
    free(self);
    *self_p = NULL;
}

static bool s_same_policy(const policy_t *a, const policy_t *b)
{
    policy_t x = *a, y = *b;
    x.next = y.next = NULL;
    return memcmp(&x, &y, sizeof(policy_t)) == 0;
}

const policy_t *intern_policy(intern_t *self, const policy_t *policy)
{
    for (policy_t *p = self->policies; p; p = p->next)
        if (s_same_policy(p, policy))
            return p;
    policy_t *copy = malloc(sizeof(policy_t));
    if (!copy) {
        log_error("out of memory keeping an SLA policy");
        abort();
    }
    *copy = *policy;
    copy->next = self->policies;
    self->policies = copy;
    return copy;
}

const char *intern_name(intern_t *self, const char *name, size_t len)
{
    if (!name || !len)
        return NULL;
    char key[256];
    char *k = len < sizeof(key) ? key : malloc(len + 1);
    if (!k) {
        log_error("out of memory keeping a name");
        abort();
    }
    memcpy(k, name, len);
    k[len] = 0;
    char *found = zhashx_lookup(self->names, k);
    if (!found) {
        found = strdup(k);
        zhashx_insert(self->names, k, found);
    }
    if (k != key)
        free(k);
    return found;
}

ticket_t *ticket_new(uint64_t id)
{
    ticket_t *self = calloc(1, sizeof(ticket_t));
    if (!self)
        return NULL;
    self->id = id;
    self->queue = self->redis_queue = self->redis_cold = -1;
    self->queue_pos = self->wait_pos = self->timer_pos = HEAP_NONE;
    self->step_first = self->step_last = STEP_NONE;
    return self;
}

void ticket_destroy(ticket_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    ticket_t *self = *self_p;
    free(self->customer);
    free(self->applied);
    free(self);
    *self_p = NULL;
}

//  A string field into an owned copy (NULL for "").
static void s_set_owned(char **field, const uint8_t *data, size_t len)
{
    free(*field);
    *field = NULL;
    if (len) {
        *field = malloc(len + 1);
        if (!*field) {
            log_error("out of memory reading a ticket");
            abort();
        }
        memcpy(*field, data, len);
        (*field)[len] = 0;
    }
}

static int s_apply_customer(ticket_t *self, const uint8_t *data, size_t len)
{
    wire_reader_t r = {data, data + len};
    wire_field_t f;
    while (wire_next(&r, &f))
        if (f.field == CUSTOMER_ID && f.type == WIRE_LEN)
            s_set_owned(&self->customer, f.data, f.len);
        else if (f.field == CUSTOMER_VIP && f.type == WIRE_VARINT)
            self->vip = f.value != 0;
    return r.p ? 0 : -1;
}

static int s_read_policy(policy_t *policy, const uint8_t *data, size_t len)
{
    memset(policy, 0, sizeof(policy_t));
    int wait = 1, boost = 1;
    wire_reader_t r = {data, data + len};
    wire_field_t f;
    while (wire_next(&r, &f))
        switch (f.field) {
        case POLICY_FIRST:
            policy->first_response_ms = (int64_t) f.value;
            break;
        case POLICY_RESOLUTION:
            policy->resolution_ms = (int64_t) f.value;
            break;
        case POLICY_WAIT:
            if (wait <= POLICY_LEVELS)
                policy->wait_ms[wait++] = (int64_t) f.value;
            break;
        case POLICY_WARN:
            policy->warn_percent = (int) f.value;
            break;
        case POLICY_ACTION:
            policy->action = (int) f.value;
            break;
        case POLICY_BOOST:
            if (boost <= POLICY_PRIORITIES)
                policy->priority_boost_ms[boost++] = (int64_t) f.value;
            break;
        case POLICY_BUSINESS:
            if (f.type == WIRE_LEN && f.len < sizeof(policy->business))
                memcpy(policy->business, f.data, f.len);
            break;
        }
    return r.p ? 0 : -1;
}

void step_policy(bytes_t *step, const policy_t *policy)
{
    size_t mark = wire_open(step, TK_POLICY);
    wire_u64(step, POLICY_FIRST, (uint64_t) policy->first_response_ms);
    wire_u64(step, POLICY_RESOLUTION, (uint64_t) policy->resolution_ms);
    for (int level = 1; level <= POLICY_LEVELS; level++)
        wire_u64(step, POLICY_WAIT, (uint64_t) policy->wait_ms[level]);
    wire_u64(step, POLICY_WARN, (uint64_t) policy->warn_percent);
    wire_u64(step, POLICY_ACTION, (uint64_t) policy->action);
    for (int prio = 1; prio <= POLICY_PRIORITIES; prio++)
        wire_u64(step, POLICY_BOOST, (uint64_t) policy->priority_boost_ms[prio]);
    wire_str_opt(step, POLICY_BUSINESS, policy->business);
    wire_close(step, mark);
}

void step_history(bytes_t *step, const history_t *e)
{
    size_t mark = wire_open(step, TK_HISTORY);
    wire_u64(step, HE_AT, (uint64_t) e->at_ms);
    wire_u64(step, HE_KIND, (uint64_t) e->kind);
    wire_str_opt(step, HE_ACTOR, e->actor);
    wire_str_opt(step, HE_TEXT, e->text);
    wire_str_opt(step, HE_REASON, e->reason);
    wire_u64_opt(step, HE_FROM_LEVEL, (uint64_t) e->from_level);
    wire_u64_opt(step, HE_TO_LEVEL, (uint64_t) e->to_level);
    wire_str_opt(step, HE_FROM_DEPT, e->from_dept);
    wire_str_opt(step, HE_TO_DEPT, e->to_dept);
    wire_u64_opt(step, HE_ESCALATION, (uint64_t) e->escalation);
    wire_u64_opt(step, HE_AUTOMATIC, e->automatic);
    wire_close(step, mark);
}

static inline uint64_t s_u64(const wire_field_t *f)
{
    return f->type == WIRE_VARINT ? f->value : 0;
}

//  One field of a step; -1 if a nested message is malformed.
static int s_apply_field(ticket_t *t, intern_t *intern, const wire_field_t *f)
{
    switch (f->field) {
    case TK_ID:
        if (f->type == WIRE_LEN && f->len < 24) {
            char id[24];
            memcpy(id, f->data, f->len);
            id[f->len] = 0;
            t->id = strtoull(id, NULL, 10);
        }
        break;
    case TK_EXTERNAL_ID:
        t->has_external_id = f->len > 0;
        t->followup = f->len >= 9 && memcmp(f->data, "followup:", 9) == 0;
        break;
    case TK_CHANNEL:
        t->channel = (uint8_t) s_u64(f);
        break;
    case TK_CUSTOMER:
        return f->type == WIRE_LEN ? s_apply_customer(t, f->data, f->len) : 0;
    case TK_PRIORITY:
        t->priority = (uint8_t) s_u64(f);
        break;
    case TK_LEVEL:
        t->level = (uint8_t) s_u64(f);
        break;
    case TK_DEPARTMENT:
        t->department = intern_name(intern, (const char *) f->data, f->len);
        break;
    case TK_STATE:
        t->state = (uint8_t) s_u64(f);
        break;
    case TK_AGENT:
        t->agent = intern_name(intern, (const char *) f->data, f->len);
        break;
    case TK_ATTEMPT:
        t->attempt = (uint32_t) s_u64(f);
        break;
    case TK_CREATED:
        t->created_ms = (int64_t) s_u64(f);
        break;
    case TK_UPDATED:
        t->updated_ms = (int64_t) s_u64(f);
        break;
    case TK_QUEUED:
        t->queued_ms = (int64_t) s_u64(f);
        break;
    case TK_FIRST_RESPONSE:
        t->first_response_ms = (int64_t) s_u64(f);
        break;
    case TK_RESOLVED:
        t->resolved_ms = (int64_t) s_u64(f);
        break;
    case TK_CSAT:
        t->csat = (uint8_t) s_u64(f);
        break;
    case TK_POLICY: {
        policy_t policy;
        if (f->type != WIRE_LEN || s_read_policy(&policy, f->data, f->len))
            return -1;
        t->policy = intern_policy(intern, &policy);
        break;
    }
    case TK_BOOST:
        t->boost_ms = (int64_t) s_u64(f);
        break;
    case TK_SCORE:
        t->score = (int64_t) s_u64(f);
        break;
    case TK_APPLIED:
        s_set_owned(&t->applied, f->data, f->len);
        break;
    case TK_RESPONSES:
        t->responses = (uint32_t) s_u64(f);
        break;
    case TK_ESCALATIONS:
        t->escalations = (uint32_t) s_u64(f);
        break;
    case TK_FIRST_DUE:
        t->first_due_ms = (int64_t) s_u64(f);
        break;
    case TK_RESOLUTION_DUE:
        t->resolution_due_ms = (int64_t) s_u64(f);
        break;
    case TK_RESOLUTION_START:
        t->resolution_start_ms = (int64_t) s_u64(f);
        break;
    case TK_PAUSED:
        t->paused_ms = (int64_t) s_u64(f);
        break;
    case TK_STAGE_FIRST:
    case TK_STAGE_RESOLUTION:
    case TK_STAGE_WAIT:
        t->stage[f->field - TK_STAGE_FIRST] = (uint8_t) s_u64(f);
        break;
    case TK_PROMISED_AGENT:
        t->promised = intern_name(intern, (const char *) f->data, f->len);
        break;
    case TK_PROMISE:
        t->promise_ms = (int64_t) s_u64(f);
        break;
    case TK_WAITING_SINCE:
        t->waiting_since_ms = (int64_t) s_u64(f);
        break;
    case TK_PERSON:
        t->person = s_u64(f) != 0;
        break;
    case TK_RATED:
        t->rated = s_u64(f) != 0;
        break;
    case TK_VIP:
        t->vip = s_u64(f) != 0;
        break;
    case TK_PROMISE_CHECK:
        t->promise_check_ms = (int64_t) s_u64(f);
        break;
    default: //  subject, body, tags, history: stored, not needed in memory
        break;
    }
    return 0;
}

int ticket_apply(ticket_t *self, intern_t *intern, const uint8_t *data, size_t len)
{
    wire_reader_t r = {data, data + len};
    wire_field_t f;
    while (wire_next(&r, &f))
        if (s_apply_field(self, intern, &f))
            return -1;
    return r.p ? 0 : -1;
}

int ticket_wire(const uint8_t *stored, size_t len, bool with_history, bytes_t *out)
{
    wire_reader_t r = {stored, stored + len};
    wire_field_t f;
    //  Copy runs of wanted fields at once, not field by field.
    const uint8_t *run = stored;
    while (wire_next(&r, &f)) {
        bool wanted = f.field < TK_INTERNAL && (with_history || f.field != TK_HISTORY);
        if (!wanted) {
            bytes_put(out, run, (size_t) (f.start - run));
            run = r.p;
        }
    }
    if (!r.p)
        return -1;
    bytes_put(out, run, (size_t) (stored + len - run));
    return 0;
}

int ticket_content(const uint8_t *stored, size_t len, ticket_content_t *out)
{
    memset(out, 0, sizeof(*out));
    wire_reader_t r = {stored, stored + len};
    wire_field_t f;
    while (wire_next(&r, &f))
        if (f.field == TK_SUBJECT && f.type == WIRE_LEN && !out->subject) {
            out->subject = f.data;
            out->subject_len = f.len;
        } else if (f.field == TK_CUSTOMER && f.type == WIRE_LEN && !out->customer) {
            out->customer = f.data;
            out->customer_len = f.len;
        }
    return r.p ? 0 : -1;
}
