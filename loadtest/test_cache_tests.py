"""Tests of loadtest/cache-tests: result classes as the suite's own page counts them, and the watchdog.

The watchdog tests run the real loop of `Run.run_cli` against stand-ins for the suite's CLI (a Node
script that never ends or ends at once) and for Meridian (a process that lives or exits, and a
loopback listener that answers or never does), so each of its three verdicts can be seen to fire.
The run against the real suite and the real binary is `loadtest/cache-tests` itself (scripts/test).
"""

from __future__ import annotations

import argparse
import http.server
import importlib.machinery
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import types
import unittest
from pathlib import Path
from unittest import mock

HERE = Path(__file__).resolve().parent
_loader = importlib.machinery.SourceFileLoader("cache_tests", str(HERE / "cache-tests"))
_spec = importlib.util.spec_from_loader("cache_tests", _loader)
ct = importlib.util.module_from_spec(_spec)
_loader.exec_module(ct)


def meta(tid, kind="required", group="g", depends_on=(), browser_only=False):
    """Build one test's metadata as the suite's metadata dump gives it."""
    return {
        "group": group,
        "group_name": f"Group {group}",
        "id": tid,
        "name": f"the `{tid}` test",
        "kind": kind,
        "depends_on": list(depends_on),
        "browser_only": browser_only,
        "pauses": 0,
    }


class ClassifyTest(unittest.TestCase):
    """`classify` follows the suite's determineTestResult."""

    def setUp(self):
        self.tests = {
            t["id"]: t
            for t in [
                meta("req"),
                meta("opt", "optimal"),
                meta("chk", "check"),
                meta("dep", depends_on=["req"]),
            ]
        }

    def cls(self, tid, result, **others):
        return ct.classify(tid, self.tests, {tid: result, **others})

    def test_kinds(self):
        self.assertEqual(self.cls("req", True), "pass")
        self.assertEqual(self.cls("req", ["Assertion", "Response 2 comes from cache"]), "fail")
        self.assertEqual(self.cls("opt", True), "pass")
        self.assertEqual(self.cls("opt", ["Assertion", "x"]), "optional_fail")
        self.assertEqual(self.cls("chk", True), "yes")
        self.assertEqual(self.cls("chk", ["Assertion", "x"]), "no")

    def test_setup_retry_and_harness(self):
        self.assertEqual(self.cls("req", ["Setup", "Response 1 status is 500"]), "setup_fail")
        self.assertEqual(self.cls("opt", ["Setup", "retry"]), "retry")
        self.assertEqual(self.cls("req", ["FetchError", "socket hang up"]), "harness_error")
        self.assertEqual(self.cls("chk", ["AbortError", "aborted"]), "harness_error")

    def test_dependencies_and_untested(self):
        self.assertEqual(ct.classify("dep", self.tests, {"dep": True, "req": True}), "pass")
        self.assertEqual(ct.classify("dep", self.tests, {"dep": True, "req": ["Assertion", "x"]}), "dependency_fail")
        self.assertEqual(ct.classify("dep", self.tests, {"dep": True}), "dependency_fail")
        self.assertEqual(ct.classify("req", self.tests, {}), "untested")
        self.assertEqual(ct.classify("unknown", self.tests, {"unknown": True}), "untested")


class SummaryTest(unittest.TestCase):
    """`summarize` counts per class, kind and group; browser-only tests are not run by the CLI."""

    def test_counts(self):
        metadata = [
            meta("a"),
            meta("b", "optimal"),
            meta("c", "check", group="h"),
            meta("d", group="h"),
            meta("e", browser_only=True),
        ]
        results = {"a": True, "b": ["Assertion", "not cached"], "c": ["Assertion", "no"], "d": ["Setup", "bad"]}
        s = ct.summarize(metadata, results)
        self.assertEqual(ct.expected_ids(metadata), ["a", "b", "c", "d"])
        self.assertEqual(s["tests"], 4)
        self.assertEqual(s["counts"], {"pass": 1, "optional_fail": 1, "no": 1, "setup_fail": 1})
        self.assertEqual(s["groups"]["h"]["counts"], {"no": 1, "setup_fail": 1})
        self.assertEqual([(t["id"], t["message"]) for t in s["not_passed"]], [("b", "not cached"), ("d", "bad")])
        self.assertEqual(ct.kind_line(s), "required 1/2, optimal 0/1, checks yes 0/1")
        table = ct.summary_table(s)
        self.assertIn("| Group g (`g`) | 2 | 1 | 1 | 0 | 0 |", table)
        self.assertIn("| **All** | **4** |", table)
        self.assertIn("- `d` (required, setup failed): the `d` test — _bad_", ct.failures_markdown(s))

    def test_compare_counts_published_results_alike(self):
        metadata = [meta("a"), meta("b"), meta("c", "optimal")]
        ours = ct.summarize(metadata, {"a": True, "b": True, "c": True})
        table = ct.compare_markdown(metadata, ours, [("nginx", {"a": True, "b": ["Assertion", "x"]})])
        self.assertIn("| **Meridian** (this run) | 3 | 2 / 2 | 0 | 1 / 1 |", table)
        self.assertIn("| nginx | 2 | 1 / 2 | 1 | 0 / 1 |", table)


