"""Unknown departments are refused with ERROR_UNKNOWN_DEPARTMENT and change
nothing: on submit (tierctl and raw), on a worker's functional escalation,
and on a worker registering for a department tierd does not have."""
import harness
from harness import HEARTBEAT_KEYS, assert_daemon_works, assert_redis_unchanged, check


def test(tb):
    tb.start_redis()
    tb.start_tierd()
    pb = tb.pb()

    res = assert_redis_unchanged(tb, "submit --department nosuch", lambda: tb.tierctl(
        "submit", "--subject", "x", "--department", "nosuch", expect_rc=1))
    check("UNKNOWN_DEPARTMENT" in res.stderr, f"stderr names the code: {res!r}")
    check("nosuch" in res.stderr, f"and the department: {res!r}")

    t = pb.Ticket(subject="x", channel=pb.CHANNEL_EMAIL, department="Billing ")
    reply = assert_redis_unchanged(tb, "raw submit department 'Billing '", lambda: tb.client_call(
        pb.ClientRequest(request_id=5, submit=pb.SubmitRequest(ticket=t))))
    check(reply.error.code == pb.ERROR_UNKNOWN_DEPARTMENT, f"UNKNOWN_DEPARTMENT: {reply}")

    tid = tb.tierctl("submit", "--subject", "needs a department")["id"]
    raw = tb.raw_worker("raw-L1")
    offer = raw.wait_push("offer").offer
    att = offer.ticket.attempt
    raw.call(accept=pb.Accept(ticket_id=tid, attempt=att))
    esc = pb.Escalate(ticket_id=tid, attempt=att, to_department="astrology", reason="stars")
    reply = assert_redis_unchanged(tb, "escalate to astrology", lambda: raw.call(escalate=esc),
                                   volatile=HEARTBEAT_KEYS)
    check(reply.error.code == pb.ERROR_UNKNOWN_DEPARTMENT, f"escalate: UNKNOWN_DEPARTMENT {reply}")
    t = tb.show(tid)
    check(t["state"] == "assigned" and t["department"] == "", f"ticket unchanged: {t}")
    ok = raw.call(escalate=pb.Escalate(ticket_id=tid, attempt=att, to_department="billing",
                                       reason="invoice"))
    check(not ok.error.code, f"a known department works: {ok}")
    check(tb.show(tid)["department"] == "billing", "moved to billing")

    def register_bad():
        reg = pb.WorkerMessage(request_id=3, protocol_version=1, register=pb.Register(
            agent_id="stargazer", level=pb.LEVEL_L1, departments=["astrology"], capacity=1))
        raw_reply = tb.raw_request(tb.tierd.workers, reg.SerializeToString())
        check(raw_reply is not None, "tierd answers the Register")
        msg = pb.RouterMessage()
        msg.ParseFromString(raw_reply)
        return msg
    reply = assert_redis_unchanged(tb, "register for astrology", register_bad,
                                   volatile=HEARTBEAT_KEYS)
    check(reply.error.code == pb.ERROR_UNKNOWN_DEPARTMENT, f"register: UNKNOWN_DEPARTMENT {reply}")
    check(not [a for a in tb.tierctl("agents")["agents"] if a["id"] == "stargazer"],
          "the bad worker is not listed")
    assert_daemon_works(tb)


harness.main(test)
