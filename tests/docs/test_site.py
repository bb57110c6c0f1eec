"""The documentation site: built strictly, its reference current, and rendered in a real
headless Chromium (Debian's), whose screenshot shows a styled page, not a broken one.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from snakemake_interface_executor_plugins.registry import ExecutorPluginRegistry

from snakemake_executor_plugin_awsbatch import resource_keys
from tools import docs_reference

ROOT = Path(__file__).resolve().parents[2]
MKDOCS = [sys.executable, "-m", "mkdocs"]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Material's indigo header (palette primary: indigo), as Chromium paints it.
HEADER_RGB = (0x40, 0x51, 0xB5)


def _build(project: Path, site: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*MKDOCS, "build", "--strict", "--site-dir", str(site)],
        cwd=project,
        capture_output=True,
        text=True,
        env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin"},
        check=False,
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    built = tmp_path_factory.mktemp("site")
    done = _build(ROOT, built)
    assert done.returncode == 0, done.stdout + done.stderr
    return built


def test_the_site_builds_strictly_and_every_page_is_in_it(site: Path) -> None:
    pages = {p.stem for p in (ROOT / "docs").glob("*.md")}
    assert pages <= {p.stem for p in site.glob("*.html")}
    assert {"index", "intro", "further", "reference", "troubleshooting"} <= pages


def test_a_broken_link_fails_the_build(tmp_path: Path) -> None:
    project = tmp_path / "project"
    shutil.copytree(ROOT / "docs", project / "docs")
    shutil.copy(ROOT / "mkdocs.yml", project / "mkdocs.yml")
    page = project / "docs" / "troubleshooting.md"
    page.write_text(page.read_text() + "\nSee [the missing page](no-such-page.md).\n")
    done = _build(project, tmp_path / "site")
    assert done.returncode != 0
    assert "no-such-page.md" in done.stdout + done.stderr


def test_the_reference_page_is_what_the_code_says() -> None:
    committed = (ROOT / "docs" / "reference.md").read_text()
    assert committed == docs_reference.render(), "docs/reference.md is stale: make docs-reference"


def test_every_resource_key_the_code_reads_is_in_the_reference() -> None:
    package = ROOT / "snakemake_executor_plugin_awsbatch"
    read = {
        name
        for path in package.rglob("*.py")
        for name in re.findall(r"\"(awsbatch_[a-z_]+)\"", path.read_text())
    }
    assert read and read <= resource_keys.KNOWN, read - resource_keys.KNOWN
    reference = (ROOT / "docs" / "reference.md").read_text()
    assert all(f"`{name}`" in reference for name in resource_keys.KNOWN)


# -- in a real browser --------------------------------------------------------------------


@contextlib.contextmanager
def _serving(directory: Path) -> Iterator[str]:
    """A built site over HTTP on a free port, as a browser would load it."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


@pytest.fixture(scope="module")
def served(site: Path) -> Iterator[str]:
    with _serving(site) as url:
        yield url


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def _chromium(*args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM, "Debian's chromium is not installed: `make test` installs it"
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _screenshot(url: str, path: Path) -> Image.Image:
    done = _chromium("--window-size=1280,900", f"--screenshot={path}", url)
    assert path.exists(), done.stderr[-2000:]
    return Image.open(path).convert("RGB")


def _looks_rendered(shot: Image.Image) -> list[str]:
    """What is wrong with a screenshot of a site page; [] when it looks like one."""
    problems = []
    header = [shot.getpixel((x, 4)) for x in range(0, shot.width, 40)]  # above its text
    if sum(_near(p, HEADER_RGB) for p in header) < len(header) * 0.8:
        problems.append(f"no indigo header bar across the top (got {header[:4]}...)")
    body = shot.crop((300, 120, shot.width - 300, shot.height - 50))
    dark = sum(body.convert("L").histogram()[:110])  # text, not background
    if dark < body.width * body.height * 0.005:
        problems.append(f"almost no text in the page's body ({dark} dark pixels)")
    return problems


def _near(pixel: tuple[int, ...], rgb: tuple[int, int, int], slack: int = 24) -> bool:
    return all(abs(a - b) <= slack for a, b in zip(pixel, rgb, strict=True))


def test_the_front_page_renders_styled(served: str, tmp_path: Path) -> None:
    shot = _screenshot(f"{served}/index.html", tmp_path / "index.png")
    assert _looks_rendered(shot) == []


def test_the_settings_reference_renders_every_setting(served: str, tmp_path: Path) -> None:
    shot = _screenshot(f"{served}/reference.html", tmp_path / "reference.png")
    assert _looks_rendered(shot) == []
    dom = _chromium("--dump-dom", f"{served}/reference.html").stdout
    rows = re.findall(r"<tr>\s*<td><code>(--awsbatch-[a-z0-9-]+)</code>", dom)
    settings = ExecutorPluginRegistry().get_plugin("awsbatch").get_settings_info()
    assert sorted(rows) == sorted(s["cliarg"] for s in settings)


def test_the_screenshot_check_sees_a_broken_page(site: Path, tmp_path: Path) -> None:
    """The same page without the site's stylesheets (a broken theme or asset path)."""
    broken = tmp_path / "broken"
    shutil.copytree(site, broken)
    shutil.rmtree(broken / "assets" / "stylesheets")
    with _serving(broken) as url:
        shot = _screenshot(f"{url}/index.html", tmp_path / "broken.png")
    assert any("header" in problem for problem in _looks_rendered(shot))
