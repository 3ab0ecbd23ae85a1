"""The web console (`/console`) in a real browser: headless Chromium from Debian's packages, driven by Selenium
through Debian's chromedriver, against a real `rvdb serve`.

It creates a store through the form, inserts points through REST, browses them (paging, a metadata filter),
opens a point, searches by a point's vector and by a vector, draws the 2-D map (every dot, the search hits
highlighted), backs up and restores through the UI (MCP progress), looks at the cluster and the live charts, drops
a store through the confirmation that names it, and signs in against a server that wants an API key. Every page
is screenshotted into $RVDB_ARTIFACTS (default tests/mcp/artifacts/console/, git-ignored), and the browser's log
must hold no error (a CSP violation or a JavaScript exception is one).

Skipped, saying why, where Chromium or chromedriver is missing, unless $CI is set: then it fails.
"""
import json
import math
import os
import pathlib
import random
import shutil
import time

import pytest
import requests

CHROMIUM = os.environ.get("RVDB_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = os.environ.get("RVDB_CHROMEDRIVER") or shutil.which("chromedriver") or "/usr/bin/chromedriver"
ARTIFACTS = pathlib.Path(os.environ.get("RVDB_ARTIFACTS")
                         or pathlib.Path(__file__).resolve().parent / "artifacts" / "console")

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select, WebDriverWait
    SELENIUM = None
except ImportError as e:  # pragma: no cover - reported below
    SELENIUM = f"the Python package selenium is not installed ({e})"

MISSING = [m for m in (
    SELENIUM,
    None if os.path.exists(CHROMIUM) else f"no Chromium at {CHROMIUM} (apt-get install chromium)",
    None if os.path.exists(CHROMEDRIVER) else f"no chromedriver at {CHROMEDRIVER} (apt-get install chromium-driver)",
) if m]

if MISSING and not os.environ.get("CI"):
    pytest.skip("web console browser tests skipped: " + "; ".join(MISSING), allow_module_level=True)

COLOURS = ["red", "green", "blue"]
DIM = 8
N = 300


@pytest.fixture
def browser():
    if MISSING:
        pytest.fail("CI is set but the browser tests cannot run: " + "; ".join(MISSING))
    opts = Options()
    opts.binary_location = CHROMIUM
    for a in ("--no-sandbox", "--headless=new", "--window-size=1366,900", "--disable-gpu",
              "--disable-dev-shm-usage", "--no-first-run", "--disable-extensions", "--force-device-scale-factor=1"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(30)
    driver.logs = []
    yield driver
    driver.quit()


def base_url(server):
    return server.mcp_url.rsplit("/mcp", 1)[0]


def wait(driver, cond, timeout=20, what=""):
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: cond(d))
    except Exception:
        alert = driver.execute_script("const a = document.getElementById('alert'); return a && !a.hidden ? a.innerText : ''")
        shot(driver, f"failed-{what or 'wait'}.png")
        raise AssertionError(f"timed out waiting for {what or cond}; alert: {alert!r}")


def el(driver, css):
    return driver.find_element(By.CSS_SELECTOR, css)


def els(driver, css):
    return driver.find_elements(By.CSS_SELECTOR, css)


def visible(driver, css):
    found = els(driver, css)
    return found[0] if found and found[0].is_displayed() else None


def text(driver, css):
    found = els(driver, css)
    return found[0].text if found else ""


def shot(driver, name):
    """A screenshot of the whole page (beyond the 1366 × 900 window when it is longer)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return Math.max(document.documentElement.scrollHeight, window.innerHeight)")
    metrics = {"width": 1366, "height": min(int(height), 4000), "deviceScaleFactor": 1, "mobile": False}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    try:
        import base64
        data = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
        (ARTIFACTS / name).write_bytes(base64.b64decode(data["data"]))
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def collect_logs(driver):
    driver.logs += driver.get_log("browser")
    return driver.logs


def errors(driver, allowed=()):
    """SEVERE entries of the browser's log (exceptions, CSP violations, failed loads) but those `allowed`."""
    return [e for e in collect_logs(driver)
            if e["level"] == "SEVERE" and not any(a in e["message"] for a in allowed)]


def go(driver, base, route):
    driver.get(f"{base}/console#{route}")


def click(driver, css):
    """Scrolls the element to the middle of the window (clear of the sticky top bar) and clicks it."""
    e = el(driver, css)
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", e)
    e.click()
    return e


def set_value(driver, css, value):
    e = el(driver, css)
    e.clear()
    if value:
        e.send_keys(value)
    return e


def rows(driver, table):
    return els(driver, f"{table} tbody tr[data-id]")


def row_ids(driver, table):
    return driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0] + ' tbody tr[data-id]')).map(r => r.dataset.id)", table)


