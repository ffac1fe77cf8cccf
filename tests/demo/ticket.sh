# ticket.sh — sourced by the demo handlers: reads the ticket JSON from stdin
# into $ticket and offers `field NAME` (a top-level string field) and
# `decide JSON` (print the decision after a pause, so the flow is watchable).
# Plain POSIX sh + grep/sed: the demo's tickets have no quotes in their text.
ticket=$(cat)

field() {
  printf '%s' "$ticket" | tr '\n' ' ' |
    grep -o "\"$1\"[[:space:]]*:[[:space:]]*\"[^\"]*\"" | head -n 1 |
    sed 's/^[^:]*:[[:space:]]*"//; s/"$//'
}

mentions() {
  field subject | grep -qiE "$1"
}

decide() {
  sleep "${DEMO_DELAY:-1}"
  printf '%s\n' "$1"
}
