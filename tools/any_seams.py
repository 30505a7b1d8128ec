"""List functions whose signature mentions `Any` and that another package calls (issue 12: typed seams).

Usage: python tools/any_seams.py [ROOT]  — one line per function: file:line: name(parameters, -> for the return)
and the modules of other packages that use it. Calls through instances are not resolved (only imported names and
module attributes), so the list is a floor, not the whole of it.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

PACKAGES = ("agents", "server")


def _module(root: Path, path: Path) -> str:
    parts = list(path.with_suffix("").relative_to(root).parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _package(module: str, is_init: bool) -> str:
    return module if is_init else module.rsplit(".", 1)[0]


def _mentions_any(node: ast.expr | None) -> bool:
    if node is None:
        return False
    for n in ast.walk(node):
        if (isinstance(n, ast.Name) and n.id == "Any") or (isinstance(n, ast.Attribute) and n.attr == "Any"):
            return True
        if isinstance(n, ast.Constant) and isinstance(n.value, str):
            words = n.value.replace("[", " ").replace("]", " ").replace(",", " ").replace("|", " ").split()
            if "Any" in words:
                return True
    return False


def _signature_any(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    a = fn.args
    params = [p.arg for p in [*a.posonlyargs, *a.args, *a.kwonlyargs] if _mentions_any(p.annotation)]
    params += [p.arg for p in (a.vararg, a.kwarg) if p is not None and _mentions_any(p.annotation)]
    return params + (["->"] if _mentions_any(fn.returns) else [])


def main(root: Path) -> list[str]:
    files = [p for pkg in PACKAGES for p in sorted((root / pkg).rglob("*.py")) if "migrations" not in p.parts]
    defs: dict[tuple[str, str], tuple[Path, int, list[str]]] = {}
    for path in files:
        module = _module(root, path)
        for node in ast.parse(path.read_text()).body:
            found: list[tuple[ast.FunctionDef | ast.AsyncFunctionDef, str]] = []
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                found = [(node, node.name)]
            elif isinstance(node, ast.ClassDef):
                found = [(n, f"{node.name}.{n.name}") for n in node.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
            for fn, name in found:
                if params := _signature_any(fn):
                    defs[(module, name)] = (path, fn.lineno, params)
    modules = {m for m, _ in defs}
    uses: dict[tuple[str, str], set[str]] = defaultdict(set)
    for path in files:
        module = _module(root, path)
        here = _package(module, path.name == "__init__.py")
        tree = ast.parse(path.read_text())
        aliases: dict[str, str] = {}  # local name -> module
        names: dict[str, tuple[str, str]] = {}  # local name -> (module, name)
        for n in ast.walk(tree):
            if isinstance(n, ast.ImportFrom) and n.module:
                for al in n.names:
                    if f"{n.module}.{al.name}" in modules:
                        aliases[al.asname or al.name] = f"{n.module}.{al.name}"
                    names[al.asname or al.name] = (n.module, al.name)
            elif isinstance(n, ast.Import):
                for al in n.names:
                    if al.asname:
                        aliases[al.asname] = al.name
        for n in ast.walk(tree):
            targets: list[tuple[str, str]] = []
            if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name):
                if n.value.id in aliases:
                    targets.append((aliases[n.value.id], n.attr))
                if n.value.id in names:
                    owner, cls = names[n.value.id]
                    targets.append((owner, f"{cls}.{n.attr}"))
            elif isinstance(n, ast.Name) and n.id in names:
                targets.append(names[n.id])
            for target in targets:
                if target in defs and target[0].rsplit(".", 1)[0] != here:
                    uses[target].add(module)
    lines = []
    for key in sorted(uses):
        path, line, params = defs[key]
        lines.append(f"{path.relative_to(root)}:{line}: {key[1]}({', '.join(params)})  used from: {', '.join(sorted(uses[key]))}")
    return lines


if __name__ == "__main__":
    found = main(Path(sys.argv[1] if len(sys.argv) > 1 else "."))
    print("\n".join(found))
    print(f"{len(found)} functions with Any in a signature used from another package", file=sys.stderr)
