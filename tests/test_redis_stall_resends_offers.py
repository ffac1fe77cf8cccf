"""A batch whose reply is lost still reaches the worker: Redis stops (SIGSTOP)
while tierd sends the batch that takes a ticket in and offers it to the only
agent. tierd gives up on the reply (command_timeout_ms), declares Redis lost,
and Redis, once it runs again, applies the batch: the ticket is offered in
Redis, but its offer never went out. After the reconnect tierd reads its
state back and must offer it again, long before the offer times out (60 s
here) and counts as a miss.

The submit carries no external id, so that its intake needs no read first:
the batch sent to the stopped Redis is the one with the writes."""
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
    # that the lost batch is the one with its intake and offer: the request
    # is ready and the socket connected before the stop, and goes within a
    # fraction of a millisecond of it (tierd's cron, the only other sender,
    # runs every 100 ms).
    import zmq
    pb = tb.pb()
    request = pb.ClientRequest(request_id=1, protocol_version=1)
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

    check(first.error.code == pb.ERROR_UNAVAILABLE,
          f"the stalled submit is answered UNAVAILABLE (its outcome is unknown): {first}")
    # Redis ran the lost batch: the ticket is there, offered to the agent.
    tid = "1"
    t = harness.wait_until(lambda: tb.tierctl("show", tid, expect_rc=None).json, 20,
                           "ticket 1, made by the lost batch, to be readable")
    check(t["subject"] == "lost reply" and t["agent"] == "solo",
          f"the lost batch made the ticket and its offer: {t}")

    started = time.monotonic()
    offer = worker.wait_push("offer", timeout_s=OFFER_WITHIN_S)
    check(offer.offer.ticket.id == tid,
          f"the offer is for ticket {tid}: {offer.offer.ticket.id}")
    print(f"offer for {tid} {time.monotonic() - started:.2f}s after the ticket was readable "
          f"(attempt {offer.offer.ticket.attempt})")
    check(offer.offer.ticket.attempt == 1, "the first attempt, not a requeue after a timeout")
    check("offers sent again after the redis reconnect" in tb.tierd.log(),
          "tierd logged that it offered again")

    # It is the one the worker can finish.
    reply = worker.call(resolve=worker.pb.Resolve(ticket_id=tid, attempt=1, text="done"))
    check(not reply.error.code, f"resolve accepted: {reply}")
    tb.wait_state(tid, "resolved", timeout=10)


harness.main(test)
