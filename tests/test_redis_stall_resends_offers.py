"""A batch whose reply is lost still reaches the worker: Redis stops (SIGSTOP)
while tierd sends the batch that queues a ticket and offers it to the only
agent. tierd gives up on the reply (command_timeout_ms), declares Redis lost,
and Redis, once it runs again, applies the batch: the ticket is offered in
Redis, but its offer never went out. After the reconnect tierd must offer it
again, long before the offer times out (60 s here) and counts as a miss."""
import signal
import time

import harness
from harness import check

CONFIG = """
[redis]
command_timeout_ms = 300
[workers]
offer_timeout_ms = 60000
"""
STALL_S = 1.5
OFFER_WITHIN_S = 10


def test(tb):
    redis = tb.start_redis()
    tb.start_tierd(config=CONFIG)
    worker = harness.RawWorker(tb, tb.tierd, "solo", "L1", [], 5)

    # The submit must be the first thing tierd sends the stopped Redis, so
    # that the lost batch is the one with its tier_submit and tier_assign:
    # the request is ready and the socket connected before the stop, and
    # goes within a fraction of a millisecond of it (tierd's cron, the only
    # other sender, runs every 100 ms).
    import zmq
    pb = tb.pb()
    request = pb.ClientRequest(request_id=1, protocol_version=1)
    request.submit.ticket.external_id = "stall-1"
    request.submit.ticket.subject = "lost reply"
    request.submit.ticket.channel = pb.Channel.Value("CHANNEL_CHAT")
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    tb.raw_sockets.append(sock)
    sock.connect(tb.tierd.clients)
    time.sleep(0.3)  # connected
    payload = request.SerializeToString()

    redis.send_signal(signal.SIGSTOP)
    sock.send(payload)
    time.sleep(STALL_S)
    redis.send_signal(signal.SIGCONT)
    check(sock.poll(10000), "tierd answered the stalled submit")
    first = pb.ClientReply()
    first.ParseFromString(sock.recv())
    print(f"first answer: {tb.error_name(first.error) if first.error.code else 'ok'}")

    # An UNAVAILABLE submit is sent again with the same external id (as
    # protocol.md asks), so the retry finds the ticket the lost batch made.
    submitted = {}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and "reply" not in submitted:
        res = tb.tierctl("submit", "--subject", "lost reply", "--external-id", "stall-1",
                         expect_rc=None)
        if res.returncode == 0:
            submitted["reply"] = res.json
        else:
            time.sleep(0.2)
    check("reply" in submitted, "the submit was answered once Redis ran again")
    check(submitted["reply"].get("duplicate"),
          f"the lost batch had created the ticket: {submitted['reply']}")
    tid = submitted["reply"]["id"]

    started = time.monotonic()
    offer = worker.wait_push("offer", timeout_s=OFFER_WITHIN_S)
    check(offer.offer.ticket.id == tid,
          f"the offer is for ticket {tid}: {offer.offer.ticket.id}")
    print(f"offer for {tid} {time.monotonic() - started:.2f}s after the submit was answered "
          f"(attempt {offer.offer.ticket.attempt})")
    check(offer.offer.ticket.attempt == 1, "the first attempt, not a requeue after a timeout")
    check("offers sent again after the redis reconnect" in tb.tierd.log(),
          "tierd logged that it offered again")

    # It is the one the worker can finish.
    reply = worker.call(resolve=worker.pb.Resolve(ticket_id=tid, attempt=1, text="done"))
    check(not reply.error.code, f"resolve accepted: {reply}")
    tb.wait_state(tid, "resolved", timeout=10)


harness.main(test)
