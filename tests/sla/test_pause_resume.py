"""The resolution clock stops while the ticket waits on the customer and
runs again on the customer's reply, its due time moved by the pause.

An agent answers with a question (Respond.awaiting_customer) and then either
holds the ticket (a raw protocol worker that keeps heartbeating) or defers it
(tier-worker, `"action":"defer"` with `"awaiting_customer": true`). The
resolution target is 1 s; the customer takes 3 s to answer. Meanwhile no
resolution warning or breach may appear. After `tierctl reply ID TEXT` the
clock resumes: the breach comes at created + 1 s + the paused time, and the
warning when 80 % of the *running* time is used (0.2 s before the breach),
not at 80 % of the stretched wall-clock span.

Usage: test_pause_resume.py held|deferred
"""
import sys
import time

import sla_harness as sh
from sla_harness import check

RESOLUTION_MS = 1000
WARN_PERCENT = 80
PAUSE_S = 3.0          # the customer takes this long to answer
EARLY_MS = 150         # a timer may fire this much early (ms rounding of the clocks)


def start(tb):
    sh.start(tb, sla={"chat": {"resolution": f"{RESOLUTION_MS}ms", "action": "notify"}})


def held(tb):
    """Returns the ticket id once an agent asked the customer and holds it."""
    start(tb)
    raw = tb.raw_worker("asker", "L1", capacity=1)
    tid = sh.submit(tb, "Where is my order?", "--channel", "chat", "--customer", "c-pause")
    offer = raw.wait_push("offer", timeout_s=5)
    att = offer.offer.ticket.attempt
    check(offer.offer.ticket.id == tid, f"the offer is our ticket: {offer}")
    reply = raw.call(accept=raw.pb.Accept(ticket_id=tid, attempt=att))
    check(not reply.error.code, f"accepted: {reply}")
    reply = raw.call(respond=raw.pb.Respond(ticket_id=tid, attempt=att,
                                            text="Which order number?", awaiting_customer=True))
    check(not reply.error.code, f"responded: {reply}")
    return tid, lambda seconds: sh.keep_alive(raw, seconds)


def deferred(tb):
    start(tb)
    cmd = tb.handler("ask", """cat >/dev/null
printf '%s' '{"action":"defer","until":"+30s","reason":"waiting for the order number","response":"Which order number?","awaiting_customer":true}'
""")
    tb.start_worker("L1", exec_cmd=cmd, agent="asker")
    tb.wait_agent("asker")
    tid = sh.submit(tb, "Where is my order?", "--channel", "chat", "--customer", "c-pause")
    tb.wait_state(tid, "deferred", timeout=5)
    return tid, time.sleep


def test_with(setup):
    def test(tb):
        tid, wait = setup(tb)
        t = sh.wait_history(tb, tid, "agent_response", timeout=5)
        created = t["created_ms"]
        paused_at = sh.one(t, "agent_response")["at_ms"]
        check(paused_at < created + RESOLUTION_MS * WARN_PERCENT // 100,
              f"the question came before the warning was due (test setup): "
              f"{paused_at - created} ms after creation")
        wait(PAUSE_S)  # past the original resolution due time, three times over
        t = tb.show(tid)
        check(not sh.entries(t, "sla"), f"no resolution warning or breach while waiting on "
              f"the customer: {t['history']}")

        tb.tierctl("reply", tid, "It is 12345")
        t = tb.show(tid)
        resumed_at = sh.one(t, "customer_message")["at_ms"]
        paused_ms = resumed_at - paused_at
        due = created + RESOLUTION_MS + paused_ms
        t = sh.wait_history(tb, tid, "sla", text="breach", timeout=RESOLUTION_MS / 1000 + 5)
        breach = sh.one(t, "sla", text="breach")
        warning = sh.one(t, "sla", text="warning")
        check(breach["reason"] == "resolution target missed", f"the resolution clock: {breach}")
        sh.near(breach["at_ms"], due, early=EARLY_MS,
                what=f"breach moved by the {paused_ms} ms paused")
        running_left_ms = RESOLUTION_MS * (100 - WARN_PERCENT) // 100
        sh.near(warning["at_ms"], due - running_left_ms, early=EARLY_MS,
                what=f"warning at {WARN_PERCENT} % of the running time "
                     f"({running_left_ms} ms before the breach)")
        check(warning["at_ms"] >= resumed_at, "no warning before the customer answered")
        wait(0.5)
        t = tb.show(tid)
        check(len(sh.entries(t, "sla")) == 2, f"one warning, one breach: {t['history']}")
    return test


MODES = {"held": held, "deferred": deferred}

if len(sys.argv) != 2 or sys.argv[1] not in MODES:
    sys.exit(f"usage: {sys.argv[0]} {'|'.join(MODES)}")
sh.main(test_with(MODES[sys.argv[1]]), name=f"pause_resume_{sys.argv[1]}")
