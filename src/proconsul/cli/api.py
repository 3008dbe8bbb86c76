"""A small synchronous client of the agent's HTTP API for the `proconsul` commands.

The commands resolve the agent address, token, TLS and datacenter exactly as Consul's Go client
does (flags over `CONSUL_*` environment variables), and surface failures in the Go client's words
(`Unexpected response code: 500 (No cluster leader)`), because scripts around `consul` parse them.
Each request opens its own connection, so the lock command's renew and monitor threads can share
one client.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import socket
import ssl
import urllib.parse
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

from proconsul.cli import err, log
from proconsul.cli.flags import HTTP_GROUP, FlagSet, parse_bool

DEFAULT_ADDRESS = "127.0.0.1:8500"


class APIError(Exception):
    """A failed request, worded as the Go API client words it."""


class TransportError(APIError):
    """The agent could not be reached at all (Go's `net.Error`); worth retrying for reads."""


class StatusError(APIError):
    """A response with an unexpected status; Consul's error bodies are plain text."""

    def __init__(self, code: int, body: str) -> None:
        super().__init__(f"Unexpected response code: {code} ({body})")
        self.code = code
        self.body = body


def os_error_text(op: str, path: str, exc: OSError) -> str:
    """Go's *PathError text (`open f: no such file or directory`) for an OSError."""
    reason = exc.strerror or str(exc)
    return f"{op} {path}: {reason[:1].lower()}{reason[1:]}"


def is_retryable(exc: BaseException) -> bool:
    """api.IsRetryableError: transport failures and server 500s are worth another read."""
    return isinstance(exc, TransportError) or (isinstance(exc, StatusError) and exc.code == 500)


@dataclass
class QueryMeta:
    """The blocking-query headers of a read."""

    last_index: int = 0
    known_leader: bool = False
    last_contact_ms: int = 0


@dataclass
class Response:
    status: int
    headers: Message
    body: bytes


@dataclass
class ClientConfig:
    """Everything a request needs, already resolved from flags and environment."""

    address: str = DEFAULT_ADDRESS
    scheme: str = "http"
    path_prefix: str = ""
    unix_path: str = ""
    token: str = ""
    basic_auth: tuple[str, str] | None = None
    datacenter: str = ""
    namespace: str = ""
    partition: str = ""
    ca_file: str = ""
    ca_path: str = ""
    cert_file: str = ""
    key_file: str = ""
    tls_server_name: str = ""
    insecure_skip_verify: bool = False
    warnings: list[tuple[str, str]] = field(default_factory=list)


def _env(name: str) -> str:
    return os.environ.get(name, "")


def config_from_env() -> ClientConfig:
    """api.DefaultConfig: the environment's view before any flag is applied."""
    cfg = ClientConfig()
    if _env("CONSUL_HTTP_ADDR"):
        cfg.address = _env("CONSUL_HTTP_ADDR")
    if _env("CONSUL_HTTP_TOKEN"):
        cfg.token = _env("CONSUL_HTTP_TOKEN")
    auth = _env("CONSUL_HTTP_AUTH")
    if auth:
        user, _, password = auth.partition(":")
        cfg.basic_auth = (user, password)
    for name, attr in (("CONSUL_HTTP_SSL", "scheme"), ("CONSUL_HTTP_SSL_VERIFY", "verify")):
        raw = _env(name)
        if not raw:
            continue
        try:
            enabled = parse_bool(raw)
        except ValueError:
            cfg.warnings.append((f"could not parse {name}",
                                 f"strconv.ParseBool: parsing {json.dumps(raw)}: invalid syntax"))
            enabled = False
        if attr == "scheme" and enabled:
            cfg.scheme = "https"
        if attr == "verify" and not enabled:
            cfg.insecure_skip_verify = True
    cfg.tls_server_name = _env("CONSUL_TLS_SERVER_NAME")
    cfg.ca_file = _env("CONSUL_CACERT")
    cfg.ca_path = _env("CONSUL_CAPATH")
    cfg.cert_file = _env("CONSUL_CLIENT_CERT")
    cfg.key_file = _env("CONSUL_CLIENT_KEY")
    cfg.namespace = _env("CONSUL_NAMESPACE")
    cfg.partition = _env("CONSUL_PARTITION")
    return cfg


def finish_config(cfg: ClientConfig, token_file: str) -> ClientConfig:
    """api.NewClient: split the scheme and path prefix off the address, read the token file."""
    scheme, sep, rest = cfg.address.partition("://")
    if sep:
        if scheme == "https":
            cfg.scheme = "https"
        elif scheme == "unix":
            cfg.unix_path = rest
        elif scheme != "http":
            raise APIError(f"Unknown protocol scheme: {scheme}")
        cfg.address = rest
        if scheme in ("http", "https"):
            host, slash, prefix = rest.partition("/")
            if slash:
                cfg.address = host
                cfg.path_prefix = "/" + prefix
    if token_file:
        try:
            with open(token_file, encoding="utf-8", errors="replace") as fh:
                data = fh.read().strip()
        except OSError as exc:
            raise APIError(f"Error loading token file: {os_error_text('open', token_file, exc)}")
        if data:
            cfg.token = data
    return cfg


class HTTPFlags:
    """Consul's shared client flags (`command/flags/http.go`), registered on a command."""

    def __init__(self, fs: FlagSet, server: bool = True) -> None:
        g = HTTP_GROUP
        self.address = fs.str_flag(
            "http-addr", "",
            "The `address` and port of the Consul HTTP agent. The value can be an IP address or "
            "DNS address, but it must also include the port. This can also be specified via the "
            "CONSUL_HTTP_ADDR environment variable. The default value is "
            "http://127.0.0.1:8500. The scheme can also be set to HTTPS by setting the "
            "environment variable CONSUL_HTTP_SSL=true.", g, "value")
        self.token = fs.str_flag(
            "token", "",
            "ACL token to use in the request. This can also be specified via the "
            "CONSUL_HTTP_TOKEN environment variable. If unspecified, the query will default to "
            "the token of the Consul agent at the HTTP address.", g, "value")
        self.token_file = fs.str_flag(
            "token-file", "",
            "File containing the ACL token to use in the request instead of one specified via "
            "the -token argument or CONSUL_HTTP_TOKEN environment variable. This can also be "
            "specified via the CONSUL_HTTP_TOKEN_FILE environment variable.", g, "value")
        self.ca_file = fs.str_flag(
            "ca-file", "",
            "Path to a CA file to use for TLS when communicating with Consul. This can also be "
            "specified via the CONSUL_CACERT environment variable.", g, "value")
        self.ca_path = fs.str_flag(
            "ca-path", "",
            "Path to a directory of CA certificates to use for TLS when communicating with "
            "Consul. This can also be specified via the CONSUL_CAPATH environment variable.",
            g, "value")
        self.cert_file = fs.str_flag(
            "client-cert", "",
            "Path to a client cert file to use for TLS when 'verify_incoming' is enabled. This "
            "can also be specified via the CONSUL_CLIENT_CERT environment variable.", g, "value")
        self.key_file = fs.str_flag(
            "client-key", "",
            "Path to a client key file to use for TLS when 'verify_incoming' is enabled. This "
            "can also be specified via the CONSUL_CLIENT_KEY environment variable.", g, "value")
        self.tls_server_name = fs.str_flag(
            "tls-server-name", "",
            "The server name to use as the SNI host when connecting via TLS. This can also be "
            "specified via the CONSUL_TLS_SERVER_NAME environment variable.", g, "value")
        self.datacenter_flag = None
        self.stale_flag = None
        if server:
            self.datacenter_flag = fs.str_flag(
                "datacenter", "",
                "Name of the datacenter to query. If unspecified, this will default to the "
                "datacenter of the queried agent.", g, "value")
            self.stale_flag = fs.bool_flag(
                "stale", False,
                "Permit any Consul server (non-leader) to respond to this request. This allows "
                "for lower latency and higher throughput, but can result in stale data. This "
                "option has no effect on non-read operations. The default value is false.", g)

    @property
    def stale(self) -> bool:
        return bool(self.stale_flag and self.stale_flag.value)

    @property
    def datacenter(self) -> str:
        return self.datacenter_flag.value if self.datacenter_flag else ""

    def config(self) -> ClientConfig:
        """Flags merged over the environment, then finished as api.NewClient would."""
        cfg = config_from_env()
        for flag, attr in ((self.address, "address"), (self.token, "token"),
                           (self.ca_file, "ca_file"), (self.ca_path, "ca_path"),
                           (self.cert_file, "cert_file"), (self.key_file, "key_file"),
                           (self.tls_server_name, "tls_server_name")):
            if flag.is_set:
                setattr(cfg, attr, flag.value)
        if self.datacenter_flag is not None and self.datacenter_flag.is_set:
            cfg.datacenter = self.datacenter_flag.value
        token_file = self.token_file.value if self.token_file.is_set else _env(
            "CONSUL_HTTP_TOKEN_FILE")
        for message, error in cfg.warnings:
            log("WARN", "consul-api", message, error=error)
        return finish_config(cfg, token_file)

    def client(self) -> Client:
        return Client(self.config())

    def connect(self) -> Client | None:
        """The client, or None after printing Consul's connection error (every command that
        talks to an agent starts this way)."""
        try:
            return self.client()
        except APIError as exc:
            err(f"Error connecting to Consul agent: {exc}")
            return None


# ----------------------------------------------------------------------------------------------


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float | None) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


