"""Tests of compare's `cache_mix` helpers (lib/cache_mix.py) and of its wrk script (lib/wrk_cache_mix.lua).

The wrk case runs wrk for one second against a loopback origin of this file that counts what it is
asked for and answers each class with a different cache verdict header; it is skipped when wrk is
not installed (`scripts/deps test` installs it).

Run with `python3 -m unittest discover -s loadtest -p 'test_*.py'` from the repository root.
"""

from __future__ import annotations

import gzip
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import unittest
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "lib"))

import cache_mix  # noqa: E402  (the path above makes lib/ importable)


def log_line(path: str, status: int) -> str:
    """One line of nginx's combined access log."""
    return f'127.0.0.1 - - [06/Dec/2026:02:37:19 +0000] "GET {path} HTTP/1.1" {status} 4096 "-" "-"\n'


class OriginCountsTest(unittest.TestCase):
    """The upstream's access log becomes the totals, the 304s and the per-class counts."""

    def test_counts_by_class_and_status(self):
        """Each request counts once in the total, once in its class; 304s are counted apart."""
        lines = [
            log_line("/mix/vary/1", 200),
            log_line("/mix/reval/2", 304),
            log_line("/mix/reval/2", 304),
            log_line("/mix/swr/3?x=1", 200),
            log_line("/mix/long/4", 200),
            log_line("/", 200),  # the readiness probe: in the total only
        ]
        self.assertEqual(cache_mix.origin_counts(lines), [6, 2, 1, 2, 1, 1])

    def test_ignores_what_is_not_a_request_line(self):
        """Blank, truncated or foreign lines and unknown classes do not count as classes."""
        lines = ["", "garbage\n", '127.0.0.1 - - [x] "GET', log_line("/mix/other/1", 200), log_line("/mix/vary", 200)]
        self.assertEqual(cache_mix.origin_counts(lines), [2, 0, 0, 0, 0, 0])


class HitTableTest(unittest.TestCase):
    """The table sums rounds per server and derives the ratios from the counts."""

    def test_sums_rounds_and_computes_ratios(self):
        """Two rounds of one server are summed; a class's hit ratio is out of the class's requests sent."""
        sent = ["100", "100", "100", "100"]
        rows = [
            ["cache_mix", "meridian", "398", "100", "10", "100", "0", "0", "0", "398", "298", *sent],
            ["cache_mix", "meridian", "400", "0", "0", "0", "0", "0", "0", "400", "400", *sent],
            ["cache_mix", "nginx", "1000", "10", "10", "0", "5", "5", "0", "0", "0", "250", "250", "500", "0"],
            ["other", "nginx", "1", "1", "1", "1", "0", "0", "0", "0", "0", "1", "0", "0", "0"],
            ["cache_mix", "short"],  # a malformed row is skipped
        ]
        table = cache_mix.hit_table("cache_mix", rows).splitlines()
        self.assertEqual(len(table), 6)  # title, blank, head, rule, two servers
        self.assertEqual(
            table[4],
            "| meridian | 800 | 100 | 10 | 87.50% | 87.47% of 798 | 100 (50.00%) | 0 (100.00%) | 0 (100.00%) "
            "| 0 (100.00%) |",
        )
        self.assertEqual(
            table[5],
            "| nginx | 1000 | 10 | 10 | 99.00% | no header | 0 (100.00%) | 5 (98.00%) | 5 (99.00%) | 0 (—) |",
        )
        self.assertEqual(table[2].count("|"), table[3].count("|"))
        self.assertEqual(table[2].count("|"), table[4].count("|"))

    def test_no_rows_no_table(self):
        """A profile without rows (every contender skipped) prints nothing."""
        self.assertEqual(cache_mix.hit_table("cache_mix", [["plain", "nginx"] + ["1"] * 13]), "")


class CheckVariantTest(unittest.TestCase):
    """An answer is right when the client can read it and it decodes to the object."""

    OBJECT = b"vary object 00001 line 00\n" * 100

    def test_right_answers(self):
        """Identity to anyone; gzip to a client that accepts it."""
        for encoding in cache_mix.ENCODINGS:
            self.assertIsNone(cache_mix.check_variant(self.OBJECT, None, encoding, self.OBJECT))
        gz = gzip.compress(self.OBJECT)
        self.assertIsNone(cache_mix.check_variant(gz, "gzip", "gzip", self.OBJECT))
        self.assertIsNone(cache_mix.check_variant(gz, "gzip", "deflate, gzip;q=0.5", self.OBJECT))

    def test_wrong_answers(self):
        """A gzip body to a client without gzip, an unknown coding, a body that is not the object."""
        gz = gzip.compress(self.OBJECT)
        self.assertIn("gzip to a client", cache_mix.check_variant(gz, "gzip", None, self.OBJECT))
        self.assertIn("gzip to a client", cache_mix.check_variant(gz, "gzip", "br", self.OBJECT))
        self.assertIn("Content-Encoding br", cache_mix.check_variant(b"x", "br", "gzip", self.OBJECT))
        self.assertIn("does not decode", cache_mix.check_variant(b"x", "gzip", "gzip", self.OBJECT))
        self.assertIn("not the object", cache_mix.check_variant(self.OBJECT[1:], None, "gzip", self.OBJECT))
        other = gzip.compress(self.OBJECT + b"!")
        self.assertIn("not the object", cache_mix.check_variant(other, "gzip", "gzip", self.OBJECT))


