"""Undecodable frames on the clients and workers endpoints get an error reply
ERROR_BAD_MESSAGE (request_id 0), change nothing in Redis, and tierd keeps
working. A worker that talks before registering gets ERROR_NOT_REGISTERED."""
import random

import harness
from harness import assert_daemon_works, assert_redis_unchanged, check

GARBAGE = [
    b"\x0f\x01\x02",                       # field 1 with wire type 7: invalid
    b"\x52\x10ab",                         # field 10, length 16, 2 bytes: truncated
    b"\xff" * 16,                          # a varint that never ends
    b"\x08\x96",                           # request_id varint cut short
    bytes(random.Random(7).randrange(256) for _ in range(64)),
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",  # someone pointed a browser at it
]


def test(tb):
    tb.start_redis()
    tb.start_tierd()
    pb = tb.pb()
    tb.tierctl("submit", "--subject", "existing ticket")

    def send_all(endpoint, reply_type):
        replies = []
        for junk in GARBAGE:
            raw = tb.raw_request(endpoint, junk)
            check(raw is not None, f"tierd answers garbage {junk[:16]!r} on {endpoint}")
            reply = reply_type()
            reply.ParseFromString(raw)
            replies.append((junk, reply))
        return replies

    for endpoint, reply_type in ((tb.tierd.clients, pb.ClientReply),
                                 (tb.tierd.workers, pb.RouterMessage)):
        replies = assert_redis_unchanged(tb, f"garbage on {endpoint}",
                                         lambda: send_all(endpoint, reply_type))
        for junk, reply in replies:
            check(reply.error.code == pb.ERROR_BAD_MESSAGE,
                  f"{junk[:16]!r} on {endpoint}: BAD_MESSAGE, got {reply}")
            check(reply.request_id == 0, f"request_id 0 for undecodable: {reply}")
            check(reply.error.reason, f"a reason for people: {reply}")
            check(reply.WhichOneof("body") is None, f"no body with an error: {reply}")

    # A well-formed message from a worker that never registered.
    def unregistered():
        hb = pb.WorkerMessage(request_id=77, protocol_version=1, heartbeat=pb.Heartbeat())
        raw = tb.raw_request(tb.tierd.workers, hb.SerializeToString())
        check(raw is not None, "tierd answers an unregistered heartbeat")
        reply = pb.RouterMessage()
        reply.ParseFromString(raw)
        return reply
    reply = assert_redis_unchanged(tb, "unregistered heartbeat", unregistered)
    check(reply.request_id == 77 and reply.error.code == pb.ERROR_NOT_REGISTERED,
          f"NOT_REGISTERED with the request id: {reply}")

    check(tb.tierd.alive(), "tierd survived the garbage")
    assert_daemon_works(tb)
    # A correct client request on a fresh socket still gets its own answer.
    req = pb.ClientRequest(request_id=4242, queues=pb.QueuesRequest())
    reply = tb.client_call(req)
    check(reply.request_id == 4242 and not reply.error.code and reply.HasField("queues"),
          f"queues after garbage: {reply}")


harness.main(test)
