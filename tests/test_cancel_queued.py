"""Cancelling a queued ticket abandons it: state abandoned, the queue is
empty, history says abandoned with the reason, no worker ever gets it, and
cancelling it again is refused as INVALID_STATE."""
import os
import time

import harness
from harness import check


def test(tb):
    tb.start_redis()
    tb.start_tierd()
    tid = tb.tierctl("submit", "--subject", "Never mind")["id"]
    check(tb.queue_depth("L1") == 1, "queued before cancel")

    t = tb.tierctl("cancel", tid, "--reason", "found it myself")
    check(t["id"] == tid and t["state"] == "abandoned", f"cancel returns it abandoned: {t}")
    check(tb.state_of(tid) == "abandoned", "show says abandoned")
    check(tb.queue_depth("L1") == 0, "queue depth 0 after cancel")
    snap = tb.tierctl("snapshot")
    check(all(not q["tickets"] for q in snap["queues"]), f"snapshot has no tickets: {snap}")
    ab = harness.history_of(tb.show(tid), "abandoned")
    check(len(ab) == 1, f"one abandoned entry: {ab}")
    check("found it myself" in (ab[0]["reason"] + ab[0]["text"]), f"reason kept: {ab[0]}")
    check(tb.show(tid)["resolved_ms"] > 0, "terminal time set")

    again = tb.tierctl("cancel", tid, expect_rc=1)
    check("INVALID_STATE" in again.stderr, f"second cancel refused: {again!r}")

    # A worker that comes later never sees it.
    marker = tb.path("called")
    tb.start_worker("L1", exec_cmd=tb.handler("l1", f"""cat >/dev/null; touch {marker}
printf '%s' '{{"action":"resolve","text":"x"}}'
"""), agent="late")
    tb.wait_agent("late")
    probe = tb.tierctl("submit", "--subject", "probe")["id"]
    tb.wait_state(probe, "resolved", timeout=15)  # the worker does work...
    time.sleep(0.5)
    check(tb.state_of(tid) == "abandoned", "...but the cancelled ticket stays abandoned")
    check(not harness.history_of(tb.show(tid), "offered"), "cancelled ticket never offered")


harness.main(test)
