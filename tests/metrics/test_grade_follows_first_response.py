"""A channel's grade follows its mean first response time across the
[grades] limits: stellar while chats are answered within 1 s, lower once
slow answers push the mean past it; a bad rating pulls it down through the
CSAT limits; the same figures read with other limits (a restarted tierd
with another config) grade differently; bad limits are refused."""
import subprocess
import time

import kpi

import harness
from harness import check

FAST_LIMITS = "[grades]\nchat = 1, 2, 3, 4\ncsat = 4.9, 4.8, 4, 3\n"
SLOW_LIMITS = "[grades]\nchat = 10s, 20s, 30s, 40s\ncsat = 1, 1, 1, 1\n"
SLOW_ANSWER_S = 2.5
HEARTBEAT_S = 0.3


def answer(tb, worker, delay_s):
    """Take the next offer, answer it after delay_s, resolve it; its id."""
    pb = tb.pb()
    ticket = worker.wait_push("offer").offer.ticket
    held = dict(ticket_id=ticket.id, attempt=ticket.attempt)
    worker.call(accept=pb.Accept(**held))
    deadline = time.monotonic() + delay_s
    while time.monotonic() < deadline:     # any message is a heartbeat
        time.sleep(min(HEARTBEAT_S, max(0, deadline - time.monotonic())))
        worker.call(heartbeat=pb.Heartbeat())
    reply = worker.call(respond=pb.Respond(text="here you are", **held))
    check(not reply.error.code, f"respond accepted: {reply}")
    reply = worker.call(resolve=pb.Resolve(text="done", **held))
    check(not reply.error.code, f"resolve accepted: {reply}")
    return ticket.id


def chat_row(tb):
    rows = tb.tierctl("report", "--since", "1h", "--by", "channel")["rows"]
    check([r["key"] for r in rows] == ["chat"], f"only chat has data: {rows}")
    return rows[0]


def expected_grade(row, limits):
    frt = row["frt_seconds"] if row["responded"] else None
    return kpi.GRADE_NAMES[kpi._grade("chat", frt, None, limits)]


def test(tb):
    limits = dict(kpi.DEFAULT_GRADES, chat=[1, 2, 3, 4])
    tb.start_redis()
    tb.start_tierd(config=FAST_LIMITS)
    worker = tb.raw_worker("ana-L1", "L1")

    fast = tb.tierctl("submit", "--subject", "quick one", "--channel", "chat")["id"]
    check(answer(tb, worker, 0) == fast, "the worker got the first ticket")
    row = chat_row(tb)
    check(row["frt_seconds"] < 1, f"answered within a second: {row}")
    check(row["grade"] == "stellar", f"a chat answered within 1 s is stellar: {row}")

    tb.tierctl("submit", "--subject", "slow one", "--channel", "chat")
    answer(tb, worker, SLOW_ANSWER_S)
    row = chat_row(tb)
    check(row["frt_seconds"] > 1, f"the slow answer pushed the mean past 1 s: {row}")
    check(row["grade"] == expected_grade(row, limits) and row["grade_level"] < 5,
          f"the grade follows the mean across the limits 1, 2, 3, 4 s: {row}")
    before = row["grade_level"]

    tb.tierctl("rate", fast, 1)
    row = chat_row(tb)
    check(row["grade"] == "unacceptable" and row["grade_level"] < before,
          f"a mean rating of 1 is below every CSAT limit: {row}")

    with open(tb.path("tierd.conf"), "w") as f:
        f.write(SLOW_LIMITS)
    tb.tierd.restart()
    row = chat_row(tb)
    check(row["grade"] == "stellar", f"the same figures under looser limits: {row}")

    with open(tb.path("bad.conf"), "w") as f:
        f.write("[grades]\nchat = 5m, 1m, 30m, 1h\n")
    bad = subprocess.run([harness.binary("tierd"), "--check", "--config", tb.path("bad.conf")],
                         capture_output=True, text=True, timeout=10)
    check(bad.returncode != 0 and "chat" in bad.stderr and "rising" in bad.stderr,
          f"falling limits are refused, saying which: {bad.returncode} {bad.stderr!r}")


harness.main(test)
