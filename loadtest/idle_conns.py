#!/usr/bin/env python3
"""Measure the memory a server spends on idle HTTP/1.1 keep-alive connections.

Opens N client connections to HOST:PORT, sends one ``GET /`` on each and reads the whole
response (so every connection is an established HTTP session, not just an accepted socket),
then leaves them idle for a while and reads the server's resident memory (``VmRSS`` in
``/proc/<pid>/status``) before and after. Prints the extra MiB, then closes everything.

Each connection is one file descriptor here and one in the server. The script raises its own
``RLIMIT_NOFILE`` (soft limit up to the hard one; as root the hard one too); the server needs
the same, so start it from a shell where ``ulimit -n`` is above N (``loadtest/compare --idle``
does that for the servers it starts).

Standard library only. Exit status: 0 when every connection was established and still open
after the idle period (and the growth is within ``--budget-mib`` if given), 1 otherwise,
2 for bad arguments or an unusable environment.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from dataclasses import dataclass, field

MAX_CONNECTIONS = 100_000
MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_CHUNKS = 10_000
FD_HEADROOM = 256
MAX_REPORTED_ERRORS = 5


class ResponseError(Exception):
    """The server's answer was not a complete, keep-alive-able HTTP/1.1 response."""


class MeasureError(Exception):
    """The memory of the target process cannot be read."""


@dataclass
class Outcome:
    """What happened to the connections of one run."""

    open_streams: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = field(default_factory=list)
    failures: int = 0
    errors: list[str] = field(default_factory=list)

    def fail(self, message: str) -> None:
        """Count one failed connection, keeping the first few reasons."""
        self.failures += 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append(message)


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", help="HOST:PORT of the server to connect to")
    parser.add_argument(
        "--pid",
        type=int,
        action="append",
        required=True,
        help="process whose RSS is measured (repeat to sum several)",
    )
    parser.add_argument("-n", "--connections", type=int, default=10_000, help="connections to hold (default 10000)")
    parser.add_argument("--path", default="/", help="path requested on each connection (default /)")
    parser.add_argument("--host-header", default="localhost", help="Host header sent (default localhost)")
    parser.add_argument("--concurrency", type=int, default=256, help="connections being opened at once (default 256)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds for one connect + request (default 10)")
    parser.add_argument("--deadline", type=float, default=300.0, help="seconds to open them all (default 300)")
    parser.add_argument("--hold", type=float, default=5.0, help="seconds kept idle before measuring (default 5)")
    parser.add_argument("--budget-mib", type=float, help="fail when the RSS grows by more than this")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = parser.parse_args(argv)
    host, sep, port = args.target.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        parser.error("target must be HOST:PORT")
    args.host, args.port = host.strip("[]"), int(port)
    if not 0 < args.connections <= MAX_CONNECTIONS:
        parser.error(f"--connections must be 1..{MAX_CONNECTIONS}")
    if not 0 < args.concurrency <= 10_000:
        parser.error("--concurrency must be 1..10000")
    for name in ("timeout", "deadline"):
        if not 0 < getattr(args, name) <= 3600:
            parser.error(f"--{name} must be in (0, 3600]")
    if not 0 <= args.hold <= 3600:
        parser.error("--hold must be in [0, 3600]")
    return args


