"""Promises (seed 003: keep promises). A handler defers a ticket with
`"until": "+1s"` ("call you back in a second") the first time it sees it.

  kept    the ticket comes back at the promised time to the same agent,
          not before; the agent takes other work while the promise waits;
          the second time the handler resolves it, and no "promise missed"
          is recorded after promise_grace.
  missed  the agent leaves before the promised time: at that time the
          ticket goes to the front of its level's queue (before a VIP that
          would otherwise lead) and, since nobody takes it within
          promise_grace, history gets sla breach "promise missed" (and the
          event stream sla_breach), once; a new agent then gets it first.

Usage: test_promise.py kept|missed
"""
import signal
import sys
import time

import sla_harness as sh
from sla_harness import check

GRACE_MS = 1000
PROMISE = "call me back"   # subjects with this are deferred the first time


def handler(tb, name):
    """Defers a "call me back" ticket the first time, resolves everything
    else; appends "ID AGENT ATTEMPT NOW_MS" per run to the record."""
    path, marks = tb.path(name), tb.path(name + "-seen")
    script = f"""import json, os, sys, time
ticket = json.load(sys.stdin)
with open({path!r}, "a") as f:
    f.write("%s %s %s %d\\n" % (ticket["id"], os.environ["TIER_AGENT"],
            os.environ["TIER_ATTEMPT"], int(time.time() * 1000)))
mark = os.path.join({marks!r}, ticket["id"])
if {PROMISE!r} in ticket["subject"] and not os.path.exists(mark):
    os.makedirs({marks!r}, exist_ok=True)
    open(mark, "w").close()
    print(json.dumps({{"action": "defer", "until": "+1s", "reason": "promised a call in 1 s",
                      "response": "I will call you back in a second"}}))
else:
    print(json.dumps({{"action": "resolve", "text": "called back, all good"}}))
"""
    return tb.handler(name, script, lang="py"), path


def start(tb):
    return sh.start(tb, workers={"promise_grace": f"{GRACE_MS}ms"},
                    sla_global={"vip_boost": "1h"})


def deferred_until(t):
    d = sh.one(t, "deferred")
    return int(d["text"]), d


def kept(tb):
    start(tb)
    cmd, path = handler(tb, "keeper")
    tb.start_worker("L1", capacity=1, exec_cmd=cmd, agent="keeper")
    tb.wait_agent("keeper")
    tid = sh.submit(tb, f"please {PROMISE}", "--channel", "phone")
    t = tb.wait_state(tid, "deferred", timeout=10)
    until, d = deferred_until(t)
    check(d["actor"] == "keeper" and d["reason"] == "promised a call in 1 s",
          f"the deferral names its agent and promise: {d}")
    check(t["agent"] == "", f"a deferred ticket is held by nobody: {t['agent']!r}")

    # While the promise waits, the agent (capacity 1) is free for other work
    # (checked at the end, so that the promise itself is checked either way).
    other = sh.submit(tb, "a quick question", "--channel", "chat")

    t = tb.wait_state(tid, "resolved", timeout=10)
    runs = [r for r in sh.records(path) if r[0] == tid]
    check(len(runs) == 2, f"the handler saw the promised ticket twice: {runs}")
    check(runs[1][1] == "keeper", f"it came back to the same agent: {runs}")
    check(runs[1][3] >= until, f"not before the promised time: run at {runs[1][3]}, "
          f"promised {until} ({runs[1][3] - until} ms)")
    offers = sh.entries(t, "offered")
    check(len(offers) == 2 and offers[1]["actor"] == "keeper",
          f"offered twice, the second time to keeper: {offers}")
    sh.near(offers[1]["at_ms"], until, what="offered again at the promised time")
    check(sh.one(t, "resolved")["actor"] == "keeper", "resolved by keeper")
    time.sleep(GRACE_MS / 1000 + 0.5)
    t = tb.show(tid)
    check(not sh.entries(t, "sla", reason="promise missed"),
          f"a kept promise is not recorded as missed: {t['history']}")
    o = tb.show(other)
    check(o["state"] == "resolved", f"the agent took other work while the promise waited: "
          f"ticket {other} is {o['state']} (agents: {tb.tierctl('agents')['agents']})")
    ran = [r for r in sh.records(path) if r[0] == other]
    check(ran and ran[0][3] < until, f"... and before the promised time: {ran}, until {until}")


def missed(tb):
    start(tb)
    watch = sh.Watcher(tb)
    cmd, path = handler(tb, "promiser")
    first = tb.start_worker("L1", capacity=1, exec_cmd=cmd, agent="promiser")
    tb.wait_agent("promiser")
    tid = sh.submit(tb, f"please {PROMISE}", "--channel", "phone")
    t = tb.wait_state(tid, "deferred", timeout=10)
    until, _ = deferred_until(t)
    first.kill(signal.SIGTERM)  # the agent goes home before the callback
    first.wait(10)
    vip = sh.submit(tb, "VIP waiting", "--channel", "phone", "--vip")

    t = sh.wait_history(tb, tid, "sla", reason="promise missed",
                        timeout=(until - sh.now_ms() + GRACE_MS) / 1000 + 5)
    requeued = sh.entries(t, "requeued")
    check(len(requeued) == 1 and "promiser" in requeued[0]["reason"],
          f"at the promised time it went back to the queue, saying why: {requeued}")
    sh.near(requeued[0]["at_ms"], until, what="requeued at the promised time")
    miss = sh.one(t, "sla", reason="promise missed")
    check(miss["text"] == "breach" and miss["automatic"], f"a breach, automatic: {miss}")
    sh.near(miss["at_ms"], until + GRACE_MS, what="missed after promise_grace")
    watch.wait(tid, "sla_breach")
    check(t["state"] == "queued", f"still waiting for an agent: {t['state']}")

    # A new agent gets the promised ticket first, before the VIP.
    cmd2, path2 = sh.recorder(tb, "second", {"action": "resolve", "text": "sorry for the delay"})
    tb.start_worker("L1", capacity=1, exec_cmd=cmd2, agent="second")
    tb.wait_state(tid, "resolved", timeout=10)
    tb.wait_state(vip, "resolved", timeout=10)
    check([r[0] for r in sh.records(path2)] == [tid, vip],
          f"the due promise went first: {sh.records(path2)}")
    time.sleep(0.5)
    t = tb.show(tid)
    check(len(sh.entries(t, "sla", reason="promise missed")) == 1,
          f"missed once: {t['history']}")
    check(len(watch.events(tid, "sla_breach")) == 1, "one sla_breach event")


MODES = {"kept": kept, "missed": missed}

if len(sys.argv) != 2 or sys.argv[1] not in MODES:
    sys.exit(f"usage: {sys.argv[0]} {'|'.join(MODES)}")
sh.main(MODES[sys.argv[1]], name=f"promise_{sys.argv[1]}")