def colour_points():
    rng = random.Random(21)
    centres = {c: [rng.uniform(-1, 1) for _ in range(DIM)] for c in COLOURS}
    pts = []
    for i in range(N):
        c = COLOURS[i % 3]
        v = [x + rng.gauss(0, 0.18) for x in centres[c]]
        pts.append({"id": f"pt-{i:03d}", "vector": v, "metadata": {"colour": c, "n": i}})
    return pts


def test_console_end_to_end(browser, server):
    d = browser
    base = base_url(server)
    http = requests.Session()

    # -- stores: empty at first -------------------------------------------------------------------------------
    go(d, base, "/stores")
    wait(d, lambda d: visible(d, ".hero-empty") and "No stores yet" in text(d, "#view"), what="empty store list")
    assert els(d, "#stores-table"), "the table is there (empty) for tests and screen readers"
    shot(d, "01-stores-empty.png")

    # -- create a store through the form, with options of every kind ------------------------------------------
    click(d, "#new-store")
    wait(d, lambda d: visible(d, "#create-store-form"), what="create form")
    set_value(d, "#cs-name", "colours")
    set_value(d, "#cs-dimension", str(DIM))
    Select(el(d, "#cs-metric")).select_by_value("cosine")
    Select(el(d, "#cs-index")).select_by_value("hnsw")
    set_value(d, "#cs-m", "12")
    set_value(d, "#cs-ef-construction", "100")
    set_value(d, "#cs-ef-search", "48")
    set_value(d, "#cs-shards", "2")
    Select(el(d, "#cs-stemmer")).select_by_value("english")
    preview = json.loads(text(d, "#cs-preview").split("\n", 1)[1])
    assert preview == {"name": "colours", "dimension": DIM, "metric": "cosine", "index": "hnsw", "m": 12,
                       "ef_construction": 100, "ef_search": 48, "shards": 2,
                       "text_index": {"stemmer": "english"}}, preview
    shot(d, "02-create-store.png")
    click(d, "#cs-submit")
    wait(d, lambda d: d.current_url.endswith("#/store/colours") and visible(d, "#store-overview .cards"),
         what="store overview after create")
    assert "created" in text(d, "#status")
    desc = http.get(f"{base}/v1/stores/colours", timeout=10).json()
    assert (desc["dimension"], desc["metric"], desc["index"], desc["shards"], desc["text_index"]["stemmer"]) == \
        (DIM, "cosine", "hnsw", 2, "english"), desc

    # -- insert points through REST ---------------------------------------------------------------------------
    pts = colour_points()
    r = http.put(f"{base}/v1/stores/colours/points", json={"points": pts}, timeout=60)
    assert r.status_code == 200 and r.json()["inserted"] == N, r.text
    d.refresh()
    wait(d, lambda d: "300 points" in text(d, "#page-sub"), what="overview shows 300 points")
    shot(d, "03-store-overview.png")

    go(d, base, "/stores")
    wait(d, lambda d: els(d, '#stores-table tr[data-store="colours"] td[data-points="300"]'), what="store row, 300 points")
    shot(d, "04-stores.png")

    # -- point browser: paging --------------------------------------------------------------------------------
    click(d, '#stores-table tr[data-store="colours"] a[href$="/points"]')
    wait(d, lambda d: len(rows(d, "#points-table")) == 50 and el(d, "#points-count").get_attribute("data-count") == "300",
         what="first page of points")
    assert row_ids(d, "#points-table") == [f"pt-{i:03d}" for i in range(50)], "in id order"
    assert el(d, "#points-prev").get_attribute("disabled") is not None
    shot(d, "05-points.png")
    click(d, "#points-next")
    wait(d, lambda d: el(d, "#points-page").get_attribute("data-page") == "2"
         and row_ids(d, "#points-table")[:1] == ["pt-050"], what="second page")
    assert row_ids(d, "#points-table") == [f"pt-{i:03d}" for i in range(50, 100)]
    shot(d, "06-points-page2.png")
    click(d, "#points-prev")
    wait(d, lambda d: row_ids(d, "#points-table")[:1] == ["pt-000"], what="back to the first page")

    # -- a metadata filter, built with the helper -------------------------------------------------------------
    set_value(d, "#filter-key", "colour")
    set_value(d, "#filter-value", "red")
    click(d, "#filter-add")
    assert json.loads(el(d, "#points-filter").get_attribute("value")) == \
        {"must": [{"key": "colour", "match": {"value": "red"}}]}
    click(d, "#points-apply")
    wait(d, lambda d: el(d, "#points-count").get_attribute("data-count") == "100", what="filtered count")
    wait(d, lambda d: row_ids(d, "#points-table")[:1] == ["pt-000"] and len(rows(d, "#points-table")) == 50,
         what="filtered rows")
    ids = row_ids(d, "#points-table")
    assert all(int(i[3:]) % 3 == 0 for i in ids), ids
    cells = d.execute_script("return Array.from(document.querySelectorAll('#points-table tbody tr')).map(r => r.innerText)")
    assert all("red" in c and "green" not in c and "blue" not in c for c in cells), cells
    shot(d, "07-points-filtered.png")
    click(d, "#points-next")
    wait(d, lambda d: row_ids(d, "#points-table")[:1] == ["pt-150"], what="second filtered page")
    assert el(d, "#points-next").get_attribute("disabled") is not None, "100 matches: two pages of 50"

    # -- a point's detail, then "search similar" (the point's own vector) -------------------------------------
    click(d, '#points-table button.point-link[data-id="pt-150"]')
    wait(d, lambda d: el(d, "#point-dialog").get_attribute("open") is not None and text(d, "#point-id") == "pt-150",
         what="point dialog")
    meta = json.loads(el(d, "#point-metadata").get_attribute("textContent"))
    assert meta == {"colour": "red", "n": 150}
    vec = json.loads(el(d, "#point-vector").get_attribute("textContent"))
    assert len(vec) == DIM and all(abs(a - b) < 1e-5 for a, b in zip(vec, pts[150]["vector"]))
    shot(d, "08-point-detail.png")
    click(d, "#point-similar")
    wait(d, lambda d: row_ids(d, "#search-results")[:1] == ["pt-150"], what="search similar results")
    first = float(el(d, "#search-results tbody tr td.distance").get_attribute("data-distance"))
    assert abs(first) < 1e-4, first
    assert len(rows(d, "#search-results")) == 10

    # -- search by another id's vector through the form, with a filter ----------------------------------------
    set_value(d, "#search-id", "pt-031")
    set_value(d, "#search-filter", '{"must": [{"key": "colour", "match": {"value": "green"}}]}')
    set_value(d, "#search-k", "8")
    click(d, "#search-submit")
    wait(d, lambda d: row_ids(d, "#search-results")[:1] == ["pt-031"] and len(rows(d, "#search-results")) == 8,
         what="search by id")
    assert abs(float(el(d, "#search-results tbody tr td.distance").get_attribute("data-distance"))) < 1e-4
    hits = row_ids(d, "#search-results")
    assert all(int(i[3:]) % 3 == 1 for i in hits), ("only green points", hits)
    dists = [float(c.get_attribute("data-distance")) for c in els(d, "#search-results td.distance")]
    assert dists == sorted(dists)
    shot(d, "09-search.png")

    # -- the map: every dot, the search hits and the query highlighted ----------------------------------------
    click(d, "#search-on-map")
    t0 = time.monotonic()
    wait(d, lambda d: el(d, "#map-canvas").get_attribute("data-dots") == str(N), timeout=30, what="map dots")
    map_wall = time.monotonic() - t0
    status = text(d, "#map-status")
    assert status.startswith(f"{N} of {N} points (PCA, ") and "% of variance) in " in status, status
    map_ms = int(el(d, "#map-canvas").get_attribute("data-ms"))
    assert el(d, "#map-hits-status").get_attribute("data-hits") == "8"
    assert Select(el(d, "#map-color")).first_selected_option.get_attribute("value") == "colour", \
        "coloured by the categorical key"
    legend = text(d, "#map-legend")
    assert all(c in legend for c in COLOURS), legend
    shot(d, "10-map.png")
    # hover a dot: the tooltip shows its id and metadata; a click opens it; Escape closes it
    canvas = el(d, "#map-canvas")

    def hover_first_dot(d):
        # where a dot is (the canvas says), re-read each time: a resize redraws the map
        fx, fy = (float(v) for v in canvas.get_attribute("data-first-dot").split(","))
        w, hgt = canvas.size["width"], canvas.size["height"]
        ActionChains(d).move_to_element_with_offset(canvas, int(fx - w / 2), int(fy - hgt / 2)).perform()
        time.sleep(0.2)
        return visible(d, "#map-tooltip") and "colour" in text(d, "#map-tooltip")
    wait(d, hover_first_dot, what="map tooltip")
    hovered = text(d, "#map-tooltip .tt-id")
    assert hovered.startswith("pt-"), hovered
    shot(d, "11-map-hover.png")
    # the screenshot resizes the viewport for a moment, which redraws the map: point at the dot again
    wait(d, hover_first_dot, what="map tooltip after the screenshot")
    hovered = text(d, "#map-tooltip .tt-id")
    assert hovered.startswith("pt-"), hovered
    ActionChains(d).click().perform()
    wait(d, lambda d: el(d, "#point-dialog").get_attribute("open") is not None and text(d, "#point-id") == hovered,
         what="point dialog from the map")
    ActionChains(d).send_keys(Keys.ESCAPE).perform()
    wait(d, lambda d: el(d, "#point-dialog").get_attribute("open") is None, what="Escape closes the dialog")

    # -- backup through the UI, with MCP progress -------------------------------------------------------------
    go(d, base, "/backups")
    wait(d, lambda d: visible(d, "#backup-form"), what="backups page")
    Select(el(d, "#backup-store")).select_by_value("colours")
    set_value(d, "#backup-name", "colours-nightly")
    click(d, "#backup-submit")
    wait(d, lambda d: el(d, "#backup-job").get_attribute("data-state") in ("done", "error"), timeout=60, what="backup")
    assert el(d, "#backup-job").get_attribute("data-state") == "done", text(d, "#backup-job")
    assert "300 points" in text(d, "#backup-progress-text")
    assert d.execute_script("const p = document.getElementById('backup-progress'); return p.value === p.max")
    wait(d, lambda d: els(d, '#backups-table tr[data-backup="colours-nightly"] td[data-points="300"]'),
         what="the backup in the list")
    backup_progress_events = int(el(d, "#backup-job").get_attribute("data-progress-events") or 0)
    shot(d, "12-backups.png")

    # -- restore into a new store through the UI --------------------------------------------------------------
    click(d, '#backups-table button[data-action="restore"][data-backup="colours-nightly"]')
    wait(d, lambda d: el(d, "#restore-dialog").get_attribute("open") is not None, what="restore dialog")
    assert el(d, "#restore-store").get_attribute("value") == "colours-restored", "a free name is proposed"
    click(d, "#restore-submit")
    wait(d, lambda d: el(d, "#restore-job").get_attribute("data-state") in ("done", "error"), timeout=60, what="restore")
    assert el(d, "#restore-job").get_attribute("data-state") == "done", text(d, "#restore-job")
    assert "300 points restored into store “colours-restored”" in text(d, "#restore-progress-text")
    restore_progress_events = int(el(d, "#restore-job").get_attribute("data-progress-events") or 0)
    assert restore_progress_events >= 1, "the restore reported progress"
    shot(d, "13-restore.png")
    click(d, "#restore-cancel")
    go(d, base, "/stores")
    wait(d, lambda d: els(d, '#stores-table tr[data-store="colours-restored"] td[data-points="300"]'),
         what="the restored store with 300 points")
    shot(d, "14-stores-restored.png")

    # -- cluster ----------------------------------------------------------------------------------------------
    go(d, base, "/cluster")
    wait(d, lambda d: els(d, '#cluster-nodes tr[data-state="up"]'), what="a node up")
    assert "up" in text(d, '#cluster-nodes tr[data-state="up"] .badge')
    assert "No shard transfers in progress" in text(d, "#cluster-transfers")
    grid = els(d, '#cluster-stores [data-store="colours"] td.replica.state-up')
    assert len(grid) == 2, "2 shards × 1 replica"
    shot(d, "15-cluster.png")

    # -- live charts ------------------------------------------------------------------------------------------
    go(d, base, "/metrics")
    wait(d, lambda d: len(els(d, "#ops-table tbody tr")) > 1, timeout=20, what="operations table")
    time.sleep(4.5)  # a few more samples on the charts
    assert "all:" in text(d, "#chart-rate-legend") and "p95:" in text(d, "#chart-latency-legend")
    assert "colours" in text(d, "#chart-points-legend")
    ops = text(d, "#ops-table")
    assert "/v1/stores" in ops, ops
    shot(d, "16-metrics.png")

    # -- drop a store: the confirmation names it, and wants its name typed ------------------------------------
    go(d, base, "/stores")
    wait(d, lambda d: els(d, '#stores-table button[data-action="drop"][data-store="colours-restored"]'), what="drop button")
    click(d, '#stores-table button[data-action="drop"][data-store="colours-restored"]')
    wait(d, lambda d: el(d, "#confirm-dialog").get_attribute("open") is not None, what="confirm dialog")
    assert "colours-restored" in text(d, "#confirm-title") and "colours-restored" in text(d, "#confirm-message")
    assert el(d, "#confirm-ok").get_attribute("disabled") is not None
    set_value(d, "#confirm-input", "colours-restore")
    assert el(d, "#confirm-ok").get_attribute("disabled") is not None, "a near miss does not do"
    el(d, "#confirm-input").send_keys("d")
    assert el(d, "#confirm-ok").get_attribute("disabled") is None
    shot(d, "17-drop-confirm.png")
    click(d, "#confirm-ok")
    wait(d, lambda d: not els(d, '#stores-table tr[data-store="colours-restored"]')
         and els(d, '#stores-table tr[data-store="colours"]'), what="the store dropped")
    assert http.get(f"{base}/v1/stores/colours-restored", timeout=10).status_code == 404

    # -- an error is shown, not swallowed ---------------------------------------------------------------------
    go(d, base, "/store/nope/points")
    wait(d, lambda d: visible(d, "#alert") and "nope" in text(d, "#alert-message"), what="error for an unknown store")
    assert visible(d, "#page-error"), "never a blank page"
    shot(d, "18-error.png")

    bad = errors(d, allowed=("/v1/stores/nope",))
    assert not bad, bad
    print(f"\nconsole map of {N} points: drawn {map_ms} ms after the request ({map_wall:.2f} s from the click); "
          f"progress notifications: backup {backup_progress_events}, restore {restore_progress_events}")


