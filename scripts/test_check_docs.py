"""Tests of scripts/check-docs: each kind of wrong reference is caught, right ones pass."""

import importlib.machinery
import importlib.util
import os
import subprocess
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
_loader = importlib.machinery.SourceFileLoader("check_docs", os.path.join(HERE, "check-docs"))
_spec = importlib.util.spec_from_loader("check_docs", _loader)
check_docs = importlib.util.module_from_spec(_spec)
_loader.exec_module(check_docs)

REPO = check_docs.Repo(check_docs.repo_files())


def problems(text, doc="docs/X.md"):
    """Return the wrong references check-docs finds in `text` as the document `doc`."""
    return check_docs.check_text(REPO, doc, text)


class PathsTest(unittest.TestCase):
    """File and folder references."""

    def test_existing_paths_in_every_form_pass(self):
        text = "\n".join(
            [
                "See `gateway/src/plan.rs`, `proxy/attempt.rs` and `hub.rs`.",
                "[the config](CONFIG.md), [a folder](../conf/), [a section](CONFIG.md#plugins)",
                "`conf/stack/*.yaml`, `scripts/fuzz --smoke`, `tests/e2e/` and `application/json`.",
                "```sh",
                "meridian run -c conf/gateway.yaml   # loadtest/compare too",
                "```",
            ]
        )
        self.assertEqual(problems(text), [])

    def test_a_missing_file_is_named_with_its_line(self):
        self.assertEqual(
            problems("one\nunits in `config/units.rs`\n"),
            ["docs/X.md:2: config/units.rs does not exist"],
        )

    def test_a_missing_link_target_and_a_missing_path_in_a_command_fail(self):
        text = "[gone](NOPE.md)\n`meridian run -c conf/nope.yaml`\n```\nscripts/nope\n```\n"
        self.assertEqual(
            problems(text),
            [
                "docs/X.md:1: link NOPE.md does not exist",
                "docs/X.md:2: conf/nope.yaml does not exist",
                "docs/X.md:4: scripts/nope does not exist",
            ],
        )

    def test_links_resolve_from_the_documents_folder(self):
        self.assertEqual(problems("[c](CONFIG.md)", doc="README.md"), ["README.md:1: link CONFIG.md does not exist"])
        self.assertEqual(problems("[c](docs/CONFIG.md)", doc="README.md"), [])

    def test_a_named_test_must_exist_in_its_file(self):
        self.assertEqual(problems("`scripts/test_check_docs.py`"), [])
        good = "`cdn-edge/src/policy.rs::tests::defaults_and_heuristics`"
        self.assertEqual(problems(good), [])
        self.assertEqual(
            problems("`cdn-edge/src/policy.rs::tests::no_such_test`"),
            ["docs/X.md:1: cdn-edge/src/policy.rs has no fn no_such_test"],
        )

    def test_config_comments_are_read_and_their_values_are_not(self):
        text = "# run scripts/nope first\nupstreams: { a: conf/not-a-reference.yaml }\n"
        self.assertEqual(problems(text, doc="conf/x.yaml"), ["conf/x.yaml:1: scripts/nope does not exist"])


class CommitsTest(unittest.TestCase):
    """Commit hashes."""

    def test_an_existing_commit_passes_and_a_missing_one_fails(self):
        head = subprocess.run(
            ["git", "-C", HERE, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        self.assertEqual(problems(f"measured at git {head}"), [])
        self.assertEqual(
            problems("run (git 0000000) and `main` at `0abc123`"),
            [
                "docs/X.md:1: commit 0000000 does not exist in this repository",
                "docs/X.md:1: commit 0abc123 does not exist in this repository",
            ],
        )

    def test_numbers_that_are_not_cited_as_commits_are_not_checked(self):
        self.assertEqual(problems("expires at 1764003600, id 3f2a9c0d4b1e7a65"), [])


class TheseDocsTest(unittest.TestCase):
    """The repository's own documents."""

    def test_the_repositorys_docs_name_only_what_exists(self):
        found = [p for doc in check_docs.documents([]) for p in check_docs.check(REPO, doc)]
        self.assertEqual(found, [])


if __name__ == "__main__":
    unittest.main()
