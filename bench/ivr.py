"""FastAGI IVR turnaround under ~1,000 calls in the IVR at once: our IVR beside panoramisk 1.4.

A load generator plays Asterisk's side of FastAGI over TCP: calls arrive as a
Poisson process at the rate that keeps ``--concurrency`` sessions in progress
(Little's law), each sends Asterisk 22's environment block, then answers every
command the server sends. A prompt or a key wait (STREAM FILE, GET DATA) is
answered after a uniform 0.5-1.5 s, as a caller listening and keying would; the
other commands at once. The *turnaround* of a command is the time from writing
the ``200 result=`` reply to reading the server's next command: what the server
adds to every step of every call.

The same arrivals and waits (same seed) are played first against our IVR
(``ivr.app`` on the shipped menus of ``ivr/menus``, main line, under uvloop),
then against a panoramisk 1.4 ``fast_agi.Application`` whose handler sends the
same 11 commands (welcome, language menu, emergency notice, main menu, hand-over).
Each server runs in a process of its own; the generator in another, on uvloop.

    python -m bench.ivr --concurrency 1000 --duration 30

Progress goes to stderr; the last stdout line is one JSON object with
``sessions``, ``peak_concurrent``, ``p50_ms``, ``p99_ms`` and ``panoramisk_p99_ms``.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import random
import signal
import sys
import time
from importlib import metadata
from typing import Any, Optional

__all__ = ["main", "run_benchmark"]

MEDIA = ("STREAM FILE", "GET DATA", "WAIT FOR DIGIT", "GET OPTION", "RECORD FILE", "SAY ")
# Waits per session in the script both servers run (welcome, language menu, notice, main menu, hand-over).
WAITS_PER_SESSION = 5
KEYS = {"hotline/language-menu": "1", "hotline/main-menu": None}
MAIN_MENU_KEYS = "12390"


def _progress(text: str) -> None:
    print(f"[bench.ivr] {text}", file=sys.stderr, flush=True)


def _use_uvloop() -> None:
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:  # pragma: no cover - uvloop is a dependency
        pass


# --------------------------------------------------------------------------- the servers (child processes)


async def _serve_hotline(ready: Any, stop: Any) -> None:
    from ivr.app import build_handlers
    from ivr.fastagi import FastAGIServer

    server = FastAGIServer(build_handlers(None), "127.0.0.1", 0, max_sessions=100_000, backlog=4096)
    await server.start()
    ready.send(server.port)
    await asyncio.get_running_loop().run_in_executor(None, stop.wait)
    await server.stop()


async def _serve_panoramisk(ready: Any, stop: Any) -> None:
    from panoramisk.fast_agi import Application

    async def ivr(request: Any) -> None:
        await request.send_command("ANSWER")
        await request.send_command("SET VARIABLE CHANNEL(language) zh")
        await request.send_command('STREAM FILE hotline/welcome ""')
        await request.send_command("GET DATA hotline/language-menu 3000 1")
        await request.send_command('STREAM FILE hotline/emergency-notice ""')
        reply = await request.send_command("GET DATA hotline/main-menu 5000 1")
        digit = str(reply.get("result", ("", ""))[0])
        queue = {"2": "complaint", "3": "enterprise", "9": "elderly"}.get(digit, "general")
        await request.send_command('STREAM FILE hotline/transfer-agent ""')
        await request.send_command(f"SET VARIABLE HOTLINE_QUEUE {queue}")
        await request.send_command("SET VARIABLE HOTLINE_SKILLS mandarin:1")
        await request.send_command("SET VARIABLE HOTLINE_PRIORITY 0")
        await request.send_command("SET VARIABLE HOTLINE_LANG zh")

    app = Application()
    app.add_route("ivr", ivr)
    server = await asyncio.start_server(app.handler, "127.0.0.1", 0, backlog=4096)
    ready.send(server.sockets[0].getsockname()[1])
    await asyncio.get_running_loop().run_in_executor(None, stop.wait)
    server.close()


def _server_process(kind: str, ready: Any, stop: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _use_uvloop()
    serve = _serve_hotline if kind == "hotline" else _serve_panoramisk
    asyncio.run(serve(ready, stop))


# --------------------------------------------------------------------------- the load generator (child process)


def _env(uniqueid: str, number: str) -> bytes:
    lines = [
        "agi_network: yes", "agi_network_script: ivr", "agi_request: agi://127.0.0.1/ivr",
        "agi_channel: PJSIP/trunk-%08x" % int(uniqueid.split(".")[1]), "agi_language: en", "agi_type: PJSIP",
        f"agi_uniqueid: {uniqueid}", "agi_version: 22.10.1", f"agi_callerid: {number}",
        "agi_calleridname: unknown", "agi_callingpres: 0", "agi_callingani2: 0", "agi_callington: 0",
        "agi_callingtns: 0", "agi_dnid: 12345", "agi_rdnis: unknown", "agi_context: hotline-inbound",
        "agi_extension: s", "agi_priority: 2", "agi_enhanced: 0.0", "agi_accountcode: ",
        "agi_threadid: 140000000000001", "agi_arg_1: main", "",
    ]
    return ("\n".join(lines) + "\n").encode()


class _Load:
    def __init__(self, port: int, concurrency: int, duration: float, seed: int, wait: tuple[float, float]) -> None:
        self.port = port
        self.concurrency = concurrency
        self.duration = duration
        self.rng = random.Random(seed)
        self.wait = wait
        self.turnarounds: list[int] = []   # nanoseconds
        self.active = 0
        self.peak = 0
        self.sessions = 0
        self.completed = 0
        self.errors = 0

    async def session(self, index: int, waits: list[float], key: str) -> None:
        self.active += 1
        self.peak = max(self.peak, self.active)
        perf = time.perf_counter_ns
        turnarounds = self.turnarounds
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            writer.write(_env(f"1795319058.{index}", f"1390000{index % 10000:04d}"))
            sent: Optional[int] = None
            step = 0
            while True:
                line = await reader.readline()
                now = perf()
                if not line:
                    break
                if sent is not None:
                    turnarounds.append(now - sent)
                command = line.decode()
                if command.startswith(MEDIA):
                    await asyncio.sleep(waits[step % len(waits)])
                    step += 1
                    if command.startswith("GET DATA"):
                        prompt = command.split(" ", 3)[2]
                        digit = KEYS.get(prompt) or key
                        reply = f"200 result={digit}\n"
                    else:
                        reply = "200 result=0 endpos=8000\n"
                elif command.startswith("SET VARIABLE"):
                    reply = "200 result=1\n"
                else:
                    reply = "200 result=0\n"
                sent = perf()
                writer.write(reply.encode())
            writer.close()
            self.completed += 1
        except (OSError, asyncio.IncompleteReadError):
            self.errors += 1
        finally:
            self.active -= 1

    async def run(self) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        mean_session = WAITS_PER_SESSION * sum(self.wait) / 2
        rate = self.concurrency / mean_session
        tasks: set[asyncio.Task] = set()
        start = loop.time()
        at = start
        index = 0
        while True:
            at += self.rng.expovariate(rate)
            if at - start > self.duration:
                break
            waits = [self.rng.uniform(*self.wait) for _ in range(WAITS_PER_SESSION + 2)]
            key = self.rng.choice(MAIN_MENU_KEYS)
            delay = at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            index += 1
            self.sessions += 1
            task = asyncio.create_task(self.session(index, waits, key))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(list(tasks))
        return {"sessions": self.sessions, "completed": self.completed, "errors": self.errors,
                "peak_concurrent": self.peak, "turnarounds": self.turnarounds,
                "arrival_rate": rate, "elapsed_s": loop.time() - start}


def _load_process(port: int, concurrency: int, duration: float, seed: int, wait: tuple[float, float],
                  out: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _use_uvloop()
    import gc

    gc.freeze()
    result = asyncio.run(_Load(port, concurrency, duration, seed, wait).run())
    out.send(result)


# --------------------------------------------------------------------------- orchestration


def _percentile(sorted_values: list[int], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, int(round(q * (len(sorted_values) - 1)))))
    return sorted_values[index] / 1e6


def _run_one(kind: str, concurrency: int, duration: float, seed: int, wait: tuple[float, float]) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    ready_recv, ready_send = ctx.Pipe(duplex=False)
    stop = ctx.Event()
    server = ctx.Process(target=_server_process, args=(kind, ready_send, stop), daemon=True)
    server.start()
    try:
        if not ready_recv.poll(30):
            raise RuntimeError(f"{kind} server did not start")
        port = ready_recv.recv()
        out_recv, out_send = ctx.Pipe(duplex=False)
        load = ctx.Process(target=_load_process, args=(port, concurrency, duration, seed, wait, out_send),
                           daemon=True)
        load.start()
        result = out_recv.recv()
        load.join(10)
    finally:
        stop.set()
        server.join(10)
        if server.is_alive():
            server.terminate()
    values = sorted(result.pop("turnarounds"))
    result.update(commands=len(values), p50_ms=_percentile(values, 0.50), p90_ms=_percentile(values, 0.90),
                  p99_ms=_percentile(values, 0.99), max_ms=values[-1] / 1e6 if values else float("nan"))
    return result


def run_benchmark(concurrency: int = 1000, duration: float = 30.0, seed: int = 12345,
                  wait: tuple[float, float] = (0.5, 1.5)) -> dict[str, Any]:
    _progress(f"our IVR: {concurrency} sessions in progress for {duration:.0f} s of arrivals")
    ours = _run_one("hotline", concurrency, duration, seed, wait)
    _progress(f"our IVR: {ours['sessions']} sessions, peak {ours['peak_concurrent']}, "
              f"p50 {ours['p50_ms']:.3f} ms, p99 {ours['p99_ms']:.3f} ms, errors {ours['errors']}")
    _progress("panoramisk 1.4 FastAGI on the same load")
    theirs = _run_one("panoramisk", concurrency, duration, seed, wait)
    _progress(f"panoramisk: {theirs['sessions']} sessions, peak {theirs['peak_concurrent']}, "
              f"p50 {theirs['p50_ms']:.3f} ms, p99 {theirs['p99_ms']:.3f} ms, errors {theirs['errors']}")
    r3 = lambda v: round(v, 3)  # noqa: E731
    return {
        "benchmark": "ivr",
        "sessions": ours["sessions"],
        "completed": ours["completed"],
        "errors": ours["errors"],
        "peak_concurrent": ours["peak_concurrent"],
        "commands": ours["commands"],
        "arrival_rate_per_s": r3(ours["arrival_rate"]),
        "p50_ms": r3(ours["p50_ms"]),
        "p90_ms": r3(ours["p90_ms"]),
        "p99_ms": r3(ours["p99_ms"]),
        "max_ms": r3(ours["max_ms"]),
        "panoramisk_sessions": theirs["sessions"],
        "panoramisk_errors": theirs["errors"],
        "panoramisk_peak_concurrent": theirs["peak_concurrent"],
        "panoramisk_p50_ms": r3(theirs["p50_ms"]),
        "panoramisk_p99_ms": r3(theirs["p99_ms"]),
        "panoramisk_max_ms": r3(theirs["max_ms"]),
        "target_p99_ms": 5.0,
        "wait_s": list(wait),
        "duration_s": duration,
        "python": platform.python_version(),
        "panoramisk": metadata.version("panoramisk"),
        "cpus": os.cpu_count(),
    }


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="hotline bench ivr", description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=1000, help="IVR sessions to keep in progress")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of arrivals (then the calls finish)")
    parser.add_argument("--seed", type=int, default=12345)
    parser.add_argument("--wait-min", type=float, default=0.5, help="shortest prompt/key wait, seconds")
    parser.add_argument("--wait-max", type=float, default=1.5, help="longest prompt/key wait, seconds")
    args = parser.parse_args(argv)
    if args.concurrency < 1 or args.duration <= 0 or not 0 <= args.wait_min <= args.wait_max:
        parser.error("--concurrency >= 1, --duration > 0, 0 <= --wait-min <= --wait-max")
    result = run_benchmark(args.concurrency, args.duration, args.seed, (args.wait_min, args.wait_max))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
