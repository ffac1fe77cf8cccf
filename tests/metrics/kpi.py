"""kpi — the service-level figures computed by hand, and a strict reader of
the Prometheus text format, for the tests of tests/metrics/.

The hand computation works from what tierd shows of each ticket (`tierctl
show --json`: times, history) and the SLA due time it stored, never from the
aggregates it is checked against. It follows the definitions of
docs/metrics.md: every measurement is counted when it happens, under the
ticket's channel, level, department and agent at that moment.
"""

import math
import os
import re
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import harness  # noqa: E402 - the shared testbed, one directory up
from harness import check  # noqa: E402

# Resolution-time histogram of stats.lua (ms): the p50/p90 estimate
# interpolates inside these buckets (docs/metrics.md).
RES_EDGES_MS = [1000, 5000, 10000, 30000, 60000, 120000, 300000, 600000, 900000, 1800000,
                3600000, 7200000, 14400000, 28800000, 43200000, 86400000, 172800000,
                259200000, 604800000, 1209600000, 2592000000]

# The grade limits tierd uses unless [grades] says otherwise (seconds of mean
# first response per channel; mean rating for CSAT), best grade first.
GRADE_NAMES = ["", "unacceptable", "below_average", "average", "above_average", "stellar"]
REALTIME = [60, 300, 1800, 3600]
DEFAULT_GRADES = {
    "chat": REALTIME, "phone": REALTIME, "sms": REALTIME, "whatsapp": REALTIME,
    "social": [900, 14400, 86400, 259200],
    "email": [3600, 14400, 86400, 259200], "web": [3600, 14400, 86400, 259200],
    "csat": [4.9, 4.8, 4.0, 3.0],
}
CHANNELS = ["chat", "email", "phone", "sms", "whatsapp", "social", "web"]
LEVELS = ["L1", "L2", "L3"]
HOUR_MS = 3600 * 1000

COUNTERS = ["created", "handled", "responded", "frt_sum", "resp_n", "resp_sum", "resolved",
            "res_sum", "one_touch", "self_service", "abandoned", "escalated", "ratings",
            "ratings_4_5", "rating_sum", "sla_met", "sla_missed"]


# ---------------------------------------------------------------------------
# Facts: one per measurement, with the place it counts at

class Fact:
    def __init__(self, at_ms, chan, level, dept, agent, **counts):
        self.at_ms, self.chan, self.level, self.dept, self.agent = at_ms, chan, level, dept, agent
        self.counts = counts
        self.res_ms = counts.pop("res_ms", None)   # a resolution's duration, for the histogram


def ticket_facts(t, bots, fdue_ms):
    """The facts of one ticket (its `show --json` form). bots: the agent ids
    that are bots. fdue_ms: when its first response was due, 0 = no target."""
    facts = []
    level, dept = _initial_place(t)
    chan, created = t["channel"], t["created_ms"]
    waiting_since = created      # the customer waits for an answer since then (0: answered)
    responses = 0
    persons = False
    rated = False
    holder = ""
    for h in t["history"]:
        at, kind, actor = h["at_ms"], h["kind"], h["actor"]
        place = dict(at_ms=at, chan=chan, level=level, dept=dept)
        if kind == "created":
            facts.append(Fact(**place, agent="", created=1))
        elif kind == "offered":
            holder = actor
        elif kind == "assigned":
            holder = actor
            persons = persons or actor not in bots
            facts.append(Fact(**place, agent=actor, handled=1))
        elif kind == "agent_response":
            if responses == 0:
                sla = {}
                if fdue_ms:
                    sla = {"sla_met": 1} if at <= fdue_ms else {"sla_missed": 1}
                facts.append(Fact(**place, agent=actor, responded=1, frt_sum=at - created, **sla))
            if waiting_since:
                facts.append(Fact(**place, agent=actor, resp_n=1, resp_sum=at - waiting_since))
            waiting_since = 0
            responses += 1
        elif kind == "customer_message":
            waiting_since = waiting_since or at
        elif kind == "escalated":
            facts.append(Fact(at_ms=at, chan=chan, level=h["from_level"],
                              dept=h["from_department"], agent=actor, escalated=1))
            level, dept, holder = h["to_level"], h["to_department"], ""
        elif kind == "resolved":
            extra = {}
            if responses == 1:
                extra["one_touch"] = 1
            if not persons and actor in bots:
                extra["self_service"] = 1
            facts.append(Fact(**place, agent=actor, resolved=1, res_sum=at - created,
                              res_ms=at - created, **extra))
        elif kind == "abandoned":
            facts.append(Fact(**place, agent=holder, abandoned=1))
        elif kind == "rated" and not rated:
            rated = True   # only the first rating counts
            csat = int(h["text"])
            facts.append(Fact(**place, agent=t["agent"], ratings=1, rating_sum=csat,
                              ratings_4_5=int(csat >= 4)))
        elif kind in ("released", "requeued"):
            holder = ""
    return facts


