"""Headless Chromium for the tests: Debian's `chromium` package driven by Playwright (no browser download).

Not a test module: `test_docs`, `test_browser` and `test_quick_gallery` import it. Locally a missing Chromium skips the
browser tests; under CI (`CI` set) it fails them, and `.ci/run` installs it with apt when missing.
"""
import contextlib, os, shutil
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]


def chromium_path() -> str | None:
    "The Chromium executable: `CHROMIUM`, else the first of chromium, chromium-browser, google-chrome on PATH."
    for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name): return shutil.which(name)
    return None


def require_chromium() -> str:
    path = chromium_path()
    if path is None:
        message = "headless Chromium not found (Debian/Ubuntu: apt-get install chromium; or set CHROMIUM)"
        if os.environ.get("CI"): pytest.fail(message)
        pytest.skip(message)
    try: import playwright  # noqa: F401
    except ImportError:
        message = 'playwright is not installed: pip install -e ".[dev]"'
        if os.environ.get("CI"): pytest.fail(message)
        pytest.skip(message)
    return path


def output_dir() -> Path:
    "Where the screenshots go for a person to look at: `NEUROCOMP_TEST_OUTPUT`, else `outputs/tests/` in the checkout (git-ignored)."
    folder = Path(os.environ.get("NEUROCOMP_TEST_OUTPUT") or ROOT / "outputs" / "tests")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@contextlib.contextmanager
def chromium():
    "A headless Chromium browser (closed on exit, whatever happens)."
    executable = require_chromium()
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True, timeout=60_000)
        try: yield browser
        finally: browser.close()


class Page:
    "One tab that records what a person would see go wrong: console errors, uncaught exceptions, failed requests."
    def __init__(self, browser, width: int = 1280, height: int = 900):
        self.page = browser.new_page(viewport={"width": width, "height": height})
        self.problems = []
        self.page.on("console", lambda m: self.problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.problems.append(f"uncaught: {e}"))
        self.page.on("requestfailed", lambda r: self.problems.append(f"request failed: {r.url} ({r.failure})"))
        # the pages must work offline: any request that leaves the machine is a failure
        self.page.route(lambda url: not url.startswith(("file:", "data:", "blob:", "about:", "http://127.0.0.1")),
                        lambda route: (self.problems.append(f"network request: {route.request.url}"), route.abort()))

    def open(self, path_or_url, wait_for: str | None = None, timeout: float = 60_000):
        url = path_or_url if "://" in str(path_or_url) else Path(path_or_url).resolve().as_uri()
        self.page.goto(url, wait_until="load", timeout=timeout)
        if wait_for: self.page.wait_for_selector(wait_for, state="attached", timeout=timeout)
        return self.page

    def screenshot(self, name: str, full_page: bool = False) -> Path:
        path = output_dir() / name
        self.page.screenshot(path=str(path), full_page=full_page)
        return path


def check_gallery(gallery: Path, screenshot_prefix: str = "gallery") -> dict:
    "Open a `neurocomp reproduce` gallery, its first interactive page and its first executed notebook in Chromium: they load offline, without console errors, and the plot is drawn. Screenshots the first two."
    gallery = Path(gallery)
    with chromium() as browser:
        tab = Page(browser)
        page = tab.open(gallery / "index.html")
        images = page.evaluate("() => Array.from(document.images).map(i => [i.getAttribute('src'), i.complete && i.naturalWidth > 0])")
        assert images and all(ok for _, ok in images), f"images not drawn: {[src for src, ok in images if not ok]}"
        tab.screenshot(f"{screenshot_prefix}.png")
        links = page.evaluate("() => Array.from(document.querySelectorAll('p')).filter(p => p.textContent.startsWith('interactive:'))"
                              ".map(p => p.querySelector('a').getAttribute('href'))")
        assert links, "the gallery links no interactive page"
        executed = page.evaluate("() => Array.from(document.querySelectorAll('a')).filter(a => a.textContent === 'HTML').map(a => a.getAttribute('href'))")
        assert executed, "the gallery links no executed notebook rendered as HTML"
        interactive = tab.open(gallery / links[0], wait_for=".plotly .main-svg")
        drawn = interactive.evaluate("() => ({svgs: document.querySelectorAll('.plotly .main-svg').length,"
                                     " traces: document.querySelectorAll('.plotly .trace, .plotly .hm, .plotly image').length})")
        assert drawn["svgs"] >= 1 and drawn["traces"] >= 1, drawn
        tab.screenshot(f"{screenshot_prefix}-interactive.png")
        tab.open(gallery / executed[0], wait_for="html[data-math-typeset=done]")  # offline too, its MathJax from the gallery
        assert not tab.problems, "\n".join(tab.problems)
    return {"images": len(images), "interactive": links, **drawn}
