"""Unknown levels are refused and change nothing: tierctl refuses --level L7
itself (usage error, exit 2); a raw Submit with level 9 gets
ERROR_UNKNOWN_LEVEL; a worker escalating past L3 (or to level 9) gets
ERROR_UNKNOWN_LEVEL and keeps the ticket."""
import harness
from harness import HEARTBEAT_KEYS, assert_daemon_works, assert_redis_unchanged, check


def test(tb):
    tb.start_redis()
    tb.start_tierd()
    pb = tb.pb()

    res = assert_redis_unchanged(tb, "tierctl --level L7", lambda: tb.tierctl(
        "submit", "--subject", "x", "--level", "L7", expect_rc=2))
    check("L7" in res.stderr, f"the usage error names the bad level: {res!r}")

    def submit_level(level):
        t = pb.Ticket(subject="bad level", channel=pb.CHANNEL_CHAT, level=level)
        return tb.client_call(pb.ClientRequest(request_id=9, submit=pb.SubmitRequest(ticket=t)))
    for level in (9, 4, 1000):
        reply = assert_redis_unchanged(tb, f"submit level {level}", lambda: submit_level(level))
        check(reply.request_id == 9, f"request id echoed: {reply}")
        check(reply.error.code == pb.ERROR_UNKNOWN_LEVEL, f"level {level}: UNKNOWN_LEVEL, {reply}")
        check(reply.error.reason and reply.WhichOneof("body") is None, f"reason, no body: {reply}")

    # A worker at L3 has no level above it.
    tid = tb.tierctl("submit", "--subject", "top of the tree", "--level", "L3")["id"]
    raw = tb.raw_worker("raw-L3", level="L3")
    offer = raw.wait_push("offer").offer
    check(offer.ticket.id == tid, f"offered {tid}")
    att = offer.ticket.attempt
    raw.call(accept=pb.Accept(ticket_id=tid, attempt=att))
    for to_level in (pb.LEVEL_UNSPECIFIED, 9):
        esc = pb.Escalate(ticket_id=tid, attempt=att, to_level=to_level, reason="help")
        reply = assert_redis_unchanged(tb, f"escalate to {to_level} from L3",
                                       lambda: raw.call(escalate=esc), volatile=HEARTBEAT_KEYS)
        check(reply.error.code == pb.ERROR_UNKNOWN_LEVEL,
              f"escalate past L3 (to_level {to_level}): UNKNOWN_LEVEL, {reply}")
    t = tb.show(tid)
    check(t["state"] == "assigned" and t["level"] == "L3" and t["agent"] == "raw-L3",
          f"the ticket stays with the worker: {t}")
    done = raw.call(resolve=pb.Resolve(ticket_id=tid, attempt=att, text="fine"))
    check(done.done.state == pb.STATE_RESOLVED, f"the worker can still resolve it: {done}")
    assert_daemon_works(tb)


harness.main(test)