def _initial_place(t):
    """Where the ticket was queued at intake: the place its first escalation
    left from, else where it is now."""
    for h in t["history"]:
        if h["kind"] == "escalated":
            return h["from_level"], h["from_department"]
    return t["level"], t["department"]


# ---------------------------------------------------------------------------
# Rows

def _group_key(fact, by):
    if by == "channel":
        return fact.chan
    if by == "level":
        return fact.level
    if by == "department":
        return fact.dept or "(general)"
    if by == "agent":
        return fact.agent or None          # facts without an agent are in no agent row
    hour_start = fact.at_ms - fact.at_ms % HOUR_MS
    fmt = "%H" if by == "hour" else "%Y-%m-%d"
    return time.strftime(fmt, time.localtime(hour_start / 1000))


def _quantile_s(res_ms, q):
    """Like tierd (and Prometheus' histogram_quantile): find the bucket of the
    q-th resolution, interpolate linearly inside it."""
    counts = [0] * (len(RES_EDGES_MS) + 1)
    for ms in res_ms:
        i = 0
        while i < len(RES_EDGES_MS) and ms > RES_EDGES_MS[i]:
            i += 1
        counts[i] += 1
    total = sum(counts)
    if not total:
        return 0.0
    rank, below = q * total, 0
    for i, n in enumerate(counts):
        lower = RES_EDGES_MS[i - 1] if i else 0
        if n and below + n >= rank:
            if i == len(RES_EDGES_MS):
                return lower / 1000
            return (lower + (RES_EDGES_MS[i] - lower) * (rank - below) / n) / 1000
        below += n
    return 0.0


def _grade(chan, frt_s, csat_mean, grades):
    def by_limits(value, limits, better):
        for i, limit in enumerate(limits):
            if better(value, limit):
                return 5 - i
        return 1
    g_frt = by_limits(frt_s, grades[chan], lambda v, lim: v <= lim) if frt_s is not None else 0
    g_csat = (by_limits(csat_mean, grades["csat"], lambda v, lim: v >= lim)
              if csat_mean is not None else 0)
    if not g_frt or not g_csat:
        return g_frt or g_csat
    return min(g_frt, g_csat)


def _ratio(a, b):
    return a / b if b else 0.0


def row_of(facts, key, grade_level=0):
    """A report row (the JSON of tierctl report) from facts."""
    n = {c: sum(f.counts.get(c, 0) for f in facts) for c in COUNTERS}
    res_ms = [f.res_ms for f in facts if f.res_ms is not None]
    return {
        "key": key, "created": n["created"], "resolved": n["resolved"],
        "abandoned": n["abandoned"], "escalated": n["escalated"], "responded": n["responded"],
        "frt_seconds": _ratio(n["frt_sum"], n["responded"]) / 1000,
        "response_seconds": _ratio(n["resp_sum"], n["resp_n"]) / 1000,
        "resolution_seconds": _ratio(n["res_sum"], n["resolved"]) / 1000,
        "resolution_p50_seconds": _quantile_s(res_ms, 0.5),
        "resolution_p90_seconds": _quantile_s(res_ms, 0.9),
        "one_touch_rate": _ratio(n["one_touch"], n["resolved"]),
        "escalation_rate": _ratio(n["escalated"], n["handled"]),
        "self_service_rate": _ratio(n["self_service"], n["resolved"]),
        "abandonment_rate": _ratio(n["abandoned"], n["created"]),
        "csat": _ratio(n["ratings_4_5"], n["ratings"]), "ratings": n["ratings"],
        "sla_attainment": _ratio(n["sla_met"], n["sla_met"] + n["sla_missed"]),
        "grade": GRADE_NAMES[grade_level], "grade_level": grade_level,
        "_frt_s": _ratio(n["frt_sum"], n["responded"]) / 1000 if n["responded"] else None,
        "_csat_mean": _ratio(n["rating_sum"], n["ratings"]) if n["ratings"] else None,
    }


