"""AMI event throughput: our AMIClient against panoramisk 1.4, same stream, same loop.

The stream is made of the ``Event:`` messages recorded from a real Asterisk 22
(transcripts 01, 01b, 03b), repeated until it holds N events. A small AMI server in a
separate process (so that writing the stream does not share the measured core) sends the
banner, accepts the Login, then writes the whole stream as fast as the socket takes it.

Each client counts events with one ``'*'`` handler that reads one header; the time runs
from the start of the connection (TCP connect + Login) to the N-th event. The two
clients run alternately, twice each; the best run of each is reported.

    python -m bench.ami --events 200000

Progress goes to stderr; the last stdout line is one JSON object.
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import json
import multiprocessing
import platform
import socket
import sys
import time
from importlib import metadata
from typing import Any, Callable, Optional

__all__ = ["run_benchmark", "main", "build_event_stream"]

BANNER = b"Asterisk Call Manager/11.0.0\r\n"
STREAM_SOURCES = ("01", "01b", "03b")
USERNAME = SECRET = "hotline"


def _progress(text: str) -> None:
    print(f"[bench.ami] {text}", file=sys.stderr, flush=True)


def build_event_stream(events: int) -> bytes:
    """The wire bytes of ``events`` recorded events (the recordings repeated as needed)."""
    from pbxsim.recorded.transcripts import ami_wire_bytes, load_ami_transcript, transcript_path

    cycle: list[bytes] = []
    for prefix in STREAM_SOURCES:
        for message in load_ami_transcript(transcript_path(prefix)):
            if message.is_event:
                cycle.append(ami_wire_bytes([message]))
    repeats, rest = divmod(events, len(cycle))
    return b"".join(cycle) * repeats + b"".join(cycle[:rest])


# -- the AMI server (child process, plain blocking sockets) -------------------------------
def _header(message: bytes, name: bytes) -> bytes:
    for line in message.split(b"\r\n"):
        key, _, value = line.partition(b": ")
        if key.lower() == name.lower():
            return value
    return b""


def _serve_connection(sock: socket.socket, stream: bytes) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(BANNER)
    buf = b""
    sent_stream = False
    while True:
        while b"\r\n\r\n" in buf:
            action, _, buf = buf.partition(b"\r\n\r\n")
            name = _header(action, b"Action").lower()
            action_id = _header(action, b"ActionID")
            if name == b"login":
                sock.sendall(
                    b"Response: Success\r\nActionID: " + action_id + b"\r\nMessage: Authentication accepted\r\n\r\n"
                )
                if not sent_stream:
                    sent_stream = True
                    sock.sendall(stream)  # as fast as the client reads
            elif name == b"logoff":
                sock.sendall(b"Response: Goodbye\r\nActionID: " + action_id + b"\r\nMessage: Thanks for all the fish.\r\n\r\n")
                return
            elif name == b"ping":
                sock.sendall(b"Response: Success\r\nActionID: " + action_id + b"\r\nPing: Pong\r\nTimestamp: 0.0\r\n\r\n")
            else:
                sock.sendall(b"Response: Error\r\nActionID: " + action_id + b"\r\nMessage: Invalid/unknown command\r\n\r\n")
        data = sock.recv(65536)
        if not data:
            return
        buf += data


def _server_process(events: int, pipe: Any) -> None:
    stream = build_event_stream(events)
    listener = socket.create_server(("127.0.0.1", 0))
    pipe.send((listener.getsockname()[1], len(stream)))
    while True:
        sock, _ = listener.accept()
        try:
            _serve_connection(sock, stream)
        except OSError:
            pass  # client went away; serve the next one
        finally:
            sock.close()


# -- the two clients -----------------------------------------------------------------------
async def _run_ours(port: int, events: int, limit: float, read_all: bool = False) -> float:
    from hotline.ami import AMIClient

    loop = asyncio.get_running_loop()
    done: asyncio.Future[float] = loop.create_future()
    count = 0

    def on_any(msg: Any) -> None:
        nonlocal count
        if read_all:
            msg.headers          # every header parsed, as panoramisk always does
        else:
            msg.get("Uniqueid")
        count += 1
        if count == events:
            done.set_result(time.perf_counter())

    client = AMIClient("127.0.0.1", port, USERNAME, SECRET, ping_interval=None, action_timeout=10.0)
    client.on_event("*", on_any)
    start = time.perf_counter()
    await client.connect()
    try:
        end = await asyncio.wait_for(done, limit)
    finally:
        await client.close()
    return end - start


async def _run_panoramisk(port: int, events: int, limit: float) -> float:
    from panoramisk import Manager

    loop = asyncio.get_running_loop()
    done: asyncio.Future[float] = loop.create_future()
    count = 0

    def on_any(manager: Any, msg: Any) -> None:
        nonlocal count
        msg.get("Uniqueid")
        count += 1
        if count == events:
            done.set_result(time.perf_counter())

    manager = Manager(
        host="127.0.0.1", port=port, username=USERNAME, secret=SECRET, loop=loop,
        ping_delay=3600, ping_interval=3600, reconnect_timeout=3600,
    )
    manager.register_event("*", on_any)
    start = time.perf_counter()
    await manager.connect()
    try:
        end = await asyncio.wait_for(done, limit)
    finally:
        manager.close()
    return end - start


def _loop_is_uvloop() -> bool:
    try:
        import uvloop
    except ImportError:
        return False
    return isinstance(asyncio.get_running_loop(), uvloop.Loop)


async def run_benchmark(events: int = 200_000) -> dict[str, Any]:
    """Measure both clients on the running loop; return the figures as a dict."""
    if events < 1:
        raise ValueError("events must be >= 1")
    from pbxsim.recorded.transcripts import TRANSCRIPTS

    if not TRANSCRIPTS.is_dir():
        raise FileNotFoundError(f"the recorded transcripts are needed and missing: {TRANSCRIPTS}")
    loop = asyncio.get_running_loop()
    ctx = multiprocessing.get_context("spawn")  # no fork of a process with a running loop
    parent_end, child_end = ctx.Pipe(duplex=False)
    server = ctx.Process(target=_server_process, args=(events, child_end), daemon=True, name="ami-bench-server")
    _progress(f"starting the AMI server process, building {events} events")
    await loop.run_in_executor(None, server.start)
    child_end.close()  # so that a crashed server shows up as EOF here, not as a hang
    try:
        if not await loop.run_in_executor(None, parent_end.poll, 120.0):
            raise RuntimeError("the benchmark server did not start")
        try:
            port, stream_bytes = await loop.run_in_executor(None, parent_end.recv)
        except EOFError:
            raise RuntimeError("the benchmark server process died while starting") from None
        _progress(f"server on 127.0.0.1:{port}, stream {stream_bytes / 1e6:.1f} MB")
        limit = max(60.0, events / 2_000)
        runs: dict[str, list[float]] = {"ours": [], "panoramisk": [], "ours_all_headers": []}
        clients: dict[str, Callable[[int, int, float], Any]] = {
            "ours": _run_ours, "panoramisk": _run_panoramisk,
            "ours_all_headers": lambda *a: _run_ours(*a, read_all=True),
        }
        for round_no in (1, 2):
            for name in ("ours", "panoramisk", "ours_all_headers"):
                gc.collect()
                seconds = await clients[name](port, events, limit)
                runs[name].append(seconds)
                _progress(f"round {round_no} {name}: {seconds:.3f} s, {events / seconds:,.0f} events/s")
    finally:
        server.terminate()
        await loop.run_in_executor(None, server.join, 5.0)
    ours = events / min(runs["ours"])
    theirs = events / min(runs["panoramisk"])
    return {
        "events": events,
        "events_per_s": round(ours),
        "panoramisk_events_per_s": round(theirs),
        "ratio": round(ours / theirs, 2),
        # The same client when the handler reads every header of every event (no lazy parsing).
        "events_per_s_all_headers": round(events / min(runs["ours_all_headers"])),
        "ratio_all_headers": round(events / min(runs["ours_all_headers"]) / theirs, 2),
        "bytes": stream_bytes,
        "avg_event_bytes": round(stream_bytes / events, 1),
        "ours_runs_s": [round(s, 4) for s in runs["ours"]],
        "panoramisk_runs_s": [round(s, 4) for s in runs["panoramisk"]],
        "python": platform.python_version(),
        "uvloop": _loop_is_uvloop(),
        "panoramisk_version": _version("panoramisk"),
        "server": "separate process",
        "sources": [f"{p}-*" for p in STREAM_SOURCES],
    }


def _version(dist: str) -> Optional[str]:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000, help="events per run (default 200000)")
    args = parser.parse_args(argv)
    try:
        import uvloop
    except ImportError:
        uvloop = None  # type: ignore[assignment]
    loop_factory = uvloop.new_event_loop if uvloop is not None else None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        result = runner.run(run_benchmark(args.events))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
