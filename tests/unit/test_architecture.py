"""docs/architecture.md names every module of the tree, and no other."""
from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _checker():
    spec = importlib.util.spec_from_file_location(
        "check_architecture", ROOT / "stack" / "check_architecture.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_architecture_page_matches_the_tree():
    assert _checker().problems() == []


def test_a_module_missing_from_the_page_is_found(tmp_path):
    check = _checker()
    package = tmp_path / "pkg"
    (package / "logic").mkdir(parents=True)
    (package / "logic" / "action.py").write_text("")
    (package / "logic" / "__init__.py").write_text("")
    (package / "views.py").write_text("")
    page = tmp_path / "architecture.md"
    page.write_text("# A\n\n## Every module\n\n- `views.py`: pages\n"
                    "- `gone.py`: was here\n\n## Later\n\n`logic/action.py`\n")
    assert check.problems(package, page) == [
        "architecture.md: logic/action.py is not listed under "
        "'## Every module'",
        "architecture.md: gone.py is listed but does not exist"]
