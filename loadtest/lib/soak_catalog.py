"""What the soak's origins serve and what the edge must answer for each path (`loadtest/soak`).

The origins (`soak_origins.py`) and the checker (`loadtest/soak`) both read this module, so the
body an origin sends and the body a client must receive come from one definition. Everything
here is pure: bodies are derived from the path alone, so any response can be checked without
state.

Paths (the first segment is the edge route; see `ROUTES`):

    /probe/SEQ          plain route, tiny body; the stalled-worker probe
    /plain/N            plain route (no cache), Content-Length
    /mem/N              cached route, objects small enough for the memory tier
    /disk/N             cached route, objects larger than the memory tier's max object (disk tier)
    /chunked/N          cached route, `Cache-Control: max-age` + `Transfer-Encoding: chunked`
    /hls/vod/index.m3u8 cached route with the `hls` profile: a VOD media playlist ...
    /hls/vod/segN.ts    ... and its segments
    /fault/KIND/N       plain route to the faulting origin
    /cfault/KIND/N      cached route to the faulting origin (nothing it sends may be stored)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache

# Objects per route and their size ranges (bytes, half-open). The memory tier admits objects up
# to MEMORY_MAX_OBJECT; disk objects are all larger, so every disk hit is served by the disk tier.
MEMORY_MAX_OBJECT = 64 * 1024
SIZES = {
    "plain": (64, (512, 16 * 1024)),
    "mem": (256, (1024, 48 * 1024)),
    "disk": (32, (96 * 1024, 320 * 1024)),
    "chunked": (128, (512, 128 * 1024)),
}
HLS_SEGMENTS = 24
HLS_SEGMENT_SIZE = (32 * 1024, 160 * 1024)
HLS_TARGET_DURATION = 4
# Faults, by what the faulting origin does after reading the request.
FAULTS = (
    "reset",  # Content-Length head, half the body, then a TCP reset
    "short",  # Content-Length longer than the body it sends, then a close
    "silent",  # never answers (the edge's read timeout must end it)
    "hangup",  # closes the connection without a response
    "drip",  # a small body, one byte every 100 ms (slow but complete)
    "badchunk",  # chunked: one good chunk, then an invalid chunk-size line, then a close
    "chunkreset",  # chunked: a few chunks, then a TCP reset
    "503",  # 503 Service Unavailable with a body
)
FAULT_KEYS = 8  # /fault/KIND/0 .. /fault/KIND/7
DRIP_SIZE = (16, 24)
DRIP_INTERVAL_S = 0.1
# The routes of the edge config and whether they are cached and fault.
ROUTES = {
    "probe": {"cached": False, "faulty": False},
    "plain": {"cached": False, "faulty": False},
    "mem": {"cached": True, "faulty": False},
    "disk": {"cached": True, "faulty": False},
    "chunked": {"cached": True, "faulty": False},
    "hls": {"cached": True, "faulty": False},
    "fault": {"cached": False, "faulty": True},
    "cfault": {"cached": True, "faulty": True},
}
# Statuses a faulting route may answer besides a closed connection (and the exact outcomes
# listed in `Expectation`): the edge's own errors for an upstream that failed.
EDGE_ERRORS = (502, 504)


def route_of(path: str) -> str:
    """Return the edge route that serves `path` (its first segment), or "" if none."""
    first = path.lstrip("/").split("/", 1)[0]
    return first if first in ROUTES else ""


def seed(path: str) -> str:
    """Return the hex digest every property of `path` is derived from."""
    return hashlib.sha256(path.encode()).hexdigest()


def size_in(path: str, bounds: tuple[int, int]) -> int:
    """Return a size for `path` in `[lo, hi)`, the same every time."""
    lo, hi = bounds
    return lo + int(seed(path)[:8], 16) % (hi - lo)


@lru_cache(maxsize=2048)
def body(path: str, size: int) -> bytes:
    """Return the `size`-byte body of `path`: its path first, then lines unique to the path.

    Two objects differ in their first bytes, and a truncated body differs in length, so equality
    with the expected bytes catches a wrong object as well as a short one.
    """
    line = f"{path} {seed(path)}\n".encode()
    out = (f"{path} {size}\n".encode() + line * (size // len(line) + 1))[:size]
    return out


def playlist() -> bytes:
    """Return the VOD media playlist of /hls/vod/ (finished: #EXT-X-ENDLIST)."""
    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:3",
        f"#EXT-X-TARGETDURATION:{HLS_TARGET_DURATION}",
        "#EXT-X-MEDIA-SEQUENCE:0",
        "#EXT-X-PLAYLIST-TYPE:VOD",
    ]
    for i in range(HLS_SEGMENTS):
        lines += [f"#EXTINF:{HLS_TARGET_DURATION}.000,", f"seg{i}.ts"]
    lines.append("#EXT-X-ENDLIST")
    return ("\n".join(lines) + "\n").encode()


