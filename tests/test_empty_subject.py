"""A ticket without a subject (empty or only blanks) is refused with
ERROR_MISSING_FIELD naming the field, and nothing is stored."""
import harness
from harness import assert_daemon_works, assert_redis_unchanged, check


def test(tb):
    tb.start_redis()
    tb.start_tierd()
    pb = tb.pb()

    res = assert_redis_unchanged(tb, "tierctl submit --subject ''", lambda: tb.tierctl(
        "submit", "--subject", "", "--external-id", "empty-1", expect_rc=None))
    check(res.returncode in (1, 2), f"tierctl refuses an empty subject: {res!r}")
    if res.returncode == 1:
        check("MISSING_FIELD" in res.stderr, f"router code in stderr: {res!r}")

    for subject in ("", "   "):
        t = pb.Ticket(subject=subject, body="body without subject", channel=pb.CHANNEL_CHAT,
                      external_id="empty-2")
        reply = assert_redis_unchanged(tb, f"raw submit subject {subject!r}", lambda: tb.client_call(
            pb.ClientRequest(request_id=11, submit=pb.SubmitRequest(ticket=t))))
        check(reply.request_id == 11, f"request id echoed: {reply}")
        if subject == "":
            check(reply.error.code == pb.ERROR_MISSING_FIELD, f"MISSING_FIELD: {reply}")
            check("subject" in reply.error.reason, f"the reason names the field: {reply}")
        else:
            check(reply.error.code in (pb.ERROR_MISSING_FIELD, pb.ERROR_BAD_REQUEST),
                  f"a blank subject is refused: {reply}")

    # A missing channel and a missing ticket are refused the same way.
    t = pb.Ticket(subject="no channel")
    reply = assert_redis_unchanged(tb, "raw submit without channel", lambda: tb.client_call(
        pb.ClientRequest(request_id=12, submit=pb.SubmitRequest(ticket=t))))
    check(reply.error.code == pb.ERROR_UNKNOWN_CHANNEL, f"UNKNOWN_CHANNEL: {reply}")
    reply = assert_redis_unchanged(tb, "raw submit without ticket", lambda: tb.client_call(
        pb.ClientRequest(request_id=13, submit=pb.SubmitRequest())))
    check(reply.error.code == pb.ERROR_MISSING_FIELD, f"MISSING_FIELD for no ticket: {reply}")

    # The refused external id was not remembered: it can be used now.
    ok = tb.tierctl("submit", "--subject", "now with subject", "--external-id", "empty-2")
    check(ok["duplicate"] is False, f"empty-2 was never stored: {ok}")
    assert_daemon_works(tb)


harness.main(test)
