"""Tests of the soak's pure helpers, and of its client against its own origins (no meridian).

The origin-and-client cases prove the checker can fail: each fault the origins make reaches the
client as the outcome `judge` must see, and `judge` refuses what an edge must never do (a
truncated body passed off as complete, a wrong object, a 200 from a faulting origin).

Run with `python3 -m unittest discover -s loadtest -p 'test_*.py'` from the repository root.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import random
import socket
import sys
import threading
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "lib"))

import soak_catalog as catalog  # noqa: E402  (the path above makes lib/ importable)
import soak_client  # noqa: E402
import soak_origins  # noqa: E402


def load_soak():
    """Import loadtest/soak (a script without a .py suffix) as a module."""
    loader = importlib.machinery.SourceFileLoader("soak", str(HERE / "soak"))
    spec = importlib.util.spec_from_loader("soak", loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules["soak"] = module  # dataclasses look their module up while it loads
    loader.exec_module(module)
    return module


soak = load_soak()


def answer_from(data: bytes, method: str = "GET", close: bool = True) -> soak_client.Answer:
    """Serve `data` from a one-shot loopback server and read it with the soak's client."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def serve():
        conn, _ = server.accept()
        conn.recv(65536)
        conn.sendall(data)
        if close:
            conn.close()
        else:
            conn.settimeout(5.0)
            try:
                conn.recv(1)  # hold the connection until the client gives up
            finally:
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    conn = soak_client.Connection("127.0.0.1", server.getsockname()[1], 1.0)
    try:
        return conn.request(method, "/", {"Host": "x"})
    finally:
        conn.close()
        server.close()
        thread.join(timeout=3)


class CatalogTest(unittest.TestCase):
    """Bodies and expectations are deterministic and tell objects apart."""

    def test_bodies_are_stable_distinct_and_sized(self):
        """The same path gives the same bytes; two paths differ in their first bytes."""
        a = catalog.expect("/mem/1").body
        self.assertEqual(a, catalog.expect("/mem/1").body)
        b = catalog.expect("/mem/2").body
        self.assertNotEqual(a[:16], b[:16])
        self.assertEqual(len(a), catalog.size_in("/mem/1", catalog.SIZES["mem"][1]))

    def test_disk_objects_are_over_the_memory_tier_limit(self):
        """Every /disk/ object is too large for the memory tier, every /mem/ one fits."""
        for n in range(catalog.SIZES["disk"][0]):
            self.assertGreater(len(catalog.expect(f"/disk/{n}").body), catalog.MEMORY_MAX_OBJECT)
        for n in range(catalog.SIZES["mem"][0]):
            self.assertLessEqual(len(catalog.expect(f"/mem/{n}").body), catalog.MEMORY_MAX_OBJECT)

    def test_expect_knows_every_route_and_refuses_others(self):
        """Known paths map to their route; unknown ones and out-of-range numbers to None."""
        self.assertEqual(catalog.expect("/hls/vod/seg3.ts?x=1").route, "hls")
        self.assertEqual(catalog.expect("/hls/vod/index.m3u8").body, catalog.playlist())
        self.assertTrue(catalog.expect("/cfault/reset/0").faulty)
        self.assertEqual(catalog.expect("/fault/503/1").status, 503)
        self.assertIsNone(catalog.expect("/mem/100000"))
        self.assertIsNone(catalog.expect("/hls/vod/seg999.ts"))
        self.assertIsNone(catalog.expect("/fault/nonsense/1"))
        self.assertIsNone(catalog.expect("/elsewhere"))

    def test_playlist_lists_every_segment_and_ends(self):
        """The VOD playlist is finished and names each segment the catalog serves."""
        text = catalog.playlist().decode()
        self.assertTrue(text.startswith("#EXTM3U\n"))
        self.assertIn("#EXT-X-ENDLIST", text)
        for i in range(catalog.HLS_SEGMENTS):
            self.assertIn(f"\nseg{i}.ts\n", text)
            self.assertIsNotNone(catalog.expect(f"/hls/vod/seg{i}.ts"))

    def test_chunk_sizes_cover_the_body(self):
        """The chunked origin's chunks add up to the body, each 1 B .. 8 KiB."""
        for n in range(20):
            path = f"/chunked/{n}"
            size = len(catalog.expect(path).body)
            sizes = catalog.chunk_sizes(path, size)
            self.assertEqual(sum(sizes), size)
            self.assertTrue(all(1 <= s <= 8192 for s in sizes))


