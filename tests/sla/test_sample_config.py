"""The shipped samples work: deploy/tierd.conf (its rules path pointed at a
copy of deploy/rules.conf, its [sla premium] example uncommented) passes
`tierd --check` and runs tierd; the sample rules send "outage" and
"data loss" to L3 urgent and "refund", "invoice", "boleto" to billing; and
every commented example rule in deploy/rules.conf, uncommented, loads on
SIGHUP and fires as its comment says."""
import os
import re
import signal
import subprocess

import sla_harness as sh  # first: it puts tests/ on sys.path
import rules_common as rc
from rules_common import ticket_json as T
from sla_harness import check, harness

DEPLOY = os.path.join(harness.SOURCE_DIR, "deploy")
EXAMPLES_MARK = "Examples of every condition kind"
EXAMPLE_RULES = 7


def read(name):
    with open(os.path.join(DEPLOY, name)) as f:
        return f.read()


def uncomment(text, after=None):
    """Uncomment "#[...]" and "#key = value" lines (after a marker line)."""
    out, active = [], after is None
    for line in text.splitlines():
        if after and after in line:
            active = True
        if active and re.match(r"^#(\[[a-z]|[a-z_0-9]+ = )", line):
            line = line[1:]
        out.append(line)
    return "\n".join(out) + "\n"


def test(tb):
    rules = sh.write_rules(tb, read("rules.conf"))
    conf = read("tierd.conf")
    check("rules = /etc/tierd/rules.conf" in conf, "the sample config names the rules file")
    conf = conf.replace("rules = /etc/tierd/rules.conf", f"rules = {rules}")
    conf = uncomment(conf, after="[sla premium]")
    check("\n[sla premium]\n" in conf, "the sample config has an [sla premium] example")
    path = tb.path("sample.conf")
    with open(path, "w") as f:
        f.write(conf)
    checked = subprocess.run([harness.binary("tierd"), "--check", "--config", path],
                             capture_output=True, timeout=30)
    check(checked.returncode == 0, f"tierd --check accepts the sample: {checked.stderr!r}")

    tb.start_redis()
    tb.start_tierd(extra_args=("--config", path))
    l3 = ("outage", "level L3, priority urgent")
    billing = ("billing", "department billing")
    rc.expect(tb, T("Total outage since 9:00"), [l3], level="L3", priority="urgent")
    rc.expect(tb, T("Backups", body="we had DATA LOSS"), [l3], level="L3", priority="urgent")
    for word in ("Refund", "invoice", "BOLETO"):
        rc.expect(tb, T(f"{word} question", channel="email"), [billing], department="billing")
    rc.expect(tb, T("How do I reset my password?"), [])

    # Every commented example, uncommented, loads and fires.
    sh.write_rules(tb, uncomment(read("rules.conf"), after=EXAMPLES_MARK))
    seen = len(sh.log_lines(tb, "tierd"))
    tb.tierd.send_signal(signal.SIGHUP)
    loaded = harness.wait_until(
        lambda: next((x for x in sh.log_lines(tb, "tierd")[seen:] if "SIGHUP" in x), None),
        10, "tierd to reload the rules")
    check(f"{2 + EXAMPLE_RULES} rules loaded" in loaded, f"every example loads: {loaded}")
    rc.expect(tb, T("Order #123456 late"), [("order-status",
              "department logistics, tag order-status")], department="logistics",
              tags=["order-status"])
    rc.expect(tb, T("Sync", body="webhook returns HTTP 500"),
              [("integration-error", "level L2, department technical")], level="L2",
              department="technical")
    rc.expect(tb, T("hi", channel="sms", customer="v1", vip=True),
              [("realtime-premium", "sla premium"), ("vip", "priority high, tag vip")],
              priority="high", tags=["vip"], sla="premium")
    rc.expect(tb, T("pricing for 20 seats", channel="email"),
              [("quotes", "department sales, tag quote")], department="sales",
              tags=["quote"])


sh.main(test)
