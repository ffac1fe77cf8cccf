"""A chat ticket nobody takes at L1 gets an SLA warning at 80 % of its
first-response target, a breach at the target, and the policy's action
"escalate" moves it to L2 automatically: all three in its history (kind sla,
then escalated L1->L2 automatic by "sla"), the warning and breach as events on
`tierctl watch --json`, each once; an L2 worker then gets and resolves it."""
import sla_harness as sh
from sla_harness import check

FIRST_RESPONSE_MS = 400
WARN_PERCENT = 80


def test(tb):
    sh.start(tb, sla={"chat": {"first_response": f"{FIRST_RESPONSE_MS}ms", "action": "escalate"}})
    watch = sh.Watcher(tb)
    tid = sh.submit(tb, "Cannot log in", "--channel", "chat", "--customer", "c-esc")

    t = sh.wait_ticket(tb, tid, lambda t: t["level"] == "L2", timeout=10,
                       what="escalated to L2 by the SLA")
    check(t["state"] == "queued", f"waits at L2 after the escalation: {t['state']}")
    created = t["created_ms"]
    warning = sh.one(t, "sla", text="warning")
    breach = sh.one(t, "sla", text="breach")
    esc = sh.one(t, "escalated")
    check(warning["reason"] == f"first response target {WARN_PERCENT}% used",
          f"warning names the clock and share: {warning}")
    check(breach["reason"] == "first response target missed", f"breach names the clock: {breach}")
    check(warning["automatic"] and breach["automatic"], f"SLA entries are automatic: {t['history']}")
    sh.near(warning["at_ms"], created + FIRST_RESPONSE_MS * WARN_PERCENT // 100,
            what="warning at 80 % of the target")
    sh.near(breach["at_ms"], created + FIRST_RESPONSE_MS, what="breach at the target")
    check((esc["from_level"], esc["to_level"]) == ("L1", "L2"), f"L1->L2: {esc}")
    check(esc["automatic"] is True and esc["actor"] == "sla",
          f"escalated automatically, by the SLA: {esc}")
    check(esc["escalation"] == "hierarchical", f"hierarchical: {esc}")
    check(esc["reason"] == "first response target missed", f"reason is the breach: {esc}")
    kinds = [(h["kind"], h["text"]) for h in t["history"]]
    check(kinds.index(("sla", "warning")) < kinds.index(("sla", "breach"))
          < kinds.index(("escalated", "")), f"warning, breach, escalation in order: {kinds}")

    warnings = watch.wait(tid, "sla_warning")
    breaches = watch.wait(tid, "sla_breach")
    watch.wait(tid, "escalated")
    check(len(warnings) == 1 and len(breaches) == 1,
          f"one warning and one breach event: {warnings} {breaches}")
    check(warnings[0]["reason"] == warning["reason"] and breaches[0]["reason"] == breach["reason"],
          f"events carry the history's reasons: {warnings} {breaches}")
    check(warnings[0]["seq"] < breaches[0]["seq"], "warning event before breach event")

    # The breached first-response clock is done: nothing fires again at L2.
    cmd, path = sh.recorder(tb, "l2", {"action": "resolve", "text": "fixed at L2"})
    tb.start_worker("L2", exec_cmd=cmd, agent="l2-agent")
    t = tb.wait_state(tid, "resolved", timeout=10)
    check(sh.one(t, "resolved")["actor"] == "l2-agent", f"the L2 worker resolved it: {t}")
    check([r[0] for r in sh.records(path)] == [tid], "the L2 handler saw the ticket once")
    check(len(sh.entries(t, "sla")) == 2, f"no SLA entry after the escalation: {t['history']}")
    check(len(watch.events(tid, "sla_warning")) == 1 and len(watch.events(tid, "sla_breach")) == 1,
          "still one warning and one breach event")


sh.main(test)
