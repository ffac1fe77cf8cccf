"""An L1 worker escalates a ticket to department billing; only a worker that
serves billing gets it and resolves it. The ticket keeps department billing
and its history records a functional escalation with the reason."""
import os

import harness
from harness import check, history_of


def test(tb):
    tb.start_redis()
    tb.start_tierd()
    general_calls = tb.path("general-calls")
    l1 = tb.handler("l1", f"""cat >/dev/null
echo "$TIER_TICKET_ID" >> {general_calls}
printf '%s' '{{"action":"escalate","department":"billing","reason":"invoice dispute","notes":"charged twice"}}'
""")
    billing = tb.handler("billing", """cat >/dev/null
printf '%s' '{"action":"resolve","text":"refund issued"}'
""")
    tb.start_worker("L1", exec_cmd=l1, agent="front-L1")
    tb.wait_agent("front-L1")
    tid = tb.tierctl("submit", "--subject", "Charged twice for May", "--channel", "email")["id"]

    # Nobody serves billing yet: the ticket waits in the billing queue.
    def escalated():
        t = tb.show(tid)
        return t if t["department"] == "billing" and t["state"] == "queued" else None
    t = harness.wait_until(escalated, 15, f"ticket {tid} queued in billing")
    check(t["level"] == "L1", f"functional escalation keeps the level: {t['level']}")
    check(tb.queue_depth("L1", "billing") == 1, "billing queue holds the ticket")
    check(tb.queue_depth("L1", "") == 0, "general queue is empty")

    tb.start_worker("L1", departments=["billing"], exec_cmd=billing, agent="bill-L1")
    t = tb.wait_state(tid, "resolved", timeout=15)
    check(t["department"] == "billing", f"department stays billing: {t['department']!r}")
    esc = history_of(t, "escalated")
    check(len(esc) == 1, f"one escalation: {esc}")
    e = esc[0]
    check(e["escalation"] == "functional", f"functional: {e}")
    check(e["to_department"] == "billing" and e["from_department"] == "", f"''->billing: {e}")
    check(e["reason"] == "invoice dispute", f"reason kept: {e}")
    check(e["actor"] == "front-L1", f"escalated by front-L1: {e}")
    res = history_of(t, "resolved")
    check(len(res) == 1 and res[0]["actor"] == "bill-L1", f"resolved once by bill-L1: {res}")
    check("charged twice" in str(t["history"]), "escalation notes kept")
    with open(general_calls) as f:
        calls = f.read().split()
    check(calls == [tid], f"the general L1 worker handled it exactly once: {calls}")
    check(tb.queue_depth("L1", "billing") == 0, "billing queue empty at the end")


harness.main(test)
