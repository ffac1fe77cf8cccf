// tierjson — text and JSON forms of the tier.v1 protobuf messages.
//
// The one place that decides how tickets, events, queues and agents look as
// text: tierctl prints with it, tier-worker feeds it to handlers, the tests
// compare against it. Enum names come from the protobuf-c descriptors, so a
// new enum value in tier.proto needs no code here.
//
// Ownership: every `cJSON *` returned is a new tree the caller deletes with
// cJSON_Delete; every `const char *` returned is borrowed and lives as long
// as the process.
#ifndef TIERJSON_H_INCLUDED
#define TIERJSON_H_INCLUDED

#include <cJSON.h>
#include "tier.pb-c.h"

#ifdef __cplusplus
extern "C" {
#endif

// The text form of an enum value: the value name without its prefix, in
// lowercase ("chat", "customer_message", "dead"); levels are "L1".."L3".
// Value 0 (`*_UNSPECIFIED`) is "". A number outside the enum is "unknown".
// Thread-safe.
const char *tierjson_enum_name(const ProtobufCEnumDescriptor *d, int value);

// The value of an enum text form, case-insensitive, with or without the
// prefix: "chat", "CHAT" and "CHANNEL_CHAT" all give CHANNEL_CHAT; "l2" and
// "L2" give LEVEL_L2; "" gives 0. Returns 0 and sets *value, or -1 if the
// name is not in the enum.
int tierjson_enum_value(const ProtobufCEnumDescriptor *d, const char *name, int *value);

// The value name of an enum without its prefix, as written in tier.proto:
// "UNKNOWN_TICKET" for ERROR_UNKNOWN_TICKET. "UNKNOWN" if not in the enum.
const char *tierjson_enum_suffix(const ProtobufCEnumDescriptor *d, int value);

// The ticket JSON of the brief: every key always present, history included
// (an empty array when the ticket carries none), times as JSON numbers.
// Returns NULL only when out of memory.
cJSON *tierjson_ticket(const Tier__V1__Ticket *t);

// One history entry, as it appears inside a ticket's "history" array.
cJSON *tierjson_history_entry(const Tier__V1__HistoryEntry *h);

// An event: seq, at_ms, kind, ticket_id, level, department, agent,
// from_level, from_department, reason, depth, oldest_ms, state, agent_state,
// channel, priority, csat, attempt.
cJSON *tierjson_event(const Tier__V1__Event *e);

// A queue: level, department, depth, oldest_ms, oldest_wait_ms.
cJSON *tierjson_queue_info(const Tier__V1__QueueInfo *q);

// An agent: id, level, departments, capacity, load, state, bot,
// last_seen_ms, tickets.
cJSON *tierjson_agent_info(const Tier__V1__AgentInfo *a);

// A snapshot: seq, queues (level, department, tickets: id, priority, channel,
// queued_ms, subject) and agents.
cJSON *tierjson_snapshot(const Tier__V1__SnapshotReply *s);

// Which intake rules fired and where the ticket would go:
// {"hits":[{"rule":..,"action":..}],"ticket":{ticket JSON},"sla_policy":..,
//  "first_response_due_ms":..,"resolution_due_ms":..}.
cJSON *tierjson_rules_test(const Tier__V1__RulesTestReply *r);

// Reads a ticket from its JSON form: the keys tierjson_ticket writes, any of
// them missing ("history" is accepted and ignored; so is "tags": null). An
// unknown key is an error, so that a typo ("subjet") does not pass unseen.
// Initialises *t first; absent keys leave their field at its default.
// On success returns 0, and:
//   - t's strings are borrowed from json: valid while json lives, never
//     freed through t;
//   - t->customer (only if json has "customer") and the t->tags array are
//     allocated here: release them with tierjson_ticket_clear (t).
// On error returns -1, t holds nothing allocated, and tierjson_error () says
// which key was wrong and why.
int tierjson_ticket_from(const cJSON *json, Tier__V1__Ticket *t);

// Frees what tierjson_ticket_from allocated in t and initialises t again.
// Only for tickets filled by tierjson_ticket_from.
void tierjson_ticket_clear(Tier__V1__Ticket *t);

// Why the last tierjson_ticket_from of this thread failed, e.g.
// `"channel": "fax" is not one of chat, email, ...`. Borrowed, per thread.
const char *tierjson_error(void);

#ifdef __cplusplus
}
#endif

#endif
