"""`make lint`: no function longer than 60 lines, no module over 500.

Small units are what a reader can hold in mind; ruff counts branches and
statements, this counts lines (docstrings and comments included: they
are read too).
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 500


def violations(root: Path) -> list[str]:
    found: list[str] = []
    for path in sorted(root.rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        lines = len(source.splitlines())
        if lines > MAX_MODULE_LINES:
            found.append(f"{path}: module of {lines} lines "
                         f"(at most {MAX_MODULE_LINES})")
        for node in ast.walk(ast.parse(source, str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    found.append(f"{path}:{node.lineno}: {node.name}() has "
                                 f"{length} lines "
                                 f"(at most {MAX_FUNCTION_LINES})")
    return found


def main(argv: list[str]) -> int:
    roots = [Path(arg) for arg in argv] or [Path("ckanext")]
    found = [line for root in roots for line in violations(root)]
    for line in found:
        print(line)
    print(f"check_sizes: {len(found)} too large")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
