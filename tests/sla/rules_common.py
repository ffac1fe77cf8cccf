"""Shared by the intake-rules tests: a rules file with one rule of every
kind, and a check that `tierctl rules test` predicts exactly what a
submission of the same ticket then does, without writing anything."""
import json
import subprocess

import sla_harness as sh  # first: it puts tests/ on sys.path
import harness  # noqa: E402
from sla_harness import check

RULES = """\
# One rule of every kind (tests/sla/test_rules.py).
[rule outage]
match = outage, data loss
level = L3
priority = urgent

[rule money]
match = refund, invoice, boleto
department = billing

[rule order-number]
regex = order #?[0-9]{5,}
in = subject
department = logistics
tags = order-status

[rule realtime-premium]
channel = whatsapp, sms
sla = premium

[rule vip]
vip = yes
priority = high

[rule repeat-caller]
contacts = 3 in 1d
level = L2

[rule escalated-before]
escalated_before = yes
level = L2
department = technical
"""

PREMIUM_FIRST_RESPONSE_MS = 600
SLA = {"premium": {"first_response": f"{PREMIUM_FIRST_RESPONSE_MS}ms", "resolution": "5s",
                   "action": "notify"}}


def start(tb):
    return sh.start(tb, rules=RULES, sla=SLA)


def ticket_json(subject, body="", channel="chat", customer="", vip=False, priority=None,
                level=None, department=None):
    t = {"subject": subject, "body": body, "channel": channel,
         "customer": {"id": customer, "vip": vip}}
    for key, value in (("priority", priority), ("level", level), ("department", department)):
        if value is not None:
            t[key] = value
    return t


def submit_args(t):
    args = ["--subject", t["subject"], "--body", t["body"], "--channel", t["channel"]]
    if t["customer"]["id"]:
        args += ["--customer", t["customer"]["id"]]
    if t["customer"]["vip"]:
        args.append("--vip")
    for key in ("priority", "level", "department"):
        if key in t:
            args += [f"--{key}", t[key]]
    return args


def rules_test(tb, t):
    """`tierctl --json rules test` with t on stdin; Redis must not change and
    no ticket id may be used up."""
    def run():
        argv = [harness.binary("tierctl"), "--router", tb.tierd.clients, "--timeout", "3000",
                "--json", "rules", "test"]
        proc = subprocess.run(argv, input=json.dumps(t).encode(), capture_output=True,
                              timeout=30)
        check(proc.returncode == 0, f"tierctl rules test exit {proc.returncode}: "
              f"{proc.stderr.decode()} (stdin {t})")
        return json.loads(proc.stdout)
    return harness.assert_redis_unchanged(tb, f"rules test of {t['subject']!r}", run,
                                          volatile=harness.HEARTBEAT_KEYS)


def expect(tb, t, hits, level="L1", department="", priority="normal", tags=(), sla=None):
    """rules test says: these hits [(rule, action)] and this placement; then
    submitting the same ticket does exactly that, with one history entry of
    kind "rule" per hit (actor = rule name, text = action), in order.
    Returns the submitted ticket."""
    sla = sla or t["channel"]
    test = rules_test(tb, t)
    got = [(h["rule"], h["action"]) for h in test["hits"]]
    check(got == list(hits), f"rules test of {t['subject']!r}: hits {got}, expected {hits}")
    placed = test["ticket"]
    check((placed["level"], placed["department"], placed["priority"]) ==
          (level, department, priority),
          f"rules test of {t['subject']!r} places it at {placed['level']}/"
          f"{placed['department']!r}/{placed['priority']}, expected {level}/{department!r}/"
          f"{priority}")
    check(sorted(placed["tags"]) == sorted(tags), f"rules test tags {placed['tags']} != {tags}")
    check(test["sla_policy"] == sla, f"rules test SLA policy {test['sla_policy']} != {sla}")

    before = int(tb.redis.cmd("GET", "tier:nextid") or 0)
    tid = tb.tierctl("submit", *submit_args(t))["id"]
    check(int(tid) == before + 1, f"the rules test used up no ticket id: {before} then {tid}")
    s = tb.show(tid)
    check((s["level"], s["department"], s["priority"]) == (level, department, priority),
          f"submitted {t['subject']!r} went to {s['level']}/{s['department']!r}/"
          f"{s['priority']}, rules test said {level}/{department!r}/{priority}")
    check(sorted(s["tags"]) == sorted(tags), f"submitted tags {s['tags']} != {tags}")
    decisions = [(h["actor"], h["text"]) for h in sh.entries(s, "rule")]
    check(decisions == list(hits), f"history of {tid} records each decision with its rule: "
          f"{decisions}, expected {hits}")
    check(all(h["automatic"] for h in sh.entries(s, "rule")), "rule decisions are automatic")
    return s
