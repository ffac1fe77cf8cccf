"""forgetful_worker — a worker whose answers from tierd get lost, so it
resends every result, as the protocol tells it to ("no answer within 3 s:
resend the same result; results are idempotent in tierd").

Run as its own process by the lost_replies case:

    forgetful_worker.py PB_DIR ENDPOINT AGENT

Capacity 1. For every offer it works in one of three patterns (ticket id
mod 3), each time resending, with the same request ids, what it already
sent — the answers to the first sends are read and then "forgotten":

  0  Accept, Respond, Resolve back to back; then all three again
  1  Accept, Respond back to back; both again; Resolve; Resolve again
  2  Accept; Accept again; Respond, Resolve back to back; Respond again

Every resend must be answered success (already applied) or ERROR_STALE
(the ticket moved on): anything else is counted in `other`. Whether a
resend was applied twice shows in the ticket's history (the audit counts a
response recorded twice in one attempt). On SIGTERM it prints its tally:
  forgetful-worker: tickets=N resent=N ok=N stale=N other=0
"""

import signal
import sys
import time

import zmq

ANSWER_TIMEOUT_S = 10


class Forgetful:
    def __init__(self, pb, endpoint, agent):
        self.pb = pb
        self.sock = zmq.Context.instance().socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)
        self.rid = 0
        self.offers = []
        self.tally = {"tickets": 0, "resent": 0, "ok": 0, "stale": 0, "other": 0}
        self.last_sent = 0.0
        reply = self.exchange([("register", pb.Register(agent_id=agent, level=pb.LEVEL_L1,
                                                        capacity=1))])[0][1]
        self.heartbeat_s = reply.registered.heartbeat_ms / 1000

    def send(self, rid, kind, body):
        msg = self.pb.WorkerMessage(request_id=rid, protocol_version=1, **{kind: body})
        self.sock.send(msg.SerializeToString())
        self.last_sent = time.monotonic()

    def exchange(self, items, rids=None):
        """Send (kind, body) items back to back, then wait for every answer.
        rids: resend with these request ids. Returns [(rid, answer)]."""
        if rids is None:
            rids = []
            for _ in items:
                self.rid += 1
                rids.append(self.rid)
        for rid, (kind, body) in zip(rids, items):
            self.send(rid, kind, body)
        answers = {}
        deadline = time.monotonic() + ANSWER_TIMEOUT_S
        while len(answers) < len(rids):
            if time.monotonic() > deadline:
                raise RuntimeError(f"no answer to {items} within {ANSWER_TIMEOUT_S}s")
            if not self.sock.poll(100):
                continue
            msg = self.pb.RouterMessage()
            msg.ParseFromString(self.sock.recv_multipart()[-1])
            if msg.request_id in rids:
                answers[msg.request_id] = msg
            elif msg.request_id == 0 and msg.WhichOneof("body") == "offer":
                self.offers.append(msg.offer.ticket)
        return [(rid, answers[rid]) for rid in rids]

    def resend(self, items, rids):
        for _, answer in self.exchange(items, rids):
            self.tally["resent"] += 1
            code = self.pb.ErrorCode.Name(answer.error.code)
            key = {"ERROR_NONE": "ok", "ERROR_STALE": "stale"}.get(code, "other")
            self.tally[key] += 1
            if key == "other":
                print(f"resend answered {code}: {answer.error.reason}", flush=True)

    def work(self, t):
        pb = self.pb
        accept = ("accept", pb.Accept(ticket_id=t.id, attempt=t.attempt))
        respond = ("respond", pb.Respond(ticket_id=t.id, attempt=t.attempt, text="on it"))
        resolve = ("resolve", pb.Resolve(ticket_id=t.id, attempt=t.attempt, text="done"))
        pattern = int(t.id) % 3
        if pattern == 0:
            sent = self.exchange([accept, respond, resolve])
            self.resend([accept, respond, resolve], [r for r, _ in sent])
        elif pattern == 1:
            sent = self.exchange([accept, respond])
            self.resend([accept, respond], [r for r, _ in sent])
            sent = self.exchange([resolve])
            self.resend([resolve], [r for r, _ in sent])
        else:
            sent = self.exchange([accept])
            self.resend([accept], [r for r, _ in sent])
            sent = self.exchange([respond, resolve])
            self.resend([respond], [sent[0][0]])
        self.tally["tickets"] += 1

    def run(self, stop):
        while not stop():
            if self.offers:
                self.work(self.offers.pop(0))
                continue
            if time.monotonic() - self.last_sent >= self.heartbeat_s:
                self.exchange([("heartbeat", self.pb.Heartbeat())])
            if self.sock.poll(int(self.heartbeat_s * 500)):
                msg = self.pb.RouterMessage()
                msg.ParseFromString(self.sock.recv_multipart()[-1])
                if msg.request_id == 0 and msg.WhichOneof("body") == "offer":
                    self.offers.append(msg.offer.ticket)


def main():
    pb_dir, endpoint, agent = sys.argv[1], sys.argv[2], sys.argv[3]
    sys.path.insert(0, pb_dir)
    import tier_pb2 as pb  # noqa: E402 - generated by the suite into pb_dir
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    w = Forgetful(pb, endpoint, agent)
    w.run(lambda: stopping)
    print("forgetful-worker: " + " ".join(f"{k}={v}" for k, v in w.tally.items()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
