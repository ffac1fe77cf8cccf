#!/bin/sh
# L1 (first contact): answers the simple questions, hands crashes and
# outages to L2 with a first response to the customer.
. "$(dirname "$0")/ticket.sh"
if mentions 'crash|outage'; then
  decide '{"action":"escalate","level":"L2","reason":"L1: a crash or outage needs technical support","notes":"customer description attached, no known FAQ answer","response":"Thanks, a specialist is taking over your case."}'
else
  decide '{"action":"resolve","text":"L1: answered from the FAQ","response":"Here is what you need: see our help page."}'
fi