class InstallTest(unittest.TestCase):
    """An installed suite of the pinned version is used as it is: npm is not asked again."""

    def test_reuses_the_installed_package(self):
        with tempfile.TemporaryDirectory() as root:
            package = Path(root) / f"{ct.PACKAGE}-{ct.VERSION}" / "node_modules" / ct.PACKAGE
            package.mkdir(parents=True)
            (package / "package.json").write_text(json.dumps({"version": ct.VERSION}))
            with mock.patch.object(ct.subprocess, "run", side_effect=AssertionError("npm was run")):
                self.assertEqual(ct.install_suite(Path(root)), package)

    def test_another_version_is_not_taken(self):
        with tempfile.TemporaryDirectory() as root:
            package = Path(root) / f"{ct.PACKAGE}-{ct.VERSION}" / "node_modules" / ct.PACKAGE
            package.mkdir(parents=True)
            (package / "package.json").write_text(json.dumps({"version": "0.0.1"}))
            npm = subprocess.CompletedProcess([], 1)
            with (
                mock.patch.object(ct.shutil, "which", return_value="/usr/bin/npm"),
                mock.patch.object(ct.subprocess, "run", return_value=npm) as run,
                self.assertRaises(ct.SetupError),
            ):
                ct.install_suite(Path(root))
            self.assertEqual(run.call_args.args[0][:2], ["npm", "install"])


class ConfigTest(unittest.TestCase):
    """The edge config the script writes is one Meridian accepts."""

    def test_meridian_checks_the_config(self):
        binary = Path(os.environ.get("CARGO_TARGET_DIR", HERE.parent / "target")) / "debug" / "meridian"
        if not binary.exists():
            self.skipTest(f"{binary} is not built")
        with tempfile.TemporaryDirectory() as work:
            config = Path(work) / "meridian.yaml"
            config.write_text(ct.meridian_config(Path(work), 18080, 18081, 18082, 2))
            out = subprocess.run([str(binary), "check", "-c", str(config)], capture_output=True, text=True)
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)


class _Answer(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 - the name http.server calls
        self.send_response(404)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@unittest.skipIf(shutil.which("node") is None, "node is not installed")
class WatchdogTest(unittest.TestCase):
    """`Run.run_cli` fails a run that stalls, outlives its bound or loses Meridian; passes one that ends."""

    def setUp(self):
        self.work = Path(tempfile.mkdtemp(prefix="cache-tests-test."))
        self.addCleanup(shutil.rmtree, self.work, ignore_errors=True)
        self.procs = []

    def tearDown(self):
        for proc in self.procs:
            ct.stop(proc)

    def run_cli(self, cli_js, answering, meridian_lives=True, timeout=30.0, stall_after=1.5):
        cli = self.work / "cli.mjs"
        cli.write_text(cli_js)
        args = argparse.Namespace(id=None, timeout=timeout, stall_after=stall_after, probe_timeout=0.3)
        run = ct.Run(args, types.SimpleNamespace(cli=cli, dir=self.work), self.work)
        if answering:
            server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            self.addCleanup(server.server_close)
            self.addCleanup(server.shutdown)
            run.port = server.server_address[1]
        else:  # accepts connections and never answers: a stuck worker
            listener = socket.create_server(("127.0.0.1", 0))
            self.addCleanup(listener.close)
            run.port = listener.getsockname()[1]
        code = "import time; time.sleep(60)" if meridian_lives else "pass"
        meridian = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
        self.procs.append(meridian)
        try:
            return run.run_cli(meridian, meridian)
        finally:
            self.procs.extend(run.procs)

    def test_a_run_that_ends_completes(self):
        elapsed = self.run_cli("console.log('{}')", answering=True)
        self.assertLess(elapsed, 10)
        self.assertEqual((self.work / "cli.out").read_text(), "{}\n")

    def test_a_stalled_edge_fails_the_run(self):
        with self.assertRaisesRegex(ct.RunError, "stopped answering"):
            self.run_cli("setTimeout(() => {}, 60000)", answering=False)

    def test_a_run_past_its_bound_fails(self):
        with self.assertRaisesRegex(ct.RunError, "did not complete within 2s"):
            self.run_cli("setTimeout(() => {}, 60000)", answering=True, timeout=2.0)

    def test_meridian_exiting_fails_the_run(self):
        with self.assertRaisesRegex(ct.RunError, "Meridian exited"):
            self.run_cli("setTimeout(() => {}, 60000)", answering=True, meridian_lives=False)


if __name__ == "__main__":
    unittest.main()
