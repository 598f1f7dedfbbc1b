"""Helpers of loadtest/compare's `cache_mix` profile: origin counts, the hit table, the variant check.

Three commands, each called by `compare` (standard library only):

- `origin-counts` reads lines of the upstream nginx's access log (combined format) on stdin and
  prints, tab-separated, the requests, the 304s among them, and the requests per object class
  (`/mix/CLASS/N`, in the order of `CLASSES`).
- `table PROFILE HITS_TSV` prints the markdown table of hit ratios and origin requests from the
  rows `compare` recorded (one per measured run: profile, server, client requests completed, the
  six origin counts, responses with a cache verdict header, hits among them, and the requests
  sent per class), summed over rounds.
- `check-variants URL ROOT OBJECTS` asks the contender at URL for `/mix/vary/1..OBJECTS` with each
  of `ENCODINGS`, twice (the second answer is normally from the cache), and checks that each
  answer is one the client can read: gzip only when the client accepts gzip, and the body, once
  decoded, the file under ROOT. Prints `ok` or what was wrong; exits 1 when something was.
"""

from __future__ import annotations

import gzip
import http.client
import re
import sys
import urllib.parse
from collections.abc import Iterable
from pathlib import Path

# The object classes of the origin, in the order of the counts and the table's columns.
CLASSES = ("vary", "reval", "swr", "long")
# The Accept-Encoding values clients send (None: no header); lib/wrk_cache_mix.lua sends the same.
ENCODINGS = ("gzip, deflate, br, zstd", "gzip, deflate, br", "gzip", None)

# `"GET /path HTTP/1.1" 200 ` in a combined-format line.
_REQUEST = re.compile(r'"[A-Z]+ (\S+) [^"]*" (\d{3}) ')


def origin_counts(lines: Iterable[str]) -> list[int]:
    """Count the origin's requests: [total, 304s, then one count per class of CLASSES].

    Lines that are not requests (blank, or not in the combined format) are not counted; a path
    outside `/mix/CLASS/` counts in the total only.
    """
    total = not_modified = 0
    per_class = dict.fromkeys(CLASSES, 0)
    for line in lines:
        m = _REQUEST.search(line)
        if m is None:
            continue
        total += 1
        if m.group(2) == "304":
            not_modified += 1
        parts = urllib.parse.urlsplit(m.group(1)).path.split("/")
        if len(parts) > 3 and parts[1] == "mix" and parts[2] in per_class:
            per_class[parts[2]] += 1
    return [total, not_modified, *(per_class[c] for c in CLASSES)]


def _pct(part: float, whole: float) -> str:
    return f"{100.0 * part / whole:.2f}%" if whole > 0 else "—"


def hit_table(profile: str, rows: Iterable[list[str]]) -> str:
    """Render `profile`'s rows as a markdown table, one line per server in first-seen order.

    Each row is [profile, server, requests completed, origin total, 304s, then the origin
    requests per class of CLASSES, responses with a verdict header, hits among them, then the
    requests sent per class]; empty fields count as 0. Hit ratios are out of the requests sent
    (the completed ones and the few in flight when the run ended, which reached the origin
    too). Empty string when the profile has no rows.
    """
    k = len(CLASSES)
    width = 5 + 2 * k
    totals: dict[str, list[int]] = {}
    for f in rows:
        if len(f) < 2 + width or f[0] != profile:
            continue
        row = totals.setdefault(f[1], [0] * width)
        for i, v in enumerate(f[2 : 2 + width]):
            row[i] += int(v or 0)
    if not totals:
        return ""
    out = [
        "### Hit ratio and origin requests (measured runs, summed over rounds)",
        "",
        "| Server | Requests sent | Origin requests | of which 304 | Hit ratio (origin) "
        "| Hit ratio (cache header) | " + " | ".join(f"{c}: origin (hit ratio)" for c in CLASSES) + " |",
        "|---|" + "---:|" * (5 + k),
    ]
    for server, r in totals.items():
        o, o304, by_class, (seen, hits), sent_by_class = r[1], r[2], r[3 : 3 + k], r[3 + k : 5 + k], r[5 + k :]
        sent = sum(sent_by_class)
        header = f"{_pct(hits, seen)} of {seen}" if seen > 0 else "no header"
        classes = " | ".join(f"{c} ({_pct(n - c, n)})" for c, n in zip(by_class, sent_by_class, strict=True))
        out.append(f"| {server} | {sent} | {o} | {o304} | {_pct(sent - o, sent)} | {header} | {classes} |")
    return "\n".join(out) + "\n"