def raise_nofile(needed: int) -> int:
    """Raise RLIMIT_NOFILE to at least `needed` if allowed; return the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return soft
    if hard != resource.RLIM_INFINITY and hard < needed:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (needed, needed))
            return needed
        except (ValueError, OSError):
            pass  # not privileged: go as high as the hard limit allows
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


def rss_kib(pid: int) -> int:
    """Resident set size of `pid` in KiB, from /proc/<pid>/status."""
    with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise MeasureError(f"no VmRSS for pid {pid} (kernel thread or exited)")


def total_rss_kib(pids: list[int]) -> int:
    """Return the summed RSS of `pids` in KiB."""
    return sum(rss_kib(pid) for pid in pids)


async def read_response(reader: asyncio.StreamReader) -> int:
    """Read one whole HTTP/1.1 response; return its status code.

    The body must be delimited (Content-Length or chunked) and the connection must stay open,
    otherwise the connection could not be held idle afterwards.
    """
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError as err:
        raise ResponseError("response headers too large") from err
    except asyncio.IncompleteReadError as err:
        raise ResponseError("connection closed before a response") from err
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise ResponseError(f"bad status line: {lines[0][:80]!r}")
    status = int(parts[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    if "close" in headers.get("connection", "").lower():
        raise ResponseError("server answered Connection: close")
    try:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            await read_chunked(reader)
        elif "content-length" in headers:
            length = int(headers["content-length"])
            if not 0 <= length <= MAX_BODY_BYTES:
                raise ResponseError(f"Content-Length {length} out of bounds")
            await reader.readexactly(length)
        elif not (100 <= status < 200 or status in (204, 304)):
            raise ResponseError("response body has no length: the connection cannot be reused")
    except asyncio.IncompleteReadError as err:
        raise ResponseError("connection closed inside the body") from err
    except ValueError as err:
        raise ResponseError(f"bad body framing: {err}") from err
    return status


async def read_chunked(reader: asyncio.StreamReader) -> None:
    """Consume a chunked body, trailers included, within the size bounds."""
    total = 0
    for _ in range(MAX_CHUNKS):
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass
            return
        total += size
        if total > MAX_BODY_BYTES:
            raise ResponseError("chunked body too large")
        await reader.readexactly(size + 2)
    raise ResponseError("too many chunks")


async def open_one(args: argparse.Namespace, request: bytes, gate: asyncio.Semaphore, outcome: Outcome) -> None:
    """Open one connection, make one request on it and keep it if the answer was 2xx."""
    async with gate:
        writer = None
        kept = False
        try:
            async with asyncio.timeout(args.timeout):
                reader, writer = await asyncio.open_connection(args.host, args.port, limit=MAX_HEADER_BYTES)
                writer.write(request)
                await writer.drain()
                status = await read_response(reader)
            if not 200 <= status < 300:
                raise ResponseError(f"status {status}")
            outcome.open_streams.append((reader, writer))
            kept = True
        except (OSError, TimeoutError, ResponseError, asyncio.LimitOverrunError) as err:
            outcome.fail(f"{type(err).__name__}: {err}")
        finally:
            if writer is not None and not kept:
                writer.close()


async def close_all(outcome: Outcome, timeout: float) -> None:
    """Close every held connection, waiting a bounded time for the sockets to go."""
    for _, writer in outcome.open_streams:
        writer.close()
    waits = [writer.wait_closed() for _, writer in outcome.open_streams]
    if waits:
        done = asyncio.gather(*waits, return_exceptions=True)
        try:
            await asyncio.wait_for(done, timeout)
        except TimeoutError:
            pass  # the sockets are closed on our side; late FIN handshakes do not matter


async def run(args: argparse.Namespace) -> dict:
    """Open, hold, measure and close; return the result as a dict."""
    request = (
        f"GET {args.path} HTTP/1.1\r\nHost: {args.host_header}\r\nUser-Agent: meridian-idle-conns\r\n\r\n"
    ).encode("latin-1")
    before = total_rss_kib(args.pid)
    outcome = Outcome()
    gate = asyncio.Semaphore(args.concurrency)
    tasks = [asyncio.ensure_future(open_one(args, request, gate, outcome)) for _ in range(args.connections)]
    started = time.monotonic()
    try:
        await asyncio.wait_for(asyncio.gather(*tasks), args.deadline)
    except TimeoutError:
        outcome.fail(f"not all connections were opened within {args.deadline:g} s")
    open_seconds = time.monotonic() - started
    try:
        established = len(outcome.open_streams)
        await asyncio.sleep(args.hold)
        after = total_rss_kib(args.pid)
        held = sum(1 for reader, writer in outcome.open_streams if not reader.at_eof() and not writer.is_closing())
    finally:
        await close_all(outcome, args.timeout)
    extra_mib = (after - before) / 1024
    over_budget = args.budget_mib is not None and extra_mib > args.budget_mib
    notes = []
    if held < args.connections:
        notes.append(f"only {held} of {args.connections} held")
    if over_budget:
        notes.append(f"over the {args.budget_mib:g} MiB budget")
    notes.extend(outcome.errors[:1])
    return {
        "ok": held == args.connections and not over_budget,
        "connections": args.connections,
        "established": established,
        "held": held,
        "failures": outcome.failures,
        "open_seconds": round(open_seconds, 2),
        "rss_before_mib": round(before / 1024, 2),
        "rss_after_mib": round(after / 1024, 2),
        "extra_mib": round(extra_mib, 2),
        "kib_per_connection": round((after - before) / held, 2) if held else None,
        "errors": outcome.errors,
        "note": "; ".join(notes),
    }


def main(argv: list[str]) -> int:
    """Entry point: returns the exit status."""
    args = parse_args(argv)
    limit = raise_nofile(args.connections + FD_HEADROOM)
    if limit < args.connections + FD_HEADROOM:
        print(
            f"idle_conns: RLIMIT_NOFILE is {limit}, need {args.connections + FD_HEADROOM}: "
            f"raise it with `ulimit -n {args.connections + FD_HEADROOM}` (or run as root)",
            file=sys.stderr,
        )
        return 2
    try:
        result = asyncio.run(run(args))
    except (OSError, MeasureError) as err:
        print(f"idle_conns: cannot measure: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result))
    else:
        pids = ",".join(str(pid) for pid in args.pid)
        print(
            f"connections: {result['connections']} requested, {result['established']} established "
            f"in {result['open_seconds']} s, {result['held']} still open after {args.hold:g} s idle"
        )
        print(
            f"RSS of pid {pids}: {result['rss_before_mib']} MiB before, {result['rss_after_mib']} MiB after: "
            f"{result['extra_mib']:+} MiB ({result['kib_per_connection']} KiB per connection)"
        )
        for error in result["errors"]:
            print(f"error: {error}")
        if result["note"]:
            print(f"note: {result['note']}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
