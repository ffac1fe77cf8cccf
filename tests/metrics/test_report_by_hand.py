"""tierctl report equals the figures computed by hand from the tickets
themselves: a known day (scenario.py) on every channel, with escalations, a
cancellation, ratings and a ticket resolved by a bot alone, reported as a
total and by channel, level, department, agent, hour and day. The figures
live in Redis: a restarted tierd reports the same."""
import kpi
import scenario

import harness
from harness import check

GROUPINGS = ["", "channel", "level", "department", "agent", "hour", "day"]


def test(tb):
    desk = scenario.run(tb)
    facts = desk["facts"]
    for by in GROUPINGS:
        kpi.check_report(tb, facts, by)

    # The figures the scenario was built to produce, whatever the timing.
    total = tb.tierctl("report", "--since", "1h", "--by", "channel")
    check(total["created"] == 21 and total["resolved"] == 20 and total["abandoned"] == 1,
          f"21 created, 20 resolved, 1 abandoned: {total}")
    check(total["escalated"] == 3, f"two escalations up, one sideways: {total}")
    check(total["responded"] == 19, f"every resolved ticket but the silent one answered: {total}")
    check(total["ratings"] == 6 and abs(total["csat"] - 4 / 6) < 1e-9,
          f"six ratings (a second one does not count), four of them 4-5: {total}")
    check(abs(total["self_service_rate"] - 1 / 20) < 1e-9, f"one of 20 by a bot alone: {total}")
    check(abs(total["abandonment_rate"] - 1 / 21) < 1e-9, f"one of 21 cancelled: {total}")
    rows = {r["key"]: r for r in total["rows"]}
    check(set(rows) == set(kpi.CHANNELS), f"a row per channel: {sorted(rows)}")
    check(all(r["grade"] for r in rows.values()), f"every channel graded: {total['rows']}")
    check(total["grade"] and total["grade_level"] == min(r["grade_level"] for r in rows.values()),
          f"the total is graded as its weakest channel: {total}")
    by_level = {r["key"]: r for r in tb.tierctl("report", "--since", "1h", "--by", "level")["rows"]}
    check(by_level["L1"]["escalated"] == 3 and by_level["L2"]["escalated"] == 0,
          f"escalations count at the level they left: {by_level}")

    # For people: a table with every channel and the total.
    text = tb.tierctl("report", "--since", "1h", "--by", "channel", json_out=False).stdout
    for word in kpi.CHANNELS + ["TOTAL", "GRADE", total["grade"]]:
        check(word in text, f"the table shows {word!r}:\n{text}")

    tb.tierd.restart()
    for by in ("", "agent"):
        kpi.check_report(tb, facts, by)


harness.main(test)
