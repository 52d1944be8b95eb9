"""The production layout as hosts in network namespaces on this machine, for the fault tests.

::

    load .21 ─┐                     ┌─ api1 .1.11 │ .2.11 ─┐
    feed .20 ─┼─ front 10.77.1.0/24 ┤                      ├─ back 10.77.2.0/24 ─ db .2.5
    lb   .10 ─┘                     └─ api2 .1.12 │ .2.12 ─┘

Every host is a namespace of its own; the two bridges live in a ``switch`` namespace, each
host's cable a veth pair from it to the switch, so that one cable (``api1``'s to the back
network) can be pulled at the switch. The database is Debian's PostgreSQL 15, the balancer
Debian's nginx, the API hosts ``starry serve --workers 2`` on the PostgreSQL store, the
feeder ``starry replay`` and the load :mod:`tests.deployment.client`. Everything is torn
down by :meth:`Topology.close` — processes killed by namespace, namespaces deleted — whatever
happened before.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.support.postgres import BIN, PostgresServer

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
FRONT, BACK = "10.77.1", "10.77.2"
#: host -> its addresses on the front and back networks
HOSTS = {"db": {"b": f"{BACK}.5"},
         "api1": {"f": f"{FRONT}.11", "b": f"{BACK}.11"},
         "api2": {"f": f"{FRONT}.12", "b": f"{BACK}.12"},
         "lb": {"f": f"{FRONT}.10"}, "feed": {"f": f"{FRONT}.20"}, "load": {"f": f"{FRONT}.21"}}
API_PORT = 8000
DB_PORT = 5432
TOKEN = "deployment-test-feeder-token-0123456789"
#: the balancer takes a host out for this long after one failed attempt (passive check)
FAIL_TIMEOUT_S = 3


def unavailable_reason() -> str | None:
    """Why network namespaces cannot be made here (None: they can)."""
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add); run as root, as CI does"
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is missing: run `make system-deps`"
    name = f"starry-probe-{secrets.token_hex(3)}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if made.returncode != 0:
        return f"`ip netns add` failed here: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return None


#: what the balancer answers when no API host could: the API's problem shape
NO_UPSTREAM = json.dumps({"detail": [{"loc": [], "msg": "no API host could answer; retry after "
                                      "2 s", "type": "no_upstream"}]}, separators=(",", ":"))


def nginx_conf(folder: Path, api_hosts: list[str]) -> str:
    """The balancer's configuration (also shown on the Deployment page)."""
    servers = "\n".join(f"        server {host}:{API_PORT} max_fails=1 "
                        f"fail_timeout={FAIL_TIMEOUT_S}s;" for host in api_hosts)
    user = "user root;\n" if os.geteuid() == 0 else ""
    return f"""{user}worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    log_format upstream '$msec $request_method $uri $status $upstream_addr '
                        '$upstream_status $request_time';
    access_log {folder}/access.log upstream;
    client_body_temp_path {folder}/tmp-body;
    proxy_temp_path {folder}/tmp-proxy;
    fastcgi_temp_path {folder}/tmp-fastcgi;
    uwsgi_temp_path {folder}/tmp-uwsgi;
    scgi_temp_path {folder}/tmp-scgi;

    upstream starry_api {{
        # passive health checks (open-source nginx has no active ones): one failed attempt
        # (connection refused or reset, timeout, or a 502/503/504 answer to a request that
        # may be retried) takes a host out for fail_timeout; then one request tries it again
{servers}
    }}

    server {{
        listen {HOSTS['lb']['f']}:80;
        client_max_body_size 1m;
        proxy_http_version 1.1;
        proxy_set_header Host $host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_connect_timeout 1s;
        # longer than the API's store deadline, so that its 503 arrives rather than a 504
        proxy_read_timeout 20s;
        proxy_send_timeout 20s;
        # idempotent requests (GET, PUT, ...) go to the next host on these; a POST only when
        # it never reached the first host (connection refused): nginx's default
        proxy_next_upstream error timeout http_502 http_503 http_504;
        proxy_next_upstream_tries 2;
        proxy_next_upstream_timeout 20s;
        add_header X-Upstream $upstream_addr always;

        location / {{
            proxy_pass http://starry_api;
            error_page 502 504 = @unavailable;
        }}
        location ~ ^/v1/stations/[^/]+/events$ {{
            proxy_pass http://starry_api;
            proxy_buffering off;  # Server-Sent Events go out as they come
            proxy_read_timeout 1h;
        }}
        # no API host could answer (all taken out, or the host died mid-request): a 503 the
        # clients already know how to handle, in the API's problem shape
        location @unavailable {{
            default_type application/json;
            add_header Retry-After 2 always;
            add_header X-Upstream $upstream_addr always;
            return 503 '{NO_UPSTREAM}';
        }}
    }}
}}
"""


