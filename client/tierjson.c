// tierjson — text and JSON forms of the tier.v1 protobuf messages.
//
// Enum text forms are derived from the protobuf-c descriptors: the value name
// "CHANNEL_CHAT" loses everything up to its first '_' and is lowercased. The
// lowercased copies are made once per enum, on first use, and kept for the
// life of the process, so callers get stable borrowed strings.
#include "tierjson.h"

#include <ctype.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

// protobuf-c names every enum value with its prefix: "LEVEL_L1".
#define PREFIX_END         '_'
#define UNSPECIFIED_SUFFIX "UNSPECIFIED"
#define LEVEL_ENUM_NAME    "tier.v1.Level"
#define UNKNOWN_NAME       "unknown"
#define UNKNOWN_SUFFIX     "UNKNOWN"

// The text forms of one enum, built on first use.
typedef struct s_names_t {
    const ProtobufCEnumDescriptor *descriptor; // the enum these names belong to
    char **names;                              // text form per entry of descriptor->values
    struct s_names_t *next;                    // next enum in the cache
} s_names_t;

static s_names_t *s_cache;                                       // enums named so far
static pthread_mutex_t s_cache_lock = PTHREAD_MUTEX_INITIALIZER; // guards s_cache

// The value name without its prefix: "CHAT" for "CHANNEL_CHAT".
static const char *s_suffix(const char *value_name)
{
    const char *end = strchr(value_name, PREFIX_END);
    return end ? end + 1 : value_name;
}

static bool s_is_level(const ProtobufCEnumDescriptor *d)
{
    return strcmp(d->name, LEVEL_ENUM_NAME) == 0;
}

// The text form of one value name; NULL if out of memory.
static char *s_text_form(const ProtobufCEnumDescriptor *d, const char *value_name)
{
    const char *suffix = s_suffix(value_name);
    if (strcmp(suffix, UNSPECIFIED_SUFFIX) == 0)
        return strdup("");
    char *text = strdup(suffix);
    if (!text || s_is_level(d))
        return text; // levels keep "L1", as people write them
    for (char *c = text; *c; c++)
        *c = (char) tolower((unsigned char) *c);
    return text;
}

static s_names_t *s_names_new(const ProtobufCEnumDescriptor *d)
{
    s_names_t *self = calloc(1, sizeof(s_names_t));
    if (!self)
        return NULL;
    self->descriptor = d;
    self->names = calloc(d->n_values ? d->n_values : 1, sizeof(char *));
    bool ok = self->names != NULL;
    for (unsigned i = 0; ok && i < d->n_values; i++)
        ok = (self->names[i] = s_text_form(d, d->values[i].name)) != NULL;
    if (ok)
        return self;
    for (unsigned i = 0; self->names && i < d->n_values; i++)
        free(self->names[i]);
    free(self->names);
    free(self);
    return NULL;
}

// The cached names of an enum, building them on first use; NULL if out of memory.
static s_names_t *s_names_of(const ProtobufCEnumDescriptor *d)
{
    pthread_mutex_lock(&s_cache_lock);
    s_names_t *names = s_cache;
    while (names && names->descriptor != d)
        names = names->next;
    if (!names && (names = s_names_new(d))) {
        names->next = s_cache;
        s_cache = names;
    }
    pthread_mutex_unlock(&s_cache_lock);
    return names;
}

const char *tierjson_enum_name(const ProtobufCEnumDescriptor *d, int value)
{
    const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(d, value);
    if (!v)
        return UNKNOWN_NAME;
    s_names_t *names = s_names_of(d);
    if (!names)
        return UNKNOWN_NAME;
    return names->names[v - d->values];
}

const char *tierjson_enum_suffix(const ProtobufCEnumDescriptor *d, int value)
{
    const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(d, value);
    return v ? s_suffix(v->name) : UNKNOWN_SUFFIX;
}

int tierjson_enum_value(const ProtobufCEnumDescriptor *d, const char *name, int *value)
{
    if (!name)
        return -1;
    for (unsigned i = 0; i < d->n_values; i++) {
        const ProtobufCEnumValue *v = &d->values[i];
        bool unspecified = strcmp(s_suffix(v->name), UNSPECIFIED_SUFFIX) == 0;
        if (strcasecmp(name, v->name) == 0 || strcasecmp(name, s_suffix(v->name)) == 0 ||
            (unspecified && *name == '\0')) {
            *value = v->value;
            return 0;
        }
    }
    return -1;
}

