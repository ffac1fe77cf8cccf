"""One intake-rule kind per run: what `tierctl rules test` predicts (without
creating a ticket or changing Redis) is what a submission then does, and
every decision is in the ticket's history under the rule's name.

  keyword           match = outage, data loss -> L3 urgent; refund -> billing
  regex             regex in the subject only -> logistics + tag
  channel           channel = whatsapp, sms -> SLA policy premium (its clock runs)
  vip               vip = yes -> priority high
  contacts          contacts = 3 in 1d -> L2 at the customer's third contact
  escalated_before  a customer with an escalated ticket starts at L2 technical
  combine           several rules: highest level and priority, first
                    department and policy, tags add up; an integrator's
                    department stands

Usage: test_rules.py KIND
"""
import sys

import rules_common as rc
import sla_harness as sh
from rules_common import ticket_json as T
from sla_harness import check

OUTAGE = ("outage", "level L3, priority urgent")
MONEY = ("money", "department billing")
ORDER = ("order-number", "department logistics, tag order-status")
PREMIUM = ("realtime-premium", "sla premium")
VIP = ("vip", "priority high")
REPEAT = ("repeat-caller", "level L2")
ESCALATED = ("escalated-before", "level L2, department technical")


def keyword(tb):
    rc.start(tb)
    rc.expect(tb, T("Total OUTAGE in eu-west"), [OUTAGE], level="L3", priority="urgent")
    rc.expect(tb, T("Sync problem", body="we suffered data loss overnight"), [OUTAGE],
              level="L3", priority="urgent")
    rc.expect(tb, T("Boleto not accepted"), [MONEY], department="billing")
    rc.expect(tb, T("where is my refund?", channel="email"), [MONEY], department="billing")
    rc.expect(tb, T("How do I change my password?"), [])
    rc.expect(tb, T("data", body="loss"), [])  # a phrase is matched whole


def regex(tb):
    rc.start(tb)
    rc.expect(tb, T("Order #123456 is late"), [ORDER], department="logistics",
              tags=["order-status"])
    rc.expect(tb, T("re: ORDER 98765 missing"), [ORDER], department="logistics",
              tags=["order-status"])
    rc.expect(tb, T("Late delivery", body="order #123456"), [])  # in = subject
    rc.expect(tb, T("Order #12 is late"), [])                    # too few digits


def channel(tb):
    rc.start(tb)
    # Rules tests first: once the premium ticket is in, its clock writes to Redis.
    test = rc.rules_test(tb, T("Hi from WhatsApp", channel="whatsapp"))
    check(test["first_response_due_ms"] == rc.PREMIUM_FIRST_RESPONSE_MS,
          f"rules test reports the premium first-response target: {test}")
    c = rc.expect(tb, T("Hi from chat", channel="chat"), [], sla="chat")
    s = rc.expect(tb, T("Hi from WhatsApp", channel="whatsapp"), [PREMIUM], sla="premium")
    # The policy is really applied: premium's 600 ms clock breaches, chat has none.
    sh.wait_history(tb, s["id"], "sla", text="breach", timeout=10)
    check(not sh.entries(tb.show(c["id"]), "sla"), "the chat ticket has no SLA clock here")


def vip(tb):
    rc.start(tb)
    rc.expect(tb, T("Question", customer="c-vip", vip=True), [VIP], priority="high")
    rc.expect(tb, T("Question", customer="c-plain"), [])
    # The highest priority wins: an urgent VIP ticket stays urgent.
    rc.expect(tb, T("Question", customer="c-vip", vip=True, priority="urgent"), [VIP],
              priority="urgent")


def contacts(tb):
    rc.start(tb)
    rc.expect(tb, T("first contact", customer="c-rep"), [])
    rc.expect(tb, T("second contact", customer="c-rep"), [])
    rc.expect(tb, T("third contact", customer="c-rep"), [REPEAT], level="L2")
    rc.expect(tb, T("first contact", customer="c-other"), [])
    rc.expect(tb, T("anonymous"), [])  # no customer id: no history to count


def escalated_before(tb):
    rc.start(tb)
    rc.expect(tb, T("first problem", customer="c-esc"), [])
    first = int(tb.redis.cmd("GET", "tier:nextid"))
    raw = tb.raw_worker("l1", "L1")
    offer = raw.wait_push("offer", timeout_s=5).offer.ticket
    check(offer.id == str(first), f"the raw worker got the first ticket: {offer.id}")
    raw.call(accept=raw.pb.Accept(ticket_id=offer.id, attempt=offer.attempt))
    done = raw.call(escalate=raw.pb.Escalate(ticket_id=offer.id, attempt=offer.attempt,
                                             reason="beyond L1"))
    check(not done.error.code, f"escalated: {done}")
    # The raw worker stops heartbeating; let its lease run out now, so that
    # its removal does not show up as a change during a rules test below.
    raw.sock.close()
    sh.harness.wait_until(lambda: not tb.tierctl("agents")["agents"], 15,
                          "the raw worker's lease to expire")
    rc.expect(tb, T("second problem", customer="c-esc"), [ESCALATED], level="L2",
              department="technical")
    rc.expect(tb, T("other customer", customer="c-calm"), [])


def combine(tb):
    rc.start(tb)
    # The integrator's department stands; rules fill a missing one only.
    rc.expect(tb, T("refund please", department="sales"), [MONEY], department="sales")
    # An integrator's level is a floor: rules may raise it, never lower it.
    rc.expect(tb, T("outage", level="L2"), [OUTAGE], level="L3", priority="urgent")
    rc.expect(tb, T("refund", level="L2"), [MONEY], level="L2", department="billing")
    # Last (its premium clock then writes to Redis): five rules at once.
    t = T("Outage: refund for order #555555", customer="c-big", vip=True, channel="whatsapp")
    rc.expect(tb, t, [OUTAGE, MONEY, ORDER, PREMIUM, VIP], level="L3", department="billing",
              priority="urgent", tags=["order-status"], sla="premium")


KINDS = {"keyword": keyword, "regex": regex, "channel": channel, "vip": vip,
         "contacts": contacts, "escalated_before": escalated_before, "combine": combine}

if len(sys.argv) != 2 or sys.argv[1] not in KINDS:
    sys.exit(f"usage: {sys.argv[0]} {'|'.join(KINDS)}")
sh.main(KINDS[sys.argv[1]], name=f"rules_{sys.argv[1]}")
