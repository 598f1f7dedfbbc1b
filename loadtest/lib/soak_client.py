"""A small HTTP/1.1 client for the soak that tells a complete response from a truncated one.

General clients (urllib, http.client) hide what the soak must see: whether a body ended by its
framing or by the connection closing early, and how long the whole answer took. This one keeps
a connection alive across requests, reads Content-Length, chunked (extensions and trailers)
and close-delimited bodies, and reports each answer as an `Answer` with an outcome:

- ``complete``: the whole framed response;
- ``truncated``: a head, then the connection ended (FIN or reset) inside the body;
- ``closed``: the connection ended before any response byte;
- ``timeout``: no complete response before the deadline;
- ``malformed``: not valid HTTP/1.1 (a bad status line, header or chunk size).

Every read is bounded: heads at 64 KiB, bodies at 16 MiB, 100,000 chunks.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_CHUNKS = 100_000


class ClosedError(Exception):
    """The peer closed (or reset) the connection."""


class TimedOutError(Exception):
    """The deadline passed."""


class MalformedError(Exception):
    """The peer sent something that is not HTTP/1.1."""


@dataclass
class Answer:
    """One response as the soak saw it."""

    outcome: str
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    elapsed: float = 0.0
    detail: str = ""
    reused: bool = False  # sent on a connection that had served a request before

    def header(self, name: str) -> str:
        """Return a response header (lower-case name), or ""."""
        return self.headers.get(name, "")


class Reader:
    """Buffered reads from a socket under one deadline."""

    def __init__(self, sock: socket.socket) -> None:
        """Read from `sock`."""
        self.sock = sock
        self.buffer = bytearray()
        self.deadline = 0.0
        self.received = 0  # bytes received since the last `mark`

    def mark(self, deadline: float) -> None:
        """Start a new request: set its deadline and zero the byte count."""
        self.deadline = deadline
        self.received = 0

    def fill(self) -> None:
        """Receive more bytes into the buffer, or raise ClosedError / TimedOutError."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimedOutError()
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(262144)
        except TimeoutError as err:
            raise TimedOutError() from err
        except (ConnectionResetError, BrokenPipeError) as err:
            raise ClosedError(str(err)) from err
        if not data:
            raise ClosedError("end of stream")
        self.received += len(data)
        self.buffer += data

    def line(self, limit: int) -> bytes:
        """Return one CRLF-terminated line without its CRLF."""
        while True:
            end = self.buffer.find(b"\r\n")
            if end >= 0:
                out = bytes(self.buffer[:end])
                del self.buffer[: end + 2]
                return out
            if len(self.buffer) > limit:
                raise MalformedError(f"line longer than {limit} bytes")
            self.fill()

    def exactly(self, n: int) -> bytes:
        """Return exactly `n` bytes."""
        while len(self.buffer) < n:
            self.fill()
        out = bytes(self.buffer[:n])
        del self.buffer[:n]
        return out

    def to_end(self, limit: int) -> bytes:
        """Return everything until the peer closes (a close-delimited body)."""
        try:
            while len(self.buffer) <= limit:
                self.fill()
        except ClosedError:
            out = bytes(self.buffer)
            self.buffer.clear()
            return out
        raise MalformedError(f"close-delimited body over {limit} bytes")


def parse_status(line: bytes) -> int:
    """Return the status code of an HTTP/1.x status line."""
    parts = line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or len(parts[1]) != 3 or not parts[1].isdigit():
        raise MalformedError(f"bad status line {line[:80]!r}")
    return int(parts[1])


def parse_header(line: bytes) -> tuple[str, str]:
    """Return (lower-case name, value) of one header line."""
    name, sep, value = line.partition(b":")
    if not sep or not name or name != name.strip():
        raise MalformedError(f"bad header line {line[:80]!r}")
    return name.decode("latin-1").lower(), value.strip().decode("latin-1")


def framing(method: str, status: int, headers: dict[str, str]) -> tuple[str, int]:
    """Return how the body of a response is delimited: ("none"|"length"|"chunked"|"close", length)."""
    if method == "HEAD" or 100 <= status < 200 or status in (204, 304):
        return "none", 0
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return "chunked", 0
    if "content-length" in headers:
        value = headers["content-length"]
        if not value.isdigit() or int(value) > MAX_BODY_BYTES:
            raise MalformedError(f"bad Content-Length {value[:40]!r}")
        return "length", int(value)
    return "close", 0


