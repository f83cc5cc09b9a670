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


_CITED_PATH = re.compile(r"`((?:tests|benchmarks|voxelbone|samples|kernels|docs)/[\w./-]+\.(?:py|toml|json|cuh|cu|md|sh|h))\b")
_CITED_NAME = re.compile(r"`(voxelbone(?:\.\w+)+)(?:\(|`)")


def _cited(text: str) -> tuple[set[str], set[str]]:
    """Repository paths and ``voxelbone.*`` names a page cites in backticks (placeholders such as
    ``kernels/NAME.cu`` left out)."""
    paths = {p for p in _CITED_PATH.findall(text) if not re.search(r"/[A-Z]+\.", p)}
    return paths, set(_CITED_NAME.findall(text))


def _resolves(name: str) -> bool:
    import importlib

    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for attr in parts[i:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return False
        return True
    return False


@pytest.mark.parametrize("page", ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").rglob("*.md"))])
def test_every_file_and_name_a_page_cites_exists(page):
    """A page that points to a test, a study record or a function that was renamed or removed
    misleads its reader."""
    paths, names = _cited((ROOT / page).read_text(encoding="utf-8"))
    assert not [p for p in sorted(paths) if not (ROOT / p).exists()], f"{page} cites missing files"
    assert not [n for n in sorted(names) if not _resolves(n)], f"{page} cites names voxelbone does not have"


def test_the_citation_check_sees_a_missing_file_and_name():
    paths, names = _cited("see `tests/test_gone.py` and `voxelbone.io.load_volume` and `voxelbone.nope.f()`; "
                          "`kernels/NAME.cu`")
    assert paths == {"tests/test_gone.py"} and names == {"voxelbone.io.load_volume", "voxelbone.nope.f"}
    assert _resolves("voxelbone.io.load_volume") and not _resolves("voxelbone.nope.f")
    assert not (ROOT / "tests/test_gone.py").exists()
