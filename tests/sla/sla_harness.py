"""sla_harness — fixtures the SLA, rules and promise tests share, on top of
tests/harness.py (which they must not change).

    import sla_harness as sh
    tb = ...                                   # harness.Testbed from harness.main
    sh.start(tb, sla={"chat": {"first_response": "400ms", "action": "escalate"}})
    w = sh.Watcher(tb)                         # tierctl --json watch, in the background
    ...
    sh.entries(ticket, "sla", text="breach")   # history entries of a kind

Everything here drives the real binaries; nothing is mocked.
"""

import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import harness  # noqa: E402 - tests/harness.py, one directory up
from harness import check  # noqa: E402,F401 - re-exported for the tests

# Targets the tests use are milliseconds to seconds; tierd's cron runs every
# 100 ms, so a timer fires up to one cron late (plus the Redis round trip and
# a loaded CI machine). Timing checks allow this much lateness.
TIMER_LATE_MS = 700
WATCH_SUBSCRIBE_S = 0.7   # ZeroMQ slow joiner: a SUB misses what is sent before it joins

# Every default policy, so a test can switch off the clocks it is not about.
CHANNELS = ("chat", "email", "phone", "sms", "whatsapp", "social", "web")
QUIET = {"first_response": "none", "resolution": "none", "wait_L1": "none",
         "wait_L2": "none", "wait_L3": "none", "action": "notify"}


def config_text(sla=None, sla_global=None, workers=None, router=None, quiet=True):
    """tierd.conf text. sla: {"chat": {key: value}, "chat urgent": {...}};
    sla_global: the [sla] keys; workers / router: those sections' keys.
    quiet=True first sets every channel's policy to no target at all, so
    only the clocks a test names run (the defaults are minutes and hours;
    they would still order the queues)."""
    lines = []

    def section(name, keys):
        lines.append(f"[{name}]")
        lines.extend(f"{k} = {v}" for k, v in keys.items())
        lines.append("")

    if router:
        section("router", router)
    if workers:
        section("workers", workers)
    if sla_global:
        section("sla", sla_global)
    policies = {}
    if quiet:
        for channel in CHANNELS:
            policies[channel] = dict(QUIET)
    for name, keys in (sla or {}).items():
        policies.setdefault(name, {}).update(keys)
    for name, keys in policies.items():
        section(f"sla {name}", keys)
    return "\n".join(lines)


def start(tb, rules=None, extra_args=(), **config):
    """redis-server + tierd with a config written from config_text(**config).
    rules: text of a rules file, written to rules.conf and named in [router]."""
    if rules is not None:
        path = write_rules(tb, rules)
        config["router"] = dict(config.get("router") or {}, rules=path)
    tb.start_redis()
    return tb.start_tierd(config=config_text(**config), extra_args=extra_args)


def write_rules(tb, text, name="rules.conf"):
    """Write (or replace, atomically: tierd may read it at any moment) the rules file."""
    path = tb.path(name)
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)
    return path


def submit(tb, subject, *args):
    return tb.tierctl("submit", "--subject", subject, *args)["id"]


def submit_many(tb, subjects, channel="chat"):
    """Submit tickets over one raw ZeroMQ request each (no tierctl process
    per ticket: a batch goes in within milliseconds, even on a loaded
    machine). Returns their ids."""
    pb = tb.pb()
    ids = []
    for i, subject in enumerate(subjects):
        ticket = pb.Ticket(subject=subject, channel=pb.Channel.Value("CHANNEL_" + channel.upper()))
        reply = tb.client_call(pb.ClientRequest(request_id=i + 1, submit=pb.SubmitRequest(
            ticket=ticket)))
        check(not reply.error.code and reply.submitted.id, f"submitted {subject!r}: {reply}")
        ids.append(reply.submitted.id)
    return ids


def entries(ticket, kind, text=None, reason=None, actor=None):
    """The ticket's history entries of one kind, optionally with exactly
    that text / reason / actor."""
    return [h for h in ticket["history"] if h["kind"] == kind
            and (text is None or h["text"] == text)
            and (reason is None or h["reason"] == reason)
            and (actor is None or h["actor"] == actor)]


def one(ticket, kind, **match):
    """The single history entry of that kind (and text/reason/actor)."""
    found = entries(ticket, kind, **match)
    check(len(found) == 1, f"exactly one {kind} {match} in ticket {ticket['id']}'s history, "
          f"got {len(found)}: {json.dumps(ticket['history'], indent=1)}")
    return found[0]


