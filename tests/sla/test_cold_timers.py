"""SLA clocks of tickets that wait in Redis only (beyond their queue's
window, docs/data-model.md) fire like any other: 1,500 chats with a 2.5 s
first-response target and "escalate" as breach action wait in L1, most of
them cold. Each gets exactly one warning, one breach and one automatic
escalation to L2, close to when it was due, and L1 ends empty."""
import sla_harness as sh
from sla_harness import check, harness

CHATS = 1500
WINDOW = 1024            # BOOK_WINDOW (router/book.h)
FIRST_RESPONSE_MS = 2500
LATE_MS = 2000           # cold timers are looked for every 100 ms; slack for a loaded machine


def test(tb):
    sh.start(tb, sla={"chat": {"first_response": f"{FIRST_RESPONSE_MS}ms",
                               "action": "escalate"}})
    ids = tb.submit_many(CHATS, channel="chat", subject="cold")
    cold = tb.cold_count("1:", 1)
    due = int(tb.redis.cmd("ZCARD", "tier:due"))
    check(cold >= CHATS - WINDOW, f"most chats wait in Redis only: {cold}")
    check(due == cold, f"P due has every cold ticket's timer: {due} vs {cold}")
    harness.wait_until(lambda: tb.queue_depth("L1") == 0, FIRST_RESPONSE_MS / 1000 + 30,
                       "every chat to leave L1")
    check(tb.queue_depth("L2") == CHATS, f"every chat waits in L2: {tb.queue_depth('L2')}")
    for tid in ids[::25] + ids[-3:]:
        t = tb.show(tid)
        sla = [(h["text"], h["reason"]) for h in sh.entries(t, "sla")]
        check(sla == [("warning", "first response target 80% used"),
                      ("breach", "first response target missed")],
              f"ticket {tid}: one warning then one breach, got {sla}")
        esc = sh.entries(t, "escalated")
        check(len(esc) == 1 and esc[0]["automatic"] and esc[0]["to_level"] == "L2",
              f"ticket {tid}: one automatic escalation to L2, got {esc}")
        late = esc[0]["at_ms"] - (t["created_ms"] + FIRST_RESPONSE_MS)
        check(-50 <= late <= LATE_MS, f"ticket {tid} escalated {late} ms after its breach was due")
    check(tb.cold_count("1:", 1) == 0, "no cold entry left in L1")


sh.main(test)
