"""The HTML report, opened in a real browser: headless Chromium (Debian's `chromium`, driven by Playwright's
Python client) loads a tiny demo's report.html; it must log no console error, every image must have
loaded (naturalWidth > 0), and the results table must have a column for every method the run
aggregated. A screenshot is saved in the test's tmp_path. A copy of the page with a broken image, a
console error and a method removed must fail each check, so the checks can fail.

Outside CI the tests skip with a one-line reason when Playwright or the browser is missing; in CI
(`CLAREPS_CI=1`, set by .ci/run, which installs both) they fail instead.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("CLAREPS_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def _browser_or_skip():
    missing = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = "playwright is not installed (the docs extra: pip install -e '.[docs]')"
    else:
        if not Path(CHROMIUM).is_file():
            missing = f"no browser at {CHROMIUM} (apt-get install chromium, or set CLAREPS_CHROMIUM)"
    if missing:
        if os.environ.get("CLAREPS_CI"):
            pytest.fail(f"CI needs the browser test: {missing}")
        pytest.skip(missing)
    return sync_playwright


@pytest.fixture(scope="module")
def browser():
    sync_playwright = _browser_or_skip()
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory, tiny_data_cache):
    """A tiny demo run root with two methods and two seeds (as tests/test_report.py makes it)."""
    _browser_or_skip()  # do not build the run when the test cannot use it
    from clareps.demo import Pipeline, load_demo_config
    from clareps.paths import preset

    cfg = load_demo_config(preset("demo-tiny"), "demo", [f"data.cache_dir={tiny_data_cache}",
                                                         "methods=[ce,cadistill]", "seeds=[0,1]"])
    root = tmp_path_factory.mktemp("run")
    Pipeline(cfg, root, "demo", quiet=True).run_all()
    return root


def problems(browser, html: Path, methods: list[str], screenshot: Path) -> list[str]:
    """What is wrong with the page as a browser shows it."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    found: list[str] = []
    page.on("console", lambda msg: found.append(f"console {msg.type}: {msg.text}") if msg.type == "error" else None)
    page.on("pageerror", lambda err: found.append(f"page error: {err}"))
    page.goto(html.resolve().as_uri(), wait_until="load")
    images = page.eval_on_selector_all("img", "els => els.map(e => [e.complete, e.naturalWidth, e.alt])")
    if not images:
        found.append("no image on the page")
    found += [f"image not loaded: {alt!r}" for complete, width, alt in images if not complete or width == 0]
    heads = page.evaluate("""() => {
        const out = []; let el = document.getElementById('results');
        for (el = el && el.nextElementSibling; el && el.tagName !== 'H2'; el = el.nextElementSibling)
            el.querySelectorAll('th').forEach(th => out.push(th.textContent.trim()));
        return out; }""")
    found += [f"no results column for method {m!r}" for m in methods if m not in heads]
    page.screenshot(path=str(screenshot), full_page=True)
    page.close()
    return found


def test_report_renders_in_a_browser(browser, tiny_report, tmp_path):
    methods = json.loads((tiny_report / "results" / "results.json").read_text())["methods"]
    assert methods == ["ce", "cadistill"]
    shot = tmp_path / "report.png"
    assert problems(browser, tiny_report / "report.html", methods, shot) == []
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000


def test_the_checks_fail_on_a_broken_page(browser, tiny_report, tmp_path):
    html = (tiny_report / "report.html").read_text()
    broken = re.sub(r'src="data:image/png;base64,[A-Za-z0-9+/=]{40}', 'src="data:image/png;base64,AAAA', html,
                    count=1)
    broken = broken.replace("</body>", "<script>console.error('injected')</script></body>", 1)
    broken = broken.replace("<th>cadistill</th>", "<th>gone</th>")
    page = tmp_path / "broken.html"
    page.write_text(broken)
    found = problems(browser, page, ["ce", "cadistill"], tmp_path / "broken.png")
    assert any(p.startswith("image not loaded") for p in found), found
    assert any("console error: injected" in p for p in found), found
    assert "no results column for method 'cadistill'" in found, found
