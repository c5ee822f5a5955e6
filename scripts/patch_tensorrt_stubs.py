"""Make the published ``tensorrt-stubs`` usable by mypy.

The stubs (installed with ``pip install --no-deps tensorrt-stubs``) place ``tensorrt/__init__.pyi``
and ``tensorrt_bindings/*.pyi`` in site-packages, generated from the pybind11 signatures, and two
kinds of generated line are not valid Python:

* a parameter named ``in`` (a keyword), in a few plugin methods -> renamed ``in_``;
* a parameter without a default after ones with defaults (``add_scale_nd(..., power=None,
  channel_axis)``) -> the trailing parameters get ``= ...``.

The packages also lack the PEP 561 ``py.typed`` marker, without which mypy ignores them. This
script fixes both, in place, and fails loudly if a stub file still does not parse, so a new stub
release with a new defect is noticed instead of silently type-checking nothing.
"""

from __future__ import annotations

import ast
import re
import sys
import sysconfig
from pathlib import Path

PACKAGES = ("tensorrt", "tensorrt_bindings")


def patch_signature(line: str) -> str:
    """Fix one ``def`` line; lines that parse are returned unchanged."""
    head = line.strip()
    if _parses(head):
        return line
    fixed = re.sub(r"(?<=[(,\s])in(?=\s*:)", "in_", line)
    open_at, close_at = fixed.index("("), fixed.rindex(") ->") if ") ->" in fixed else fixed.rindex(")")
    params = _split_params(fixed[open_at + 1:close_at])
    seen_default = False
    for i, param in enumerate(params):
        name = param.split(":")[0].strip()
        if "=" in param:
            seen_default = True
        elif seen_default and not name.startswith("*"):
            params[i] = param.rstrip() + " = ..."
    fixed = fixed[:open_at + 1] + ", ".join(p.strip() for p in params) + fixed[close_at:]
    if not _parses(fixed.strip()):
        raise SystemExit(f"patch_tensorrt_stubs: cannot repair stub line: {line.strip()}")
    return fixed


def _parses(def_line: str) -> bool:
    try:
        ast.parse(def_line + " ..." if def_line.endswith(":") else def_line)
        return True
    except SyntaxError:
        return False


def _split_params(text: str) -> list[str]:
    """Split a parameter list on top-level commas (types hold ``list[a, b]``)."""
    parts, depth, current = [], 0, ""
    for ch in text:
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return [p for p in parts if p.strip()]


def patch_file(path: Path) -> int:
    lines = path.read_text().splitlines(keepends=True)
    changed = 0
    for i, line in enumerate(lines):
        if line.lstrip().startswith("def ") and line.rstrip().endswith(":"):
            fixed = patch_signature(line.rstrip("\n")) + "\n"
            if fixed != line:
                lines[i] = fixed
                changed += 1
    text = "".join(lines)
    try:
        ast.parse(text)
    except SyntaxError as exc:
        raise SystemExit(f"patch_tensorrt_stubs: {path}:{exc.lineno}: still invalid: {exc.msg}") from None
    path.write_text(text)
    return changed


def main(argv: list[str]) -> int:
    site = Path(argv[1]) if len(argv) > 1 else Path(sysconfig.get_paths()["purelib"])
    for package in PACKAGES:
        directory = site / package
        stubs = sorted(directory.glob("*.pyi"))
        if not stubs:
            raise SystemExit(f"patch_tensorrt_stubs: no stubs in {directory}; "
                             "run 'pip install --no-deps tensorrt-stubs' first")
        if (directory / "__init__.py").exists():
            raise SystemExit(f"patch_tensorrt_stubs: {directory} holds a real package, not stubs; "
                             "patch a check environment without TensorRT installed")
        for stub in stubs:
            print(f"patched {patch_file(stub)} signature(s) in {stub}")
        (directory / "py.typed").write_text("partial\n" if False else "")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