class JudgeTest(unittest.TestCase):
    """`judge` allows only what the invariants allow."""

    def setUp(self):
        """Take a healthy, a faulting and a slow-drip expectation."""
        self.good = catalog.expect("/chunked/5")
        self.fault = catalog.expect("/cfault/reset/1")
        self.drip = catalog.expect("/fault/drip/2")

    def test_healthy_route_needs_the_exact_body(self):
        """A right answer passes; a truncated, wrong, failed or hung one does not."""
        body = self.good.body
        self.assertEqual(catalog.judge(self.good, "complete", 200, body), "")
        self.assertIn("truncated", catalog.judge(self.good, "complete", 200, body[:-1]))
        self.assertIn("wrong body", catalog.judge(self.good, "complete", 200, b"x" + body[1:]))
        self.assertIn("status 502", catalog.judge(self.good, "complete", 502, b""))
        self.assertIn("truncated response", catalog.judge(self.good, "truncated", 200, body[:10]))
        self.assertIn("hung", catalog.judge(self.good, "timeout", None, b""))

    def test_ranges_are_checked_byte_for_byte(self):
        """A 206 must carry exactly the asked range; a full 200 is also right."""
        exp = catalog.expect("/mem/3")
        self.assertEqual(catalog.judge(exp, "complete", 206, exp.body[10:21], (10, 20)), "")
        self.assertEqual(catalog.judge(exp, "complete", 200, exp.body, (10, 20)), "")
        self.assertIn("wrong range", catalog.judge(exp, "complete", 206, exp.body[11:22], (10, 20)))

    def test_faulting_route_allows_errors_and_closes_only(self):
        """502/504, a closed or truncated connection pass; a complete 200 or a 500 do not."""
        for outcome, status in (("complete", 502), ("complete", 504), ("closed", None), ("truncated", 200)):
            self.assertEqual(catalog.judge(self.fault, outcome, status, b"partial"), "", (outcome, status))
        self.assertIn("wrong body", catalog.judge(self.fault, "complete", 200, b"partial body from cache"))
        self.assertIn("status 500", catalog.judge(self.fault, "complete", 500, b""))
        self.assertIn("malformed", catalog.judge(self.fault, "malformed", 200, b""))

    def test_a_drip_may_also_succeed_but_only_whole(self):
        """The slow drip's complete body passes; a short one served as complete does not."""
        self.assertEqual(catalog.judge(self.drip, "complete", 200, self.drip.body), "")
        self.assertIn("truncated", catalog.judge(self.drip, "complete", 200, self.drip.body[:5]))

    def test_describe_names_the_difference(self):
        """Truncation and the first differing byte are reported."""
        self.assertEqual(catalog.describe(b"abc", b"abcdef"), "truncated: 3 of 6 bytes")
        self.assertIn("first difference at byte 1", catalog.describe(b"axc", b"abc"))