// Adders: each returns false when cJSON could not allocate.

static bool s_add_string(cJSON *json, const char *key, const char *value)
{
    return cJSON_AddStringToObject(json, key, value ? value : "") != NULL;
}

static bool s_add_number(cJSON *json, const char *key, double value)
{
    return cJSON_AddNumberToObject(json, key, value) != NULL;
}

static bool s_add_bool(cJSON *json, const char *key, protobuf_c_boolean value)
{
    return cJSON_AddBoolToObject(json, key, value ? 1 : 0) != NULL;
}

static bool s_add_enum(cJSON *json, const char *key, const ProtobufCEnumDescriptor *d, int value)
{
    return s_add_string(json, key, tierjson_enum_name(d, value));
}

static bool s_add_strings(cJSON *json, const char *key, char **values, size_t count)
{
    cJSON *array = cJSON_AddArrayToObject(json, key);
    bool ok = array != NULL;
    for (size_t i = 0; ok && i < count; i++) {
        cJSON *item = cJSON_CreateString(values[i] ? values[i] : "");
        ok = item && cJSON_AddItemToArray(array, item);
    }
    return ok;
}

// Takes ownership of item, also on failure.
static bool s_add_item(cJSON *json, const char *key, cJSON *item)
{
    if (item && cJSON_AddItemToObject(json, key, item))
        return true;
    cJSON_Delete(item);
    return false;
}

// Deletes json and returns NULL unless ok: the end of every builder.
static cJSON *s_finish(cJSON *json, bool ok)
{
    if (ok)
        return json;
    cJSON_Delete(json);
    return NULL;
}

static cJSON *s_customer(const Tier__V1__Customer *c)
{
    static const Tier__V1__Customer empty = TIER__V1__CUSTOMER__INIT;
    if (!c)
        c = &empty;
    cJSON *json = cJSON_CreateObject();
    bool ok = json && s_add_string(json, "id", c->id) && s_add_string(json, "name", c->name) &&
              s_add_bool(json, "vip", c->vip) && s_add_string(json, "email", c->email) &&
              s_add_string(json, "phone", c->phone);
    return s_finish(json, ok);
}

cJSON *tierjson_history_entry(const Tier__V1__HistoryEntry *h)
{
    cJSON *json = cJSON_CreateObject();
    bool ok =
        json && s_add_number(json, "at_ms", (double) h->at_ms) &&
        s_add_enum(json, "kind", &tier__v1__history_kind__descriptor, h->kind) &&
        s_add_string(json, "actor", h->actor) && s_add_string(json, "text", h->text) &&
        s_add_string(json, "reason", h->reason) &&
        s_add_enum(json, "from_level", &tier__v1__level__descriptor, h->from_level) &&
        s_add_enum(json, "to_level", &tier__v1__level__descriptor, h->to_level) &&
        s_add_string(json, "from_department", h->from_department) &&
        s_add_string(json, "to_department", h->to_department) &&
        s_add_enum(json, "escalation", &tier__v1__escalation_kind__descriptor, h->escalation) &&
        s_add_bool(json, "automatic", h->automatic);
    return s_finish(json, ok);
}

static bool s_add_history(cJSON *json, const Tier__V1__Ticket *t)
{
    cJSON *array = cJSON_AddArrayToObject(json, "history");
    bool ok = array != NULL;
    for (size_t i = 0; ok && i < t->n_history; i++) {
        cJSON *entry = tierjson_history_entry(t->history[i]);
        ok = entry && cJSON_AddItemToArray(array, entry);
    }
    return ok;
}

