#!/usr/bin/python3
"""aof_rollback_demo — what losing the last second of an everysec AOF does to
acknowledged work (docs/reliability.md section 3). Not a test: it shows a
limit of the guarantee that only `appendfsync always` removes.

    TIER_BIN_DIR=build /usr/bin/python3 tests/fault/aof_rollback_demo.py

It copies Redis' AOF directory at a moment when everything written so far is
on disk (what an fsync would have kept), lets tierd acknowledge more work —
a resolution of ticket A, the submission of ticket B — then kills Redis and
puts the copy back, as a power loss with `appendfsync everysec` can. Then it
prints what became of A and B.
"""

import os
import shutil
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import harness  # noqa: E402

FSYNC_WAIT_S = 1.5   # everysec: after this, what was written is on disk


def demo(tb):
    redis = tb.start_redis(aof=True)
    tb.start_tierd()
    pb = tb.pb()
    worker = tb.raw_worker("agent-1")
    a = tb.tierctl("submit", "--subject", "A", "--external-id", "ext-A")["id"]
    offer = worker.wait_push("offer").offer.ticket
    worker.call(accept=pb.Accept(ticket_id=a, attempt=offer.attempt))
    time.sleep(FSYNC_WAIT_S)
    aof = os.path.join(redis.data_dir, "appendonlydir")
    synced = os.path.join(tb.dir, "aof-as-synced")
    shutil.copytree(aof, synced)

    done = worker.call(resolve=pb.Resolve(ticket_id=a, attempt=offer.attempt, text="fixed"))
    print(f"A ({a}) resolved, acknowledged: {pb.TicketState.Name(done.done.state)}")
    b = tb.tierctl("submit", "--subject", "B", "--external-id", "ext-B")["id"]
    print(f"B submitted, acknowledged as ticket {b}")

    redis.kill(signal.SIGKILL)
    shutil.rmtree(aof)
    shutil.copytree(synced, aof)
    redis.start()
    harness.wait_until(lambda: redis.cmd("PING") == "PONG", 10, "redis PING")
    tb.tierd.wait_ready()
    print("--- Redis restarted from the last fsynced AOF")

    shown = tb.tierctl("show", b, expect_rc=None)
    print(f"B: {shown.stderr.strip() or shown.json['state']}")
    c = tb.tierctl("submit", "--subject", "C", "--external-id", "ext-C")["id"]
    print(f"a new ticket C gets id {c}" + (" — B's id, handed out twice" if c == b else ""))
    again = tb.tierctl("submit", "--subject", "B", "--external-id", "ext-B")
    print(f"B resubmitted with its external id: ticket {again['id']}, "
          f"duplicate={again['duplicate']}")
    print(f"A: {tb.show(a)['state']} (its resolution was acknowledged)")
    # The worker dropped A once its resolution was confirmed; it registers
    # again without it, tierd requeues A and offers it again.
    worker2 = tb.raw_worker("agent-1")
    offer = worker2.wait_push("offer").offer.ticket
    print(f"A offered again (attempt {offer.attempt}): the customer will get a second "
          f"resolution")


if __name__ == "__main__":
    harness.main(demo, name="aof_rollback_demo")
