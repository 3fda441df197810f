"""`make lint`: docs/architecture.md lists every module of the plugin.

Its section "Every module" names each module (``__init__.py`` files
aside) by its path below ``ckanext/dcor_depot`` in backticks; a module
missing there, or a listed module that does not exist, fails the check.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "ckanext" / "dcor_depot"
PAGE = ROOT / "docs" / "architecture.md"
SECTION = "## Every module"
_LISTED = re.compile(r"`([\w/]+\.py)`")


def modules_in_tree(package: Path = PACKAGE) -> set[str]:
    return {path.relative_to(package).as_posix()
            for path in package.rglob("*.py")
            if path.name != "__init__.py"}


def modules_on_page(text: str) -> set[str]:
    """The module paths named in the page's "Every module" section."""
    start = text.find(SECTION)
    if start < 0:
        return set()
    end = text.find("\n## ", start + len(SECTION))
    section = text[start:] if end < 0 else text[start:end]
    return {name for name in _LISTED.findall(section)
            if not name.endswith("__init__.py")}


def problems(package: Path = PACKAGE, page: Path = PAGE) -> list[str]:
    tree = modules_in_tree(package)
    listed = modules_on_page(page.read_text(encoding="utf-8"))
    return ([f"{page.name}: {name} is not listed under {SECTION!r}"
             for name in sorted(tree - listed)]
            + [f"{page.name}: {name} is listed but does not exist"
               for name in sorted(listed - tree)])


def main() -> int:
    found = problems()
    for line in found:
        print(line, file=sys.stderr)
    print(f"check_architecture: {len(found)} problems")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
