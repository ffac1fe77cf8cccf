"""SLA clocks live in the stored ticket in Redis (due times and the stage of
each clock) and fire exactly once, whatever happens to the router: tierd is
SIGKILLed while timers are pending and restarted

  A  after the warning and the breach were both due (both fire late, once),
  B  between the warnings and the breaches,
  C  over and over (every 300 ms) while a batch's timers come due.

In the end every ticket has exactly one warning, one breach and one
automatic escalation L1 -> L2 (the policy's action) in its history."""
import signal
import time

import sla_harness as sh
from sla_harness import check

FIRST_RESPONSE_MS = 1500
WARN_MS = FIRST_RESPONSE_MS * 80 // 100
BATCH = 8
KILLS_C = 6


def submit_batch(tb, name):
    return sh.submit_many(tb, [f"{name} {i}" for i in range(BATCH)], channel="chat")


def kill(tb):
    tb.tierd.kill(signal.SIGKILL)


def wait_escalated(tb, ids, timeout=15):
    for tid in ids:
        sh.wait_ticket(tb, tid, lambda t: t["level"] == "L2", timeout=timeout,
                       what="escalated by the SLA")


def check_once(tb, ids, name):
    for tid in ids:
        t = tb.show(tid)
        sla = [(h["text"], h["reason"]) for h in sh.entries(t, "sla")]
        check(sla == [("warning", "first response target 80% used"),
                      ("breach", "first response target missed")],
              f"batch {name}, ticket {tid}: one warning then one breach, got {sla}")
        esc = sh.entries(t, "escalated")
        check(len(esc) == 1 and (esc[0]["from_level"], esc[0]["to_level"]) == ("L1", "L2")
              and esc[0]["automatic"], f"batch {name}, ticket {tid}: one automatic "
              f"escalation L1->L2, got {esc}")
        check(t["level"] == "L2" and t["state"] == "queued", f"{tid} waits at L2: {t}")


def test(tb):
    sh.start(tb, sla={"chat": {"first_response": f"{FIRST_RESPONSE_MS}ms",
                               "action": "escalate"}})
    tb.pb()  # generate the protobuf module now, not between submit and kill

    # A: down from before the warnings until after the breaches.
    a = submit_batch(tb, "A")
    kill(tb)
    killed_after_ms = sh.now_ms() - tb.stored(a[0]).created_ms
    check(killed_after_ms < WARN_MS, f"tierd was killed before the first warning was due "
          f"({killed_after_ms} ms after the first ticket; test setup, machine too slow?)")
    time.sleep(FIRST_RESPONSE_MS / 1000 + 0.5)
    check(not any(sh.stored_sla_entries(tb, tid) for tid in a), "nothing fired while tierd was down")
    tb.tierd.restart()
    wait_escalated(tb, a)
    check(len(sh.stored_sla_entries(tb, a[0])) == 2, "the Redis-side view sees them now")

    # B: down between the warnings and the breaches.
    b = submit_batch(tb, "B")
    sh.wait_history(tb, b[-1], "sla", text="warning", timeout=10)
    kill(tb)
    time.sleep(0.5)
    tb.tierd.restart()
    wait_escalated(tb, b)

    # C: killed again and again while the timers come due.
    c = submit_batch(tb, "C")
    deadline = time.monotonic() + FIRST_RESPONSE_MS / 1000 + 1
    kills = 0
    while kills < KILLS_C or time.monotonic() < deadline:
        time.sleep(0.3)
        kill(tb)
        tb.tierd.restart()
        kills += 1
    wait_escalated(tb, c)

    time.sleep(0.5)  # anything that would fire twice has had its chance
    for ids, name in ((a, "A"), (b, "B"), (c, "C")):
        check_once(tb, ids, name)
    # Every first-response clock is breached (stage 2): nothing is left to
    # fire (and there is no wait target at L2).
    pending = [tid for ids in (a, b, c) for tid in ids if tb.stored(tid).stage_first != 2]
    check(not pending, f"no SLA clock left pending: {pending}")


sh.main(test)
