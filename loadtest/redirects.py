#!/usr/bin/env python3
"""Redirect storm on hot short links: the URL shortener alone, the edge, and gateway + edge.

Starts the demo platform (`meridian stack`) from the shipped configs (conf/stack.yaml and
conf/stack/*.yaml) moved to a private port range and data directory, creates `--codes` short
links on the shortener, then drives the same load with oha or wrk (random hot codes, redirects not
followed) at three targets in turn:

    origin        http://urls/r/CODE            the shortener answering every redirect
    edge          http://edge/r/CODE            Meridian's cache in front of it
    gateway+edge  http://gateway/r/CODE         the full public path: gateway → edge → origin

and writes a markdown report with requests/s, latency, the ratio to the origin alone and how
many requests reached the origin (from its `urls_redirects_total`).

    loadtest/redirects.py                                # 15 s per target, 64 connections
    loadtest/redirects.py --smoke --bin target/debug/meridian   # the CI smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Addresses of the shipped stack configs, and their offset in the private port range.
ADDRESSES = {
    "127.0.0.1:8080": 0,  # gateway
    "127.0.0.1:8081": 1,  # edge
    "127.0.0.1:9901": 2,  # gateway admin
    "127.0.0.1:9902": 3,  # edge admin
    "127.0.0.1:9101": 4,  # urls
    "127.0.0.1:9102": 5,  # orders
    "127.0.0.1:9103": 6,  # video
}
STACK_FILES = ["stack.yaml", "stack/gateway.yaml", "stack/edge.yaml"]
READY_WITHIN_S = 120
STOP_WITHIN_S = 30


def log(message: str) -> None:
    """Print a progress line on stderr."""
    print(f"redirects: {message}", file=sys.stderr, flush=True)


def rewrite(text: str, port_base: int) -> str:
    """Move every known stack address to the private port range."""
    for address, offset in ADDRESSES.items():
        text = text.replace(address, f"127.0.0.1:{port_base + offset}")
    return text


def addr(port_base: int, shipped: str) -> str:
    """Return the private address standing for the shipped address `shipped`."""
    return f"127.0.0.1:{port_base + ADDRESSES[shipped]}"


def write_configs(work: Path, port_base: int) -> Path:
    """Copy the stack configs into `work` with private ports; return the stack file."""
    for name in STACK_FILES:
        target = work / "conf" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(rewrite((ROOT / "conf" / name).read_text(), port_base))
    return work / "conf" / "stack.yaml"


def http(method: str, url: str, body: dict | None = None, timeout: float = 2.0):
    """Send one request; return its status and body (4xx/5xx included)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_ready(url: str, proc: subprocess.Popen) -> None:
    """Poll `url` until it answers 200; fail when the stack exits or time runs out."""
    deadline = time.monotonic() + READY_WITHIN_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"redirects: the stack exited during startup ({proc.returncode})")
        try:
            if http("GET", url, timeout=1.0)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"redirects: {url} not ready after {READY_WITHIN_S}s")


def origin_redirects(metrics_url: str) -> int:
    """Sum of `urls_redirects_total` on the shortener."""
    _, body = http("GET", metrics_url)
    total = 0.0
    for line in body.decode().splitlines():
        if line.startswith("urls_redirects_total"):
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


def oha(host: str, width: int, duration: str, connections: int) -> dict:
    """Run oha once on random hot codes; return requests/s, p50/p99 (ms), requests, non-301s."""
    out = subprocess.run(
        [
            "oha",
            "--no-tui",
            "--output-format",
            "json",
            "--redirect",
            "0",
            "-z",
            duration,
            "-c",
            str(connections),
            "--rand-regex-url",
            f"http://{host}/r/hot{'[0-9]' * width}",
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    ).stdout
    r = json.loads(out)
    codes = {int(k): v for k, v in r.get("statusCodeDistribution", {}).items()}
    # Requests still in flight when -z ends are aborted by oha itself: not server errors.
    failures = sum(v for k, v in r.get("errorDistribution", {}).items() if "deadline" not in k)
    pct = r["latencyPercentiles"]
    return {
        "rps": r["summary"]["requestsPerSec"],
        "p50": (pct["p50"] or 0) * 1e3,
        "p99": (pct["p99"] or 0) * 1e3,
        "requests": sum(codes.values()),
        "bad": failures + sum(v for k, v in codes.items() if k != 301),
    }


def wrk(host: str, width: int, duration: str, connections: int) -> dict:
    """Run wrk once on random hot codes (lib/wrk_hot_codes.lua); same fields as `oha`."""
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{duration}",
            "--latency",
            "-s",
            str(Path(__file__).resolve().parent / "lib" / "wrk_hot_codes.lua"),
            f"http://{host}/",
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "HOT_CODES": str(10**width)},
    ).stdout
    line = next(x for x in out.splitlines() if x.startswith("LOADTEST "))
    v = dict(kv.split("=") for kv in line.split()[1:])
    seconds = int(v["duration_us"]) / 1e6
    return {
        "rps": int(v["requests"]) / seconds if seconds else 0.0,
        "p50": int(v["p50_us"]) / 1e3,
        "p99": int(v["p99_us"]) / 1e3,
        "requests": int(v["requests"]),
        "bad": int(v["status_errors"]) + int(v["socket_errors"]),
    }


