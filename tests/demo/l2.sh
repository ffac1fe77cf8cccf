#!/bin/sh
# L2 (technical), also serving department billing: resolves billing tickets,
# sends outages up to L3 and invoice problems sideways to billing, fixes the
# rest.
. "$(dirname "$0")/ticket.sh"
if [ "$(field department)" = billing ]; then
  decide '{"action":"resolve","text":"billing: invoice corrected and re-sent"}'
elif mentions 'outage'; then
  decide '{"action":"escalate","level":"L3","reason":"L2: outage affects many customers, needs infrastructure work","notes":"reproduced on two accounts"}'
elif mentions 'invoice'; then
  decide '{"action":"escalate","department":"billing","reason":"L2: the crash is fixed, the invoice amount is a billing matter"}'
else
  decide '{"action":"resolve","text":"L2: configuration fixed, customer confirmed"}'
fi
