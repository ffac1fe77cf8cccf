"""The event stream: every event is published under all/ with seq rising by
one (no gaps, across a tierd restart too), a ticket's events follow its life
(created, queued, offered, assigned, escalated L1->L2, ..., resolved) under
ticket/ID/ and level/ topics with the same seq, and a snapshot's seq lets a
late joiner apply exactly the later events. tierctl watch prints them."""
import json
import signal
import subprocess
import time

import harness
from harness import check


class Subscriber:
    def __init__(self, tb, topics):
        import zmq
        self.pb = tb.pb()
        self.sock = zmq.Context.instance().socket(zmq.SUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        for t in topics:
            self.sock.setsockopt(zmq.SUBSCRIBE, t.encode())
        self.sock.connect(tb.tierd.events)
        tb.raw_sockets.append(self.sock)
        self.events = []  # (topic, Event)

    def drain(self, quiet_ms=300):
        while self.sock.poll(quiet_ms):
            frames = self.sock.recv_multipart()
            check(len(frames) == 2, f"events are two frames: {frames}")
            ev = self.pb.Event()
            ev.ParseFromString(frames[1])
            self.events.append((frames[0].decode(), ev))
        return self.events


def test(tb):
    tb.start_redis()
    tb.start_tierd()
    pb = tb.pb()
    everything = Subscriber(tb, ["all/"])
    narrow = Subscriber(tb, ["level/L2/"])
    time.sleep(0.5)  # ZeroMQ subscriptions take a moment to reach the PUB

    watcher = subprocess.Popen(
        [harness.binary("tierctl"), "--events", tb.tierd.events, "--json", "watch",
         "--count", "1", "agent/esc-L1/"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(0.5)
    tb.start_worker("L1", agent="esc-L1", exec_cmd=tb.handler("l1", """cat >/dev/null
printf '%s' '{"action":"escalate","level":"L2","reason":"not mine"}'
"""))
    out, err = watcher.communicate(timeout=10)
    lines = out.decode().splitlines()
    check(watcher.returncode == 0 and len(lines) == 1, f"watch --count 1: {lines} {err!r}")
    ev = json.loads(lines[0])
    check(ev["kind"] == "agent" and ev["agent"] == "esc-L1" and ev["agent_state"] == "ready",
          f"tierctl watch printed the agent's arrival: {ev}")

    tid = tb.tierctl("submit", "--subject", "follow me")["id"]
    tb.start_worker("L2", agent="fix-L2", exec_cmd=tb.handler("l2", """cat >/dev/null
printf '%s' '{"action":"resolve","text":"fixed"}'
"""))
    tb.wait_state(tid, "resolved", timeout=15)
    events = list(everything.drain())
    check(all(topic == "all/" for topic, _ in events), "only all/ on the all/ subscription")
    seqs = [e.seq for _, e in events]
    check(seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"seq +1 per event: {seqs}")

    mine = [e for _, e in events if e.ticket_id == tid]
    kinds = [pb.EventKind.Name(e.kind) for e in mine]
    expected = ["EVENT_CREATED", "EVENT_QUEUED", "EVENT_OFFERED", "EVENT_ASSIGNED",
                "EVENT_ESCALATED", "EVENT_QUEUED", "EVENT_OFFERED", "EVENT_ASSIGNED",
                "EVENT_RESOLVED"]
    it = iter(kinds)
    check(all(k in it for k in expected), f"ticket events in order {expected}: {kinds}")
    esc = [e for e in mine if e.kind == pb.EVENT_ESCALATED][0]
    check(esc.from_level == pb.LEVEL_L1 and esc.level == pb.LEVEL_L2 and esc.reason == "not mine",
          f"escalated event: {esc}")
    check(mine[-1].state == pb.STATE_RESOLVED, f"last event leaves it resolved: {mine[-1]}")

    l2 = narrow.drain()
    check(l2 and all(t == "level/L2/" for t, _ in l2), "level/L2/ topic used")
    by_seq = {e.seq: e for _, e in events}
    for _, e in l2:
        check(by_seq.get(e.seq) == e, f"same event, same seq under both topics: {e}")
    check(any(e.kind == pb.EVENT_RESOLVED and e.ticket_id == tid for _, e in l2),
          "the resolution is published under level/L2/")

    # A late joiner: snapshot, then only events with a higher seq.
    snap = tb.tierctl("snapshot")
    check(snap["seq"] == seqs[-1], f"snapshot seq {snap['seq']} is the last event {seqs[-1]}")
    t2 = tb.tierctl("submit", "--subject", "after the snapshot")["id"]
    tb.wait_state(t2, "resolved", timeout=15)
    later = [e for _, e in list(everything.drain())[len(events):]]
    check(later and later[0].seq == snap["seq"] + 1, f"first event after snapshot: {later[:1]}")

    # seq keeps rising across a restart (it lives in Redis).
    last = later[-1].seq
    tb.tierd.kill(signal.SIGKILL, group=False)
    tb.tierd.restart()
    check(tb.tierctl("snapshot")["seq"] >= last, "seq not reset by a restart")
    # The subscriber reconnects by itself (ZeroMQ), after a moment: submit until
    # it sees a ticket created by the new tierd.
    def created_after_restart():
        tid3 = tb.tierctl("submit", "--subject", "after restart")["id"]
        fresh = [e for _, e in list(everything.drain())[len(events) + len(later):]
                 if e.kind == pb.EVENT_CREATED and e.ticket_id == tid3]
        return fresh
    created = harness.wait_until(created_after_restart, 15, "an event from the new tierd",
                                 interval=0.2)
    check(created[0].seq > last, f"seq continues after restart: {created[0].seq} > {last}")


harness.main(test)
