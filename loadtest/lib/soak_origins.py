#!/usr/bin/env python3
"""The soak's origins: raw-socket HTTP/1.1 servers on loopback that can misbehave on purpose.

`loadtest/soak` runs this as its own process (its own interpreter, so the origins never compete
with the load threads for one GIL) and reads one JSON line from its stdout:
``{"good": PORT, "faulty": PORT}``. The process serves until its stdin is closed (the soak
exiting, however it exits) or it gets SIGTERM.

- the **good** port serves the catalog of `soak_catalog.py`: Content-Length bodies for /probe/,
  /plain/, /mem/, /disk/ and /hls/, and `Transfer-Encoding: chunked` bodies (with chunk
  extensions or trailers on some objects) for /chunked/; cached paths carry
  `Cache-Control: max-age=3600`. `GET /__stats` answers the request counts by route as JSON.
- the **faulty** port answers /fault/KIND/N and /cfault/KIND/N with the fault KIND
  (`soak_catalog.FAULTS`); every answer that has a head is marked cacheable, so an edge that
  stored a broken body would serve it again.

Raw sockets, one thread per connection, keep-alive until the client closes. Requests are
bounded: a head over 16 KiB or 100 lines closes the connection.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import sys
import threading
import time
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import soak_catalog as catalog  # noqa: E402  (the path above makes the sibling importable)

MAX_HEAD_BYTES = 16 * 1024
MAX_HEAD_LINES = 100
IDLE_TIMEOUT_S = 75.0  # longer than the edge's keep-alive idle timeout (60 s)
SILENT_HOLD_S = 30.0  # the silent fault holds the connection at most this long
CACHEABLE = "Cache-Control: max-age=3600\r\n"


class Stats:
    """Request counts by route, shared by the connection threads."""

    def __init__(self) -> None:
        """Start at zero."""
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()

    def count(self, key: str) -> None:
        """Count one request under `key`."""
        with self.lock:
            self.counts[key] += 1

    def snapshot(self) -> dict[str, int]:
        """Return a copy of the counts."""
        with self.lock:
            return dict(self.counts)


def read_head(sock: socket.socket, buffer: bytearray) -> bytes | None:
    """Read one request head from `sock` (bytes after it stay in `buffer`); None when closed."""
    while True:
        end = buffer.find(b"\r\n\r\n")
        if end >= 0:
            head = bytes(buffer[:end])
            del buffer[: end + 4]
            return head
        if len(buffer) > MAX_HEAD_BYTES:
            return None
        data = sock.recv(65536)
        if not data:
            return None
        buffer += data


def parse_request(head: bytes) -> tuple[str, str, dict[str, str]] | None:
    """Parse a request head into (method, target, lower-cased headers); None when invalid."""
    lines = head.decode("latin-1").split("\r\n")
    if len(lines) > MAX_HEAD_LINES:
        return None
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        return None
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            return None
        headers[name.strip().lower()] = value.strip()
    return parts[0], parts[1], headers


def reset(sock: socket.socket) -> None:
    """Close `sock` with a TCP reset (SO_LINGER 0) instead of a FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        sock.close()


def head(status: str, length: int | None, content_type: str, extra: str = "") -> bytes:
    """Return a response head; `length` None means chunked."""
    framing = "Transfer-Encoding: chunked\r\n" if length is None else f"Content-Length: {length}\r\n"
    return f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n{framing}{extra}\r\n".encode()


def chunked(path: str, data: bytes) -> bytes:
    """Return `data` chunk-encoded as the chunked origin sends `path`.

    Objects whose number is 1 mod 4 carry chunk extensions, 2 mod 4 trailers.
    """
    number = int(path.rsplit("/", 1)[1])
    out, at = bytearray(), 0
    for n in catalog.chunk_sizes(path, len(data)):
        ext = ";soak=1" if number % 4 == 1 else ""
        out += f"{n:x}{ext}\r\n".encode() + data[at : at + n] + b"\r\n"
        at += n
    out += b"0\r\n" + (b"x-soak-trailer: done\r\n" if number % 4 == 2 else b"") + b"\r\n"
    return bytes(out)


