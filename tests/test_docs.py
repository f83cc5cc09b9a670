"""The documentation states what the code holds: fitted parameters, files a citation needs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import voxelbone

ROOT = Path(__file__).resolve().parents[1]


def _fitted_fields(source: str) -> list[str]:
    """Fields of the calibration dataclass marked ``# fitted`` in the source."""
    return re.findall(r"^\s+(\w+): float = [^#\n]+#\s*fitted", source, flags=re.M)


def test_model_page_lists_every_fitted_parameter():
    source = (ROOT / "voxelbone" / "biology.py").read_text(encoding="utf-8")
    fitted = _fitted_fields(source)
    assert len(fitted) >= 8, "the calibration's fitted parameters are marked '# fitted' in biology.py"
    model = (ROOT / "docs" / "model.md").read_text(encoding="utf-8")
    missing = [name for name in fitted if f"`{name}`" not in model and f"{name}`" not in model]
    assert not missing, f"docs/model.md does not list the fitted parameters {missing}"


def test_fitted_marker_parser_sees_a_marked_field():
    assert _fitted_fields("    a_b: float = 1.0  # fitted: x\n    c: float = 2.0  # not\n") == ["a_b"]


def test_readme_points_to_the_docs_and_keeps_two_commands():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "make demo" in readme and "make test" in readme
    assert "docs/" in readme or "mkdocs" in readme.lower()


def test_license_and_citation_match_the_package():
    license_text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert license_text.startswith("MIT License")
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert 'license = "MIT"' in pyproject
    citation = (ROOT / "CITATION.cff").read_text(encoding="utf-8")
    version = re.search(r'^version:\s*"([^"]+)"', citation, flags=re.M)
    assert version and version.group(1) == voxelbone.__version__
    assert f"## {voxelbone.__version__}" in (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("page", sorted(p.name for p in (ROOT / "docs").rglob("*.md")))
def test_every_page_is_in_the_navigation(page):
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    assert page in nav
