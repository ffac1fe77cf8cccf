#!/bin/sh
# L3 (critical): finds the root cause and resolves.
. "$(dirname "$0")/ticket.sh"
decide '{"action":"resolve","text":"L3: root cause found (expired certificate), fix deployed"}'
