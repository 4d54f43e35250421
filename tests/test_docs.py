"The documentation: the Quarto-free fallback site builds and its links resolve; README.md is in sync with nbs/index.ipynb."
import re
from html.parser import HTMLParser
from pathlib import Path
from neurocomp.docs import build_fallback_site, checkout_root, render_readme

ROOT = checkout_root()


def _relative_links(page: Path):
    found = []
    class Links(HTMLParser):
        def handle_starttag(self, tag, attrs):
            for key, value in attrs:
                if key in ("href", "src") and value and not re.match(r"^[a-z]+:|^#|^//", value): found.append(value.split("#")[0])
    Links().feed(page.read_text())
    return [f for f in found if f]


def test_fallback_site_pages_and_links_resolve(tmp_path):
    # a representative, fast subset: the home page, method notebooks that link to each other, and a figure notebook
    chosen = [ROOT / "nbs" / n for n in ("index.ipynb", "00_core.ipynb", "01_data.ipynb", "02_manifest.ipynb", "03_figures.ipynb")]
    chosen += sorted((ROOT / "nbs" / "figures").glob("neurocomp_*.ipynb"))
    site = build_fallback_site(out=tmp_path / "site", notebooks=chosen)
    pages = {str(p.relative_to(site)) for p in site.rglob("*.html")}
    assert {"index.html", "core.html", "data.html", "manifest.html", "figures.html", "figures/neurocomp_templates_overview.html"} <= pages
    for page in site.rglob("*.html"):
        text = page.read_text()
        assert "<nav>" in text and all(f"{p.split('/')[-1]}" in text for p in ("core.html", "data.html"))
        for link in _relative_links(page):
            target = (page.parent / link).resolve()
            # the README links every notebook; pages outside this subset are the only links allowed to dangle
            if target.suffix == ".html" and not target.exists() and page.name == "index.html": continue
            assert target.exists(), f"{page.relative_to(site)} links to missing {link}"
    assert "load_template" in (site / "data.html").read_text()
    assert not list(tmp_path.glob(".*building*"))


def test_readme_is_generated_from_index():
    assert (ROOT / "README.md").read_text() == render_readme(ROOT), "README.md is stale: run `neurocomp docs --readme`"
