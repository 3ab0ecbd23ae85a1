#!/usr/bin/env python3
"""How long the web console's map of a large store takes: GloVe 390,000 × 50 (cosine) loaded into a real
`rvdb serve` through REST, then `POST /v1/stores/glove/map` timed at 5,000 and 20,000 points (server time as the
client sees it, 5 runs each, median), and, with --browser, the console's map page in headless Chromium timed from
navigation until the canvas has drawn every dot (`data-dots`).

    bench/.venv/bin/python bench/console_map.py --bin $CARGO_TARGET_DIR/release/rvdb --data bench/data/glove50 \
        [--browser --python tests/.venv/bin/python]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from serve_latency import Conn, start  # noqa: E402

BROWSER = r'''
import statistics, sys, time
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
base, store, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
o = webdriver.ChromeOptions()
o.binary_location = "/usr/bin/chromium"
for a in ("--headless=new", "--no-sandbox", "--window-size=1366,900", "--disable-gpu"):
    o.add_argument(a)
d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=o)
try:
    d.get(base + "/console")
    times = []
    for run in range(3):
        d.get(base + "/console#/stores")
        time.sleep(0.5)
        t0 = time.perf_counter()
        d.get(base + f"/console#/store/{store}/map?limit={limit}")
        deadline = t0 + 120
        while time.perf_counter() < deadline:
            dots = d.execute_script("const c = document.getElementById('map-canvas'); return c ? c.dataset.dots : null")
            if dots and int(dots) >= limit:
                break
            time.sleep(0.02)
        times.append(time.perf_counter() - t0)
        status = d.find_element(By.ID, "map-status").text
    print(f"{min(times):.3f} {sorted(times)[1]:.3f} | {status}")
finally:
    d.quit()
'''


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--data", default="bench/data/glove50")
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--browser", action="store_true")
    ap.add_argument("--python", default=sys.executable, help="a Python with selenium, for --browser")
    args = ap.parse_args()
    base = np.load(os.path.join(args.data, "base.npy")).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        proc, mcp_url = start(args.bin, tmp)
        try:
            url = mcp_url.rsplit("/mcp", 1)[0]
            c = Conn(mcp_url)
            c.call("POST", "/v1/stores", {"name": "glove", "dimension": int(base.shape[1]), "metric": "cosine"})
            t0 = time.perf_counter()
            for s in range(0, len(base), args.batch):
                pts = [{"id": f"w{i:06d}", "vector": base[i].tolist(), "metadata": {"bucket": i % 7, "rare": i % 100 == 0}}
                       for i in range(s, min(s + args.batch, len(base)))]
                c.call("PUT", "/v1/stores/glove/points", {"points": pts})
            print(f"loaded {len(base)} points through REST in {time.perf_counter() - t0:.1f} s", flush=True)
            for limit in (5000, 20000):
                times = []
                for run in range(5):
                    t = time.perf_counter()
                    m = json.loads(c.call("POST", "/v1/stores/glove/map", {"limit": limit, "seed": run}))
                    times.append(time.perf_counter() - t)
                r = m["projection"]["explained_variance_ratio"]
                print(f"map of {m['sampled']} of {m['total']} points: median {statistics.median(times) * 1000:.0f} ms "
                      f"(min {min(times) * 1000:.0f}); PCA explains {r[0]:.3f} + {r[1]:.3f}", flush=True)
            if args.browser:
                for limit in (5000, 20000):
                    out = subprocess.run([args.python, "-c", BROWSER, url, "glove", str(limit)], capture_output=True,
                                         text=True, timeout=900)
                    print(f"console map page, {limit} dots: min / median of 3 loads (s) {out.stdout.strip()} "
                          f"{out.stderr.strip()[-500:]}", flush=True)
        finally:
            proc.kill()


if __name__ == "__main__":
    main()
