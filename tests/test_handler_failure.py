"""A handler that exits non-zero or prints something that is not a decision
makes tier-worker release the ticket with the reason in its history; the
ticket goes back to its queue and is delivered again."""
import harness
from harness import check, history_of

# Attempt 1: exit 3. Attempt 2: not JSON. Attempt 3: resolve.
HANDLER = """cat >/dev/null
case "$TIER_ATTEMPT" in
  1) echo "boom" >&2; exit 3 ;;
  2) echo "I think we should resolve it" ;;
  *) printf '%s' '{"action":"resolve","text":"third time lucky"}' ;;
esac
"""


def test(tb):
    tb.start_redis()
    tb.start_tierd()
    tb.start_worker("L1", exec_cmd=tb.handler("flaky", HANDLER), agent="flaky")
    tid = tb.tierctl("submit", "--subject", "flaky handler")["id"]
    t = tb.wait_state(tid, "resolved", timeout=20)
    released = history_of(t, "released")
    check(len(released) == 2, f"released twice: {released}")
    check("exited 3" in released[0]["reason"], f"first release says the exit code: {released[0]}")
    check("JSON" in released[1]["reason"], f"second release says the output is not JSON: "
          f"{released[1]}")
    check(all(r["actor"] == "flaky" for r in released), f"released by the worker: {released}")
    res = history_of(t, "resolved")
    check(len(res) == 1 and res[0]["text"] == "third time lucky", f"resolved once: {res}")
    check(t["attempt"] == 3, f"three deliveries: {t['attempt']}")


harness.main(test)