def serve_good(sock: socket.socket, method: str, target: str, stats: Stats) -> bool:
    """Answer one request on the good port; return whether the connection stays open."""
    path = target.split("?", 1)[0]
    if path == "/__stats":
        data = json.dumps(stats.snapshot()).encode()
        sock.sendall(head("200 OK", len(data), "application/json") + data)
        return True
    exp = catalog.expect(path)
    if exp is None or exp.faulty:
        stats.count("unknown")
        data = b"not found\n"
        sock.sendall(head("404 Not Found", len(data), "text/plain") + data)
        return True
    stats.count(exp.route)
    assert exp.body is not None
    cache = CACHEABLE if catalog.ROUTES[exp.route]["cached"] else "Cache-Control: no-store\r\n"
    if exp.route == "chunked":
        payload = b"" if method == "HEAD" else chunked(path, exp.body)
        sock.sendall(head("200 OK", None, exp.content_type, cache) + payload)
    else:
        payload = b"" if method == "HEAD" else exp.body
        sock.sendall(head("200 OK", len(exp.body), exp.content_type, cache) + payload)
    return True


def serve_fault(sock: socket.socket, target: str, stats: Stats) -> bool:
    """Answer one request on the faulty port with its fault; return whether to keep the connection."""
    path = target.split("?", 1)[0]
    exp = catalog.expect(path)
    if exp is None or not exp.faulty:
        data = b"not found\n"
        sock.sendall(head("404 Not Found", len(data), "text/plain") + data)
        return True
    kind = path.split("/")[2]
    stats.count(f"{exp.route}/{kind}")
    size = catalog.fault_size(path)
    data = catalog.body(path, size)
    if kind == "reset":
        sock.sendall(head("200 OK", size, exp.content_type, CACHEABLE) + data[: size // 2])
        reset(sock)
        return False
    if kind == "short":
        sock.sendall(head("200 OK", size, exp.content_type, CACHEABLE) + data[: size // 2])
        return False
    if kind == "silent":
        sock.settimeout(SILENT_HOLD_S)
        try:
            while sock.recv(65536):  # hold until the edge gives up and closes
                pass
        except OSError:
            pass
        return False
    if kind == "hangup":
        return False
    if kind == "drip":
        sock.sendall(head("200 OK", size, exp.content_type, CACHEABLE))
        for i in range(size):
            time.sleep(catalog.DRIP_INTERVAL_S)
            sock.sendall(data[i : i + 1])
        return True
    if kind == "badchunk":
        good = data[:1000]
        sock.sendall(head("200 OK", None, exp.content_type, CACHEABLE) + f"{len(good):x}\r\n".encode() + good)
        sock.sendall(b"\r\nzz-not-hex\r\n" + data[1000:2000])
        return False
    if kind == "chunkreset":
        sock.sendall(head("200 OK", None, exp.content_type, CACHEABLE) + chunked(path, data)[: size // 2])
        reset(sock)
        return False
    assert exp.body is not None  # 503
    sock.sendall(head("503 Service Unavailable", len(exp.body), exp.content_type, "Retry-After: 1\r\n") + exp.body)
    return True


def handle(sock: socket.socket, faulty: bool, stats: Stats) -> None:
    """Serve one connection until the client closes it or an answer ends it."""
    sock.settimeout(IDLE_TIMEOUT_S)
    buffer = bytearray()
    try:
        while True:
            raw = read_head(sock, buffer)
            if raw is None:
                break
            request = parse_request(raw)
            if request is None:
                sock.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                break
            method, target, headers = request
            if headers.get("content-length", "0") != "0" or "transfer-encoding" in headers:
                sock.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                break  # the soak never sends request bodies
            keep = serve_fault(sock, target, stats) if faulty else serve_good(sock, method, target, stats)
            if not keep or headers.get("connection", "").lower() == "close":
                break
    except OSError:
        pass  # the peer went away; nothing to answer
    finally:
        try:
            sock.close()
        except OSError:
            pass


def listen() -> socket.socket:
    """Return a listening socket on an ephemeral loopback port."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen(1024)
    return server


def accept_loop(server: socket.socket, faulty: bool, stats: Stats) -> None:
    """Accept connections forever, one daemon thread each."""
    while True:
        try:
            conn, _ = server.accept()
        except OSError:
            return
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=handle, args=(conn, faulty, stats), daemon=True).start()


def start() -> tuple[int, int]:
    """Start both origins in this process on daemon threads; return (good port, faulty port)."""
    stats = Stats()
    ports = []
    for faulty in (False, True):
        server = listen()
        ports.append(server.getsockname()[1])
        threading.Thread(target=accept_loop, args=(server, faulty, stats), daemon=True).start()
    return ports[0], ports[1]


def main() -> int:
    """Serve until stdin closes; print the ports first."""
    good, faulty = start()
    print(json.dumps({"good": good, "faulty": faulty}), flush=True)
    sys.stdin.read()  # returns when the parent closes the pipe or exits
    return 0


if __name__ == "__main__":
    sys.exit(main())