class ClientTest(unittest.TestCase):
    """The client reads each framing and tells complete from truncated."""

    def test_content_length_chunked_and_close_delimited(self):
        """All three framings are read whole."""
        a = answer_from(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
        self.assertEqual((a.outcome, a.status, a.body), ("complete", 200, b"hello"))
        a = answer_from(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;x=y\r\nhe\r\n3\r\nllo\r\n0\r\nt: v\r\n\r\n"
        )
        self.assertEqual((a.outcome, a.body), ("complete", b"hello"))
        a = answer_from(b"HTTP/1.0 200 OK\r\n\r\nhello")
        self.assertEqual((a.outcome, a.body), ("complete", b"hello"))

    def test_truncation_closed_timeout_and_malformed(self):
        """A short body, no answer, a silent peer and garbage each get their outcome."""
        a = answer_from(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello")
        self.assertEqual((a.outcome, a.status, a.body), ("truncated", 200, b"hello"))
        a = answer_from(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        self.assertEqual(a.outcome, "truncated")
        self.assertEqual(answer_from(b"").outcome, "closed")
        self.assertEqual(answer_from(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nx", close=False).outcome, "timeout")
        self.assertEqual(
            answer_from(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").outcome, "malformed"
        )
        self.assertEqual(answer_from(b"SSH-2.0-nope\r\n\r\n").outcome, "malformed")

    def test_framing_rules(self):
        """HEAD, 204 and 304 have no body; a bad Content-Length is malformed."""
        self.assertEqual(soak_client.framing("HEAD", 200, {"content-length": "9"}), ("none", 0))
        self.assertEqual(soak_client.framing("GET", 304, {}), ("none", 0))
        self.assertEqual(soak_client.framing("GET", 200, {"transfer-encoding": "gzip, chunked"}), ("chunked", 0))
        with self.assertRaises(soak_client.MalformedError):
            soak_client.framing("GET", 200, {"content-length": "-1"})


class OriginsTest(unittest.TestCase):
    """The origins misbehave as documented, and the client sees it as `judge` expects."""

    @classmethod
    def setUpClass(cls):
        """Start both origins in this process."""
        cls.good, cls.faulty = soak_origins.start()

    def get(self, port: int, path: str, timeout: float = 5.0) -> soak_client.Answer:
        """One request on a new connection."""
        conn = soak_client.Connection("127.0.0.1", port, timeout)
        try:
            return conn.request("GET", path, {"Host": "x"})
        finally:
            conn.close()

    def test_good_origin_serves_the_catalog_on_one_connection(self):
        """Each healthy route's exact body, chunked where documented, on one keep-alive connection."""
        conn = soak_client.Connection("127.0.0.1", self.good, 5.0)
        try:
            for path in ("/probe/1", "/plain/3", "/mem/7", "/disk/2", "/chunked/1", "/chunked/2", "/hls/vod/seg4.ts"):
                a = conn.request("GET", path, {"Host": "x"})
                self.assertEqual(catalog.judge(catalog.expect(path), a.outcome, a.status, a.body), "", path)
            a = conn.request("GET", "/chunked/6", {"Host": "x"})
            self.assertEqual(a.header("transfer-encoding"), "chunked")
            self.assertIn("max-age", a.header("cache-control"))
        finally:
            conn.close()

    def test_each_fault_reaches_the_client_as_documented(self):
        """Reset, short, hang-up, bad chunk, 503 and drip give the outcomes `judge` allows for them."""
        expected = {
            "reset": "truncated",
            "short": "truncated",
            "hangup": "closed",
            "badchunk": "malformed",  # straight from the origin; through the edge: truncated or 502
            "chunkreset": "truncated",
            "503": "complete",
            "drip": "complete",
        }
        for kind, outcome in expected.items():
            path = f"/fault/{kind}/{random.randrange(catalog.FAULT_KEYS)}"
            a = self.get(self.faulty, path)
            self.assertEqual(a.outcome, outcome, path)
            if outcome != "malformed":
                self.assertEqual(catalog.judge(catalog.expect(path), a.outcome, a.status, a.body), "", path)

    def test_silent_origin_never_answers(self):
        """The silent fault holds the connection: the client times out."""
        self.assertEqual(self.get(self.faulty, "/fault/silent/0", timeout=0.5).outcome, "timeout")


class HelpersTest(unittest.TestCase):
    """The soak's own pure helpers."""

    def test_parse_duration(self):
        """Plain seconds and unit forms; junk is refused."""
        self.assertEqual(soak.parse_duration("120"), 120)
        self.assertEqual(soak.parse_duration("30m"), 1800)
        self.assertEqual(soak.parse_duration("1h30m"), 5400)
        self.assertEqual(soak.parse_duration("500ms"), 0.5)
        for bad in ("", "10x", "m", "5m junk"):
            with self.assertRaises(ValueError):
                soak.parse_duration(bad)

    def test_is_hit(self):
        """Only the edge's own `hit` parameter counts."""
        self.assertTrue(soak.is_hit("meridian; hit; ttl=3599"))
        self.assertTrue(soak.is_hit("meridian; hit; ttl=-2; detail=stale-while-revalidate"))
        self.assertFalse(soak.is_hit("meridian; fwd=uri-miss; stored"))
        self.assertFalse(soak.is_hit("meridian; fwd=uri-miss; detail=hit"))
        self.assertFalse(soak.is_hit(""))

    def test_metrics_and_stalled_workers(self):
        """Prometheus text is parsed; a non-zero stall gauge is reported, zero or absent is not."""
        text = (
            '# HELP x y\nmeridian_worker_stalled{worker="0"} 0\nmeridian_worker_stalled{worker="1"} 1\n'
            'meridian_cache_storage_objects{tier="disk"} 4\nmeridian_cache_storage_objects{tier="memory"} 3\n'
        )
        metrics = soak.parse_metrics(text)
        self.assertEqual(soak.stalled_workers(metrics), ['meridian_worker_stalled{worker="1"} = 1'])
        self.assertEqual(soak.stalled_workers(soak.parse_metrics("meridian_worker_stalled 0\n")), [])
        self.assertEqual(soak.stalled_workers({}), [])
        self.assertEqual(
            soak.metric_family(metrics, "meridian_cache_storage_objects", "tier"), {"disk": 4, "memory": 3}
        )

    def test_histogram_quantiles(self):
        """Quantiles land within one 5 % bucket of the truth; the max is exact."""
        h = soak.Histogram()
        for ms in range(1, 1001):
            h.add(ms / 1000)
        self.assertAlmostEqual(h.quantile(0.5), 0.5, delta=0.5 * 0.06)
        self.assertAlmostEqual(h.quantile(0.99), 0.99, delta=0.99 * 0.06)
        self.assertEqual(h.max, 1.0)
        self.assertEqual(soak.Histogram().quantile(0.99), 0.0)

    def test_rss_track(self):
        """Growth is judged from the first sample after the warm-up; the slope is per minute."""
        track = soak.RssTrack(warmup=10, bound_mib=8)
        self.assertEqual(track.add(0, 50 * 1024), "")
        self.assertEqual(track.add(5, 500 * 1024), "")  # the warm-up is not judged
        self.assertEqual(track.add(10, 100 * 1024), "")  # the baseline
        self.assertEqual(track.add(70, 107 * 1024), "")
        self.assertAlmostEqual(track.slope_mib_per_min(), 7.0)
        self.assertIn("9.0 MiB above", track.add(80, 109 * 1024))
        self.assertEqual(len(track.curve(3)), 3)
        self.assertEqual(track.curve(3)[0], (0, 50 * 1024))

    def test_hit_window(self):
        """A route under the bound fails once it has enough requests; a small window is not judged."""
        w = soak.HitWindow()
        for _ in range(soak.MIN_WINDOW_REQUESTS - 1):
            w.add("mem", False)
        self.assertEqual(w.verdict(0.9), "")
        w.add("mem", False)
        self.assertIn("route mem", w.verdict(0.9))
        ok = soak.HitWindow()
        for i in range(100):
            ok.add("disk", i != 0)
        self.assertEqual(ok.verdict(0.9), "")

    def test_pick_covers_the_mix_with_known_paths(self):
        """Every picked target is in the catalog; every route of the mix comes up; ranges fit."""
        rng = random.Random(7)
        routes = set()
        for _ in range(3000):
            target, headers, range_ = soak.pick(rng)
            exp = catalog.expect(target)
            self.assertIsNotNone(exp, target)
            routes.add(exp.route)
            if range_ is not None:
                self.assertEqual(headers["Range"], f"bytes={range_[0]}-{range_[1]}")
                self.assertLess(range_[1], len(exp.body))
        self.assertEqual(routes, set(soak.MIX))

    def test_configs_differ_where_a_reload_must_show(self):
        """A and B name every route, and differ in the probe header and the pools."""
        ports = {"edge": 1, "admin": 2, "good": 3, "faulty": 4}
        a = soak.render_config("a", ports, Path("/tmp/w"))
        b = soak.render_config("b", ports, Path("/tmp/w"))
        for route in catalog.ROUTES:
            self.assertIn(f"name: {route}\n", a)
        self.assertIn("x-soak-config: a", a)
        self.assertIn("x-soak-config: b", b)
        self.assertIn("watch_config: false", a)
        self.assertNotEqual(a.replace("config a", "").replace("x-soak-config: a", ""), b)


if __name__ == "__main__":
    unittest.main()
