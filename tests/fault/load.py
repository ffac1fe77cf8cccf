"""load — the customers of the fault suite: submit N tickets through tierd's
clients endpoint, cancel a few, and remember exactly what was acknowledged.

A submit is retried until tierd acknowledges it, always with the same
external_id, the way libtierclient does (tierclient_submit): a resend after
a timeout reuses the request bytes; an ERROR_UNAVAILABLE answer (Redis down)
is retried after a backoff. So `acked` ends up exact: an external id is in
it once tierd said "this ticket exists, with this id". If two answers for one
external id ever carry different ids, the ticket was created twice: that is
counted in `created_twice`, never hidden.

Everything runs in one thread with one DEALER socket and a window of
requests in flight, paced to `rate` per second so that the faults a case
injects land while tickets are still arriving.
"""

import random
import threading
import time

import zmq

RESEND_MS = 2000            # no answer within this: resend the same request
BACKOFF_MIN_MS = 200        # first wait after ERROR_UNAVAILABLE
BACKOFF_MAX_MS = 2000       # longest wait between tries
WINDOW = 128                # submits in flight at once
CANCEL_DELAY_MS = 300       # a cancel goes out up to this long after the ack
POLL_MS = 20                # longest sleep of the loop


class Request:
    """One request in flight: its bytes, when to resend, its backoff."""

    def __init__(self, rid, kind, key, payload):
        self.rid = rid
        self.kind = kind          # "submit" or "cancel"
        self.key = key            # external id (submit) or ticket id (cancel)
        self.payload = payload    # packed ClientRequest, resent as is
        self.due = 0.0            # monotonic time of the next (re)send
        self.backoff_ms = BACKOFF_MIN_MS
        self.tries = 0


class Load:
    """Submits `count` tickets named f"{prefix}-{i}" at `rate` per second and
    cancels every `cancel_every`-th one shortly after its ack (0 = never)."""

    def __init__(self, pb, endpoint, count, rate, prefix, cancel_every=50, seed=1):
        self.pb = pb
        self.endpoint = endpoint
        self.count = count
        self.rate = rate
        self.prefix = prefix
        self.cancel_every = cancel_every
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.acked = {}             # external id -> ticket id
        self.created_twice = []     # (external id, first id, other id)
        self.cancelled = set()      # ticket ids whose cancel tierd accepted
        self.cancel_refused = set() # ticket ids whose cancel came too late
        self.resends = 0            # submits resent after a timeout
        self.unavailable = 0        # ERROR_UNAVAILABLE answers (retried)
        self.failures = []          # answers the suite did not expect
        self.done = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="load", daemon=True)

    # -- public
    def start(self):
        self._thread.start()
        return self

    def acked_count(self):
        with self.lock:
            return len(self.acked)

    def wait(self, timeout):
        """Until every ticket is acknowledged and every cancel answered."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def stop(self):
        self._stop = True
        self._thread.join(10)

    # -- requests
    def _submit_request(self, rid, i):
        pb = self.pb
        ext = f"{self.prefix}-{i}"
        ticket = pb.Ticket(external_id=ext, subject=f"fault load {i}",
                           body="the printer is on fire", channel=pb.CHANNEL_CHAT,
                           priority=pb.PRIORITY_NORMAL, level=pb.LEVEL_L1,
                           customer=pb.Customer(id=f"c{i % 97}", name="Load"))
        req = pb.ClientRequest(request_id=rid, protocol_version=1,
                               submit=pb.SubmitRequest(ticket=ticket))
        return Request(rid, "submit", ext, req.SerializeToString())

    def _cancel_request(self, rid, tid):
        pb = self.pb
        req = pb.ClientRequest(request_id=rid, protocol_version=1,
                               cancel=pb.CancelRequest(id=tid, reason="fault suite cancel"))
        return Request(rid, "cancel", tid, req.SerializeToString())

    # -- answers
    def _on_submit(self, r, reply):
        tid = reply.submitted.id
        with self.lock:
            first = self.acked.get(r.key)
            if first is None:
                self.acked[r.key] = tid
            elif first != tid:
                self.created_twice.append((r.key, first, tid))
        index = int(r.key.rsplit("-", 1)[1])
        if first is None and self.cancel_every and index % self.cancel_every == 0:
            return tid
        return None

    def _on_cancel(self, r, reply):
        code = reply.error.code
        with self.lock:
            if code == self.pb.ERROR_NONE:
                self.cancelled.add(r.key)
            elif code == self.pb.ERROR_INVALID_STATE:
                self.cancel_refused.add(r.key)
            else:
                self.failures.append(f"cancel {r.key}: {reply.error}")

    def _retry_later(self, r, now):
        self.unavailable += 1
        r.due = now + r.backoff_ms / 1000
        r.backoff_ms = min(r.backoff_ms * 2, BACKOFF_MAX_MS)

    def _run(self):
        sock = zmq.Context.instance().socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, 100000)
        sock.setsockopt(zmq.RCVHWM, 100000)
        sock.connect(self.endpoint)
        try:
            self._loop(sock)
        finally:
            sock.close()
            self.done.set()

    def _loop(self, sock):
        inflight = {}          # rid -> Request
        cancels = []           # (due, ticket id) waiting to be sent
        next_index, rid = 0, 0
        started = time.monotonic()
        while not self._stop:
            now = time.monotonic()
            allowed = min(self.count, int((now - started) * self.rate) + 1)
            while next_index < allowed and len(inflight) < WINDOW:
                rid += 1
                inflight[rid] = self._submit_request(rid, next_index)
                next_index += 1
            while cancels and cancels[0][0] <= now:
                rid += 1
                inflight[rid] = self._cancel_request(rid, cancels.pop(0)[1])
            for r in inflight.values():
                if r.due <= now:
                    if r.tries and r.kind == "submit":
                        self.resends += 1
                    r.tries += 1
                    r.due = now + RESEND_MS / 1000
                    sock.send(r.payload)
            if next_index == self.count and not inflight and not cancels:
                return
            if sock.poll(POLL_MS):
                while sock.poll(0):
                    self._receive(sock, inflight, cancels)

    def _receive(self, sock, inflight, cancels):
        reply = self.pb.ClientReply()
        try:
            reply.ParseFromString(sock.recv_multipart()[-1])
        except Exception as exc:  # noqa: BLE001 - a bad answer is a finding
            self.failures.append(f"undecodable answer: {exc!r}")
            return
        r = inflight.get(reply.request_id)
        if r is None:
            return             # an earlier try of a request already answered
        now = time.monotonic()
        code = reply.error.code
        if code == self.pb.ERROR_UNAVAILABLE:
            self._retry_later(r, now)
            return
        del inflight[reply.request_id]
        if r.kind == "cancel":
            self._on_cancel(r, reply)
        elif code != self.pb.ERROR_NONE:
            self.failures.append(f"submit {r.key}: {reply.error}")
        else:
            tid = self._on_submit(r, reply)
            if tid:
                due = now + self.random.uniform(0, CANCEL_DELAY_MS) / 1000
                cancels.append((due, tid))
                cancels.sort()
