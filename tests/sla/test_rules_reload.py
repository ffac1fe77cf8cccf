"""SIGHUP re-reads the rules file. A broken file is refused: tierd logs
FILE:LINE of the first error and keeps the rules in force, so submissions
still follow the old rules (and tickets already queued are untouched); a
good file then takes effect on the next SIGHUP, for submissions and for
`tierctl rules test` alike, and tierd never stops answering."""
import signal

import sla_harness as sh  # first: it puts tests/ on sys.path
import rules_common as rc
from sla_harness import harness
from rules_common import ticket_json as T
from sla_harness import check

OLD = """\
[rule outage]
match = outage
level = L3
"""

BROKEN_LINE = 6
BROKEN = """\
[rule outage]
match = outage
level = L2

[rule widget]
levle = L2
"""

BAD_REGEX_LINE = 3
BAD_REGEX = """\
[rule widget]
level = L2
regex = widget(
"""

NEW = """\
[rule outage]
match = outage
level = L2
department = technical

[rule widget]
match = widget
priority = high
"""


def sighup_and_wait_log(tb, text, seen):
    """SIGHUP tierd and wait for a new log line containing text; returns it."""
    tb.tierd.send_signal(signal.SIGHUP)

    def logged():
        lines = sh.log_lines(tb, "tierd")
        return next((line for line in lines[seen:] if text in line), None)
    return harness.wait_until(logged, 10, f"tierd to log {text!r} after SIGHUP")


def test(tb):
    sh.start(tb, rules=OLD)
    path = tb.path("rules.conf")
    queued = rc.expect(tb, T("outage in the datacenter"), [("outage", "level L3")], level="L3")

    for text, line in ((BROKEN, BROKEN_LINE), (BAD_REGEX, BAD_REGEX_LINE)):
        sh.write_rules(tb, text)
        seen = len(sh.log_lines(tb, "tierd"))
        where = f"{path}:{line}:"
        logged = sighup_and_wait_log(tb, where, seen)
        check(tb.tierd.alive(), "tierd survives a bad rules file")
        kept = harness.wait_until(
            lambda: next((x for x in sh.log_lines(tb, "tierd")[seen:] if "kept" in x), None),
            5, "tierd to say it kept the old rules")
        check("1 rules" in kept or "1 rule" in kept, f"it says how many rules it kept: {kept}")
        # Old rules still in force, for submissions and rules tests.
        rc.expect(tb, T("another outage"), [("outage", "level L3")], level="L3")
        rc.expect(tb, T("widget broken"), [])
        print(f"refused with: {logged}")

    sh.write_rules(tb, NEW)
    seen = len(sh.log_lines(tb, "tierd"))
    loaded = sighup_and_wait_log(tb, "rules loaded", seen)
    check("2 rules" in loaded and path in loaded, f"the log names the count and file: {loaded}")
    rc.expect(tb, T("outage again"), [("outage", "level L2, department technical")],
              level="L2", department="technical")
    rc.expect(tb, T("widget broken"), [("widget", "priority high")], priority="high")

    # Nothing in flight was touched by either reload.
    t = tb.show(queued["id"])
    check((t["level"], t["state"]) == ("L3", "queued"), f"the first ticket stays at L3: {t}")
    check(tb.queue_depth("L3") == 3, "the three tickets routed by the old rules are still at L3")


sh.main(test)
