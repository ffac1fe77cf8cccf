"""scenario — a small, known day at the support desk, for the metrics tests.

Twenty-one tickets, three on each channel. Most are answered and resolved
at L1; two are escalated to L2 (one of them gets a message from the customer
while it waits there), one is passed sideways to L1 billing, one is resolved
by a bot at L3 with no person involved, one is resolved without any answer
first, one is cancelled by the customer while queued. Six are rated, one of
them twice (only the first rating counts). Each channel's handler waits a
different time before answering, so the channels' figures differ.

    import scenario
    desk = scenario.run(tb)         # desk["facts"]: for kpi.expected_report
"""

import kpi
from harness import check, wait_until

BOTS = {"robo-L3"}
PERSONS = {"L1": "ana-L1", "L2": "bruno-L2"}

# (channel, plan) in submission order. Plans: answer (respond, resolve),
# escalate (L1 -> L2), functional (L1 -> L1 billing), bot (L3 bot resolves),
# silent (resolved with no response), abandon (cancelled while queued).
TICKETS = [
    ("chat", "answer"), ("chat", "escalate"), ("chat", "answer"),
    ("email", "answer"), ("email", "escalate"), ("email", "silent"),
    ("phone", "answer"), ("phone", "functional"), ("phone", "answer"),
    ("sms", "answer"), ("sms", "answer"), ("sms", "abandon"),
    ("whatsapp", "answer"), ("whatsapp", "answer"), ("whatsapp", "answer"),
    ("social", "answer"), ("social", "bot"), ("social", "answer"),
    ("web", "answer"), ("web", "answer"), ("web", "answer"),
]
# Seconds a handler waits before answering, per channel.
DELAYS = {"chat": 0.0, "email": 0.6, "phone": 0.1, "sms": 0.2, "whatsapp": 0.3,
          "social": 0.4, "web": 0.5}
# (index in TICKETS, rating); index 0 is rated again with 1 afterwards.
RATINGS = [(0, 5), (3, 4), (6, 3), (9, 5), (13, 1), (16, 5)]
PLACES = {"bot": ("L3", ""), "abandon": ("L2", "logistics")}

HANDLER = r'''
import json, sys, time
t = json.load(sys.stdin)
plan = t["subject"].split()[0]
time.sleep(float(t["body"]))
at_general_l1 = t["level"] == "L1" and t["department"] == ""
if plan == "escalate" and at_general_l1:
    out = {"action": "escalate", "level": "L2", "reason": "needs a specialist",
           "notes": "customer tried a restart", "response": "looking into it"}
elif plan == "functional" and at_general_l1:
    out = {"action": "escalate", "department": "billing", "reason": "a billing question",
           "response": "passing you to billing"}
elif plan == "silent":
    out = {"action": "resolve", "text": "fixed"}
else:
    out = {"action": "resolve", "text": "fixed", "response": "here is the answer"}
print(json.dumps(out))
'''


def _submit(tb, n, channel, plan):
    level, department = PLACES.get(plan, ("L1", ""))
    args = ["submit", "--subject", f"{plan} {n}", "--body", str(DELAYS[channel]),
            "--channel", channel, "--level", level, "--external-id", f"desk-{n}"]
    if department:
        args += ["--department", department]
    return tb.tierctl(*args)["id"]


def _states(tb, ids):
    return {tid: tb.show(tid) for tid in ids}


def run(tb, tierd_args=(), tierd_config=None):
    """Start Redis, tierd and the workers, play the day, and return
    {"ids": [...], "tickets": {id: ticket json}, "facts": [kpi.Fact]}."""
    tb.start_redis()
    tb.start_tierd(extra_args=tierd_args, config=tierd_config)
    handler = tb.handler("desk", HANDLER, lang="py")
    tb.start_worker("L1", departments=["billing"], capacity=3, exec_cmd=handler,
                    agent=PERSONS["L1"])
    tb.start_worker("L3", capacity=1, exec_cmd=handler, agent="robo-L3", extra_args=["--bot"])
    for agent in (PERSONS["L1"], "robo-L3"):
        tb.wait_agent(agent)

    ids = [_submit(tb, n, channel, plan) for n, (channel, plan) in enumerate(TICKETS)]
    plans = dict(zip(ids, (plan for _, plan in TICKETS)))
    abandoned = [tid for tid in ids if plans[tid] == "abandon"]
    for tid in abandoned:
        tb.tierctl("cancel", tid, "--reason", "found the answer myself")

    # L2 has nobody yet: the escalated tickets wait there, the rest end.
    def settled():
        now = _states(tb, ids)
        for tid, t in now.items():
            if plans[tid] == "escalate" and not (t["level"] == "L2" and t["state"] == "queued"):
                return None
            if plans[tid] != "escalate" and t["state"] not in ("resolved", "abandoned"):
                return None
        return now
    wait_until(settled, 60, "L1 and the bot to handle their tickets")
    waiting = [tid for tid in ids if plans[tid] == "escalate"]
    tb.tierctl("reply", waiting[0], "it happens again after the restart")

    tb.start_worker("L2", capacity=2, exec_cmd=handler, agent=PERSONS["L2"])
    wait_until(lambda: all(t["state"] in ("resolved", "abandoned")
                           for t in _states(tb, ids).values()), 60, "every ticket to end")

    for index, csat in RATINGS:
        tb.tierctl("rate", ids[index], csat)
    tb.tierctl("rate", ids[RATINGS[0][0]], 1)     # a second rating: not counted

    tickets = _states(tb, ids)
    for tid in abandoned:
        check(tickets[tid]["state"] == "abandoned", f"ticket {tid} abandoned")
    facts = []
    for tid, t in tickets.items():
        facts += kpi.ticket_facts(t, BOTS, kpi.fdue_of(tb, tid))
    return {"ids": ids, "plans": plans, "tickets": tickets, "facts": facts}
