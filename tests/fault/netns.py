"""netns — put workers behind a link the test controls.

A network namespace with one end of a veth pair; the other end stays in
the test's namespace, where tierd binds its workers endpoint on the veth
address. Workers run inside the namespace (`ip netns exec`), so everything
between them and tierd crosses the veth, where tc can delay, drop or cut it:

    tierd (host ns) 10.213.N.1 <--veth--> 10.213.N.2 (netns) tier-worker...

Needs root (CAP_NET_ADMIN), iproute2, and for delay/loss the kernel's
sch_netem. Everything made here is removed by teardown(), also after a
failure; names carry the test's pid so parallel runs do not collide.
"""

import os
import shutil
import subprocess

SUBNET = "10.213"


class Unavailable(Exception):
    """The machine does not allow what the case needs; the message says why."""


def _run(argv, check=True):
    proc = subprocess.run(argv, capture_output=True, timeout=30)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {proc.stderr.decode().strip()}")
    return proc


class Link:
    def __init__(self, tag):
        pid = os.getpid()
        self.ns = f"tierfault-{tag}-{pid}"
        self.host_if = f"tfh{pid % 100000}{tag[:3]}"[:15]
        self.ns_if = f"tfn{pid % 100000}{tag[:3]}"[:15]
        octet = pid % 250 + 1
        self.host_ip = f"{SUBNET}.{octet}.1"
        self.ns_ip = f"{SUBNET}.{octet}.2"
        self.made = []

    def setup(self):
        """Create the namespace and the veth pair; Unavailable if not allowed."""
        if os.geteuid() != 0:
            raise Unavailable("needs root (CAP_NET_ADMIN) to create network namespaces")
        if not shutil.which("ip") or not shutil.which("tc"):
            raise Unavailable("needs iproute2 (ip, tc)")
        proc = _run(["ip", "netns", "add", self.ns], check=False)
        if proc.returncode != 0:
            raise Unavailable(f"ip netns add: {proc.stderr.decode().strip()}")
        self.made.append("ns")
        _run(["ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if])
        self.made.append("veth")
        _run(["ip", "link", "set", self.ns_if, "netns", self.ns])
        _run(["ip", "addr", "add", f"{self.host_ip}/30", "dev", self.host_if])
        _run(["ip", "link", "set", self.host_if, "up"])
        _run(["ip", "-n", self.ns, "addr", "add", f"{self.ns_ip}/30", "dev", self.ns_if])
        _run(["ip", "-n", self.ns, "link", "set", self.ns_if, "up"])
        _run(["ip", "-n", self.ns, "link", "set", "lo", "up"])
        return self

    def require_netem(self):
        """Unavailable unless the kernel has sch_netem."""
        proc = _run(["tc", "qdisc", "add", "dev", self.host_if, "root", "netem",
                     "delay", "1ms"], check=False)
        if proc.returncode != 0:
            raise Unavailable("the kernel has no sch_netem (tc qdisc add ... netem: "
                              f"{proc.stderr.decode().strip()})")
        self.clear()

    def prefix(self):
        """argv prefix that runs a command inside the namespace."""
        return ["ip", "netns", "exec", self.ns]

    def shape(self, *qdisc):
        """The same root qdisc on both ends: both directions are impaired."""
        _run(["tc", "qdisc", "replace", "dev", self.host_if, "root", *qdisc])
        _run(["ip", "netns", "exec", self.ns, "tc", "qdisc", "replace", "dev", self.ns_if,
              "root", *qdisc])

    def clear(self):
        _run(["tc", "qdisc", "del", "dev", self.host_if, "root"], check=False)
        _run(["ip", "netns", "exec", self.ns, "tc", "qdisc", "del", "dev", self.ns_if, "root"],
             check=False)

    def link(self, up):
        """Cut (up=False) or restore the veth: no packet passes while down."""
        state = "up" if up else "down"
        _run(["ip", "link", "set", self.host_if, state])
        _run(["ip", "-n", self.ns, "link", "set", self.ns_if, state])

    def teardown(self):
        if "veth" in self.made:
            _run(["ip", "link", "del", self.host_if], check=False)
        if "ns" in self.made:
            _run(["ip", "netns", "del", self.ns], check=False)
        self.made = []