def report(rows: list[dict], args: argparse.Namespace) -> str:
    """Render the rows as the markdown report."""
    base = next(r["rps"] for r in rows if r["target"] == "origin")
    lines = [
        "# Redirect storm: hot short links",
        "",
        f"`loadtest/redirects.py`: {args.codes} hot codes, {args.loadgen} -c{args.connections}, {args.duration}"
        f" per target, redirects not followed; {os.cpu_count()} CPUs, one machine, one run.",
        "",
        "| Target | Requests/s | × origin alone | p50 ms | p99 ms | Requests | Reached the origin |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['target']} | {r['rps']:.0f} | {r['rps'] / base:.2f}× | {r['p50']:.2f} |"
            f" {r['p99']:.2f} | {r['requests']} | {r['origin']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    """Run the scenario; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin", default=str(ROOT / "target/release/meridian"))
    parser.add_argument("--duration", default="15s")
    parser.add_argument("--warmup", default="3s")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument(
        "--codes",
        type=int,
        default=100,
        choices=[10, 100, 1000],
        help="hot codes (a power of ten, so oha's random pattern hits only real ones)",
    )
    parser.add_argument("--port-base", type=int, default=int(os.environ.get("LT_PORT_BASE", 29000)))
    parser.add_argument("--output", help="markdown report (default: stdout)")
    parser.add_argument(
        "--loadgen", choices=["oha", "wrk"], help="load generator (default: oha if installed, else wrk)"
    )
    parser.add_argument("--smoke", action="store_true", help="2 s runs, 4 connections, 10 codes")
    args = parser.parse_args()
    if args.smoke:
        args.duration, args.warmup, args.connections, args.codes = "2s", "1s", 4, 10
    args.loadgen = args.loadgen or ("oha" if shutil.which("oha") else "wrk")
    if shutil.which(args.loadgen) is None:
        parser.error(f"{args.loadgen} is missing (oha: cargo install oha --locked; wrk: apt-get install wrk)")
    drive = oha if args.loadgen == "oha" else wrk

    work = Path(tempfile.mkdtemp(prefix="meridian-redirects."))
    stack_file = write_configs(work, args.port_base)
    log(f"starting the stack ({args.bin}) on ports {args.port_base}..{args.port_base + 6}")
    proc = subprocess.Popen(
        [args.bin, "stack", "-c", str(stack_file)],
        stdout=subprocess.DEVNULL,
        stderr=open(work / "stack.log", "wb"),
    )
    try:
        gateway, edge = addr(args.port_base, "127.0.0.1:8080"), addr(args.port_base, "127.0.0.1:8081")
        urls = addr(args.port_base, "127.0.0.1:9101")
        wait_ready(f"http://{addr(args.port_base, '127.0.0.1:9901')}/readyz", proc)
        width = len(str(args.codes)) - 1  # 100 codes: hot00 … hot99
        for i in range(args.codes):
            status, body = http(
                "POST",
                f"http://{urls}/api/urls",
                {"url": f"https://example.com/articles/{i}", "alias": f"hot{i:0{width}d}"},
            )
            if status != 201:
                raise SystemExit(f"redirects: creating hot{i}: {status} {body[:200]!r}")
        rows = []
        for target, host in (("origin", urls), ("edge", edge), ("gateway+edge", gateway)):
            log(f"{target}: warm-up {args.warmup}")
            drive(host, width, args.warmup, args.connections)
            before = origin_redirects(f"http://{urls}/metrics")
            log(f"{target}: {args.loadgen} -c{args.connections} {args.duration} http://{host}/r/hot…")
            row = drive(host, width, args.duration, args.connections)
            row["origin"] = origin_redirects(f"http://{urls}/metrics") - before
            row["target"] = target
            if row["requests"] == 0 or row["bad"] > 0:
                raise SystemExit(f"redirects: {target}: {row['bad']} answers were not 301")
            rows.append(row)
        text = report(rows, args)
        if args.output:
            Path(args.output).write_text(text)
        print(text, end="")
        return 0
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_WITHIN_S)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