def expected_report(facts, by, grades=DEFAULT_GRADES):
    """(total row, rows) as tierd should report them."""
    by_channel = {}
    for f in facts:
        by_channel.setdefault(f.chan, []).append(f)
    channel_rows = {}
    for chan, fs in by_channel.items():
        r = row_of(fs, chan)
        level = _grade(chan, r["_frt_s"], r["_csat_mean"], grades)
        channel_rows[chan] = row_of(fs, chan, level)
    graded = [r["grade_level"] for r in channel_rows.values() if r["grade_level"]]
    total = row_of(facts, "", min(graded) if graded else 0)
    if by == "":
        return total, []
    if by == "channel":
        return total, [channel_rows[c] for c in CHANNELS if c in channel_rows]
    groups = {}
    for f in facts:
        key = _group_key(f, by)
        if key is not None:
            groups.setdefault(key, []).append(f)
    order = (lambda k: LEVELS.index(k)) if by == "level" else (lambda k: k)
    return total, [row_of(groups[k], k) for k in sorted(groups, key=order)]


def check_row(got, want, where):
    """Every field of want (but the private _ ones) equals got's; floats to 1e-9."""
    for field, value in want.items():
        if field.startswith("_"):
            continue
        check(field in got, f"{where}: field {field} missing in {got}")
        if isinstance(value, float):
            check(math.isclose(got[field], value, rel_tol=1e-9, abs_tol=1e-9),
                  f"{where}: {field} is {got[field]}, computed by hand {value}")
        else:
            check(got[field] == value, f"{where}: {field} is {got[field]!r}, "
                                       f"computed by hand {value!r}")


def check_report(tb, facts, by, since="1h", grades=DEFAULT_GRADES):
    """tierctl report --by BY equals the hand computation, row by row.
    Returns the report."""
    report = tb.tierctl("report", "--since", since, *(["--by", by] if by else []))
    total, rows = expected_report(facts, by, grades)
    del total["key"]    # the total's fields are the top level, without a key
    check_row(report, total, f"report by {by or 'nothing'}, total")
    check([r["key"] for r in report["rows"]] == [r["key"] for r in rows],
          f"report by {by}: rows {[r['key'] for r in report['rows']]}, "
          f"computed by hand {[r['key'] for r in rows]}")
    for got, want in zip(report["rows"], rows):
        check_row(got, want, f"report by {by}, row {want['key']!r}")
    return report


def fdue_of(tb, tid):
    """When the ticket's first response was due (ms), 0 = no target: the SLA
    deadline tierd stored at intake (docs/data-model.md)."""
    stored = tb.stored(tid)
    return stored.first_response_due_ms if stored else 0


# ---------------------------------------------------------------------------
# Prometheus text format 0.0.4, read strictly

METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")


class Family:
    def __init__(self, name):
        self.name, self.help, self.type, self.samples = name, None, None, []


def _parse_labels(text, pos, where):
    """Parse {a="b",...} starting at text[pos] == '{'; returns (dict, pos after '}')."""
    labels = {}
    pos += 1
    while True:
        if text[pos] == "}":
            return labels, pos + 1
        m = LABEL_NAME.match(text, pos)
        check(m, f"{where}: bad label name at {text[pos:]!r}")
        name = m.group(0)
        pos = m.end()
        check(text[pos:pos + 2] == '="', f"{where}: expected =\" after label {name}")
        pos += 2
        value = []
        while text[pos] != '"':
            if text[pos] == "\\":
                esc = text[pos + 1]
                check(esc in '\\"n', f"{where}: bad escape \\{esc} in label {name}")
                value.append("\n" if esc == "n" else esc)
                pos += 2
            else:
                check(text[pos] != "\n", f"{where}: raw newline in label {name}")
                value.append(text[pos])
                pos += 1
        pos += 1
        check(name not in labels, f"{where}: label {name} twice")
        labels[name] = "".join(value)
        if text[pos] == ",":
            pos += 1
        else:
            check(text[pos] == "}", f"{where}: expected , or }} after label {name}")


def _parse_value(text, where):
    if text in ("+Inf", "-Inf", "NaN"):
        return float(text.replace("Inf", "inf").replace("NaN", "nan"))
    check(re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", text),
          f"{where}: {text!r} is not a sample value")
    return float(text)


