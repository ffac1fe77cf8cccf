"""One router per Redis prefix: a second tierd on the same Redis stands by
(answers UNAVAILABLE, saying so) and takes over when the first lets go of the
lock (SIGTERM), with every ticket; a router that stalls past its lease
(SIGSTOP) loses the prefix to the standby and, woken up, stands down instead
of writing over it (its next batch is fenced); and a router killed with
SIGKILL is taken over at once by one started on the same host."""
import signal
import time

import harness
from harness import check

LEASE = "[redis]\nlock_lease_ms = 1000\n"


def answers(tb, tierd):
    return tb.tierctl("queues", tierd=tierd, expect_rc=None, timeout_ms=500).returncode == 0


def refusal(tb, tierd):
    res = tb.tierctl("queues", tierd=tierd, expect_rc=None, timeout_ms=1000)
    return res.returncode, res.stderr


def test(tb):
    tb.start_redis()
    first = tb.start_tierd(config=LEASE, name="tierd-a")
    t1 = tb.tierctl("submit", "--subject", "before the takeover", tierd=first)["id"]

    # The second one on the same prefix waits.
    second = tb.start_tierd(config=LEASE, name="tierd-b", wait=False)
    rc, err = refusal(tb, second)
    check(rc != 0 and "UNAVAILABLE" in err and "standby" in err,
          f"the second router refuses, saying it stands by: rc {rc} {err!r}")
    check(answers(tb, first), "the first router still works")

    # SIGTERM: the first lets go of the lock; the second takes over.
    first.kill(signal.SIGTERM)
    harness.wait_until(lambda: answers(tb, second), 10, "the standby to take over")
    check(tb.tierctl("show", t1, tierd=second)["subject"] == "before the takeover",
          "the standby serves the tickets of the first")
    t2 = tb.tierctl("submit", "--subject", "after the takeover", tierd=second)["id"]
    check(int(t2) > int(t1), f"ids go on: {t1} then {t2}")

    # A stall past the lease: the other router takes over, and the stalled
    # one, woken up, must not write: its batch is fenced and it stands by.
    first.start()  # standby now
    harness.wait_until(lambda: "standby" in refusal(tb, first)[1], 10, "the restarted one to stand by")
    second.send_signal(signal.SIGSTOP)
    try:
        harness.wait_until(lambda: answers(tb, first), 15, "the standby to take over a stalled router")
    finally:
        second.send_signal(signal.SIGCONT)
    t3 = tb.tierctl("submit", "--subject", "while the other stalled", tierd=first)["id"]
    harness.wait_until(lambda: "standby" in refusal(tb, second)[1], 10,
                       "the stalled router to stand down")
    check("taken by another router" in second.log() or "standby" in second.log(),
          "the stalled router says why it stood down")
    check(tb.tierctl("show", t3, tierd=first)["subject"] == "while the other stalled",
          "the ticket taken in meanwhile is there")

    # SIGKILL: nobody lets go of the lock, but a router started on the same
    # host sees its owner is not running and takes over at once.
    first.kill(signal.SIGKILL)
    second.kill(signal.SIGTERM)
    started = time.monotonic()
    third = tb.start_tierd(config=LEASE, name="tierd-c")
    took = time.monotonic() - started
    check(answers(tb, third), "the new router answers")
    check(took < 5, f"took over from a killed router at once ({took:.1f}s)")
    for tid in (t1, t2, t3):
        check(tb.tierctl("show", tid, tierd=third)["state"] == "queued", f"{tid} still queued")


harness.main(test)