cJSON *tierjson_ticket(const Tier__V1__Ticket *t)
{
    cJSON *json = cJSON_CreateObject();
    bool ok = json && s_add_string(json, "id", t->id) &&
              s_add_string(json, "external_id", t->external_id) &&
              s_add_enum(json, "channel", &tier__v1__channel__descriptor, t->channel) &&
              s_add_item(json, "customer", s_customer(t->customer)) &&
              s_add_string(json, "subject", t->subject) && s_add_string(json, "body", t->body) &&
              s_add_enum(json, "priority", &tier__v1__priority__descriptor, t->priority) &&
              s_add_enum(json, "level", &tier__v1__level__descriptor, t->level) &&
              s_add_string(json, "department", t->department) &&
              s_add_strings(json, "tags", t->tags, t->n_tags) &&
              s_add_enum(json, "state", &tier__v1__ticket_state__descriptor, t->state) &&
              s_add_string(json, "agent", t->agent) && s_add_number(json, "attempt", t->attempt) &&
              s_add_number(json, "created_ms", (double) t->created_ms) &&
              s_add_number(json, "updated_ms", (double) t->updated_ms) &&
              s_add_number(json, "queued_ms", (double) t->queued_ms) &&
              s_add_number(json, "first_response_ms", (double) t->first_response_ms) &&
              s_add_number(json, "resolved_ms", (double) t->resolved_ms) &&
              s_add_number(json, "csat", t->csat) && s_add_history(json, t);
    return s_finish(json, ok);
}

cJSON *tierjson_event(const Tier__V1__Event *e)
{
    cJSON *json = cJSON_CreateObject();
    bool ok = json && s_add_number(json, "seq", (double) e->seq) &&
              s_add_number(json, "at_ms", (double) e->at_ms) &&
              s_add_enum(json, "kind", &tier__v1__event_kind__descriptor, e->kind) &&
              s_add_string(json, "ticket_id", e->ticket_id) &&
              s_add_enum(json, "level", &tier__v1__level__descriptor, e->level) &&
              s_add_string(json, "department", e->department) &&
              s_add_string(json, "agent", e->agent) &&
              s_add_enum(json, "from_level", &tier__v1__level__descriptor, e->from_level) &&
              s_add_string(json, "from_department", e->from_department) &&
              s_add_string(json, "reason", e->reason) && s_add_number(json, "depth", e->depth) &&
              s_add_number(json, "oldest_ms", (double) e->oldest_ms) &&
              s_add_enum(json, "state", &tier__v1__ticket_state__descriptor, e->state) &&
              s_add_enum(json, "agent_state", &tier__v1__agent_state__descriptor, e->agent_state) &&
              s_add_enum(json, "channel", &tier__v1__channel__descriptor, e->channel) &&
              s_add_enum(json, "priority", &tier__v1__priority__descriptor, e->priority) &&
              s_add_number(json, "csat", e->csat) && s_add_number(json, "attempt", e->attempt);
    return s_finish(json, ok);
}

cJSON *tierjson_queue_info(const Tier__V1__QueueInfo *q)
{
    cJSON *json = cJSON_CreateObject();
    bool ok = json && s_add_enum(json, "level", &tier__v1__level__descriptor, q->level) &&
              s_add_string(json, "department", q->department) &&
              s_add_number(json, "depth", q->depth) &&
              s_add_number(json, "oldest_ms", (double) q->oldest_ms) &&
              s_add_number(json, "oldest_wait_ms", (double) q->oldest_wait_ms);
    return s_finish(json, ok);
}

cJSON *tierjson_agent_info(const Tier__V1__AgentInfo *a)
{
    cJSON *json = cJSON_CreateObject();
    bool ok = json && s_add_string(json, "id", a->id) &&
              s_add_enum(json, "level", &tier__v1__level__descriptor, a->level) &&
              s_add_strings(json, "departments", a->departments, a->n_departments) &&
              s_add_number(json, "capacity", a->capacity) && s_add_number(json, "load", a->load) &&
              s_add_enum(json, "state", &tier__v1__agent_state__descriptor, a->state) &&
              s_add_bool(json, "bot", a->bot) &&
              s_add_number(json, "last_seen_ms", (double) a->last_seen_ms) &&
              s_add_strings(json, "tickets", a->tickets, a->n_tickets);
    return s_finish(json, ok);
}

static cJSON *s_queued_ticket(const Tier__V1__QueuedTicket *t)
{
    cJSON *json = cJSON_CreateObject();
    bool ok = json && s_add_string(json, "id", t->id) &&
              s_add_enum(json, "priority", &tier__v1__priority__descriptor, t->priority) &&
              s_add_enum(json, "channel", &tier__v1__channel__descriptor, t->channel) &&
              s_add_number(json, "queued_ms", (double) t->queued_ms) &&
              s_add_string(json, "subject", t->subject);
    return s_finish(json, ok);
}

