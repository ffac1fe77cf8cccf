"""Cancelling a ticket a worker holds abandons it, and the worker's later
result is refused: the ticket is never resolved. Checked twice: with a real
tier-worker whose handler is still running, and with a raw protocol worker
that sends Resolve after the cancel and must get ERROR_STALE."""
import os
import time

import harness
from harness import check, history_of

HANDLER_SLEEP_S = 3


def test(tb):
    tb.start_redis()
    tb.start_tierd()
    started = tb.path("started")
    finished = tb.path("finished")
    slow = tb.handler("slow", f"""cat >/dev/null; touch {started}
sleep {HANDLER_SLEEP_S}
touch {finished}
printf '%s' '{{"action":"resolve","text":"too late"}}'
""")
    w = tb.start_worker("L1", exec_cmd=slow, agent="slowpoke")
    tb.wait_agent("slowpoke")
    tid = tb.tierctl("submit", "--subject", "Cancel me while assigned")["id"]
    tb.wait_state(tid, "assigned", timeout=10)
    harness.wait_until(lambda: os.path.exists(started), 10, "handler to start")

    t = tb.tierctl("cancel", tid, "--reason", "customer hung up")
    check(t["state"] == "abandoned", f"cancel abandons an assigned ticket: {t}")
    check(tb.queue_depth("L1") == 0, "nothing queued")
    # Give the handler time to finish and the worker time to send its result.
    time.sleep(HANDLER_SLEEP_S + 1.5)
    t = tb.show(tid)
    check(t["state"] == "abandoned", f"still abandoned after the handler ended: {t['state']}")
    check(not history_of(t, "resolved"), f"never resolved: {t['history']}")
    check(len(history_of(t, "abandoned")) == 1, "abandoned once")
    agent = [a for a in tb.tierctl("agents")["agents"] if a["id"] == "slowpoke"]
    check(agent and agent[0]["load"] == 0 and tid not in agent[0]["tickets"],
          f"the worker no longer holds it: {agent}")
    check(w.alive(), "tier-worker survived the revoke")

    # Same thing on the wire: Accept, cancel, then a late Resolve.
    w.kill()
    pb = tb.pb()
    raw = tb.raw_worker("raw-L1")
    tid2 = tb.tierctl("submit", "--subject", "Cancel me too")["id"]
    offer = raw.wait_push("offer").offer
    check(offer.ticket.id == tid2, f"raw worker offered {tid2}: {offer.ticket.id}")
    acc = raw.call(accept=pb.Accept(ticket_id=tid2, attempt=offer.ticket.attempt))
    check(not acc.error.code and acc.done.state == pb.STATE_ASSIGNED, f"accepted: {acc}")
    tb.tierctl("cancel", tid2)
    revoke = raw.wait_push("revoke", timeout_s=5).revoke
    check(revoke.ticket_id == tid2, f"revoke names the ticket: {revoke}")
    late = raw.call(resolve=pb.Resolve(ticket_id=tid2, attempt=offer.ticket.attempt,
                                       text="late"))
    check(late.error.code == pb.ERROR_STALE, f"late resolve refused STALE: {late}")
    t2 = tb.show(tid2)
    check(t2["state"] == "abandoned" and not history_of(t2, "resolved"), f"not resolved: {t2}")


harness.main(test)
