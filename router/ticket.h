/*  ticket.h — a ticket between its Redis form and its wire form.

    In Redis a ticket is a hash (mutable fields, plus `pb`: the packed
    submitted content that never changes) and a list of history entries in
    JSON (store.lua writes them too, with cjson). This module turns a ticket
    record from store.lua ({id, {RECORD fields}, history}) into a Tier__V1__Ticket.
*/
#ifndef TIER_TICKET_H
#define TIER_TICKET_H

#include "tier.pb-c.h"
#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    Tier__V1__Ticket ticket;         //  the view; strings borrowed
    Tier__V1__Ticket *content;       //  unpacked `pb` (owned)
    Tier__V1__HistoryEntry *entries; //  history (owned array)
    Tier__V1__HistoryEntry **entry_ptrs;
    void **json; //  parsed history entries (owned cJSON)
    size_t json_count;
} ticket_view_t;

//  Build a view of a ticket record; it borrows from the reply, so the reply
//  must outlive it. Returns -1 if the record is malformed.
int ticket_view_init(ticket_view_t *view, const redisReply *record, bool with_history);
void ticket_view_fini(ticket_view_t *view);

//  The part of a submitted ticket stored as `pb`. Caller frees *data_p.
int ticket_pack_content(const Tier__V1__Ticket *submitted, uint8_t **data_p, size_t *size_p);

//  One history entry as store.lua stores it. Caller frees the result.
char *ticket_history_entry(int64_t at_ms, int kind, const char *actor, const char *text,
                           const char *reason, bool automatic);

#endif