def wait_history(tb, tid, kind, timeout=10, **match):
    """Until the ticket's history holds an entry of that kind; returns the ticket."""
    def has():
        t = tb.show(tid)
        return t if entries(t, kind, **match) else None
    return harness.wait_until(has, timeout, f"ticket {tid} history {kind} {match}")


def wait_ticket(tb, tid, predicate, timeout=10, what="condition"):
    def holds():
        t = tb.show(tid)
        return t if predicate(t) else None
    return harness.wait_until(holds, timeout, f"ticket {tid}: {what}")


HISTORY_SLA = 16  # HistoryKind HISTORY_SLA


def stored_sla_entries(tb, tid):
    """The ticket's SLA history entries straight from Redis (for when tierd
    is down): the history of the stored ticket "tier:tk:ID"
    (proto/store.proto), as dicts with the keys t (ms), k (kind), x (text),
    r (reason)."""
    stored = tb.stored(tid)
    if stored is None:
        return []
    return [{"t": str(e.at_ms), "k": e.kind, "x": e.text, "r": e.reason}
            for e in stored.history if e.kind == HISTORY_SLA]


def now_ms():
    return int(time.time() * 1000)


def near(value, expected, late=TIMER_LATE_MS, early=0, what="time"):
    """value is expected, at most `early` ms before and `late` ms after."""
    check(expected - early <= value <= expected + late,
          f"{what}: {value} is not within [{expected - early}, {expected + late}] "
          f"(off by {value - expected} ms)")


class Watcher:
    """`tierctl --json watch TOPIC...` running in the background, its output
    in a log; events() parses what it printed so far."""

    def __init__(self, tb, *topics):
        argv = [harness.binary("tierctl"), "--router", tb.tierd.clients, "--events",
                tb.tierd.events, "--json", "watch", *topics]
        self.daemon = harness.Daemon(tb, f"watch-{len(tb.daemons)}", argv)
        tb.daemons.append(self.daemon)
        time.sleep(WATCH_SUBSCRIBE_S)
        check(self.daemon.alive(), f"tierctl watch exited: {self.daemon.log()}")

    def events(self, ticket_id=None, kind=None):
        out = []
        for line in self.daemon.log().splitlines():
            if not line.startswith("{"):
                continue
            try:
                e = json.loads(line)
            except ValueError:
                continue
            if (ticket_id is None or e.get("ticket_id") == ticket_id) and \
               (kind is None or e.get("kind") == kind):
                out.append(e)
        return out

    def wait(self, ticket_id, kind, count=1, timeout=10):
        return harness.wait_until(
            lambda: (lambda es: es if len(es) >= count else None)(self.events(ticket_id, kind)),
            timeout, f"{count} {kind} event(s) for ticket {ticket_id} on tierctl watch")

    def stop(self):
        self.daemon.kill(signal.SIGTERM)


def keep_alive(raw, seconds):
    """Heartbeat a harness.RawWorker for `seconds` (a held ticket needs a
    live lease); pushes that arrive meanwhile are kept in raw.pushes."""
    deadline = time.monotonic() + seconds
    interval = max(0.05, raw.heartbeat_ms / 1000 / 3)
    while time.monotonic() < deadline:
        raw.call(heartbeat=raw.pb.Heartbeat())
        time.sleep(min(interval, max(0, deadline - time.monotonic())))


def log_lines(tb, name):
    """The lines of a daemon's log (name: "tierd", "worker-AGENT", ...)."""
    for d in tb.daemons:
        if d.name == name:
            return d.log().splitlines()
    return []


def recorder(tb, name, action_json):
    """A tier-worker --exec handler that appends
    "TICKET_ID AGENT ATTEMPT NOW_MS" to the file `name` and prints
    action_json. Returns (exec command, path of the record)."""
    path = tb.path(name)
    script = f"""import json, os, sys, time
ticket = json.load(sys.stdin)
with open({path!r}, "a") as f:
    f.write("%s %s %s %d\\n" % (ticket["id"], os.environ["TIER_AGENT"],
            os.environ["TIER_ATTEMPT"], int(time.time() * 1000)))
print({json.dumps(action_json)!r})
"""
    return tb.handler(name, script, lang="py"), path


def records(path):
    """Lines written by a recorder handler: [(id, agent, attempt, at_ms)]."""
    try:
        with open(path) as f:
            return [(p[0], p[1], int(p[2]), int(p[3]))
                    for p in (line.split() for line in f) if len(p) == 4]
    except FileNotFoundError:
        return []


def main(test, name=None):
    harness.main(test, name=name)
