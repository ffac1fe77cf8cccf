"""What a policy's action does on a breach while the ticket waits in a queue.

  raise_priority  the ticket's priority goes up one step (normal -> high),
                  once, recorded in history, and the queue re-orders by the
                  new boost: it now goes before a ticket due earlier.
  notify          warning and breach in history and on the event stream,
                  nothing else: same level, same priority, still queued.
  wait            the per-level wait clock (wait_L1, wait_L2): escalate
                  L1 -> L2 when wait_L1 runs out, and the clock starts again
                  at L2 with wait_L2, so L2 -> L3 after that.

Usage: test_breach_actions.py raise_priority|notify|wait
"""
import sys
import time

import sla_harness as sh
from sla_harness import check

TARGET_MS = 400
SETTLE_S = 1.0  # after the breach: long enough for anything else to (wrongly) fire


def queued_order(tb):
    for q in tb.tierctl("snapshot")["queues"]:
        if q["level"] == "L1" and q["department"] == "":
            return [t["id"] for t in q["tickets"]]
    return []


def raise_priority(tb):
    # e-mail: due in 200 ms (notify); chat: due in 400 ms, raise_priority; a
    # high-priority ticket counts 10 s earlier in the order.
    sh.start(tb, sla={"email": {"first_response": "200ms"},
                      "chat": {"first_response": f"{TARGET_MS}ms", "action": "raise_priority"}},
             sla_global={"boost_high": "10s"})
    watch = sh.Watcher(tb)
    early = sh.submit(tb, "due first", "--channel", "email")
    tid = sh.submit(tb, "raise me", "--channel", "chat")
    check(queued_order(tb) == [early, tid], f"before the breach the earlier deadline leads: "
          f"{queued_order(tb)}")
    t = sh.wait_history(tb, tid, "sla", text="breach", timeout=10)
    t = sh.wait_ticket(tb, tid, lambda t: t["priority"] == "high", timeout=5,
                       what="priority raised to high")
    raised = [h for h in sh.entries(t, "sla") if h["text"].startswith("priority raised")]
    check(len(raised) == 1, f"one priority raise in history: {t['history']}")
    check(raised[0]["automatic"] and raised[0]["reason"] == "first response target missed",
          f"the raise says why: {raised[0]}")
    check("high" in raised[0]["text"],
          f"the history entry names the new priority as people read it (high): {raised[0]}")
    check(t["level"] == "L1" and t["state"] == "queued", f"still queued at L1: {t}")
    check(not sh.entries(t, "escalated"), f"raise_priority does not escalate: {t['history']}")
    check(queued_order(tb) == [tid, early], f"the raised ticket now goes first (boost_high): "
          f"{queued_order(tb)}")
    time.sleep(SETTLE_S)
    t = tb.show(tid)
    check(t["priority"] == "high", f"raised once only: {t['priority']}")
    watch.wait(tid, "sla_breach")


def notify(tb):
    sh.start(tb, sla={"chat": {"first_response": f"{TARGET_MS}ms", "action": "notify"}})
    watch = sh.Watcher(tb)
    tid = sh.submit(tb, "just tell somebody", "--channel", "chat")
    sh.wait_history(tb, tid, "sla", text="breach", timeout=10)
    time.sleep(SETTLE_S)
    t = tb.show(tid)
    check([h["text"] for h in sh.entries(t, "sla")] == ["warning", "breach"],
          f"only a warning and a breach: {t['history']}")
    check(t["level"] == "L1" and t["priority"] == "normal" and t["state"] == "queued",
          f"notify changes nothing else: {t}")
    check(not sh.entries(t, "escalated"), f"no escalation: {t['history']}")
    check(len(watch.wait(tid, "sla_warning")) == 1 and len(watch.wait(tid, "sla_breach")) == 1,
          "one warning and one breach event")


def wait_clock(tb):
    sh.start(tb, sla={"chat": {"wait_L1": "300ms", "wait_L2": "600ms", "action": "escalate"}})
    tid = sh.submit(tb, "nobody is here", "--channel", "chat")
    t = sh.wait_ticket(tb, tid, lambda t: t["level"] == "L3", timeout=10, what="at L3")
    esc = sh.entries(t, "escalated")
    check([(e["from_level"], e["to_level"]) for e in esc] == [("L1", "L2"), ("L2", "L3")],
          f"L1->L2 then L2->L3: {esc}")
    check(all(e["automatic"] and e["actor"] == "sla"
              and e["reason"] == "wait at this level target missed" for e in esc),
          f"both by the wait clock: {esc}")
    sh.near(esc[0]["at_ms"], t["created_ms"] + 300, what="L1 wait ran out after 300 ms")
    sh.near(esc[1]["at_ms"], esc[0]["at_ms"] + 600, what="L2 wait counted from arrival at L2")
    breaches = sh.entries(t, "sla", text="breach")
    check(len(breaches) == 2, f"one breach per level: {t['history']}")
    time.sleep(SETTLE_S)  # wait_L3 is none: nothing more happens
    t = tb.show(tid)
    check(len(sh.entries(t, "escalated")) == 2 and t["level"] == "L3",
          f"no target at L3, no more escalation: {t['history']}")


MODES = {"raise_priority": raise_priority, "notify": notify, "wait": wait_clock}

if len(sys.argv) != 2 or sys.argv[1] not in MODES:
    sys.exit(f"usage: {sys.argv[0]} {'|'.join(MODES)}")
sh.main(MODES[sys.argv[1]], name=f"breach_action_{sys.argv[1]}")
