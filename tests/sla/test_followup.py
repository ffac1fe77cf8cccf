"""Follow-ups (seed 003: follow up after the solution). With
[workers] followup_L1 = 500ms, a ticket resolved at L1 gets, 500 ms later,
one follow-up ticket: subject "Follow-up: ...", tag follow-up, external id
followup:ID, the same customer, channel and level. Exactly one: resolving
the follow-up itself does not start a chain of follow-ups of follow-ups,
and a ticket resolved at L2 (followup_L2 off by default) gets none."""
import time

import sla_harness as sh
from sla_harness import check

FOLLOWUP_MS = 500
SETTLE_S = 2.5   # several follow-up periods: a chain would show


def test(tb):
    sh.start(tb, workers={"followup_L1": f"{FOLLOWUP_MS}ms"})
    cmd, path = sh.recorder(tb, "resolver", {"action": "resolve", "text": "done"})
    tb.start_worker("L1", exec_cmd=cmd, agent="l1")
    tb.start_worker("L2", exec_cmd=cmd, agent="l2")
    tid = sh.submit(tb, "Broken zipper", "--channel", "whatsapp", "--customer", "c-fu")
    l2 = sh.submit(tb, "Needs L2", "--level", "L2", "--customer", "c-l2")
    t = tb.wait_state(tid, "resolved", timeout=10)
    tb.wait_state(l2, "resolved", timeout=10)
    resolved_at = t["resolved_ms"]

    fu_id = sh.harness.wait_until(lambda: tb.redis.cmd("GET", f"tier:x:followup:{tid}"), 10,
                                  f"a follow-up ticket with external id followup:{tid}")
    fu = tb.show(fu_id)
    check(fu["subject"] == "Follow-up: Broken zipper", f"subject: {fu['subject']!r}")
    check("follow-up" in fu["tags"], f"tagged follow-up: {fu['tags']}")
    check((fu["customer"]["id"], fu["channel"], fu["level"]) == ("c-fu", "whatsapp", "L1"),
          f"same customer, channel and level: {fu}")
    sh.near(fu["created_ms"], resolved_at + FOLLOWUP_MS, what="created followup_L1 after")
    tb.wait_state(fu["id"], "resolved", timeout=10)

    time.sleep(SETTLE_S)
    count = int(tb.redis.cmd("GET", "tier:nextid"))
    check(count == 3, f"three tickets in all (the two submitted and one follow-up), "
          f"got {count}: {[r[0] for r in sh.records(path)]}")
    check(tb.redis.cmd("GET", f"tier:x:followup:{l2}") is None,
          "no follow-up for the L2 ticket (followup_L2 off)")


sh.main(test)
