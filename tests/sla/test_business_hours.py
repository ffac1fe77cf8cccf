"""Business hours: with [sla] business_hours set to a window that is closed
right now, no SLA clock runs — first response, resolution and the wait in
the level's queue alike — so a chat ticket with 400 ms targets gets no
warning or breach while the business is closed. Control: the same config
with a window that is open all day ("sun-sat 00:00-24:00") breaches all
three within a second or two."""
import time

import sla_harness as sh
from sla_harness import check

TARGETS = {"first_response": "400ms", "resolution": "800ms", "wait_L1": "400ms",
           "action": "notify"}
CLOSED_WAIT_S = 2.0


def closed_window():
    """A daily one-hour window at least ten hours away from now (local time,
    the same as tierd's)."""
    hour = time.localtime().tm_hour
    start = (hour + 12) % 24
    if start == 23:  # a window may not wrap past midnight
        start = 22
    return f"sun-sat {start:02d}:00-{start + 1:02d}:00"


def run(tb, window):
    tierd = sh.start(tb, sla={"chat": TARGETS}, sla_global={"business_hours": window})
    tid = sh.submit(tb, f"in hours {window}", "--channel", "chat")
    return tierd, tid


def test(tb):
    window = closed_window()
    _, tid = run(tb, window)
    time.sleep(CLOSED_WAIT_S)
    t = tb.show(tid)
    fired = [(h["text"], h["reason"]) for h in sh.entries(t, "sla")]
    check(not fired, f"business hours {window!r} (closed now, {time.strftime('%a %H:%M')}): "
          f"no clock may run, but history has {fired}")

    # Control: open all day, the same targets breach (the clocks work).
    tb.tierd.kill()
    tb.tierd = None
    tb.redis = None
    _, tid = run(tb, "sun-sat 00:00-24:00")
    t = sh.wait_ticket(tb, tid, lambda t: len(sh.entries(t, "sla", text="breach")) == 3,
                       timeout=10, what="three breaches with business hours open")
    reasons = sorted(h["reason"] for h in sh.entries(t, "sla", text="breach"))
    check(reasons == ["first response target missed", "resolution target missed",
                      "wait at this level target missed"], f"all three clocks: {reasons}")


sh.main(test)
