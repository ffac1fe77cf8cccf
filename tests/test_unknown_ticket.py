"""show, cancel, reply and rate of a ticket id that does not exist fail with
UNKNOWN_TICKET (tierctl exit 1, the code on stderr) and change nothing."""
import harness
from harness import assert_daemon_works, assert_redis_unchanged, check


def test(tb):
    tb.start_redis()
    tb.start_tierd()
    pb = tb.pb()
    real = tb.tierctl("submit", "--subject", "a real one")["id"]
    for missing in ("999999", str(int(real) + 1), "abc", "0"):
        for args in (("show", missing), ("cancel", missing), ("rate", missing, "4"),
                     ("reply", missing, "hello?")):
            res = assert_redis_unchanged(tb, f"tierctl {' '.join(args)}",
                                         lambda: tb.tierctl(*args, expect_rc=None))
            check(res.returncode == 1, f"exit 1: {res!r}")
            check("UNKNOWN_TICKET" in res.stderr, f"UNKNOWN_TICKET on stderr: {res!r}")
            check(res.stdout.strip() == "", f"nothing on stdout: {res!r}")
    for rid, body in ((31, {"get": pb.GetRequest(id="424242", with_history=True)}),
                      (32, {"cancel": pb.CancelRequest(id="424242")}),
                      (33, {"rate": pb.RateRequest(id="424242", csat=3)}),
                      (34, {"message": pb.CustomerMessageRequest(id="424242", text="hi")})):
        reply = assert_redis_unchanged(tb, f"raw {list(body)[0]} 424242", lambda: tb.client_call(
            pb.ClientRequest(request_id=rid, **body)))
        check(reply.request_id == rid and reply.error.code == pb.ERROR_UNKNOWN_TICKET,
              f"raw {list(body)[0]}: UNKNOWN_TICKET, got {reply}")
    check(tb.show(real)["state"] == "queued", "the real ticket is untouched")
    assert_daemon_works(tb)


harness.main(test)
