"""tierd reaches a Redis on the same machine over its Unix socket
([redis] url = unix:///PATH?db=N): a ticket flows submit -> offer -> resolve
with every key in database N of that Redis and none in database 0; tierd
--check accepts the URL and refuses malformed ones (exit 2, the forms named)."""
import subprocess

import harness
from harness import binary, check


def test(tb):
    redis = tb.start_redis(unix_socket=True)
    url = f"unix://{redis.socket_path}?db=3"
    tierd = tb.start_tierd(extra_args=["--redis", url])
    check("connected" in tierd.log() and redis.socket_path in tierd.log(),
          f"tierd says it connected to the socket: {tierd.log()[-400:]}")

    l1 = tb.handler("l1", """cat >/dev/null
printf '%s' '{"action":"resolve","text":"done over a unix socket"}'
""")
    tb.start_worker("L1", exec_cmd=l1, agent="unix-L1")
    tb.wait_agent("unix-L1")
    tid = tb.tierctl("submit", "--subject", "over the socket", "--external-id", "unix-1")["id"]
    t = tb.wait_state(tid, "resolved", timeout=20)
    check(t["agent"] in ("unix-L1", ""), f"resolved by the worker: {t}")

    in_db3 = [k for k in redis.cli("-n", "3", "--scan").splitlines() if k]
    check(f"tier:tk:{tid}" in in_db3, f"the ticket is in database 3: {in_db3[:20]}")
    check(redis.keys() == [], f"nothing in database 0: {redis.keys()[:20]}")

    def check_url(value):
        return subprocess.run([binary("tierd"), "--check", "--redis", value],
                              capture_output=True, text=True, timeout=10)
    ok = check_url(url)
    check(ok.returncode == 0 and "settings are valid" in ok.stdout,
          f"--check accepts {url}: rc={ok.returncode} {ok.stderr}")
    for bad in ("unix://relative/path", "unix:///tmp/x.sock?db=-1", "unix:///tmp/x?dbx=1",
                "http://127.0.0.1:6379", "redis://127.0.0.1:99999"):
        res = check_url(bad)
        check(res.returncode == 2, f"--check refuses {bad!r}: rc={res.returncode}")
        check("is not redis://HOST[:PORT][/DB] or unix:///PATH[?db=DB]" in res.stderr,
              f"the error names the accepted forms for {bad!r}: {res.stderr!r}")


harness.main(test)
