"""A request over the size limit is refused with ERROR_TOO_LARGE and changes
nothing: the default limit (256 KiB) against a 300 KiB body on the clients
and workers endpoints, and a limit set in the config file
([router] max_message_bytes) against tierctl."""
import signal

import harness
from harness import assert_daemon_works, assert_redis_unchanged, check

KIB = 1024


def big_submit(pb, size):
    t = pb.Ticket(subject="big", body="x" * size, channel=pb.CHANNEL_EMAIL, external_id="big-1")
    return pb.ClientRequest(request_id=50, protocol_version=1, submit=pb.SubmitRequest(ticket=t))


def test(tb):
    tb.start_redis()
    tierd = tb.start_tierd()
    pb = tb.pb()

    def send(endpoint, payload, reply_type):
        raw = tb.raw_request(endpoint, payload)
        check(raw is not None, f"tierd answers a {len(payload)} byte frame")
        reply = reply_type()
        reply.ParseFromString(raw)
        return reply

    payload = big_submit(pb, 300 * KIB).SerializeToString()
    reply = assert_redis_unchanged(tb, "300 KiB submit",
                                   lambda: send(tierd.clients, payload, pb.ClientReply))
    check(reply.error.code == pb.ERROR_TOO_LARGE, f"TOO_LARGE on clients: {reply.error}")
    check(reply.request_id in (0, 50), f"request id 0 or echoed: {reply.request_id}")
    wpayload = pb.WorkerMessage(request_id=51, protocol_version=1, resolve=pb.Resolve(
        ticket_id="1", attempt=1, text="y" * 300 * KIB)).SerializeToString()
    reply = assert_redis_unchanged(tb, "300 KiB worker message",
                                   lambda: send(tierd.workers, wpayload, pb.RouterMessage))
    check(reply.error.code == pb.ERROR_TOO_LARGE, f"TOO_LARGE on workers: {reply.error}")
    # Just under the default limit is accepted.
    ok = tb.client_call(big_submit(pb, 200 * KIB))
    check(not ok.error.code and ok.submitted.id, f"200 KiB body accepted: {ok.error}")
    assert_daemon_works(tb)

    # A small limit from the config file: another router on the same Redis
    # (one router owns a prefix at a time: the first one stops first).
    tierd.kill(signal.SIGTERM)
    small = tb.start_tierd(config="[router]\nmax_message_bytes = 4096\n")
    res = assert_redis_unchanged(tb, "8 KiB tierctl submit", lambda: tb.tierctl(
        "submit", "--subject", "s", "--body", "z" * 8 * KIB, tierd=small, expect_rc=None))
    check(res.returncode == 1 and "TOO_LARGE" in res.stderr, f"tierctl: TOO_LARGE: {res!r}")
    fine = tb.tierctl("submit", "--subject", "s", "--body", "z" * 2 * KIB, tierd=small)
    check(fine["id"] and fine["duplicate"] is False, f"2 KiB under the limit accepted: {fine}")
    check(small.alive(), "the router still runs")


harness.main(test)
