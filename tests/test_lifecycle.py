"""A ticket escalated at L1 and at L2 and resolved at L3 ends resolved at L3,
with both escalations (levels, reasons, notes) and the resolution in its
history, and each level's handler sees the history of the levels before it
(the customer never repeats themselves)."""
import json

import harness
from harness import check, history_of


def test(tb):
    tb.start_redis()
    tb.start_tierd()
    seen = tb.path("seen")
    # Each handler keeps the ticket JSON it was given, then decides.
    l1 = tb.handler("l1", f"""cat > {seen}-L1.json
printf '%s' '{{"action":"escalate","level":"L2","reason":"L1 cannot reproduce","notes":"customer tried a reinstall","response":"We are on it"}}'
""")
    l2 = tb.handler("l2", f"""cat > {seen}-L2.json
printf '%s' '{{"action":"escalate","level":"L3","reason":"needs a code change","notes":"stack trace attached"}}'
""")
    l3 = tb.handler("l3", f"""cat > {seen}-L3.json
printf '%s' '{{"action":"resolve","text":"patched in 1.2.3"}}'
""")
    tb.start_worker("L1", exec_cmd=l1, agent="ana-L1")
    tb.start_worker("L2", exec_cmd=l2, agent="bruno-L2")
    tb.start_worker("L3", exec_cmd=l3, agent="carla-L3")
    for a in ("ana-L1", "bruno-L2", "carla-L3"):
        tb.wait_agent(a)

    sub = tb.tierctl("submit", "--subject", "App crashes on login", "--body", "since 1.2",
                     "--channel", "chat", "--customer", "c1", "--name", "Ana",
                     "--external-id", "life-1")
    check(sub["duplicate"] is False, f"first submit is not a duplicate: {sub}")
    tid = sub["id"]
    t = tb.wait_state(tid, "resolved", timeout=30)

    check(t["level"] == "L3", f"resolved at L3, got {t['level']}")
    check(t["department"] == "", f"no department, got {t['department']!r}")
    check(t["agent"] in ("carla-L3", ""), f"agent is the L3 one or cleared: {t['agent']!r}")
    check(t["resolved_ms"] >= t["created_ms"] > 0, f"resolved_ms set: {t}")
    check(t["first_response_ms"] > 0, f"L1's response sets first_response_ms: {t}")

    esc = history_of(t, "escalated")
    check(len(esc) == 2, f"two escalations in history, got {esc}")
    first, second = esc
    check((first["from_level"], first["to_level"]) == ("L1", "L2"), f"L1->L2: {first}")
    check(first["reason"] == "L1 cannot reproduce", f"L1's reason kept: {first}")
    check(first["escalation"] == "hierarchical", f"hierarchical: {first}")
    check(first["actor"] == "ana-L1", f"escalated by ana-L1: {first}")
    check((second["from_level"], second["to_level"]) == ("L2", "L3"), f"L2->L3: {second}")
    check(second["reason"] == "needs a code change", f"L2's reason kept: {second}")
    check(second["actor"] == "bruno-L2", f"escalated by bruno-L2: {second}")
    texts = json.dumps(t["history"])
    for note in ("customer tried a reinstall", "stack trace attached"):
        check(note in texts, f"escalation note {note!r} kept in history")
    responses = history_of(t, "agent_response")
    check([r["text"] for r in responses] == ["We are on it"], f"one response: {responses}")

    resolved = history_of(t, "resolved")
    check(len(resolved) == 1, f"exactly one resolution: {resolved}")
    check(resolved[0]["text"] == "patched in 1.2.3", f"resolution text: {resolved[0]}")
    check(resolved[0]["actor"] == "carla-L3", f"resolved by carla-L3: {resolved[0]}")
    kinds = [h["kind"] for h in t["history"]]
    check(kinds[0] == "created", f"history starts with created: {kinds}")
    check(kinds.index("escalated") < kinds.index("resolved"), f"order: {kinds}")

    # The history travels: L3's handler got both escalations on stdin.
    with open(f"{seen}-L3.json") as f:
        at_l3 = json.load(f)
    check(at_l3["id"] == tid and at_l3["level"] == "L3", f"L3 got the ticket at L3: {at_l3}")
    check(len(history_of(at_l3, "escalated")) == 2, "L3 handler saw both escalations")
    with open(f"{seen}-L2.json") as f:
        at_l2 = json.load(f)
    check(at_l2["subject"] == "App crashes on login" and at_l2["body"] == "since 1.2",
          "L2 handler got subject and body")

    check(tb.queue_depth("L1") == 0 and tb.queue_depth("L2") == 0
          and tb.queue_depth("L3") == 0, "every queue empty after resolution")


harness.main(test)
