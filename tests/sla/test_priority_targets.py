"""A policy's targets apply to normal priority; urgent gets a quarter, high
half, low double — unless an [sla NAME PRIORITY] section sets the priority's
own target, which a later or earlier [sla NAME] section never undoes. Read
back with `tierctl rules test` (targets per priority), and checked live: an
urgent chat ticket breaches its quarter target while a normal one, submitted
at the same moment, has not even been warned."""
import sla_harness as sh  # first: it puts tests/ on sys.path
import rules_common as rc
from sla_harness import check
from rules_common import ticket_json as T

NORMAL_MS = 2000
HIGH_MS = 300        # explicit [sla chat high]
RESOLUTION_MS = 8000


def targets(tb, priority):
    test = rc.rules_test(tb, T("how fast?", channel="chat", priority=priority))
    return test["first_response_due_ms"], test["resolution_due_ms"]


def expect_targets(tb, order):
    want = {"low": (2 * NORMAL_MS, 2 * RESOLUTION_MS), "normal": (NORMAL_MS, RESOLUTION_MS),
            "high": (HIGH_MS, RESOLUTION_MS // 2),
            "urgent": (NORMAL_MS // 4, RESOLUTION_MS // 4)}
    for priority, expected in want.items():
        got = targets(tb, priority)
        check(got == expected, f"{order}: {priority} chat targets (first response, "
              f"resolution) {got}, expected {expected}")


def config(chat_first):
    chat = f"[sla chat]\nfirst_response = {NORMAL_MS}ms\nresolution = {RESOLUTION_MS}ms\n"
    high = f"[sla chat high]\nfirst_response = {HIGH_MS}ms\n"
    return (chat + "\n" + high) if chat_first else (high + "\n" + chat)


def test(tb):
    tb.start_redis()
    for chat_first in (True, False):
        order = "[sla chat] first" if chat_first else "[sla chat high] first"
        tierd = tb.start_tierd(config=config(chat_first))
        tb.tierd = tierd
        expect_targets(tb, order)
        tierd.kill()

    tb.tierd = tb.start_tierd(config=sh.config_text(
        sla={"chat": {"first_response": f"{NORMAL_MS}ms", "action": "notify"}}))
    urgent = sh.submit(tb, "urgent one", "--channel", "chat", "--priority", "urgent")
    normal = sh.submit(tb, "normal one", "--channel", "chat")
    t = sh.wait_history(tb, urgent, "sla", text="breach", timeout=5)
    sh.near(sh.one(t, "sla", text="breach")["at_ms"], t["created_ms"] + NORMAL_MS // 4,
            what="urgent breaches at a quarter of the target")
    n = tb.show(normal)
    check(not sh.entries(n, "sla"), f"the normal ticket is not even warned yet: {n['history']}")


sh.main(test)
