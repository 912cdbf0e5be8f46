"""The README is a short user's guide: its size, its first screen, its links and its quickstart."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))

# [text](target) and ![alt](target); the target ends at whitespace or the closing parenthesis.
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def relative_links(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    text = re.sub(r"```.*?```", "", text, flags=re.S)  # links inside code blocks are code, not links
    targets = []
    for target in LINK.findall(text):
        if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # http:, https:, mailto:, in-page anchors
        targets.append(target.split("#", 1)[0])
    return targets


def test_readme_is_under_20_kb():
    size = README.stat().st_size
    assert size < 20_000, f"README.md is {size} bytes; move reference or records into docs/"


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_to_files(path):
    missing = [t for t in relative_links(path) if not (path.parent / t).exists()]
    assert not missing, f"{path.relative_to(ROOT)} links to missing files: {missing}"


def test_links_are_found():
    # Guards the link test itself: a pattern that matched nothing would pass every file.
    assert "docs/figures.md" in relative_links(README)
    assert "images/netadapt_pareto.png" in relative_links(ROOT / "docs" / "netadapt-record.md")


def test_first_screen_says_how_to_install_and_run():
    first = "\n".join(README.read_text(encoding="utf-8").splitlines()[:40])
    for phrase in ("pip install", "make test", "make run"):
        assert phrase in first, f"the first 40 lines of README.md do not mention {phrase!r}"


def test_quickstart_runs():
    text = README.read_text(encoding="utf-8")
    match = re.search(r"```python\n(.*?)```", text, flags=re.S)
    assert match, "README.md has no ```python block"
    code = match.group(1)
    paths = [str(ROOT / "src"), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths))
    env.setdefault("OMP_NUM_THREADS", "1")
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, f"the README's quickstart failed:\n{code}\n{result.stderr[-2000:]}"
    assert result.stdout.strip(), "the quickstart printed nothing"
