"""Unit tests of redirects.py's config rewriting (the scenario itself runs in scripts/test)."""

import tempfile
import unittest
from pathlib import Path

import redirects


class RewriteTest(unittest.TestCase):
    """The shipped stack configs are moved to the private port range, whole."""

    def test_every_shipped_address_moves(self):
        """No shipped address survives and each one maps to its own port."""
        with tempfile.TemporaryDirectory() as d:
            stack = redirects.write_configs(Path(d), 29100)
            texts = [stack.read_text()]
            texts += [(stack.parent / "stack" / n).read_text() for n in ["gateway.yaml", "edge.yaml"]]
            for text in texts:
                for shipped in redirects.ADDRESSES:
                    self.assertNotIn(shipped, text)
            self.assertIn("127.0.0.1:29104", texts[0])  # urls
            self.assertIn("127.0.0.1:29101", texts[1])  # the gateway routes to the edge

    def test_addresses_are_distinct(self):
        """Seven roles, seven ports."""
        ports = {redirects.addr(29000, a) for a in redirects.ADDRESSES}
        self.assertEqual(len(ports), len(redirects.ADDRESSES))


if __name__ == "__main__":
    unittest.main()
