"""Ratings outside 1..5 (0, 6) are refused with ERROR_BAD_RATING and change
nothing; a rating of 5 afterwards is stored."""
import signal

import harness
from harness import assert_daemon_works, assert_redis_unchanged, check, history_of


def test(tb):
    tb.start_redis()
    tb.start_tierd()
    pb = tb.pb()
    w = tb.start_worker("L1", exec_cmd=tb.handler("ok", """cat >/dev/null
printf '%s' '{"action":"resolve","text":"done"}'
"""), agent="rater")
    tid = tb.tierctl("submit", "--subject", "rate me")["id"]
    tb.wait_state(tid, "resolved", timeout=15)
    # No worker while comparing Redis: presence would change on each heartbeat.
    w.kill(signal.SIGTERM, group=False)
    harness.wait_until(lambda: not [a for a in tb.tierctl("agents")["agents"]
                                    if a["state"] != "gone"], 15, "the worker to leave")

    for n in (0, 6):
        res = assert_redis_unchanged(tb, f"tierctl rate {n}", lambda: tb.tierctl(
            "rate", tid, n, expect_rc=None))
        check(res.returncode in (1, 2), f"rating {n} refused: {res!r}")
        if res.returncode == 1:
            check("BAD_RATING" in res.stderr, f"BAD_RATING in stderr: {res!r}")
    for n in (0, 6, 100):
        req = pb.ClientRequest(request_id=20 + n, rate=pb.RateRequest(id=tid, csat=n))
        reply = assert_redis_unchanged(tb, f"raw rate {n}", lambda: tb.client_call(req))
        check(reply.request_id == 20 + n and reply.error.code == pb.ERROR_BAD_RATING,
              f"raw rate {n}: BAD_RATING, got {reply}")
        check(reply.error.reason, f"with a reason: {reply}")
    t = tb.show(tid)
    check(t["csat"] == 0 and not history_of(t, "rated"), f"not rated: {t}")

    t = tb.tierctl("rate", tid, 5, "--comment", "quick")
    check(t["csat"] == 5, f"a good rating is stored: {t}")
    check([h["text"] for h in history_of(tb.show(tid), "rated")] == ["5"], "rated entry '5'")
    assert_daemon_works(tb)


harness.main(test)