static cJSON *s_queue_contents(const Tier__V1__QueueContents *q)
{
    cJSON *json = cJSON_CreateObject();
    bool ok = json && s_add_enum(json, "level", &tier__v1__level__descriptor, q->level) &&
              s_add_string(json, "department", q->department);
    cJSON *tickets = ok ? cJSON_AddArrayToObject(json, "tickets") : NULL;
    ok = ok && tickets && s_add_number(json, "omitted", (double) q->omitted);
    for (size_t i = 0; ok && i < q->n_tickets; i++) {
        cJSON *item = s_queued_ticket(q->tickets[i]);
        ok = item && cJSON_AddItemToArray(tickets, item);
    }
    return s_finish(json, ok);
}

cJSON *tierjson_snapshot(const Tier__V1__SnapshotReply *s)
{
    cJSON *json = cJSON_CreateObject();
    bool ok = json && s_add_number(json, "seq", (double) s->seq);
    cJSON *queues = ok ? cJSON_AddArrayToObject(json, "queues") : NULL;
    cJSON *agents = queues ? cJSON_AddArrayToObject(json, "agents") : NULL;
    ok = ok && agents;
    for (size_t i = 0; ok && i < s->n_queues; i++) {
        cJSON *item = s_queue_contents(s->queues[i]);
        ok = item && cJSON_AddItemToArray(queues, item);
    }
    for (size_t i = 0; ok && i < s->n_agents; i++) {
        cJSON *item = tierjson_agent_info(s->agents[i]);
        ok = item && cJSON_AddItemToArray(agents, item);
    }
    return s_finish(json, ok);
}

static cJSON *s_rule_hit(const Tier__V1__RuleHit *h)
{
    cJSON *json = cJSON_CreateObject();
    bool ok =
        json && s_add_string(json, "rule", h->rule) && s_add_string(json, "action", h->action);
    return s_finish(json, ok);
}

cJSON *tierjson_rules_test(const Tier__V1__RulesTestReply *r)
{
    static const Tier__V1__Ticket empty = TIER__V1__TICKET__INIT;
    cJSON *json = cJSON_CreateObject();
    cJSON *hits = json ? cJSON_AddArrayToObject(json, "hits") : NULL;
    bool ok = hits != NULL;
    for (size_t i = 0; ok && i < r->n_hits; i++) {
        cJSON *item = s_rule_hit(r->hits[i]);
        ok = item && cJSON_AddItemToArray(hits, item);
    }
    ok = ok && s_add_item(json, "ticket", tierjson_ticket(r->ticket ? r->ticket : &empty)) &&
         s_add_string(json, "sla_policy", r->sla_policy) &&
         s_add_number(json, "first_response_due_ms", (double) r->first_response_due_ms) &&
         s_add_number(json, "resolution_due_ms", (double) r->resolution_due_ms);
    return s_finish(json, ok);
}

// ---------------------------------------------------------------------------
// JSON -> Ticket. Table-driven: one row per key, so the reader and
// tierjson_ticket name the same keys and a new field is one row.

#define ERROR_MAX    512                // bytes of tierjson_error's text
#define JSON_INT_MAX 9007199254740992.0 // 2^53: larger JSON numbers are not exact
#define UINT32_LIMIT 4294967295.0       // largest uint32 field value
#define HISTORY_KEY  "history"          // written by tierjson_ticket, not read back
#define CUSTOMER_KEY "customer"
#define TAGS_KEY     "tags"

static _Thread_local char s_error[ERROR_MAX]; // why the last read failed

typedef enum { S_STRING, S_BOOL, S_ENUM, S_UINT32, S_UINT64 } s_type_t;

// One key of the ticket JSON and where its value goes.
typedef struct {
    const char *key;                       // JSON key
    s_type_t type;                         // what the value must be
    size_t offset;                         // field in the protobuf-c struct
    const ProtobufCEnumDescriptor *enum_d; // S_ENUM: the enum
} s_field_t;

// clang-format off
#define S_TICKET(key, type, d) {#key, type, offsetof(Tier__V1__Ticket, key), d}
#define S_CUSTOMER(key, type)  {#key, type, offsetof(Tier__V1__Customer, key), NULL}
// clang-format on