def chunk_size(line: bytes) -> int:
    """Return the size of a chunk-size line (extensions ignored)."""
    text = line.split(b";", 1)[0].strip()
    if not text or len(text) > 8 or any(c not in b"0123456789abcdefABCDEF" for c in text):
        raise MalformedError(f"bad chunk size {line[:40]!r}")
    return int(text, 16)


def read_chunked(reader: Reader) -> bytes:
    """Read a chunked body, trailers included; return the decoded bytes."""
    out = bytearray()
    for _ in range(MAX_CHUNKS):
        n = chunk_size(reader.line(1024))
        if n == 0:
            for _ in range(100):
                if reader.line(MAX_HEAD_BYTES) == b"":
                    return bytes(out)
            raise MalformedError("too many trailer lines")
        if len(out) + n > MAX_BODY_BYTES:
            raise MalformedError("chunked body too large")
        out += reader.exactly(n)
        if reader.exactly(2) != b"\r\n":
            raise MalformedError("chunk not followed by CRLF")
    raise MalformedError("too many chunks")


class Connection:
    """One keep-alive client connection to HOST:PORT, opened on first use."""

    def __init__(self, host: str, port: int, timeout: float) -> None:
        """Connect lazily to `host`:`port`; each request must finish within `timeout` seconds."""
        self.address = (host, port)
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self.reader: Reader | None = None
        self.served = 0

    def close(self) -> None:
        """Close the connection (the next request opens a new one)."""
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock, self.reader, self.served = None, None, 0

    def request(self, method: str, target: str, headers: dict[str, str] | None = None) -> Answer:
        """Send one request and read its answer; never raises for what the server does."""
        started = time.monotonic()
        deadline = started + self.timeout
        reused = self.sock is not None and self.served > 0
        answer = self._exchange(method, target, headers or {}, deadline)
        answer.elapsed = time.monotonic() - started
        answer.reused = reused
        keep = answer.outcome == "complete" and "close" not in answer.header("connection").lower()
        if keep and framing_kind(method, answer) != "close":
            self.served += 1
        else:
            self.close()
        return answer

    def _exchange(self, method: str, target: str, headers: dict[str, str], deadline: float) -> Answer:
        lines = [f"{method} {target} HTTP/1.1"] + [f"{k}: {v}" for k, v in headers.items()]
        wire = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        status, got = None, {}
        try:
            if self.sock is None:
                left = max(0.001, deadline - time.monotonic())
                self.sock = socket.create_connection(self.address, timeout=left)
                self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.reader = Reader(self.sock)
            assert self.reader is not None
            self.reader.mark(deadline)
            self.sock.settimeout(max(0.001, deadline - time.monotonic()))
            self.sock.sendall(wire)
            status = parse_status(self.reader.line(MAX_HEAD_BYTES))
            while status == 100:  # an interim response: the real one follows
                while self.reader.line(MAX_HEAD_BYTES):
                    pass
                status = parse_status(self.reader.line(MAX_HEAD_BYTES))
            for _ in range(1000):
                line = self.reader.line(MAX_HEAD_BYTES)
                if not line:
                    break
                name, value = parse_header(line)
                got[name] = f"{got[name]}, {value}" if name in got and name != "content-length" else value
            else:
                raise MalformedError("too many header lines")
            kind, length = framing(method, status, got)
            if kind == "length":
                body = self.reader.exactly(length)
            elif kind == "chunked":
                body = read_chunked(self.reader)
            elif kind == "close":
                body = self.reader.to_end(MAX_BODY_BYTES)
            else:
                body = b""
            return Answer("complete", status, got, body)
        except (ClosedError, OSError) as err:
            if isinstance(err, TimeoutError):
                return Answer("timeout", status, got, detail="connect or send timed out")
            if status is None and (self.reader is None or self.reader.received == 0):
                return Answer("closed", None, {}, detail=str(err) or type(err).__name__)
            return Answer("truncated", status, got, self._partial(), detail=str(err) or type(err).__name__)
        except TimedOutError:
            return Answer("timeout", status, got, self._partial(), detail="deadline passed")
        except MalformedError as err:
            return Answer("malformed", status, got, detail=str(err))

    def _partial(self) -> bytes:
        return bytes(self.reader.buffer) if self.reader is not None else b""


def framing_kind(method: str, answer: Answer) -> str:
    """Return the framing of a complete answer (see `framing`)."""
    try:
        return framing(method, answer.status or 0, answer.headers)[0]
    except MalformedError:
        return "close"
