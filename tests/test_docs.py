"""The documentation site as a reader gets it: every method page built, links resolving, each module's public functions
listed with their documented parameters, and — in headless Chromium — equations typeset from the MathJax the site
ships, tables rendered, no console errors. Screenshots go to the test output folder (see `_browser.output_dir`).
README.md is in sync with nbs/index.ipynb."""
import contextlib, html, importlib, inspect, io, re, time
from html.parser import HTMLParser
from pathlib import Path
import pytest
from neurocomp.docs import build_fallback_site, checkout_root, render_readme, site_notebooks
import _browser

ROOT = checkout_root()
METHOD_PAGE = "lesion_glm.html"  # a method page with long derivations


def _relative_links(page: Path):
    found = []
    class Links(HTMLParser):
        def handle_starttag(self, tag, attrs):
            for key, value in attrs:
                if key in ("href", "src") and value and not re.match(r"^[a-z]+:|^#|^//", value): found.append(re.split("[#?]", value)[0])
    Links().feed(page.read_text())
    return [f for f in found if f]


def _plain(text: str) -> str:
    "Text compared as a reader sees it: Markdown marks (backticks, emphasis) and HTML-like tags dropped, whitespace collapsed."
    return re.sub(r"\s+", " ", re.sub(r"<[A-Za-z][^<>]*>|[`*_]", "", text)).strip()


def _text(page: Path) -> str:
    "The page's visible text, plain (see `_plain`)."
    parts = []
    class Text(HTMLParser):
        def handle_data(self, data): parts.append(data)
    Text().feed(page.read_text())
    return _plain("".join(parts))


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    "Every method page, the home page and one figure page, built once; with the builder's warnings and build time."
    nbs = ROOT / "nbs"
    chosen = [p for p in site_notebooks(nbs) if p.parent == nbs] + [nbs / "figures" / "neurocomp_templates_overview.ipynb"]
    stderr, start = io.StringIO(), time.time()
    with contextlib.redirect_stderr(stderr):
        out = build_fallback_site(out=tmp_path_factory.mktemp("docs") / "site", notebooks=chosen, progress=False)
    print(f"docs: {len(chosen)} pages built in {time.time() - start:.0f} s")
    return out, stderr.getvalue()


def test_pages_and_links_resolve(site):
    site, _ = site
    pages = {str(p.relative_to(site)) for p in site.rglob("*.html") if "_static" not in p.parts}
    assert {"index.html", "core.html", "data.html", "docs.html", "cli.html", METHOD_PAGE, "figures/neurocomp_templates_overview.html"} <= pages
    for page in site.rglob("*.html"):
        if "_static" in page.parts: continue
        text = page.read_text()
        assert "<nav>" in text and "_static/mathjax/MathJax.js" in text
        assert not re.search(r"<script[^>]*src=['\"]https?:", text), f"{page.name} loads a script from the network"
        for link in _relative_links(page):
            target = (page.parent / link).resolve()
            # the README links every figure notebook; only figure pages outside this build may dangle
            if not target.exists() and target.parent.name == "figures" and page.name == "index.html": continue
            assert target.exists(), f"{page.relative_to(site)} links to missing {link}"


def test_every_cell_needed_for_show_doc_runs(site):
    _, warnings = site
    assert "failed when run for show_doc" not in warnings, warnings


def test_module_pages_list_public_functions_with_docments(site):
    "Each public function and class of each module has its entry (anchor, docstring) on its page, functions with their docments."
    from fastcore.docments import docments
    from neurocomp._modidx import d
    site, _ = site
    checked, missing = 0, []
    for module_name, symbols in d["syms"].items():
        module = importlib.import_module(module_name)
        pages = {sym.split(".")[-1]: link.split("#")[0] for sym, (link, _) in symbols.items()}
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name, None)
            if not (inspect.isfunction(obj) or inspect.isclass(obj)) or getattr(obj, "__module__", None) != module_name: continue
            page = site / pages[name].replace(d["settings"]["doc_host"] + d["settings"]["doc_baseurl"] + "/", "")
            source, text = page.read_text(), _text(page)
            if f'id="{name}"' not in source: missing.append(f"{page.name}: no entry for {name}"); continue
            doc = _plain(inspect.getdoc(obj).splitlines()[0]) if inspect.getdoc(obj) else ""
            if doc and doc not in text: missing.append(f"{page.name}: {name}'s docstring {doc!r}")
            if inspect.isfunction(obj):
                for param, comment in docments(obj).items():
                    if param != "return" and comment and _plain(comment) not in text:
                        missing.append(f"{page.name}: {name}({param}) docment {comment!r}")
            checked += 1
    assert checked > 100, checked
    assert not missing, "\n".join(missing)


def test_pages_in_chromium(site):
    "Home page, a method page and a figure page: equations typeset, tables rendered, no console error, no network request."
    site, _ = site
    with _browser.chromium() as browser:
        tab = _browser.Page(browser)
        home = tab.open(site / "index.html", wait_for="html[data-math-typeset=done]")
        cell = home.locator("td code").first.inner_text()
        assert cell.startswith("neurocomp data list | verify NAME"), cell  # GFM: `\|` in a table is a literal pipe
        tab.screenshot("docs-home.png")
        method = tab.open(site / METHOD_PAGE, wait_for="html[data-math-typeset=done]")
        typeset = method.evaluate("""() => ({
            sources: document.querySelectorAll('script[type^="math/tex"]').length,
            rendered: document.querySelectorAll('span.MathJax, .MathJax_Display').length,
            errors: document.querySelectorAll('.noError, .MathJax_Error, merror').length})""")
        assert typeset["sources"] > 50 and typeset["rendered"] >= typeset["sources"] and not typeset["errors"], typeset
        method.locator(".MathJax_Display").first.scroll_into_view_if_needed()
        tab.screenshot("docs-method-lesion_glm.png")
        assert method.locator("h3[id]").count() > 3  # the API entries (show_doc)
        tab.open(site / "figures" / "neurocomp_templates_overview.html", wait_for="html[data-math-typeset=done]")
        assert not tab.problems, "\n".join(tab.problems)


def test_readme_is_generated_from_index():
    assert (ROOT / "README.md").read_text() == render_readme(ROOT), "README.md is stale: run `neurocomp docs --readme`"