static const s_field_t s_ticket_fields[] = {
    S_TICKET(id, S_STRING, NULL),
    S_TICKET(external_id, S_STRING, NULL),
    S_TICKET(channel, S_ENUM, &tier__v1__channel__descriptor),
    S_TICKET(subject, S_STRING, NULL),
    S_TICKET(body, S_STRING, NULL),
    S_TICKET(priority, S_ENUM, &tier__v1__priority__descriptor),
    S_TICKET(level, S_ENUM, &tier__v1__level__descriptor),
    S_TICKET(department, S_STRING, NULL),
    S_TICKET(state, S_ENUM, &tier__v1__ticket_state__descriptor),
    S_TICKET(agent, S_STRING, NULL),
    S_TICKET(attempt, S_UINT32, NULL),
    S_TICKET(created_ms, S_UINT64, NULL),
    S_TICKET(updated_ms, S_UINT64, NULL),
    S_TICKET(queued_ms, S_UINT64, NULL),
    S_TICKET(first_response_ms, S_UINT64, NULL),
    S_TICKET(resolved_ms, S_UINT64, NULL),
    S_TICKET(csat, S_UINT32, NULL),
};

static const s_field_t s_customer_fields[] = {
    S_CUSTOMER(id, S_STRING),    S_CUSTOMER(name, S_STRING),  S_CUSTOMER(vip, S_BOOL),
    S_CUSTOMER(email, S_STRING), S_CUSTOMER(phone, S_STRING),
};

#define FIELD_COUNT(table) (sizeof table / sizeof table[0])

// Sets tierjson_error's text; returns -1 for the caller to return.
static int s_fail(const char *format, ...) __attribute__((format(printf, 1, 2)));

static int s_fail(const char *format, ...)
{
    va_list args;
    va_start(args, format);
    vsnprintf(s_error, sizeof s_error, format, args);
    va_end(args);
    return -1;
}

// `"channel": "fax" is not one of chat, email, ...`
static int s_fail_enum(const char *key, const char *text, const ProtobufCEnumDescriptor *d)
{
    int len = snprintf(s_error, sizeof s_error, "\"%s\": \"%s\" is not one of", key, text);
    const char *separator = " ";
    for (unsigned i = 0; i < d->n_values && len > 0 && (size_t) len < sizeof s_error; i++) {
        if (!d->values[i].value)
            continue; // "" is accepted but not worth suggesting
        len += snprintf(s_error + len, sizeof s_error - (size_t) len, "%s%s", separator,
                        tierjson_enum_name(d, d->values[i].value));
        separator = ", ";
    }
    return -1;
}

// A JSON number that is a whole number from 0 to max.
static int s_read_whole(const cJSON *item, const char *key, double max, double *value)
{
    if (!cJSON_IsNumber(item))
        return s_fail("\"%s\" must be a number", key);
    *value = item->valuedouble;
    if (*value < 0 || *value > max || *value != (double) (uint64_t) *value)
        return s_fail("\"%s\": %g is not a whole number from 0 to %.0f", key, *value, max);
    return 0;
}

// Stores one JSON value into the field of the struct at base.
static int s_read_field(const cJSON *item, const s_field_t *f, void *base)
{
    char *field = (char *) base + f->offset;
    double number = 0;
    int value = 0;
    switch (f->type) {
    case S_STRING:
        if (!cJSON_IsString(item))
            return s_fail("\"%s\" must be a string", f->key);
        *(char **) field = item->valuestring;
        return 0;
    case S_BOOL:
        if (!cJSON_IsBool(item))
            return s_fail("\"%s\" must be true or false", f->key);
        *(protobuf_c_boolean *) field = cJSON_IsTrue(item);
        return 0;
    case S_ENUM:
        if (!cJSON_IsString(item))
            return s_fail("\"%s\" must be a string", f->key);
        if (tierjson_enum_value(f->enum_d, item->valuestring, &value))
            return s_fail_enum(f->key, item->valuestring, f->enum_d);
        *(int *) field = value; // protobuf-c forces its enums to int size
        return 0;
    case S_UINT32:
        if (s_read_whole(item, f->key, UINT32_LIMIT, &number))
            return -1;
        *(uint32_t *) field = (uint32_t) number;
        return 0;
    case S_UINT64:
        if (s_read_whole(item, f->key, JSON_INT_MAX, &number))
            return -1;
        *(uint64_t *) field = (uint64_t) number;
        return 0;
    }
    return s_fail("\"%s\": unreadable field type", f->key);
}

