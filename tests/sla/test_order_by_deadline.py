"""Within a level the ticket whose SLA deadline comes first goes first: an
e-mail ticket submitted before a chat ticket still waits behind it (chat's
target is shorter), and a VIP's e-mail ticket submitted last jumps both by
the configured VIP boost. The order is the same in `tierctl snapshot` before
any agent is there and in the offers a single capacity-1 worker gets, and
it is the same every time (two rounds).

  general      all three in L1's general queue
  departments  the e-mails in L1/billing, the chat in L1's general queue; the
               worker serves both: the deadline decides across departments

Usage: test_order_by_deadline.py general|departments
"""
import signal
import sys
import time

import sla_harness as sh
from sla_harness import check

# Deadlines from submission: e-mail 30 s, chat 10 s; VIP e-mail 30 s - 25 s = 5 s.
EMAIL = {"first_response": "30s", "resolution": "60s", "wait_L1": "30s"}
CHAT = {"first_response": "10s", "resolution": "20s", "wait_L1": "10s"}
VIP_BOOST = "25s"
ROUNDS = 2


def submit_round(tb, round_no, email_dept):
    """Submit e-mail, chat, VIP e-mail; returns their ids in that order."""
    dept = ["--department", email_dept] if email_dept else []
    email = sh.submit(tb, f"e-mail question {round_no}", "--channel", "email",
                      "--customer", f"c-mail-{round_no}", *dept)
    time.sleep(0.02)  # distinct creation times: e-mail really is first
    chat = sh.submit(tb, f"chat question {round_no}", "--channel", "chat",
                     "--customer", f"c-chat-{round_no}")
    time.sleep(0.02)
    vip = sh.submit(tb, f"vip e-mail {round_no}", "--channel", "email", "--vip",
                    "--customer", f"c-vip-{round_no}", *dept)
    return email, chat, vip


def queued(tb, department):
    for q in tb.tierctl("snapshot")["queues"]:
        if q["level"] == "L1" and q["department"] == department:
            return [t["id"] for t in q["tickets"]]
    return []


def test_with(email_dept):
    def test(tb):
        sh.start(tb, sla={"email": EMAIL, "chat": CHAT}, sla_global={"vip_boost": VIP_BOOST})
        cmd, path = sh.recorder(tb, "order", {"action": "resolve", "text": "done"})
        depts = [email_dept] if email_dept else []
        done = []
        for round_no in range(ROUNDS):
            # No worker while the round is queued: the order is the router's alone.
            email, chat, vip = submit_round(tb, round_no, email_dept)
            expected = [vip, chat, email]
            if email_dept:
                check(queued(tb, email_dept) == [vip, email] and queued(tb, "") == [chat],
                      f"round {round_no}: billing {queued(tb, email_dept)}, general "
                      f"{queued(tb, '')}")
            else:
                check(queued(tb, "") == expected, f"round {round_no}: queue order is VIP, "
                      f"chat, e-mail {expected}, snapshot says {queued(tb, '')}")
            worker = tb.start_worker("L1", departments=depts, capacity=1, exec_cmd=cmd,
                                     agent=f"solo-{round_no}")
            for tid in expected:
                tb.wait_state(tid, "resolved", timeout=15)
            worker.kill(signal.SIGTERM)  # drains (holds nothing) and exits
            done += expected
            offered = [r[0] for r in sh.records(path)]
            check(offered == done, f"round {round_no}: the worker was offered {offered}, "
                  f"expected {done} (deadline order, VIP first)")
    return test


MODES = {"general": "", "departments": "billing"}

if len(sys.argv) != 2 or sys.argv[1] not in MODES:
    sys.exit(f"usage: {sys.argv[0]} {'|'.join(MODES)}")
sh.main(test_with(MODES[sys.argv[1]]), name=f"order_{sys.argv[1]}")