def _accepts_gzip(encoding: str | None) -> bool:
    return encoding is not None and any(t.split(";")[0].strip() == "gzip" for t in encoding.split(","))


def check_variant(body: bytes, content_encoding: str | None, encoding: str | None, want: bytes) -> str | None:
    """Say what is wrong with an answer to a client sending Accept-Encoding `encoding` (None: nothing).

    `want` is the identity body. A body in a coding the client did not accept is wrong; so is one
    that does not decode to `want`.
    """
    coding = (content_encoding or "identity").strip().lower()
    if coding == "identity":
        decoded = body
    elif coding == "gzip":
        if not _accepts_gzip(encoding):
            return f"gzip to a client sending Accept-Encoding: {encoding or '(none)'}"
        try:
            decoded = gzip.decompress(body)
        except (OSError, EOFError) as e:
            return f"gzip body does not decode ({e})"
    else:
        return f"Content-Encoding {coding} to a client sending Accept-Encoding: {encoding or '(none)'}"
    if decoded != want:
        return f"{coding} body of {len(decoded)} bytes is not the object ({len(want)} bytes)"
    return None


def check_variants(url: str, root: Path, objects: int, timeout: float = 5.0) -> list[str]:
    """Ask `url` for the first `objects` vary objects with every encoding, twice; the problems."""
    parsed = urllib.parse.urlsplit(url)
    problems = []
    conn = http.client.HTTPConnection(parsed.hostname or "127.0.0.1", parsed.port or 80, timeout=timeout)
    try:
        for i in range(1, objects + 1):
            path = f"/mix/vary/{i}"
            want = (root / "mix" / "vary" / str(i)).read_bytes()
            for _ in range(2):
                for encoding in ENCODINGS:
                    headers = {"Accept-Encoding": encoding} if encoding else {}
                    conn.request("GET", path, headers=headers)
                    resp = conn.getresponse()
                    body = resp.read()
                    if resp.status != 200:
                        problems.append(f"{path}: status {resp.status}")
                        continue
                    wrong = check_variant(body, resp.getheader("Content-Encoding"), encoding, want)
                    if wrong:
                        problems.append(f"{path}: {wrong}")
    except (OSError, http.client.HTTPException) as e:
        problems.append(f"request failed: {e}")
    finally:
        conn.close()
    return problems


def main(argv: list[str]) -> int:
    """Run one command (see the module's doc); 2 on a usage error."""
    if argv[:1] == ["origin-counts"] and len(argv) == 1:
        print("\t".join(str(n) for n in origin_counts(sys.stdin)))
        return 0
    if argv[:1] == ["table"] and len(argv) == 3:
        with open(argv[2], encoding="utf-8") as f:
            sys.stdout.write(hit_table(argv[1], (line.rstrip("\n").split("\t") for line in f)))
        return 0
    if argv[:1] == ["check-variants"] and len(argv) == 4 and argv[3].isdigit():
        problems = check_variants(argv[1], Path(argv[2]), int(argv[3]))
        print("; ".join(dict.fromkeys(problems)) if problems else "ok")
        return 1 if problems else 0
    usage = "usage: cache_mix.py origin-counts | table PROFILE HITS_TSV | check-variants URL ROOT OBJECTS"
    print(usage, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