class _TLSConnection(http.client.HTTPSConnection):
    """HTTPS with an explicit SNI name (`-tls-server-name`), which http.client cannot set."""

    def __init__(self, host: str, context: ssl.SSLContext, server_name: str,
                 timeout: float | None) -> None:
        super().__init__(host, timeout=timeout, context=context)
        self._server_name = server_name
        self._ctx = context

    def connect(self) -> None:
        http.client.HTTPConnection.connect(self)
        self.sock = self._ctx.wrap_socket(self.sock, server_hostname=self._server_name or self.host)


def _go_method(method: str) -> str:
    return method[:1] + method[1:].lower()


def _transport_text(exc: BaseException, address: str) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return f"dial tcp {address}: connect: connection refused"
    if isinstance(exc, socket.gaierror):
        return f"dial tcp: lookup {address.rsplit(':', 1)[0]}: no such host"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
    if isinstance(exc, http.client.RemoteDisconnected):
        return "EOF"
    if isinstance(exc, OSError) and exc.strerror:
        return f"dial tcp {address}: {exc.strerror[:1].lower()}{exc.strerror[1:]}"
    return str(exc) or type(exc).__name__


Params = list[tuple[str, str]]


class Client:
    """One agent endpoint; every call is one HTTP request on a fresh connection."""

    def __init__(self, cfg: ClientConfig) -> None:
        self.cfg = cfg
        self._ssl: ssl.SSLContext | None = None
        if cfg.scheme == "https":
            self._ssl = self._tls_context()

    def _tls_context(self) -> ssl.SSLContext:
        cfg = self.cfg
        if bool(cfg.cert_file) != bool(cfg.key_file):
            raise APIError("both client cert and client key must be provided")
        try:
            ctx = ssl.create_default_context(cafile=cfg.ca_file or None,
                                             capath=cfg.ca_path or None)
            if cfg.cert_file:
                ctx.load_cert_chain(cfg.cert_file, cfg.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise APIError(str(exc)) from None
        if cfg.insecure_skip_verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def _connection(self, timeout: float | None) -> http.client.HTTPConnection:
        if self.cfg.unix_path:
            return _UnixConnection(self.cfg.unix_path, timeout)
        if self._ssl is not None:
            name = self.cfg.tls_server_name
            if name and name.rfind(":") > name.rfind("]"):
                name = name.rsplit(":", 1)[0].strip("[]")
            return _TLSConnection(self.cfg.address, self._ssl, name, timeout)
        return http.client.HTTPConnection(self.cfg.address, timeout=timeout)

    def url(self, path: str, params: Params) -> str:
        """The request URI: path escaped and parameters sorted the way the Go client does."""
        full = self.cfg.path_prefix + path
        quoted = urllib.parse.quote(full, safe="/$&+,:;=@")
        query = list(params)
        for name, value in (("dc", self.cfg.datacenter), ("ns", self.cfg.namespace),
                            ("partition", self.cfg.partition)):
            if value and all(k != name for k, _ in query):
                query.append((name, value))
        if not query:
            return quoted
        query.sort(key=lambda kv: kv[0])
        return quoted + "?" + urllib.parse.urlencode(query, quote_via=urllib.parse.quote)

    def request(self, method: str, path: str, params: Params | None = None,
                body: bytes | None = None, timeout: float | None = None,
                content_type: str = "application/json") -> Response:
        uri = self.url(path, params or [])
        headers = {"User-Agent": "proconsul"}
        if self.cfg.token:
            headers["X-Consul-Token"] = self.cfg.token
        if self.cfg.basic_auth is not None:
            raw = f"{self.cfg.basic_auth[0]}:{self.cfg.basic_auth[1]}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
        if body is not None:
            headers["Content-Type"] = content_type
        where = self.cfg.unix_path or self.cfg.address
        shown = f"{self.cfg.scheme}://{where}{uri}"
        conn = self._connection(timeout)
        try:
            conn.request(method, uri, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            return Response(resp.status, resp.headers, data)
        except (OSError, http.client.HTTPException) as exc:
            raise TransportError(
                f'{_go_method(method)} "{shown}": {_transport_text(exc, where)}') from None
        finally:
            conn.close()

    # ------------------------------------------------------------------------------------------
    # Shapes shared by the commands

    @staticmethod
    def meta(resp: Response) -> QueryMeta:
        def num(name: str) -> int:
            try:
                return int(resp.headers.get(name, "0"))
            except ValueError:
                return 0

        return QueryMeta(num("X-Consul-Index"), resp.headers.get("X-Consul-KnownLeader") == "true",
                         num("X-Consul-LastContact"))

    @staticmethod
    def require_ok(resp: Response) -> Response:
        if resp.status != 200:
            raise StatusError(resp.status, resp.body.decode("utf-8", "replace").strip())
        return resp

    @staticmethod
    def decode(resp: Response) -> Any:
        try:
            return json.loads(resp.body) if resp.body.strip() else None
        except ValueError as exc:
            raise APIError(str(exc)) from None

    def query(self, path: str, params: Params | None = None,
              timeout: float | None = None) -> tuple[Any, QueryMeta]:
        resp = self.require_ok(self.request("GET", path, params, timeout=timeout))
        return self.decode(resp), self.meta(resp)

    def write(self, method: str, path: str, params: Params | None = None,
              body: bytes | None = None) -> Any:
        return self.decode(self.require_ok(self.request(method, path, params, body)))

    # ------------------------------------------------------------------------------------------
    # KV

    @staticmethod
    def read_params(stale: bool = False, consistent: bool = False, index: int = 0,
                    wait_ns: int = 0) -> Params:
        params: Params = []
        if stale:
            params.append(("stale", ""))
        if consistent:
            params.append(("consistent", ""))
        if index:
            params.append(("index", str(index)))
        if wait_ns:
            params.append(("wait", f"{max(1, wait_ns // 1_000_000)}ms"))
        return params

    @staticmethod
    def blocking_timeout(index: int, wait_ns: int) -> float | None:
        """Long enough for the server's wait plus its jitter (wait/16); None when not blocking."""
        if not index:
            return 60.0
        wait_s = wait_ns / 1e9 if wait_ns else 300.0
        return wait_s * 17 / 16 + 30.0

    def _kv_read(self, key: str, extra: Params, read: Params,
                 timeout: float | None) -> tuple[Any, QueryMeta]:
        resp = self.request("GET", "/v1/kv/" + key, [*read, *extra], timeout=timeout)
        meta = self.meta(resp)
        if resp.status == 404:
            return None, meta
        self.require_ok(resp)
        return self.decode(resp), meta

    def kv_get(self, key: str, stale: bool = False, consistent: bool = False, index: int = 0,
               wait_ns: int = 0) -> tuple[dict[str, Any] | None, QueryMeta]:
        entries, meta = self._kv_read(key, [], self.read_params(stale, consistent, index, wait_ns),
                                      self.blocking_timeout(index, wait_ns))
        return (entries[0] if entries else None), meta

    def kv_list(self, prefix: str, stale: bool = False, consistent: bool = False, index: int = 0,
                wait_ns: int = 0) -> tuple[list[dict[str, Any]] | None, QueryMeta]:
        entries, meta = self._kv_read(prefix, [("recurse", "")],
                                      self.read_params(stale, consistent, index, wait_ns),
                                      self.blocking_timeout(index, wait_ns))
        return entries, meta

    def kv_keys(self, prefix: str, separator: str, stale: bool = False) -> list[str] | None:
        extra: Params = [("keys", "")]
        if separator:
            extra.append(("separator", separator))
        keys, _ = self._kv_read(prefix, extra, self.read_params(stale), 60.0)
        return keys if keys is None else [str(k) for k in keys]

    def kv_put(self, key: str, value: bytes, flags: int = 0, params: Params | None = None) -> bool:
        """PUT a value; the answer is `true`/`false` (CAS, acquire and release can refuse)."""
        if key.startswith("/"):
            raise APIError(f"Invalid key. Key must not begin with a '/': {key}")
        query = list(params or [])
        if flags:
            query.append(("flags", str(flags)))
        resp = self.require_ok(self.request("PUT", "/v1/kv/" + key, query, value))
        return b"true" in resp.body

    def kv_delete(self, key: str, params: Params | None = None) -> bool:
        resp = self.require_ok(self.request("DELETE", "/v1/kv/" + key, params or []))
        return b"true" in resp.body

    # ------------------------------------------------------------------------------------------
    # Sessions and agent

    def session_create(self, entry: dict[str, Any]) -> str:
        out = self.write("PUT", "/v1/session/create", body=json.dumps(entry).encode())
        return str(out["ID"]) if isinstance(out, dict) else ""

    def session_renew(self, session: str) -> dict[str, Any] | None:
        """Renew a session; None when the server no longer knows it (404)."""
        resp = self.request("PUT", "/v1/session/renew/" + session, timeout=30.0)
        if resp.status == 404:
            return None
        entries = self.decode(self.require_ok(resp))
        return entries[0] if entries else None

    def session_destroy(self, session: str) -> None:
        self.write("PUT", "/v1/session/destroy/" + session)

    def agent_self(self) -> dict[str, Any]:
        out, _ = self.query("/v1/agent/self", timeout=60.0)
        return out if isinstance(out, dict) else {}

    def agent_node_name(self) -> str:
        cfg = self.agent_self().get("Config") or {}
        return str(cfg.get("NodeName", ""))

    def status_leader(self) -> str:
        out, _ = self.query("/v1/status/leader", timeout=60.0)
        return str(out or "")
