"""Tests of idle_conns.py: response framing, and whole runs against small local servers.

Run with `python3 -m unittest discover -s loadtest -p 'test_*.py'` from the repository root.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import idle_conns  # noqa: E402  (the path above makes the script importable)

SCRIPT = Path(__file__).resolve().parent / "idle_conns.py"

# A tiny HTTP/1.1 server on an ephemeral loopback port; prints the port, then serves.
# argv[1] == "keep": keep-alive answers; "close": answers with Connection: close and closes;
# "drop": a keep-alive answer, then the server drops the idle connection shortly after.
SERVER = r"""
import asyncio, sys

MODE = sys.argv[1]

async def handle(reader, writer):
    try:
        while True:
            await reader.readuntil(b"\r\n\r\n")
            if MODE in ("keep", "drop"):
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nhello\n")
                await writer.drain()
                if MODE == "drop":
                    await asyncio.sleep(0.05)
                    break
            else:
                writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 6\r\n\r\nhello\n")
                await writer.drain()
                break
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    writer.close()

async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()

asyncio.run(main())
"""


def parse(data: bytes) -> int:
    """Run read_response over `data` as if it came from a socket."""

    async def go() -> int:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        return await idle_conns.read_response(reader)

    return asyncio.run(go())


class ReadResponseTest(unittest.TestCase):
    """Framing rules of read_response."""

    def test_content_length_body_is_consumed(self) -> None:
        self.assertEqual(parse(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"), 200)

    def test_chunked_body_is_consumed(self) -> None:
        data = b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n"
        self.assertEqual(parse(data), 201)

    def test_truncated_body_is_an_error(self) -> None:
        with self.assertRaises(idle_conns.ResponseError):
            parse(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")

    def test_connection_close_is_an_error(self) -> None:
        with self.assertRaises(idle_conns.ResponseError):
            parse(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")

    def test_unframed_body_is_an_error(self) -> None:
        with self.assertRaises(idle_conns.ResponseError):
            parse(b"HTTP/1.1 200 OK\r\n\r\nabc")

    def test_bad_status_line_is_an_error(self) -> None:
        with self.assertRaises(idle_conns.ResponseError):
            parse(b"SSH-2.0-OpenSSH\r\n\r\n")

    def test_no_content_status_needs_no_length(self) -> None:
        self.assertEqual(parse(b"HTTP/1.1 204 No Content\r\n\r\n"), 204)


class WholeRunTest(unittest.TestCase):
    """idle_conns.py run as a program against a local server."""

    def run_against(self, mode: str, connections: int) -> tuple[int, dict]:
        server = subprocess.Popen([sys.executable, "-c", SERVER, mode], stdout=subprocess.PIPE, text=True)
        try:
            port = int(server.stdout.readline())  # '' (and a ValueError) if the server died
            done = subprocess.run(
                [
                    sys.executable,
                    str(SCRIPT),
                    f"127.0.0.1:{port}",
                    "--pid",
                    str(server.pid),
                    "-n",
                    str(connections),
                    "--hold",
                    "0.2",
                    "--timeout",
                    "5",
                    "--json",
                ],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            return done.returncode, json.loads(done.stdout)
        finally:
            server.kill()
            server.wait(timeout=10)
            server.stdout.close()

    def test_keep_alive_connections_are_held_and_measured(self) -> None:
        code, result = self.run_against("keep", 200)
        self.assertEqual(code, 0, result)
        self.assertTrue(result["ok"])
        self.assertEqual(result["held"], 200)
        self.assertEqual(result["failures"], 0)
        self.assertGreater(result["rss_before_mib"], 0)

    def test_server_that_closes_fails_the_run(self) -> None:
        code, result = self.run_against("close", 20)
        self.assertEqual(code, 1)
        self.assertFalse(result["ok"])
        self.assertEqual(result["held"], 0)
        self.assertIn("Connection: close", result["note"])

    def test_connections_dropped_while_idle_fail_the_run(self) -> None:
        code, result = self.run_against("drop", 20)
        self.assertEqual(code, 1)
        self.assertEqual(result["established"], 20)
        self.assertEqual(result["held"], 0)
        self.assertIn("only 0 of 20 held", result["note"])


class ArgumentsTest(unittest.TestCase):
    """Command-line validation."""

    def test_target_needs_a_port(self) -> None:
        with self.assertRaises(SystemExit):
            idle_conns.parse_args(["localhost", "--pid", "1"])

    def test_connections_are_bounded(self) -> None:
        with self.assertRaises(SystemExit):
            idle_conns.parse_args(["127.0.0.1:80", "--pid", "1", "-n", "1000000"])


if __name__ == "__main__":
    unittest.main()
