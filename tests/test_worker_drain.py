"""On SIGTERM a worker drains: it takes no new ticket, finishes what it holds
within its grace period and exits 0; what it cannot finish in time is
released back to the queue (reason "worker stopping")."""
import os
import signal

import harness
from harness import check, history_of


def test(tb):
    tb.start_redis()
    tb.start_tierd()
    started = tb.path("started")
    slow = tb.handler("slow", f"""cat >/dev/null; echo "$TIER_TICKET_ID" >> {started}
sleep "$(cat {tb.path('sleep')})"
printf '%s' '{{"action":"resolve","text":"finished while draining"}}'
""")
    with open(tb.path("sleep"), "w") as f:
        f.write("2")

    # 1. Finishes within the grace period.
    w = tb.start_worker("L1", capacity=2, exec_cmd=slow, agent="drainer",
                        extra_args=["--grace", "10"])
    tb.wait_agent("drainer")
    first = tb.tierctl("submit", "--subject", "finish me")["id"]
    harness.wait_until(lambda: os.path.exists(started), 10, "the handler to start")
    w.send_signal(signal.SIGTERM)
    tb.wait_agent("drainer", state="draining", timeout=5)
    second = tb.tierctl("submit", "--subject", "not for a draining worker")["id"]
    check(w.wait(timeout=15) == 0, "the worker exits 0 after draining")
    t = tb.show(first)
    check(t["state"] == "resolved", f"the held ticket was finished: {t['state']}")
    check(history_of(t, "resolved")[0]["actor"] == "drainer", "by the draining worker")
    t2 = tb.show(second)
    check(t2["state"] == "queued" and not history_of(t2, "offered"),
          f"nothing new offered to a draining worker: {t2}")

    # 2. Grace too short: released back to the queue.
    with open(tb.path("sleep"), "w") as f:
        f.write("30")
    w2 = tb.start_worker("L1", exec_cmd=slow, agent="quitter", extra_args=["--grace", "1"])
    tb.wait_state(second, "assigned", timeout=10)
    w2.send_signal(signal.SIGTERM)
    check(w2.wait(timeout=15) == 0, "exits 0 after releasing")
    t2 = tb.show(second)
    check(t2["state"] == "queued", f"released back to the queue: {t2['state']}")
    rel = history_of(t2, "released")
    check(len(rel) == 1 and rel[0]["actor"] == "quitter" and "stopping" in rel[0]["reason"],
          f"released with reason 'worker stopping': {rel}")
    check(not history_of(t2, "requeued"), "released by the worker, not requeued by the router")


harness.main(test)
