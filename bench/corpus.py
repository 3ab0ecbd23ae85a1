#!/usr/bin/env python3
"""A real English corpus from the man pages Debian installs (packages `manpages`, `manpages-dev` and those of every
installed tool): sentences of 20-300 characters with roff markup removed, deduplicated, in a seeded random order.

    python3 bench/corpus.py --count 10000 > /tmp/sentences.txt

Used by the embedding benchmark (bench/embed_peer.py, `rvdb bench embed`) and the MCP text-memory test. Machine
generated pages (google-cloud-cli's ~16,000 `gcloud*` pages) are left out: they repeat one template."""
import argparse
import glob
import gzip
import os
import random
import re
import sys

ESCAPES = re.compile(r"\\f[BIRP1-4]|\\f\(..|\\\(..|\\\*.|\\&|\\[-e]|\\s[-+]?\d|\\\[[^\]]*\]")
SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


def sentences(path):
    try:
        raw = gzip.open(path).read() if path.endswith(".gz") else open(path, "rb").read()
    except OSError:
        return []
    text = " ".join(l for l in raw.decode("utf-8", "replace").splitlines() if l and l[0] not in ".'")
    text = " ".join(ESCAPES.sub("", text).split())
    return [s for s in SPLIT.split(text) if 20 <= len(s) <= 300 and s[0].isupper() and s[-1] in ".!?"
            and "\\" not in s]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    pages = sorted(p for p in glob.glob("/usr/share/man/man[1-8]/*") if not os.path.basename(p).startswith("gcloud"))
    seen = set()
    for p in pages:
        seen.update(sentences(p))
    found = sorted(seen)
    if len(found) < args.count:
        sys.exit(f"only {len(found)} sentences in /usr/share/man: install the manpages and manpages-dev packages")
    random.Random(args.seed).shuffle(found)
    sys.stdout.write("\n".join(found[: args.count]) + "\n")


if __name__ == "__main__":
    main()
