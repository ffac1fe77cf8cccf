"""A worker SIGKILLed (with its handler) while holding a ticket loses it: the
ticket goes back to its queue (history: requeued) within a few heartbeat
intervals, another worker gets it, and it is resolved exactly once, by that
second worker."""
import os
import signal

import harness
from harness import check, history_of


def test(tb):
    tb.start_redis()
    tb.start_tierd()
    started = tb.path("started")
    stuck = tb.handler("stuck", f"""cat >/dev/null; touch {started}
sleep 30
printf '%s' '{{"action":"resolve","text":"from the dead"}}'
""")
    fast = tb.handler("fast", """cat >/dev/null
printf '%s' '{"action":"resolve","text":"solved by the survivor"}'
""")
    doomed = tb.start_worker("L1", exec_cmd=stuck, agent="doomed")
    tb.wait_agent("doomed")
    tid = tb.tierctl("submit", "--subject", "Hold me")["id"]
    tb.wait_state(tid, "assigned", timeout=10)
    harness.wait_until(lambda: os.path.exists(started), 10, "handler to start")
    check(tb.show(tid)["agent"] == "doomed", "held by doomed")
    later = tb.tierctl("submit", "--subject", "Submitted after")["id"]

    doomed.kill(signal.SIGKILL, group=True)
    # Back in the queue within a few heartbeat intervals (default 1 s x 3).
    harness.wait_until(lambda: history_of(tb.show(tid), "requeued"), 15,
                       f"ticket {tid} requeued after its worker died")
    check(tb.show(tid)["state"] == "queued", "queued again (no worker left)")
    snap = tb.tierctl("snapshot")
    order = [t["id"] for q in snap["queues"] if q["level"] == "L1" and q["department"] == ""
             for t in q["tickets"]]
    check(order == [tid, later], f"requeued to the front, before {later}: {order}")

    tb.start_worker("L1", exec_cmd=fast, agent="survivor")
    t = tb.wait_state(tid, "resolved", timeout=15)
    res = history_of(t, "resolved")
    check(len(res) == 1, f"resolved exactly once: {res}")
    check(res[0]["actor"] == "survivor", f"by the second worker: {res[0]}")
    check(res[0]["text"] == "solved by the survivor", f"its text: {res[0]}")
    req = history_of(t, "requeued")
    check(len(req) == 1 and req[0]["reason"], f"one requeue with a reason: {req}")
    assigned = [h["actor"] for h in history_of(t, "assigned")]
    check(assigned == ["doomed", "survivor"], f"assigned to doomed then survivor: {assigned}")
    check(t["attempt"] >= 2, f"second delivery attempt: {t['attempt']}")
    check(tb.wait_state(later, "resolved", timeout=15), "the later ticket follows")
    gone = [a for a in tb.tierctl("agents")["agents"] if a["id"] == "doomed"]
    check(not gone or gone[0]["state"] == "gone", f"doomed no longer ready: {gone}")


harness.main(test)
