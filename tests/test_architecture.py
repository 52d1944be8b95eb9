"""The dependency rule of DESIGN.md, checked on the code itself.

The wings' layering, the absence of import cycles and the server/pipeline separation are
``import-linter`` contracts (``[tool.importlinter]`` in pyproject.toml, run by ``make lint``
and here); this file adds what import-linter does not check: no module imports another
module's private (``_underscore``) names.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "starry_guide"


def private_imports(tree: ast.AST, module: str) -> list[str]:
    """``from starry_guide.X import _name`` (X not ``module`` itself) anywhere in ``tree``."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("starry_guide"):
            for alias in node.names:
                if alias.name.startswith("_") and node.module != module:
                    found.append(f"line {node.lineno}: from {node.module} import {alias.name}")
    return found


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_no_module_imports_another_modules_private_names():
    offenders = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        found = private_imports(ast.parse(path.read_text(encoding="utf-8")), module_name(path))
        if found:
            offenders[str(path.relative_to(ROOT))] = found
    assert not offenders, offenders


def test_the_private_import_check_can_fail():
    tree = ast.parse("from starry_guide.core.models import _secret\n"
                     "from starry_guide.core.models import public\n")
    assert private_imports(tree, "starry_guide.pipeline.training") == [
        "line 1: from starry_guide.core.models import _secret"]
    assert private_imports(tree, "starry_guide.core.models") == []


def test_import_linter_contracts_hold():
    lint_imports = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint_imports, "import-linter is not installed in this environment (uv sync)"
    result = subprocess.run([lint_imports, "--no-cache"], cwd=ROOT, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "BROKEN" not in result.stdout