def test_console_api_key(browser, make_server):
    key, read_only = "console-key-0123", "console-readonly-4567"
    s = make_server("keyed", env={"RVDB_API_KEY": key, "RVDB_READ_ONLY_API_KEY": read_only})
    base = base_url(s)
    r = requests.post(f"{base}/v1/stores", json={"name": "guarded", "dimension": 3},
                      headers={"Authorization": f"Bearer {key}"}, timeout=10)
    assert r.status_code == 201, r.text
    d = browser

    # no key: the sign-in panel, with the server's message, not a blank page
    go(d, base, "/stores")
    wait(d, lambda d: visible(d, "#signin"), what="sign-in panel")
    assert text(d, "#signin-title") == "API key required"
    assert text(d, "#signin-server-message"), "the server's own message is shown"
    assert not visible(d, "#view")
    assert el(d, "label[for='signin-key']").text == "API key"
    assert el(d, "#signin-key").get_attribute("type") == "password"
    shot(d, "20-signin-required.png")

    # a wrong key: refused, said so
    set_value(d, "#signin-key", "not-the-key-999")
    click(d, "#signin-submit")
    wait(d, lambda d: text(d, "#signin-title") == "The API key was refused", what="refused")
    assert visible(d, "#signin-server-message")
    shot(d, "21-signin-refused.png")

    # the right key: the stores; kept in sessionStorage only
    set_value(d, "#signin-key", key)
    click(d, "#signin-submit")
    wait(d, lambda d: els(d, '#stores-table tr[data-store="guarded"]'), what="stores after sign-in")
    assert visible(d, "#signout") and not visible(d, "#signin")
    assert d.execute_script("return Object.values(sessionStorage)") == [key]
    assert d.execute_script("return Object.keys(localStorage).length") == 0
    assert key not in d.get_cookies().__repr__()
    shot(d, "22-signed-in.png")

    # the cluster and metrics pages work with the key (/metrics wants it too)
    go(d, base, "/metrics")
    wait(d, lambda d: len(els(d, "#ops-table tbody tr")) >= 1 and "Waiting" not in text(d, "#ops-table"),
         timeout=20, what="metrics with a key")

    # sign out: the key is forgotten, and the next page asks again
    click(d, "#signout")
    wait(d, lambda d: visible(d, "#signin") and text(d, "#signin-title") == "API key required", what="signed out")
    assert d.execute_script("return sessionStorage.length") == 0

    # a read-only key browses, and a write shows the server's refusal
    set_value(d, "#signin-key", read_only)
    click(d, "#signin-submit")
    wait(d, lambda d: visible(d, "#chart-rate") and not visible(d, "#signin"), what="the page signed out of, again")
    go(d, base, "/stores")
    wait(d, lambda d: els(d, '#stores-table tr[data-store="guarded"]'), what="stores with a read-only key")
    go(d, base, "/stores/new")
    wait(d, lambda d: visible(d, "#create-store-form"), what="create form")
    set_value(d, "#cs-name", "nope")
    set_value(d, "#cs-dimension", "3")
    click(d, "#cs-submit")
    wait(d, lambda d: visible(d, "#alert") and "Not allowed" in text(d, "#alert"), what="403 shown")
    assert "read-only" in text(d, "#alert-message").lower() or "permission" in text(d, "#alert-message").lower(), \
        text(d, "#alert-message")
    shot(d, "23-read-only-refused.png")

    # expected: the 401s and the 403 of the requests above are logged by Chromium as failed loads
    bad = errors(d, allowed=("401 (Unauthorized)", "403 (Forbidden)"))
    assert not bad, bad