class MixOrigin(BaseHTTPRequestHandler):
    """Counts (class, Accept-Encoding) per request; answers each class with its own verdict header.

    vary: `X-Cache-Status: HIT` (nginx), reval: `X-Cache: MISS` (the harness's VCL), swr: none,
    long: `Cache-Status: meridian; hit; ttl=9` (RFC 9211). With `gzip_to_all`, /mix/vary/ answers
    gzip whatever the client accepts.
    """

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes
    seen: Counter = Counter()
    lock = threading.Lock()
    root = Path()
    gzip_to_all = False

    def do_GET(self):  # noqa: N802  (the name http.server calls)
        parts = self.path.split("/")
        cls = parts[2] if len(parts) > 3 else "other"
        with self.lock:
            self.seen[(cls, self.headers.get("Accept-Encoding"))] += 1
        headers = {
            "vary": ("X-Cache-Status", "HIT"),
            "reval": ("X-Cache", "MISS"),
            "long": ("Cache-Status", "meridian; hit; ttl=9"),
        }
        body = b"x"
        encoded = False
        if cls == "vary" and (self.root / "mix" / "vary" / parts[3]).exists():
            body = (self.root / "mix" / "vary" / parts[3]).read_bytes()
            if self.gzip_to_all or "gzip" in (self.headers.get("Accept-Encoding") or ""):
                body, encoded = gzip.compress(body), True
        self.send_response(200)
        if cls in headers:
            self.send_header(*headers[cls])
        if encoded:
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class QuietServer(ThreadingHTTPServer):
    """A threading HTTP server that does not print the resets of clients that go away (wrk)."""

    daemon_threads = True

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class MixOriginCase(unittest.TestCase):
    """Runs a MixOrigin on a free loopback port for each test."""

    def setUp(self):
        MixOrigin.seen = Counter()
        MixOrigin.gzip_to_all = False
        MixOrigin.root = Path("/nonexistent")
        self.server = QuietServer(("127.0.0.1", 0), MixOrigin)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"

    def tearDown(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


class CheckVariantsTest(MixOriginCase):
    """check-variants asks for every encoding, twice, and tells a wrong variant."""

    def test_right_and_wrong_origin(self):
        """An origin that honours Accept-Encoding passes; one that gzips for everyone does not."""
        with tempfile.TemporaryDirectory() as d:
            (Path(d) / "mix" / "vary").mkdir(parents=True)
            for i in (1, 2):
                (Path(d) / "mix" / "vary" / str(i)).write_bytes(b"object %d\n" % i * 200)
            MixOrigin.root = Path(d)
            self.assertEqual(cache_mix.check_variants(self.url, Path(d), 2), [])
            self.assertEqual(sum(MixOrigin.seen.values()), 2 * 2 * len(cache_mix.ENCODINGS))
            MixOrigin.gzip_to_all = True
            problems = cache_mix.check_variants(self.url, Path(d), 2)
            want = [f"/mix/vary/{i}: gzip to a client sending Accept-Encoding: (none)" for i in (1, 1, 2, 2)]
            self.assertEqual(problems, want)


@unittest.skipUnless(shutil.which("wrk"), "wrk is not installed (scripts/deps test)")
class WrkScriptTest(MixOriginCase):
    """lib/wrk_cache_mix.lua: the request mix, and the verdicts it counts."""

    def test_mix_and_verdicts(self):
        """Every class and encoding is asked for equally; hits are counted per header flavour."""
        out = subprocess.run(
            ["wrk", "-t1", "-c1", "-d1s", "-s", str(HERE / "lib" / "wrk_cache_mix.lua"), self.url, "--", "2"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
        m = re.search(r"^LOADTEST .*$", out, re.M)
        self.assertIsNotNone(m, out)
        v = dict(kv.split("=") for kv in m.group(0).split()[1:])
        requests, seen, hits = int(v["requests"]), int(v["cache_seen"]), int(v["cache_hits"])
        sent = {c: int(v[f"sent_{c}"]) for c in cache_mix.CLASSES}
        self.assertGreater(requests, 4 * 2 * len(cache_mix.ENCODINGS), "at least one cycle")
        by_class = Counter()
        for (cls, _), n in MixOrigin.seen.items():
            by_class[cls] += n
        self.assertEqual(set(by_class), set(cache_mix.CLASSES))
        # One connection: the origin may have answered one request more than wrk counted; the
        # script counts one it made for wrk's check at start, and one wrk may have sent that
        # the origin has not read yet.
        self.assertIn(sum(by_class.values()) - requests, (0, 1))
        self.assertIn(sum(sent.values()) - requests, (0, 1, 2))
        for c in cache_mix.CLASSES:
            self.assertLessEqual(abs(sent[c] - by_class[c]), 2, c)
        # The cycle is 32 requests (2 objects x 4 classes x 4 encodings): each (class, encoding)
        # pair is asked for within one of the others.
        self.assertEqual({e for (_, e) in MixOrigin.seen}, {e for e in cache_mix.ENCODINGS})
        counts = MixOrigin.seen.values()
        self.assertLessEqual(max(counts) - min(counts), 2)
        # vary, reval and long carry a verdict; vary and long are hits.
        self.assertLessEqual(abs(seen - (by_class["vary"] + by_class["reval"] + by_class["long"])), 1)
        self.assertLessEqual(abs(hits - (by_class["vary"] + by_class["long"])), 1)


if __name__ == "__main__":
    unittest.main()
