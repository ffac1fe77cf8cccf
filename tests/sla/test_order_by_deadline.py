"""Within a level the ticket whose SLA deadline comes first goes first: an
e-mail ticket submitted before a chat ticket still waits behind it (chat's
target is shorter), and a VIP's e-mail ticket submitted last jumps both by
the configured VIP boost. The order is the same in `tierctl snapshot` before
any agent is there and in the offers a single capacity-1 worker gets, and
it is the same every time (two rounds)."""
import signal
import time

import sla_harness as sh
from sla_harness import check

# Deadlines from submission: e-mail 30 s, chat 10 s; VIP e-mail 30 s - 25 s = 5 s.
EMAIL = {"first_response": "30s", "resolution": "60s", "wait_L1": "30s"}
CHAT = {"first_response": "10s", "resolution": "20s", "wait_L1": "10s"}
VIP_BOOST = "25s"
ROUNDS = 2


def submit_round(tb, round_no):
    """Submit e-mail, chat, VIP e-mail; returns their ids in that order."""
    email = sh.submit(tb, f"invoice question {round_no}", "--channel", "email",
                      "--customer", f"c-mail-{round_no}")
    time.sleep(0.02)  # distinct creation times: e-mail really is first
    chat = sh.submit(tb, f"chat question {round_no}", "--channel", "chat",
                     "--customer", f"c-chat-{round_no}")
    time.sleep(0.02)
    vip = sh.submit(tb, f"vip e-mail {round_no}", "--channel", "email", "--vip",
                    "--customer", f"c-vip-{round_no}")
    return email, chat, vip


def queued_order(tb):
    snap = tb.tierctl("snapshot")
    for q in snap["queues"]:
        if q["level"] == "L1" and q["department"] == "":
            return [t["id"] for t in q["tickets"]]
    raise sh.harness.TestFailure(f"no L1 general queue in the snapshot: {snap}")


def test(tb):
    sh.start(tb, sla={"email": EMAIL, "chat": CHAT}, sla_global={"vip_boost": VIP_BOOST})
    cmd, path = sh.recorder(tb, "order", {"action": "resolve", "text": "done"})
    done = []
    for round_no in range(ROUNDS):
        # No worker while the round is queued: the order is the router's alone.
        email, chat, vip = submit_round(tb, round_no)
        expected = [vip, chat, email]
        order = queued_order(tb)
        check(order == expected, f"round {round_no}: queue order is VIP, chat, e-mail "
              f"{expected}, snapshot says {order}")
        worker = tb.start_worker("L1", capacity=1, exec_cmd=cmd, agent=f"solo-{round_no}")
        for tid in expected:
            tb.wait_state(tid, "resolved", timeout=15)
        worker.kill(signal.SIGTERM)  # drains (holds nothing) and exits
        done += expected
        offered = [r[0] for r in sh.records(path)]
        check(offered == done, f"round {round_no}: the worker was offered {offered}, "
              f"expected {done} (deadline order, VIP first)")


sh.main(test)