def chunk_sizes(path: str, size: int) -> list[int]:
    """Return how the chunked origin splits the body of `path` (1 B .. 8 KiB chunks)."""
    digest = bytes.fromhex(seed(path))
    sizes, left, i = [], size, 0
    while left > 0:
        n = min(left, 1 + (digest[i % len(digest)] * 37 + i) % 8192)
        sizes.append(n)
        left -= n
        i += 1
    return sizes


@dataclass(frozen=True)
class Expectation:
    """What the edge must answer for one path.

    `status`/`body`: the one correct answer (a 200 and the exact bytes); for a faulting path
    the correct answer when the fault still lets one through (a slow drip, a 503), or None.
    `faulty`: the path's origin misbehaves, so 502/504 or a closed connection are allowed too.
    """

    route: str
    status: int | None
    body: bytes | None
    faulty: bool
    content_type: str = "application/octet-stream"


def fault_size(path: str) -> int:
    """Return the length a faulting origin announces for `path`."""
    kind = path.split("/")[2]
    if kind == "drip":
        return size_in(path, DRIP_SIZE)
    return size_in(path, (4 * 1024, 40 * 1024))


def expect(path: str) -> Expectation | None:
    """Return what the edge must answer for `path` (query ignored), or None for an unknown path."""
    path = path.split("?", 1)[0]
    route = route_of(path)
    parts = path.strip("/").split("/")
    if route == "probe" and len(parts) == 2:
        return Expectation(route, 200, probe_body(path), False, "text/plain")
    if route in SIZES and len(parts) == 2 and parts[1].isdigit():
        count, bounds = SIZES[route]
        if int(parts[1]) < count:
            return Expectation(route, 200, body(path, size_in(path, bounds)), False)
    if route == "hls" and path == "/hls/vod/index.m3u8":
        return Expectation(route, 200, playlist(), False, "application/vnd.apple.mpegurl")
    if route == "hls" and len(parts) == 3 and parts[1] == "vod" and parts[2].startswith("seg"):
        number = parts[2][3:].removesuffix(".ts")
        if parts[2].endswith(".ts") and number.isdigit() and int(number) < HLS_SEGMENTS:
            return Expectation(route, 200, body(path, size_in(path, HLS_SEGMENT_SIZE)), False, "video/mp2t")
    if route in ("fault", "cfault") and len(parts) == 3 and parts[1] in FAULTS and parts[2].isdigit():
        kind = parts[1]
        if kind == "drip":
            return Expectation(route, 200, body(path, fault_size(path)), True)
        if kind == "503":
            return Expectation(route, 503, unavailable_body(path), True, "text/plain")
        return Expectation(route, None, None, True)
    return None


def probe_body(path: str) -> bytes:
    """Return the body of a probe path."""
    return f"probe {path}\n".encode()


def unavailable_body(path: str) -> bytes:
    """Return the body of the 503 origin's answer for `path`."""
    return f"origin unavailable: {path}\n".encode()


def judge(exp: Expectation, outcome: str, status: int | None, got: bytes, range_: tuple[int, int] | None = None) -> str:
    """Return why a response breaks the rules for its path, or "" when it is allowed.

    `outcome` is the client's reading of the response: "complete" (the whole framed response),
    "truncated" (a head, then the connection ended inside the body), "closed" (no response at
    all), "timeout" (the client gave up) or "malformed" (not valid HTTP/1.1 from the edge).
    `range_` is the inclusive byte range asked for, if any: a 206 with exactly those bytes (or
    a 200 with the whole body) is then the correct answer.
    """
    if outcome == "timeout":
        return "no complete response within the time allowed (a hung request)"
    if outcome == "malformed":
        return "the edge sent a malformed response"
    if exp.faulty:
        if outcome in ("closed", "truncated"):
            return ""
        if status in EDGE_ERRORS:
            return ""
        if status == exp.status and got == exp.body:
            return ""
        if status == 200:
            return f"a 200 with a wrong body ({describe(got, exp.body)}) from a faulting origin"
        return f"status {status} from a faulting origin (allowed: {exp.status or 'none'} or 502/504/closed)"
    if outcome != "complete":
        return f"{outcome} response on a healthy route (status {status}, {len(got)} bytes)"
    if range_ is not None and status == 206:
        start, end = range_
        want = exp.body[start : end + 1] if exp.body is not None else b""
        return "" if got == want else f"206 with a wrong range body ({describe(got, want)})"
    if status != exp.status:
        return f"status {status}, expected {exp.status}"
    if got != exp.body:
        return f"wrong body ({describe(got, exp.body)})"
    return ""


def describe(got: bytes, want: bytes | None) -> str:
    """Say how `got` differs from `want` in a few words (lengths and the first difference)."""
    if want is None:
        return f"{len(got)} bytes"
    if len(got) != len(want) and want.startswith(got):
        return f"truncated: {len(got)} of {len(want)} bytes"
    at = next((i for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b), min(len(got), len(want)))
    return f"{len(got)} bytes, expected {len(want)}; first difference at byte {at}: {got[at : at + 24]!r}"
