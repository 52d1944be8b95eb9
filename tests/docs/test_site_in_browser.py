"""The docs site and the DVC plots, opened from disk in headless Chromium with the network
blocked: no console error, every internal link and image resolves, the DAG is drawn as an
SVG (mermaid served by the site), notebook pages show their figures, the plots draw."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlparse

import pytest

from tests.support.offline import PageReport, offline_page

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site as `mkdocs build --strict` makes it from the committed pages."""
    out = tmp_path_factory.mktemp("site") / "site"
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet",
                             "--site-dir", str(out)], cwd=ROOT, capture_output=True,
                            text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
                            check=False)
    assert result.returncode == 0, result.stderr[-4000:]
    return out


def _pages(site: Path) -> list[Path]:
    return sorted(p for p in site.rglob("*.html") if p.name != "404.html"
                  and "assets" not in p.relative_to(site).parts)


def _check_page(browser, site: Path, page_path: Path) -> tuple[PageReport, object, object]:
    report = PageReport(page_path.as_uri())
    page = offline_page(browser, report)
    page.goto(report.url, wait_until="load")
    page.wait_for_timeout(300)
    for href in page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)"):
        target, _ = urldefrag(href)
        if not target.startswith("file://"):
            continue
        path = Path(unquote(urlparse(target).path))
        if not path.exists():
            report.failed.append(f"link to missing {path.relative_to(site)}")
        elif path.is_dir():
            report.failed.append(f"link to a folder (no index page from disk): {path}")
    broken = page.eval_on_selector_all(
        "img", "els => els.filter(e => !(e.complete && e.naturalWidth > 0)).map(e => e.src)")
    report.failed += [f"image {src}" for src in broken]
    return report, page, page.context


def test_every_page_works_offline_from_disk(browser, site):
    pages = _pages(site)
    assert len(pages) >= 15, [p.name for p in pages]
    problems = {}
    for path in pages:
        report, _, context = _check_page(browser, site, path)
        context.close()
        if report.problems:
            problems[str(path.relative_to(site))] = report.problems
    assert not problems, problems


def test_the_dag_is_an_svg_drawn_by_the_local_mermaid(browser, site):
    report, page, context = _check_page(browser, site, site / "generated" / "pipeline.html")
    try:
        page.wait_for_selector(".mermaid svg", timeout=20_000)
        svg = page.inner_html(".mermaid svg")
        assert "prepare" in svg and "select" in svg
        assert not report.problems, report.problems
    finally:
        context.close()


def test_notebook_pages_show_their_figures(browser, site):
    for name in ("01_prepare", "02_train"):
        report, page, context = _check_page(browser, site, site / "generated" / "notebooks"
                                            / f"{name}.html")
        try:
            figures = page.eval_on_selector_all(
                "img[src^='data:image/png']", "els => els.filter(e => e.naturalWidth > 100)"
                ".length")
            assert figures >= 1, f"{name}: no figure in the executed notebook"
            assert not report.problems, report.problems
        finally:
            context.close()
    train = (site / "generated" / "notebooks" / "02_train.html").read_text()
    assert train.count("data:image/png") >= 2  # skill by horizon and calibration


def test_vendored_javascript_matches_its_checksums():
    for folder in (ROOT / "docs" / "assets" / "vendor",
                   ROOT / "src" / "starry_guide" / "serve" / "web" / "static" / "swagger-ui"):
        sums = (folder / "SHA256SUMS").read_text().split("\n")
        for line in filter(None, sums):
            digest, name = line.split()
            assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest, name


def test_dvc_plots_draw_offline_one_line_per_candidate(browser, tmp_path):
    project = tmp_path / "project"
    for name in (".dvc/config", ".dvc/plots", "dvc.yaml", "params.yaml", "reports/plots",
                 "docs/assets/vendor"):
        source, target = ROOT / name, project / name
        target.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if source.is_dir() else shutil.copyfile)(source, target)
    result = subprocess.run([str(BIN / "dvc"), "plots", "show"], cwd=project,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    index = project / "dvc_plots" / "index.html"
    assert "cdn." not in index.read_text()
    report = PageReport(index.as_uri())
    page = offline_page(browser, report)
    try:
        page.goto(report.url, wait_until="load")
        page.wait_for_function("document.querySelectorAll('.vega-embed svg, "
                               ".vega-embed canvas').length >= 3", timeout=20_000)
        text = page.inner_text("body")
        # the legend names every candidate: coloured by candidate, not by revision
        candidates = {line.split(",")[0] for line in (ROOT / "reports" / "plots" /
                      "validation_by_horizon.csv").read_text().splitlines()[1:]}
        assert len(candidates) >= 3
        for candidate in candidates:
            assert candidate in text
        assert not report.problems, report.problems
    finally:
        page.context.close()