class Topology:
    """The hosts, their processes and the fault injections."""

    def __init__(self, folder: Path, bundle: Path):
        self.folder = Path(folder)
        self.bundle = Path(bundle)
        self.tag = secrets.token_hex(3)
        self.ns = {host: f"starry-{self.tag}-{host}" for host in (*HOSTS, "switch")}
        self.db: PostgresServer | None = None
        self.api: dict[str, subprocess.Popen] = {}
        self.nginx: subprocess.Popen | None = None
        self._logs: list = []

    # ------------------------------------------------------------------ plumbing

    def exec_in(self, host: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns[host]]

    @staticmethod
    def _ip(*args: str) -> None:
        done = subprocess.run(["ip", *args], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")

    def build(self) -> None:
        """Namespaces, bridges and cables; then the database, the API hosts and nginx."""
        for name in self.ns.values():
            self._ip("netns", "add", name)
            self._ip("-n", name, "link", "set", "lo", "up")
        switch = self.ns["switch"]
        for bridge in ("br-f", "br-b"):
            self._ip("-n", switch, "link", "add", bridge, "type", "bridge")
            self._ip("-n", switch, "link", "set", bridge, "up")
        for host, addresses in HOSTS.items():
            for net, address in addresses.items():
                cable = f"{host}-{net}"
                self._ip("-n", switch, "link", "add", cable, "type", "veth", "peer", "name",
                         f"eth-{net}", "netns", self.ns[host])
                self._ip("-n", switch, "link", "set", cable, "master", f"br-{net}")
                self._ip("-n", switch, "link", "set", cable, "up")
                self._ip("-n", self.ns[host], "addr", "add", f"{address}/24", "dev", f"eth-{net}")
                self._ip("-n", self.ns[host], "link", "set", f"eth-{net}", "up")
        self.db = PostgresServer(host=HOSTS["db"]["b"], port=DB_PORT,
                                 trusted_network=f"{BACK}.0/24", prefix=self.exec_in("db"))
        for host in ("api1", "api2"):
            self.start_api(host)
        for host in ("api1", "api2"):
            self.wait_api(host)
        self.start_nginx()

    @property
    def store_url(self) -> str:
        return f"postgresql+psycopg://postgres@{HOSTS['db']['b']}:{DB_PORT}/starry"

    @property
    def balancer(self) -> str:
        return f"http://{HOSTS['lb']['f']}"

    def api_url(self, host: str) -> str:
        return f"http://{HOSTS[host]['f']}:{API_PORT}"

    def _log(self, name: str):
        log = open(self.folder / f"{name}.log", "ab")  # noqa: SIM115 - closed in close()
        self._logs.append(log)
        return log

    def start_api(self, host: str) -> None:
        """``starry serve --workers 2`` on the host's front address, the store on the db."""
        command = [*self.exec_in(host), PYTHON, "-m", "starry_guide.cli", "serve",
                   "--bundle", str(self.bundle), "--host", HOSTS[host]["f"],
                   "--port", str(API_PORT), "--workers", "2", "--store", self.store_url,
                   "--rate-per-s", "0"]
        log = self._log(host)
        self.api[host] = subprocess.Popen(command, cwd=ROOT, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True,
                                          env={**os.environ, "STARRY_FEED_TOKEN": TOKEN})

    def probe(self, url: str, status: int = 200, seconds: float = 90,
              from_host: str = "lb") -> bool:
        """Whether ``url`` answers ``status`` within ``seconds``, asked from ``from_host``."""
        return subprocess.run([*self.exec_in(from_host), PYTHON, "-m",
                               "tests.deployment.client", "probe", url, "--status", str(status),
                               "--seconds", str(seconds)], cwd=ROOT).returncode == 0

    def wait_api(self, host: str, seconds: float = 120) -> None:
        if not self.probe(f"{self.api_url(host)}/healthz", 200, seconds):
            raise RuntimeError(f"{host} did not become healthy:\n" + self.output(host))

    def output(self, name: str) -> str:
        path = self.folder / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def start_nginx(self) -> None:
        conf = self.folder / "nginx.conf"
        conf.write_text(nginx_conf(self.folder, [HOSTS["api1"]["f"], HOSTS["api2"]["f"]]))
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        checked = subprocess.run([*self.exec_in("lb"), nginx, "-t", "-p", str(self.folder),
                                  "-c", str(conf)], capture_output=True, text=True)
        if checked.returncode != 0:
            raise RuntimeError(f"nginx -t: {checked.stderr}")
        self.nginx = subprocess.Popen([*self.exec_in("lb"), nginx, "-p", str(self.folder), "-c",
                                       str(conf), "-g", "daemon off;"],
                                      stdout=self._log("nginx"), stderr=subprocess.STDOUT)
        if not self.probe(f"{self.balancer}/healthz", 200, 30, from_host="load"):
            raise RuntimeError("nginx does not answer:\n" + self.output("nginx")
                               + (self.folder / "error.log").read_text(errors="replace"))

    # ------------------------------------------------------------------ traffic

    def start_load(self, body: dict, seconds: float, name: str) -> tuple[subprocess.Popen, Path]:
        path = self.folder / f"{name}-body.json"
        path.write_text(json.dumps(body))
        out = self.folder / f"{name}-requests.jsonl"
        process = subprocess.Popen([*self.exec_in("load"), PYTHON, "-m",
                                    "tests.deployment.client", "load", self.balancer, str(path),
                                    str(out), "--seconds", str(seconds)], cwd=ROOT,
                                   stdout=self._log(f"{name}-load"), stderr=subprocess.STDOUT)
        return process, out

    def setup_load(self, body: dict) -> None:
        path = self.folder / "setup-body.json"
        path.write_text(json.dumps(body))
        subprocess.run([*self.exec_in("load"), PYTHON, "-m", "tests.deployment.client",
                        "setup", self.balancer, str(path)], cwd=ROOT, check=True,
                       env={**os.environ, "STARRY_FEED_TOKEN": TOKEN})

    def start_feed(self, station_id: str, start: str, hours: int,
                   speed: float) -> subprocess.Popen:
        """``starry replay`` of a bundled station through the balancer, retrying what the
        deployment refuses for up to 60 s per hour."""
        return subprocess.Popen(
            [*self.exec_in("feed"), PYTHON, "-m", "starry_guide.cli", "replay", "greensboro_nc",
             "--url", self.balancer, "--station-id", station_id, "--start", start,
             "--hours", str(hours), "--speed", str(speed), "--retry-for", "60"],
            cwd=ROOT, env={**os.environ, "STARRY_FEED_TOKEN": TOKEN},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    @staticmethod
    def read_requests(out: Path) -> list[dict]:
        return [json.loads(line) for line in out.read_text().splitlines() if line.strip()]

    def sql(self, query: str) -> list[str]:
        """Rows of ``query`` on the store, as psql prints them (one per line)."""
        done = subprocess.run([*self.exec_in("db"), str(BIN / "psql"), "-h", HOSTS["db"]["b"],
                               "-p", str(DB_PORT), "-U", "postgres", "-d", "starry", "-At",
                               "-c", query], capture_output=True, text=True, check=True)
        return [line for line in done.stdout.splitlines() if line]

    # ------------------------------------------------------------------ faults

    def kill_host(self, host: str) -> list[int]:
        """``kill -9`` every process of ``host`` (its namespace's pids); returns once none
        is left.

        A killed process is not gone when ``kill`` returns: until it has exited, its
        listening socket still completes handshakes and queues requests that are then reset
        — requests in flight on the dying host. Waiting until the namespace holds no process
        (an exited one, even unreaped, has left it) makes "after the kill" mean a host that
        can take no request."""
        pids = self.pids(host)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if host in self.api:
            self.api.pop(host).wait(timeout=10)
        deadline = time.monotonic() + 10
        while self.pids(host):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{host}'s processes outlived kill -9 by 10 s: "
                                   f"{self.pids(host)}")
            time.sleep(0.01)
        return pids

    def pids(self, host: str) -> list[int]:
        done = subprocess.run(["ip", "netns", "pids", self.ns[host]], capture_output=True,
                              text=True)
        return [int(pid) for pid in done.stdout.split()]

    def set_cable(self, host: str, net: str, up: bool) -> None:
        """Plug in or pull ``host``'s cable to network ``net`` (``f`` or ``b``) at the
        switch."""
        self._ip("-n", self.ns["switch"], "link", "set", f"{host}-{net}",
                 "up" if up else "down")

    # ------------------------------------------------------------------ teardown

    def close(self) -> None:
        """Stop everything and delete the namespaces (each step whatever the others did)."""
        if self.db is not None:
            try:
                self.db.stop("fast")
            except Exception:  # noqa: BLE001 - the kill below makes sure
                pass
        for name in self.ns.values():
            done = subprocess.run(["ip", "netns", "pids", name], capture_output=True,
                                  text=True)
            for pid in done.stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
        for process in [*self.api.values(), self.nginx]:
            if process is not None:
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
        deadline = time.monotonic() + 10
        for name in self.ns.values():
            while subprocess.run(["ip", "netns", "pids", name], capture_output=True,
                                 text=True).stdout.strip() and time.monotonic() < deadline:
                time.sleep(0.1)
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        if self.db is not None:
            shutil.rmtree(self.db.root, ignore_errors=True)
        for log in self._logs:
            log.close()
