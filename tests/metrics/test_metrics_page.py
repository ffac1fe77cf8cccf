"""GET /metrics is a valid Prometheus text exposition (read by a strict
parser) that follows the naming rules (tier_ prefix, _total counters,
_seconds histograms, only level/channel/department/state/reason/from/to/kind
labels), and its counters agree with the report after the known day of
scenario.py; the queue gauges follow a waiting ticket, refusals are counted
by reason, and tier_redis_up drops to 0 when Redis goes away."""
import math

import kpi
import scenario

import harness
from harness import check, wait_until

LABELS = {"level", "channel", "department", "state", "reason", "from", "to", "kind", "le"}


def check_names(families):
    for name, fam in families.items():
        check(name.startswith("tier_"), f"{name}: tier_ prefix")
        check(fam.help and fam.type, f"{name}: HELP and TYPE")
        check(fam.type != "counter" or name.endswith("_total"), f"counter {name} ends in _total")
        check(fam.type != "histogram" or name.endswith("_seconds"),
              f"histogram {name} ends in _seconds")
        for sample, labels, _ in fam.samples:
            check(set(labels) <= LABELS, f"{sample}: labels {sorted(labels)} within {LABELS}")


def test(tb):
    port = harness.free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    desk = scenario.run(tb, tierd_args=["--metrics", f"127.0.0.1:{port}"])
    report = tb.tierctl("report", "--since", "1h", "--by", "channel")
    content_type, text = kpi.scrape(url)
    check(content_type.startswith("text/plain; version=0.0.4"), f"content type {content_type}")
    m = kpi.parse_prometheus(text)
    check_names(m)

    check(kpi.sample_sum(m, "tier_redis_up") == 1, "tier_redis_up 1")
    check(kpi.sample_sum(m, "tier_tickets_created_total") == report["created"],
          f"created: /metrics {kpi.sample_sum(m, 'tier_tickets_created_total')}, report {report}")
    for state in ("resolved", "abandoned"):
        got = kpi.sample_sum(m, "tier_tickets_closed_total", state=state)
        check(got == report[state], f"{state}: /metrics {got}, report {report[state]}")
    check(kpi.sample_sum(m, "tier_tickets_closed_total", state="dead") == 0, "nothing dead")
    check(kpi.sample_sum(m, "tier_escalations_total") == report["escalated"],
          f"escalations: /metrics and report {report['escalated']}")
    check(kpi.sample_sum(m, "tier_escalations_total", **{"from": "L1", "to": "L2",
                                                          "kind": "hierarchical"}) == 2,
          "two escalations L1 -> L2, hierarchical")
    check(kpi.sample_sum(m, "tier_escalations_total", **{"from": "L1", "to": "L1",
                                                          "kind": "functional"}) == 1,
          "one escalation L1 -> L1 billing, functional")
    for row in report["rows"]:
        ch = row["key"]
        created = kpi.sample_sum(m, "tier_tickets_created_total", channel=ch)
        count = kpi.sample_sum(m, "tier_resolution_seconds_count", channel=ch)
        total_s = kpi.sample_sum(m, "tier_resolution_seconds_sum", channel=ch)
        check(created == row["created"] and count == row["resolved"],
              f"{ch}: created {created}, resolved {count}; report {row}")
        check(math.isclose(total_s, row["resolution_seconds"] * row["resolved"], abs_tol=0.01),
              f"{ch}: resolution time {total_s} s in all, report {row}")
    offers = sum(1 for t in desk["tickets"].values() for h in t["history"]
                 if h["kind"] == "offered")
    check(kpi.sample_sum(m, "tier_assignment_latency_seconds_count") == offers,
          f"an assignment latency per offer ({offers})")
    for level in ("L1", "L2", "L3"):
        check(kpi.sample_sum(m, "tier_agents", level=level, state="ready") == 1,
              f"one ready agent at {level}")

    # A ticket nobody serves waits in L2 technical: the gauges show it.
    tb.tierctl("submit", "--subject", "waiting", "--level", "L2", "--department", "technical")
    def waiting():
        fams = kpi.parse_prometheus(kpi.scrape(url)[1])
        depth = kpi.sample_sum(fams, "tier_queue_depth", level="L2", department="technical")
        age = kpi.sample_sum(fams, "tier_queue_oldest_age_seconds", level="L2",
                             department="technical")
        return depth == tb.queue_depth("L2", "technical") == 1 and age > 0
    wait_until(waiting, 10, "tier_queue_depth{L2, technical} 1 with a positive age")

    # Refusals are counted by reason.
    pb = tb.pb()
    bad = pb.ClientRequest(request_id=7, submit=pb.SubmitRequest(
        ticket=pb.Ticket(subject="", channel=pb.Channel.Value("CHANNEL_CHAT"))))
    check(tb.client_call(bad).error.code == pb.ErrorCode.Value("ERROR_MISSING_FIELD"),
          "an empty subject is refused")
    wait_until(lambda: kpi.sample_sum(kpi.parse_prometheus(kpi.scrape(url)[1]),
                                      "tier_rejected_messages_total", reason="missing_field") == 1,
               5, "tier_rejected_messages_total{reason=missing_field} 1")

    tb.redis.kill()
    wait_until(lambda: kpi.sample_sum(kpi.parse_prometheus(kpi.scrape(url)[1]),
                                      "tier_redis_up") == 0, 10, "tier_redis_up 0 without Redis")


harness.main(test)