def _family_of(sample_name, families):
    """The family a sample belongs to: itself, or a histogram/summary's
    _bucket/_sum/_count."""
    if sample_name in families:
        return families[sample_name]
    for suffix in ("_bucket", "_sum", "_count"):
        base = sample_name[:-len(suffix)]
        if sample_name.endswith(suffix) and base in families and \
                families[base].type in ("histogram", "summary"):
            return families[base]
    return None


def parse_prometheus(text):
    """Families by name from an exposition; raises TestFailure on anything the
    0.0.4 text format does not allow (and on families split in two)."""
    check(text.endswith("\n"), "the exposition ends with a newline")
    families, order, closed = {}, [], set()
    current = None
    for n, line in enumerate(text[:-1].split("\n"), 1):
        where = f"/metrics line {n} {line!r}"
        check(line.strip() == line or line.startswith("#"), f"{where}: stray blanks")
        if not line:
            continue
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                name = parts[2]
                check(METRIC_NAME.fullmatch(name), f"{where}: bad metric name")
                fam = families.get(name)
                if fam is None:
                    check(name not in closed, f"{where}: family {name} split in two")
                    fam = families[name] = Family(name)
                    order.append(name)
                if current is not None and current is not fam:
                    closed.add(current.name)
                current = fam
                if parts[1] == "HELP":
                    check(fam.help is None, f"{where}: second HELP for {name}")
                    check(len(parts) == 4 and parts[3], f"{where}: empty HELP")
                    fam.help = parts[3]
                else:
                    check(fam.type is None and not fam.samples,
                          f"{where}: TYPE must come once, before the samples")
                    check(len(parts) == 4 and parts[3] in TYPES, f"{where}: bad type")
                    fam.type = parts[3]
            continue
        m = METRIC_NAME.match(line)
        check(m, f"{where}: no metric name")
        name, pos = m.group(0), m.end()
        labels = {}
        if pos < len(line) and line[pos] == "{":
            labels, pos = _parse_labels(line, pos, where)
        check(line[pos:pos + 1] == " ", f"{where}: expected a blank before the value")
        fields = line[pos + 1:].split(" ")
        check(1 <= len(fields) <= 2, f"{where}: value [timestamp] expected")
        value = _parse_value(fields[0], where)
        if len(fields) == 2:
            check(re.fullmatch(r"-?\d+", fields[1]), f"{where}: bad timestamp")
        fam = _family_of(name, families)
        check(fam is not None and fam.type, f"{where}: sample before its # TYPE")
        check(fam is current, f"{where}: sample of {fam.name} outside its group")
        key = (name, tuple(sorted(labels.items())))
        check(key not in {(s[0], tuple(sorted(s[1].items()))) for s in fam.samples},
              f"{where}: the same series twice")
        fam.samples.append((name, labels, value))
    for fam in families.values():
        if fam.type == "histogram":
            _check_histogram(fam)
    return families


def _check_histogram(fam):
    """Cumulative buckets ending in le="+Inf" equal to _count, and a _sum,
    for every label set."""
    series = {}
    for name, labels, value in fam.samples:
        rest = {k: v for k, v in labels.items() if k != "le"}
        s = series.setdefault(tuple(sorted(rest.items())), {"buckets": [], "sum": None,
                                                            "count": None})
        if name == fam.name + "_bucket":
            check("le" in labels, f"{fam.name}: bucket without le")
            s["buckets"].append((_parse_value(labels["le"], fam.name), value))
        elif name == fam.name + "_sum":
            s["sum"] = value
        elif name == fam.name + "_count":
            s["count"] = value
        else:
            check(False, f"{fam.name}: sample {name} in a histogram")
    for key, s in series.items():
        bounds = [b for b, _ in s["buckets"]]
        check(bounds == sorted(bounds) and bounds and bounds[-1] == math.inf,
              f"{fam.name}{dict(key)}: buckets rise and end with +Inf: {bounds}")
        counts = [c for _, c in s["buckets"]]
        check(counts == sorted(counts), f"{fam.name}{dict(key)}: cumulative buckets {counts}")
        check(s["count"] == counts[-1] and s["sum"] is not None,
              f"{fam.name}{dict(key)}: _count equals the +Inf bucket, _sum present")


def sample_sum(families, name, **match):
    """Sum of the samples of a series name whose labels include match."""
    fam = _family_of(name, families)
    check(fam is not None, f"/metrics has {name}")
    return sum(v for n, labels, v in fam.samples
               if n == name and all(labels.get(k) == want for k, want in match.items()))


def scrape(url):
    """(content type, body) of GET url."""
    import urllib.request
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.headers.get("Content-Type"), r.read().decode()
