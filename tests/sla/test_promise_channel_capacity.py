"""A promise respects per-channel capacity: the agent (capacity 3, phone=1)
defers a phone ticket A ("call me back in a second"), then takes phone
ticket B and holds it. When A's promise comes due the agent has room for
tickets but not for a second call, so A goes to the front of the queue
instead of being offered to it; once B ends, A comes to the agent and is
resolved."""
import time

import sla_harness as sh
from sla_harness import check

PROMISE = "call me back"


def test(tb):
    sh.start(tb, workers={"promise_grace": "30s"})
    seen = tb.path("seen")
    cmd = tb.handler("caller", f"""import json, os, sys, time
ticket = json.load(sys.stdin)
mark = os.path.join({seen!r}, ticket["id"])
if {PROMISE!r} in ticket["subject"] and not os.path.exists(mark):
    os.makedirs({seen!r}, exist_ok=True)
    open(mark, "w").close()
    print(json.dumps({{"action": "defer", "until": "+1s", "reason": "call back in 1 s"}}))
    sys.exit(0)
while not os.path.exists({tb.path('go-')!r} + ticket["id"]):
    time.sleep(0.02)
print(json.dumps({{"action": "resolve", "text": "done"}}))
""", lang="py")
    tb.start_worker("L1", capacity=3, exec_cmd=cmd, agent="multi",
                    extra_args=("--channel-capacity", "phone=1"))
    tb.wait_agent("multi")

    a = sh.submit(tb, PROMISE, "--channel", "phone")
    tb.wait_state(a, "deferred", timeout=10)
    b = sh.submit(tb, "call 2", "--channel", "phone")
    tb.wait_state(b, "assigned", timeout=10)

    # A is due a second after it was deferred; give it time to come due.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and tb.state_of(a) == "deferred":
        time.sleep(0.1)
    time.sleep(0.5)  # a wrong offer to the agent would show by now
    check(tb.state_of(a) == "queued",
          f"the due promise waits in the queue while the agent is on a call: {tb.show(a)}")
    requeued = [h for h in tb.show(a).get("history", [])
                if "promise due" in (h.get("reason") or "")]
    check(requeued, f"history says the promise came due and the agent was not available: "
          f"{tb.show(a).get('history')}")

    open(tb.path(f"go-{b}"), "w").close()
    tb.wait_state(b, "resolved", timeout=10)
    tb.wait_state(a, "assigned", timeout=10)
    check(tb.show(a).get("agent") == "multi", f"A came back to its agent: {tb.show(a)}")
    open(tb.path(f"go-{a}"), "w").close()
    tb.wait_state(a, "resolved", timeout=10)


sh.main(test)
