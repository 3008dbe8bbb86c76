"""The DNS interface of a real agent process, queried with dnspython and dig.

One agent carries the catalog most tests read: healthy, warning and critical instances, tags,
a service address that differs from its node's, IPv6 and hostname nodes, node meta, a 500-instance
service for truncation, and an upstream DNS server (started here) as its recursor. A second
agent with a different `dns_config` covers the switches (only_passing, truncation flag,
answer limits, compression, no recursors).
"""

from __future__ import annotations

import json
import random
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.reversename
import dns.rrset
import pytest

from tests.support import AgentProcess

BIG = 500


# -- a tiny upstream DNS server for the recursor tests ------------------------------------------


class Upstream:
    """Answers `*.upstream.test A` with 192.0.2.7 and NXDOMAIN for anything else, over UDP
    and TCP on one port."""

    def __init__(self) -> None:
        self.sock, self.listener = self._bind_pair()
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.listener.settimeout(0.2)
        self.seen = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run_udp, daemon=True),
                         threading.Thread(target=self._run_tcp, daemon=True)]
        for t in self._threads:
            t.start()

    @staticmethod
    def _bind_pair() -> tuple[socket.socket, socket.socket]:
        """A UDP and a TCP socket on the same free port: the UDP port the kernel picks may
        be taken for TCP (another process's connection), so try again with another."""
        for _ in range(50):
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.bind(("127.0.0.1", 0))
            try:
                tcp = socket.create_server(("127.0.0.1", udp.getsockname()[1]))
            except OSError:
                udp.close()
                continue
            return udp, tcp
        raise OSError("no port free for both UDP and TCP")

    def _reply(self, data: bytes) -> bytes:
        self.seen += 1
        q = dns.message.from_wire(data)
        r = dns.message.make_response(q)
        name = q.question[0].name.to_text()
        if name.endswith("upstream.test."):
            r.answer.append(dns.rrset.from_text(name, 30, "IN", "A", "192.0.2.7"))
        else:
            r.set_rcode(dns.rcode.NXDOMAIN)
        return r.to_wire()

    def _run_udp(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(4096)
            except OSError:
                continue
            self.sock.sendto(self._reply(data), addr)

    def _run_tcp(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    size = int.from_bytes(conn.recv(2), "big")
                    data = b""
                    while len(data) < size:
                        data += conn.recv(size - len(data))
                    out = self._reply(data)
                    conn.sendall(len(out).to_bytes(2, "big") + out)
                except OSError:
                    pass

    def close(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(2)
        self.sock.close()
        self.listener.close()


# -- agents and catalog -----------------------------------------------------------------------


def put(agent: AgentProcess, path: str, body: Any) -> None:
    req = urllib.request.Request(agent.url + path, data=json.dumps(body).encode(), method="PUT")
    with urllib.request.urlopen(req, timeout=10) as r:
        r.read()


def register(agent: AgentProcess, node: str, address: str, service: dict[str, Any] | None = None,
             status: str | None = None, meta: dict[str, str] | None = None) -> None:
    body: dict[str, Any] = {"Node": node, "Address": address, "NodeMeta": meta or {}}
    if service:
        body["Service"] = service
        if status:
            body["Check"] = {"CheckID": f"chk-{service['ID']}", "Name": "c", "Status": status,
                             "ServiceID": service["ID"]}
    put(agent, "/v1/catalog/register", body)


def start_agent(workdir: Path, config: dict[str, Any], extra: list[str]) -> AgentProcess:
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = workdir / "dns.json"
    cfg.write_text(json.dumps(config))
    return AgentProcess(workdir, extra=[f"-config-file={cfg}", *extra], dns=True).start()


def populate(agent: AgentProcess) -> None:
    register(agent, "node-a", "10.1.0.1",
             {"ID": "web-a", "Service": "web", "Port": 80, "Tags": ["v1", "primary"],
              "Weights": {"Passing": 10, "Warning": 1}},
             "passing", meta={"rack": "r1", "rfc1035-raw": "plain text"})
    register(agent, "node-b", "10.1.0.2",
             {"ID": "web-b", "Service": "web", "Port": 81, "Tags": ["v2"], "Address": "10.2.0.9"},
             "passing")
    register(agent, "node-c", "10.1.0.3",
             {"ID": "web-c", "Service": "web", "Port": 82, "Tags": ["v1"]}, "critical")
    register(agent, "node-c", "10.1.0.3",
             {"ID": "api-c", "Service": "api", "Port": 90, "Weights": {"Passing": 5, "Warning": 2}},
             "warning")
    register(agent, "node-a", "10.1.0.1", {"ID": "api-a", "Service": "api", "Port": 91}, "passing",
             meta={"rack": "r1", "rfc1035-raw": "plain text"})
    register(agent, "node-c", "10.1.0.3", {"ID": "dead", "Service": "dead", "Port": 1}, "critical")
    register(agent, "node-v6", "2001:db8::5", {"ID": "six", "Service": "six", "Port": 6})
    register(agent, "node-host", "host.example.com")
    register(agent, "node-a", "10.1.0.1",
             {"ID": "web-sidecar", "Service": "web-sidecar-proxy", "Kind": "connect-proxy",
              "Port": 21000, "Proxy": {"DestinationServiceName": "web"}},
             "passing", meta={"rack": "r1", "rfc1035-raw": "plain text"})
    register(agent, "node-b", "10.1.0.2",
             {"ID": "native", "Service": "native", "Port": 9443, "Connect": {"Native": True}})
    for i in range(BIG):
        register(agent, f"big-{i:03d}", f"10.3.{i // 250}.{i % 250 + 1}",
                 {"ID": f"big-{i}", "Service": "big", "Port": 7000 + i})


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    up = Upstream()
    try:
        yield up
    finally:
        up.close()


@pytest.fixture(scope="module")
def main_agent(tmp_path_factory: pytest.TempPathFactory, upstream: Upstream
               ) -> Iterator[AgentProcess]:
    config = {"dns_config": {"node_ttl": "7s", "service_ttl": {"api": "9s", "we*": "4s", "*": "2s"},
                             "soa": {"min_ttl": 5}}}
    agent = start_agent(tmp_path_factory.mktemp("dns-main"), config,
                        [f"-recursor=127.0.0.1:{upstream.port}", "-alt-domain=alt.test"])
    try:
        populate(agent)
        yield agent
    finally:
        agent.stop()


@pytest.fixture(scope="module")
def strict_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    config = {"dns_config": {"only_passing": True, "enable_truncate": True, "a_record_limit": 2,
                             "udp_answer_limit": 1, "disable_compression": True}}
    agent = start_agent(tmp_path_factory.mktemp("dns-strict"), config, [])
    try:
        populate(agent)
        yield agent
    finally:
        agent.stop()


def ask(agent: AgentProcess, name: str, rtype: str = "A", edns: int | None = None,
        tcp: bool = False, **kw: Any) -> dns.message.Message:
    q = dns.message.make_query(name, rtype, use_edns=edns is not None,
                               payload=edns or 512, **kw)
    assert agent.dns_port is not None
    if tcp:
        return dns.query.tcp(q, "127.0.0.1", port=agent.dns_port, timeout=5)
    return dns.query.udp(q, "127.0.0.1", port=agent.dns_port, timeout=5)


def values(msg: dns.message.Message, section: str = "answer", rtype: str | None = None
           ) -> list[str]:
    out = []
    for rrset in getattr(msg, section):
        if rtype is None or dns.rdatatype.to_text(rrset.rdtype) == rtype:
            out.extend(rd.to_text() for rd in rrset)
    return sorted(out)


def soa_of(msg: dns.message.Message) -> dns.rrset.RRset:
    (soa,) = [r for r in msg.authority if r.rdtype == dns.rdatatype.SOA]
    return soa


# -- service lookups --------------------------------------------------------------------------


def test_service_a_returns_healthy_instances_authoritatively(main_agent: AgentProcess) -> None:
    r = ask(main_agent, "web.service.consul", edns=4096)
    assert r.rcode() == dns.rcode.NOERROR
    assert r.flags & dns.flags.AA and r.flags & dns.flags.RA  # recursors configured
    # node-c's instance is critical; node-b's instance uses its own service address
    assert values(r) == ["10.1.0.1", "10.2.0.9"]
    assert all(rrset.ttl == 4 for rrset in r.answer)  # service_ttl "we*"


def test_tag_filters_and_case_insensitive_names(main_agent: AgentProcess) -> None:
    assert values(ask(main_agent, "v1.web.service.consul")) == ["10.1.0.1"]
    assert values(ask(main_agent, "V2.WEB.Service.CONSUL")) == ["10.2.0.9"]
    r = ask(main_agent, "nope.web.service.consul")
    assert r.rcode() == dns.rcode.NXDOMAIN


def test_srv_targets_weights_and_glue(main_agent: AgentProcess) -> None:
    r = ask(main_agent, "_web._tcp.service.consul", "SRV", edns=4096)
    assert r.rcode() == dns.rcode.NOERROR
    assert values(r) == ["1 1 81 0a020009.addr.dc1.consul.", "1 10 80 node-a.node.dc1.consul."]
    glue = {rr.name.to_text(): [rd.to_text() for rd in rr] for rr in r.additional
            if rr.rdtype in (dns.rdatatype.A, dns.rdatatype.TXT)}
    assert glue["0a020009.addr.dc1.consul."] == ["10.2.0.9"]
    assert sorted(v for k, vs in glue.items() if k == "node-a.node.dc1.consul." for v in vs)
    a_and_txt = {rr.rdtype: [rd.to_text() for rd in rr] for rr in r.additional
                 if rr.name.to_text() == "node-a.node.dc1.consul."}
    assert a_and_txt[dns.rdatatype.A] == ["10.1.0.1"]
    assert sorted(a_and_txt[dns.rdatatype.TXT]) == ['"plain text"', '"rack=r1"']


def test_rfc2782_forms(main_agent: AgentProcess) -> None:
    assert values(ask(main_agent, "_web._v1.service.consul", "SRV")) == [
        "1 10 80 node-a.node.dc1.consul."]
    # `.service` may be left out for SRV questions
    assert len(values(ask(main_agent, "_web._tcp.consul", "SRV"))) == 2
    assert ask(main_agent, "_web._tcp.consul", "A").rcode() == dns.rcode.NXDOMAIN


def test_warning_instances_served_with_warning_weight(main_agent: AgentProcess) -> None:
    r = ask(main_agent, "_api._tcp.service.consul", "SRV")
    assert values(r) == ["1 1 91 node-a.node.dc1.consul.", "1 2 90 node-c.node.dc1.consul."]
    assert r.answer[0].ttl == 9  # exact service_ttl beats the wildcards


def test_datacenter_suffixes(main_agent: AgentProcess) -> None:
    assert len(values(ask(main_agent, "web.service.dc1.consul"))) == 2
    assert len(values(ask(main_agent, "web.service.dc1.dc.consul"))) == 2
    r = ask(main_agent, "web.service.dc9.consul")
    assert r.rcode() == dns.rcode.NXDOMAIN


def test_nxdomain_and_soa(main_agent: AgentProcess) -> None:
    for name in ("nosuch.service.consul", "dead.service.consul", "foo.bar.consul",
                 "x.query.consul", "api.connect.consul", "web.service.peer1.peer.consul"):
        r = ask(main_agent, name)
        assert r.rcode() == dns.rcode.NXDOMAIN, name
        assert r.flags & dns.flags.AA
        soa = soa_of(r)
        assert soa.name.to_text() == "consul."
        rd = soa[0]
        assert (rd.mname.to_text(), rd.rname.to_text()) == ("ns.consul.", "hostmaster.consul.")
        assert abs(rd.serial - time.time()) < 5
        assert (rd.refresh, rd.retry, rd.expire, rd.minimum) == (3600, 600, 86400, 5)
        assert soa.ttl == 5


def test_nodata_for_wrong_type(main_agent: AgentProcess) -> None:
    for name, rtype in (("web.service.consul", "AAAA"), ("node-a.node.consul", "AAAA"),
                        ("node-b.node.consul", "TXT"), ("six.service.consul", "A")):
        r = ask(main_agent, name, rtype)
        assert r.rcode() == dns.rcode.NOERROR, (name, rtype)
        assert r.answer == []
        assert soa_of(r)


def test_any_and_txt_for_services(main_agent: AgentProcess) -> None:
    assert values(ask(main_agent, "web.service.consul", "ANY", edns=4096)) == [
        "10.1.0.1", "10.2.0.9"]
    assert values(ask(main_agent, "web.service.consul", "TXT")) == ['"plain text"', '"rack=r1"']
    assert values(ask(main_agent, "six.service.consul", "AAAA")) == ["2001:db8::5"]


def test_connect_lookups(main_agent: AgentProcess) -> None:
    r = ask(main_agent, "web.connect.consul", "SRV")
    assert values(r) == ["1 1 21000 node-a.node.dc1.consul."]  # the sidecar, not web itself
    assert values(ask(main_agent, "web.connect.consul")) == ["10.1.0.1"]
    assert values(ask(main_agent, "native.connect.consul", "SRV")) == [
        "1 1 9443 node-b.node.dc1.consul."]
    assert ask(main_agent, "v1.web.connect.consul").rcode() == dns.rcode.NXDOMAIN
    with urllib.request.urlopen(main_agent.url + "/v1/health/connect/web", timeout=5) as resp:
        body = json.loads(resp.read())
    assert [e["Service"]["ID"] for e in body] == ["web-sidecar"]


# -- node, addr, apex, reverse ---------------------------------------------------------------


def test_node_lookups(main_agent: AgentProcess) -> None:
    r = ask(main_agent, "node-a.node.consul", edns=4096)
    assert values(r) == ["10.1.0.1"]
    assert r.answer[0].ttl == 7
    assert values(r, "additional", "TXT") == ['"plain text"', '"rack=r1"']
    assert values(ask(main_agent, "node-a.node.dc1.consul", "TXT")) == [
        '"plain text"', '"rack=r1"']
    assert values(ask(main_agent, "NODE-V6.node.consul", "AAAA")) == ["2001:db8::5"]
    assert values(ask(main_agent, "node-host.node.consul")) == ["host.example.com."]
    assert ask(main_agent, "ghost.node.consul").rcode() == dns.rcode.NXDOMAIN


def test_addr_lookups(main_agent: AgentProcess) -> None:
    assert values(ask(main_agent, "7f000001.addr.dc1.consul")) == ["127.0.0.1"]
    v6 = "20010db8000000000000000000000005"
    assert values(ask(main_agent, f"{v6}.addr.consul", "AAAA")) == ["2001:db8::5"]
    assert ask(main_agent, "7f0001.addr.consul").rcode() == dns.rcode.NXDOMAIN
    assert ask(main_agent, "zzzzzzzz.addr.consul").rcode() == dns.rcode.NXDOMAIN


def test_apex_soa_and_ns(main_agent: AgentProcess) -> None:
    r = ask(main_agent, "consul", "NS", edns=4096)
    assert values(r) == ["test-node.node.dc1.consul."]
    assert values(r, "additional", "A") == ["127.0.0.1"]
    r = ask(main_agent, "consul", "SOA")
    (soa,) = r.answer
    assert soa[0].mname.to_text() == "ns.consul."
    assert values(r, "authority", "NS") == ["test-node.node.dc1.consul."]
    assert ask(main_agent, "consul", "A").rcode() == dns.rcode.NOERROR


def test_ptr_for_node_and_service_addresses(main_agent: AgentProcess) -> None:
    r = ask(main_agent, dns.reversename.from_address("10.1.0.1").to_text(), "PTR")
    assert values(r) == ["node-a.node.dc1.consul."]
    r = ask(main_agent, dns.reversename.from_address("10.2.0.9").to_text(), "PTR")
    assert values(r) == ["web.service.dc1.consul."]
    r = ask(main_agent, dns.reversename.from_address("2001:db8::5").to_text(), "PTR")
    assert values(r) == ["node-v6.node.dc1.consul."]


def test_alt_domain(main_agent: AgentProcess) -> None:
    r = ask(main_agent, "_web._v1.service.alt.test", "SRV")
    assert values(r) == ["1 10 80 node-a.node.dc1.alt.test."]
    r = ask(main_agent, "nosuch.service.alt.test")
    assert soa_of(r).name.to_text() == "alt.test."


# -- sizes, truncation, order ------------------------------------------------------------------


def test_non_edns_udp_gets_three_answers_in_random_order(main_agent: AgentProcess) -> None:
    seen = set()
    for _ in range(20):
        r = ask(main_agent, "big.service.consul")
        assert len(values(r)) == 3
        assert not r.flags & dns.flags.TC  # silent truncation by default
        seen.add(tuple(values(r)))
    assert len(seen) > 10


def test_edns_sizes_and_tcp_carry_more(main_agent: AgentProcess) -> None:
    r = ask(main_agent, "big.service.consul", edns=1232)
    assert 3 < len(values(r)) < BIG
    assert r.opt is not None and r.payload >= 1232
    r = ask(main_agent, "big.service.consul", tcp=True)
    assert len(values(r)) == BIG
    r = ask(main_agent, "_big._tcp.service.consul", "SRV", tcp=True)
    assert len(values(r)) == BIG
    assert len(values(r, "additional", "A")) == BIG  # glue for every target


def test_srv_glue_trimmed_with_answers(main_agent: AgentProcess) -> None:
    q = dns.message.make_query("_big._tcp.service.consul", "SRV", use_edns=True, payload=1500)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(q.to_wire(), ("127.0.0.1", main_agent.dns_port or 0))
        data = sock.recv(65535)
    assert len(data) <= 1500
    r = dns.message.from_wire(data)
    targets = {rd.target.to_text() for rrset in r.answer for rd in rrset}
    glue = {rr.name.to_text() for rr in r.additional if rr.rdtype == dns.rdatatype.A}
    assert 3 < len(targets) < BIG
    assert targets == glue


def test_truncation_flag_and_dig_tcp_fallback(strict_agent: AgentProcess) -> None:
    r = ask(strict_agent, "big.service.consul", edns=1232)
    assert r.flags & dns.flags.TC
    assert len(values(r)) == 2  # a_record_limit applies on every transport
    r = ask(strict_agent, "big.service.consul")
    assert len(values(r)) == 1 and r.flags & dns.flags.TC  # udp_answer_limit 1
    r = ask(strict_agent, "_big._tcp.service.consul", "SRV", edns=1024)
    assert r.flags & dns.flags.TC
    dig = shutil.which("dig")
    if dig is None:
        pytest.skip("dig not installed")
    out = subprocess.run(
        [dig, "@127.0.0.1", "-p", str(strict_agent.dns_port), "_big._tcp.service.consul", "SRV",
         "+bufsize=1024", "+tries=1", "+time=5"],
        capture_output=True, text=True, timeout=30, check=True).stdout
    assert "Truncated, retrying in TCP mode" in out
    assert f"ANSWER: {BIG}," in out


def test_only_passing_and_uncompressed(strict_agent: AgentProcess,
                                      main_agent: AgentProcess) -> None:
    r = ask(strict_agent, "_api._tcp.service.consul", "SRV", edns=4096)
    assert values(r) == ["1 1 91 node-a.node.dc1.consul."]  # the warning instance is gone
    owner = dns.name.from_text("_web._tcp.service.consul").to_wire()

    def raw(agent: AgentProcess) -> bytes:
        q = dns.message.make_query("_web._tcp.service.consul", "SRV", use_edns=True)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(5)
            sock.sendto(q.to_wire(), ("127.0.0.1", agent.dns_port or 0))
            return sock.recv(65535)

    # with compression the owner name is written once (in the question), without it once more
    # per answer
    assert raw(main_agent).count(owner) == 1
    assert raw(strict_agent).count(owner) == 1 + 2  # two passing instances


def test_no_recursors_means_refused(strict_agent: AgentProcess) -> None:
    r = ask(strict_agent, "www.example.org")
    assert r.rcode() == dns.rcode.REFUSED
    assert not r.flags & dns.flags.RA


# -- changes, recursion, bad input --------------------------------------------------------------


def test_health_change_reaches_dns(main_agent: AgentProcess) -> None:
    register(main_agent, "node-d", "10.1.0.4",
             {"ID": "flip", "Service": "flip", "Port": 1}, "passing")
    assert values(ask(main_agent, "flip.service.consul")) == ["10.1.0.4"]
    register(main_agent, "node-d", "10.1.0.4",
             {"ID": "flip", "Service": "flip", "Port": 1}, "critical")
    deadline = time.monotonic() + 10
    while ask(main_agent, "flip.service.consul").rcode() != dns.rcode.NXDOMAIN:
        assert time.monotonic() < deadline, "the critical check never reached DNS"
        time.sleep(0.05)
    # a node's new address replaces the old one in answers of its services
    register(main_agent, "node-d", "10.1.0.44",
             {"ID": "flip", "Service": "flip", "Port": 1}, "passing")
    deadline = time.monotonic() + 10
    while values(ask(main_agent, "flip.service.consul")) != ["10.1.0.44"]:
        assert time.monotonic() < deadline, "the new address never reached DNS"
        time.sleep(0.05)


def test_recursor_forwarding(main_agent: AgentProcess, upstream: Upstream) -> None:
    before = upstream.seen
    r = ask(main_agent, "www.upstream.test")
    assert values(r) == ["192.0.2.7"] and r.flags & dns.flags.RA
    assert upstream.seen > before
    r = ask(main_agent, "missing.example")
    assert r.rcode() == dns.rcode.NXDOMAIN
    r = ask(main_agent, "www.upstream.test", tcp=True)
    assert values(r) == ["192.0.2.7"]


def test_malformed_packets_get_formerr_and_service_continues(main_agent: AgentProcess) -> None:
    port = main_agent.dns_port or 0
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(5)
    try:
        good = dns.message.make_query("web.service.consul", "A").to_wire()
        bad = good[:12] + b"\x3fabc"  # label length runs past the end
        sock.sendto(bad, ("127.0.0.1", port))
        reply = sock.recv(4096)
        assert reply[:2] == bad[:2] and reply[3] & 0xF == dns.rcode.FORMERR
        rng = random.Random(7)
        for _ in range(300):
            junk = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 80)))
            sock.sendto(junk, ("127.0.0.1", port))
        time.sleep(0.2)
    finally:
        sock.close()
    assert values(ask(main_agent, "v1.web.service.consul")) == ["10.1.0.1"]


def test_reload_applies_dns_config(tmp_path: Path) -> None:
    agent = start_agent(tmp_path, {"dns_config": {"udp_answer_limit": 3}}, [])
    try:
        for i in range(5):
            register(agent, f"r-{i}", f"10.9.0.{i + 1}", {"ID": f"r{i}", "Service": "r", "Port": 1})
        assert len(values(ask(agent, "r.service.consul"))) == 3
        (tmp_path / "dns.json").write_text(json.dumps(
            {"dns_config": {"udp_answer_limit": 1, "service_ttl": {"r": "30s"}}}))
        put(agent, "/v1/agent/reload", None)
        r = ask(agent, "r.service.consul")
        assert len(values(r)) == 1 and r.answer[0].ttl == 30
    finally:
        agent.stop()
