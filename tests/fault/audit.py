"""audit — did every acknowledged ticket reach exactly one terminal state?

Reads every acknowledged ticket back through tierd (GetRequest with history,
pipelined) and the raw key space of Redis, and counts:

  lost        acked tickets not in exactly one terminal state at the end:
              unknown to tierd, still queued/offered/assigned, or with no
              terminal entry (RESOLVED or ABANDONED) in their history
  duplicated  tickets with more than one terminal history entry (resolved
              twice, resolved and abandoned), or created more than once:
              more ticket hashes in Redis than acknowledged external ids, an
              external id mapped to another ticket, two CREATED entries
  misapplied  results applied from an agent that did not hold the ticket
              (a history entry by an agent after the router took the
              ticket back from it) — what stale refusal must prevent
  responded_twice  one Respond recorded twice in one attempt (the customer
              would get the same answer twice): a result applied twice
"""

import itertools
import time

import zmq

RESEND_MS = 3000
WINDOW = 256

TERMINAL = ("HISTORY_RESOLVED", "HISTORY_ABANDONED")
# Entries only the holder of the current attempt may cause.
HOLDER_ONLY = ("HISTORY_ASSIGNED", "HISTORY_AGENT_RESPONSE", "HISTORY_RESOLVED",
               "HISTORY_ESCALATED", "HISTORY_RELEASED")
# Entries after which nobody holds the ticket.
UNHOLD = ("HISTORY_RESOLVED", "HISTORY_ESCALATED", "HISTORY_RELEASED", "HISTORY_REQUEUED",
          "HISTORY_ABANDONED", "HISTORY_DEAD_LETTERED", "HISTORY_DEFERRED")


def fetch(pb, endpoint, ids, timeout_s=120):
    """Every ticket in ids with its history, as {id: Ticket}; ids tierd
    says it does not know map to None. Resends on silence."""
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    out, pending, todo = {}, {}, list(ids)
    rids = itertools.count(1)
    deadline = time.monotonic() + timeout_s
    try:
        while (todo or pending) and time.monotonic() < deadline:
            now = time.monotonic()
            while todo and len(pending) < WINDOW:
                tid = todo.pop()
                rid = next(rids)
                req = pb.ClientRequest(request_id=rid, protocol_version=1,
                                       get=pb.GetRequest(id=tid, with_history=True))
                pending[rid] = [tid, req.SerializeToString(), 0.0]
            for entry in pending.values():
                if entry[2] <= now:
                    entry[2] = now + RESEND_MS / 1000
                    sock.send(entry[1])
            if sock.poll(50):
                while sock.poll(0):
                    reply = pb.ClientReply()
                    reply.ParseFromString(sock.recv_multipart()[-1])
                    entry = pending.pop(reply.request_id, None)
                    if entry is None:
                        continue
                    if reply.error.code == pb.ERROR_UNAVAILABLE:
                        pending[reply.request_id] = entry
                        entry[2] = time.monotonic() + 0.2
                    elif reply.error.code == pb.ERROR_UNKNOWN_TICKET:
                        out[entry[0]] = None
                    else:
                        out[entry[0]] = reply.ticket
    finally:
        sock.close()
    if todo or pending:
        raise RuntimeError(f"tierd did not answer {len(todo) + len(pending)} gets "
                           f"within {timeout_s}s")
    return out


def kinds(pb, ticket):
    return [pb.HistoryKind.Name(h.kind) for h in ticket.history]


def responses_twice(pb, ticket):
    """Attempts in which the same agent response was recorded more than once:
    a Respond applied twice (the fault suite's handler responds once per
    attempt)."""
    twice, seen = [], {}
    attempt = 0
    for h in ticket.history:
        kind = pb.HistoryKind.Name(h.kind)
        if kind == "HISTORY_OFFERED":
            attempt, seen = attempt + 1, {}
        elif kind == "HISTORY_AGENT_RESPONSE":
            key = (h.actor, h.text)
            seen[key] = seen.get(key, 0) + 1
            if seen[key] == 2:
                twice.append((attempt, h.actor, h.at_ms))
    return twice


def misapplied(pb, ticket):
    """History entries caused by an agent that did not hold the ticket."""
    holder, bad = None, []
    for h in ticket.history:
        kind = pb.HistoryKind.Name(h.kind)
        if kind == "HISTORY_OFFERED":
            holder = h.actor
        elif kind in HOLDER_ONLY and h.actor != holder:
            bad.append((kind, h.actor, holder, h.at_ms))
        if kind in UNHOLD:
            holder = None
    return bad


class Verdict:
    """What the audit found, with examples for the report."""

    def __init__(self):
        self.acked = 0
        self.resolved = 0
        self.abandoned = 0
        self.dead = 0
        self.lost = []          # (id, why)
        self.duplicated = []    # (id or ext, why)
        self.misapplied = []    # (id, entries)
        self.responded_twice = []  # (id, [(attempt, agent, at_ms)])
        self.cancel_broken = [] # cancel acknowledged but the ticket was resolved
        self.requeued = 0       # tickets tierd took back (requeued entries), all tickets
        self.max_attempt = 0    # the most delivery attempts one ticket needed

    def ok(self):
        return not (self.lost or self.duplicated or self.misapplied or self.cancel_broken
                    or self.responded_twice)


def judge(pb, load, tickets, redis_ticket_count, redis_ext_map):
    """The verdict over load.acked given the tickets read back (fetch) and
    Redis' own count of ticket hashes and external-id map."""
    v = Verdict()
    v.acked = len(load.acked)
    for ext, first, other in load.created_twice:
        v.duplicated.append((ext, f"submit answered with ids {first} and {other}"))
    for ext, tid in load.acked.items():
        t = tickets.get(tid)
        if t is None:
            v.lost.append((tid, "unknown to tierd"))
            continue
        state = pb.TicketState.Name(t.state)
        names = kinds(pb, t)
        terminal = [k for k in names if k in TERMINAL]
        v.requeued += names.count("HISTORY_REQUEUED")
        v.max_attempt = max(v.max_attempt, t.attempt)
        if state == "STATE_RESOLVED":
            v.resolved += 1
        elif state == "STATE_ABANDONED":
            v.abandoned += 1
        elif state == "STATE_DEAD":
            v.dead += 1
        if state not in ("STATE_RESOLVED", "STATE_ABANDONED") or not terminal:
            v.lost.append((tid, f"{state}, agent {t.agent!r}, history {names[-6:]}"))
        if len(terminal) > 1 or names.count("HISTORY_CREATED") != 1:
            v.duplicated.append((tid, f"history {names}"))
        if t.external_id != ext:
            v.duplicated.append((tid, f"external id {t.external_id!r}, expected {ext!r}"))
        if redis_ext_map is not None and redis_ext_map.get(ext) != tid:
            v.duplicated.append((tid, f"redis maps {ext} to {redis_ext_map.get(ext)}"))
        twice = responses_twice(pb, t)
        if twice:
            v.responded_twice.append((tid, twice))
        bad = misapplied(pb, t)
        if bad:
            v.misapplied.append((tid, bad))
        if tid in load.cancelled and state != "STATE_ABANDONED":
            v.cancel_broken.append((tid, state))
    if redis_ticket_count != len(load.acked):
        v.duplicated.append(("*", f"{redis_ticket_count} tickets in Redis for "
                                  f"{len(load.acked)} acknowledged external ids"))
    return v