static const s_field_t *s_field_named(const s_field_t *table, size_t count, const char *key)
{
    for (size_t i = 0; i < count; i++)
        if (strcmp(table[i].key, key) == 0)
            return &table[i];
    return NULL;
}

// Reads every member of object into the struct at base; what names the
// object in messages ("ticket", "customer").
static int s_read_object(const cJSON *object, const s_field_t *table, size_t count, void *base,
                         const char *what)
{
    if (!cJSON_IsObject(object))
        return s_fail("the %s must be a JSON object", what);
    const cJSON *item;
    cJSON_ArrayForEach(item, object)
    {
        const s_field_t *f = item->string ? s_field_named(table, count, item->string) : NULL;
        if (!f)
            return s_fail("unknown %s key \"%s\"", what, item->string ? item->string : "");
        if (!cJSON_IsNull(item) && s_read_field(item, f, base))
            return -1;
    }
    return 0;
}

static int s_read_tags(const cJSON *tags, Tier__V1__Ticket *t)
{
    if (!tags || cJSON_IsNull(tags))
        return 0;
    if (!cJSON_IsArray(tags))
        return s_fail("\"tags\" must be an array of strings");
    int count = cJSON_GetArraySize(tags);
    t->tags = calloc((size_t) count + 1, sizeof(char *));
    if (!t->tags)
        return s_fail("out of memory reading \"tags\"");
    const cJSON *tag;
    cJSON_ArrayForEach(tag, tags)
    {
        if (!cJSON_IsString(tag))
            return s_fail("\"tags\" must be an array of strings");
        t->tags[t->n_tags++] = tag->valuestring;
    }
    return 0;
}

static int s_read_customer(const cJSON *customer, Tier__V1__Ticket *t)
{
    if (!customer || cJSON_IsNull(customer))
        return 0;
    t->customer = malloc(sizeof(Tier__V1__Customer));
    if (!t->customer)
        return s_fail("out of memory reading \"customer\"");
    tier__v1__customer__init(t->customer);
    if (s_read_object(customer, s_customer_fields, FIELD_COUNT(s_customer_fields), t->customer,
                      CUSTOMER_KEY) == 0)
        return 0;
    char inner[ERROR_MAX];
    snprintf(inner, sizeof inner, "%s", s_error);
    return s_fail("in \"customer\": %s", inner);
}

// The members s_ticket_fields does not hold, each read on its own.
static bool s_special_key(const char *key)
{
    return strcmp(key, HISTORY_KEY) == 0 || strcmp(key, CUSTOMER_KEY) == 0 ||
           strcmp(key, TAGS_KEY) == 0;
}

int tierjson_ticket_from(const cJSON *json, Tier__V1__Ticket *t)
{
    tier__v1__ticket__init(t);
    s_error[0] = '\0';
    if (!cJSON_IsObject(json))
        return s_fail("the ticket must be a JSON object");
    const cJSON *item;
    cJSON_ArrayForEach(item, json)
    {
        const char *key = item->string ? item->string : "";
        if (s_special_key(key))
            continue;
        const s_field_t *f = s_field_named(s_ticket_fields, FIELD_COUNT(s_ticket_fields), key);
        if (!f)
            return s_fail("unknown ticket key \"%s\"", key);
        if (!cJSON_IsNull(item) && s_read_field(item, f, t))
            return -1;
    }
    if (s_read_tags(cJSON_GetObjectItemCaseSensitive(json, TAGS_KEY), t) ||
        s_read_customer(cJSON_GetObjectItemCaseSensitive(json, CUSTOMER_KEY), t)) {
        tierjson_ticket_clear(t);
        return -1;
    }
    return 0;
}

void tierjson_ticket_clear(Tier__V1__Ticket *t)
{
    free(t->customer);
    free(t->tags);
    tier__v1__ticket__init(t);
}

const char *tierjson_error(void)
{
    return s_error;
}
