/*  ticket.c — see ticket.h. */
#include "ticket.h"
#include "log.h"
#include "store.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  The fields of a ticket record (store.lua RECORD), in its order.
enum s_record_field {
    R_PB,
    R_PRIO,
    R_LEVEL,
    R_DEPT,
    R_STATE,
    R_AGENT,
    R_ATT,
    R_CREATED,
    R_UPDATED,
    R_QUEUED,
    R_FRT,
    R_RESOLVED,
    R_CSAT,
    R_FIELDS
};

static char *s_field(const redisReply *fields, int field)
{
    return (char *) store_str(store_elem(fields, (size_t) field));
}

static uint64_t s_u64(const redisReply *fields, int field)
{
    return store_u64(store_elem(fields, (size_t) field));
}

static char *s_json_str(const cJSON *entry, const char *key)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(entry, key);
    return cJSON_IsString(item) ? item->valuestring : (char *) "";
}

static uint64_t s_json_u64(const cJSON *entry, const char *key)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(entry, key);
    if (cJSON_IsNumber(item))
        return item->valuedouble > 0 ? (uint64_t) item->valuedouble : 0;
    if (cJSON_IsString(item))
        return strtoull(item->valuestring, NULL, 10);
    return 0;
}

static void s_history_entry(Tier__V1__HistoryEntry *out, const cJSON *entry)
{
    tier__v1__history_entry__init(out);
    out->at_ms = s_json_u64(entry, "t");
    out->kind = (Tier__V1__HistoryKind) s_json_u64(entry, "k");
    out->actor = s_json_str(entry, "a");
    out->text = s_json_str(entry, "x");
    out->reason = s_json_str(entry, "r");
    out->from_level = (Tier__V1__Level) s_json_u64(entry, "fl");
    out->to_level = (Tier__V1__Level) s_json_u64(entry, "tl");
    out->from_department = s_json_str(entry, "fd");
    out->to_department = s_json_str(entry, "td");
    out->escalation = (Tier__V1__EscalationKind) s_json_u64(entry, "e");
    out->automatic = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(entry, "au"));
}

static void s_history(ticket_view_t *view, const redisReply *history)
{
    size_t count = history && history->type == REDIS_REPLY_ARRAY ? history->elements : 0;
    view->json = calloc(count + 1, sizeof(void *));
    view->entries = calloc(count + 1, sizeof(Tier__V1__HistoryEntry));
    view->entry_ptrs = calloc(count + 1, sizeof(Tier__V1__HistoryEntry *));
    size_t kept = 0;
    for (size_t i = 0; i < count; i++) {
        cJSON *entry = cJSON_Parse(store_str(history->element[i]));
        if (!entry) {
            log_warning("ticket %s: history entry %zu is not JSON; skipped", view->ticket.id, i);
            continue;
        }
        view->json[view->json_count++] = entry;
        s_history_entry(&view->entries[kept], entry);
        view->entry_ptrs[kept] = &view->entries[kept];
        kept++;
    }
    view->ticket.n_history = kept;
    view->ticket.history = view->entry_ptrs;
}

int ticket_view_init(ticket_view_t *view, const redisReply *record, bool with_history)
{
    memset(view, 0, sizeof(*view));
    Tier__V1__Ticket *t = &view->ticket;
    tier__v1__ticket__init(t);
    const redisReply *fields = store_elem(record, 1);
    const redisReply *pb = store_elem(fields, R_PB);
    if (!fields || fields->elements != R_FIELDS || !pb || pb->type != REDIS_REPLY_STRING)
        return -1;
    view->content = tier__v1__ticket__unpack(NULL, pb->len, (const uint8_t *) pb->str);
    if (!view->content)
        return -1;
    t->id = (char *) store_str(store_elem(record, 0));
    t->external_id = view->content->external_id;
    t->channel = view->content->channel;
    t->customer = view->content->customer;
    t->subject = view->content->subject;
    t->body = view->content->body;
    t->n_tags = view->content->n_tags;
    t->tags = view->content->tags;
    t->priority = (Tier__V1__Priority) s_u64(fields, R_PRIO);
    t->level = (Tier__V1__Level) s_u64(fields, R_LEVEL);
    t->department = s_field(fields, R_DEPT);
    t->state = (Tier__V1__TicketState) s_u64(fields, R_STATE);
    t->agent = s_field(fields, R_AGENT);
    t->attempt = (uint32_t) s_u64(fields, R_ATT);
    t->created_ms = s_u64(fields, R_CREATED);
    t->updated_ms = s_u64(fields, R_UPDATED);
    t->queued_ms = s_u64(fields, R_QUEUED);
    t->first_response_ms = s_u64(fields, R_FRT);
    t->resolved_ms = s_u64(fields, R_RESOLVED);
    t->csat = (uint32_t) s_u64(fields, R_CSAT);
    if (with_history)
        s_history(view, store_elem(record, 2));
    return 0;
}

void ticket_view_fini(ticket_view_t *view)
{
    for (size_t i = 0; i < view->json_count; i++)
        cJSON_Delete(view->json[i]);
    free(view->json);
    free(view->entries);
    free(view->entry_ptrs);
    if (view->content)
        tier__v1__ticket__free_unpacked(view->content, NULL);
    memset(view, 0, sizeof(*view));
}

int ticket_pack_content(const Tier__V1__Ticket *submitted, uint8_t **data_p, size_t *size_p)
{
    Tier__V1__Ticket content = TIER__V1__TICKET__INIT;
    content.external_id = submitted->external_id;
    content.channel = submitted->channel;
    content.customer = submitted->customer;
    content.subject = submitted->subject;
    content.body = submitted->body;
    content.n_tags = submitted->n_tags;
    content.tags = submitted->tags;
    *size_p = tier__v1__ticket__get_packed_size(&content);
    *data_p = malloc(*size_p + 1);
    if (!*data_p)
        return -1;
    tier__v1__ticket__pack(&content, *data_p);
    return 0;
}

char *ticket_history_entry(int64_t at_ms, int kind, const char *actor, const char *text,
                           const char *reason, bool automatic)
{
    cJSON *entry = cJSON_CreateObject();
    char at[24];
    snprintf(at, sizeof(at), "%lld", (long long) at_ms);
    cJSON_AddStringToObject(entry, "t", at);
    cJSON_AddNumberToObject(entry, "k", kind);
    cJSON_AddStringToObject(entry, "a", actor ? actor : "");
    if (text && *text)
        cJSON_AddStringToObject(entry, "x", text);
    if (reason && *reason)
        cJSON_AddStringToObject(entry, "r", reason);
    if (automatic)
        cJSON_AddTrueToObject(entry, "au");
    char *json = cJSON_PrintUnformatted(entry);
    cJSON_Delete(entry);
    return json;
}
