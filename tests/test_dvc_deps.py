"""dvc.yaml declares everything a stage runs and reads — derived here from the code itself.

For each stage the test finds its code: the notebook of ``starry stage NAME`` (the imports of
its code cells) or the function behind ``starry COMMAND`` in ``cli.py``, plus the stage
runner; then every ``starry_guide`` module those import, transitively (imports inside
functions included). Each module file must be a dependency of the stage. It also finds the
files the code reads through the project's paths (``inputs.X / "name"``,
``settings.paths.X``, ``root / "reports" / ...``) and requires each to be a declared
dependency, or the stage's own persisted output (state it reads back, such as the champion
that ``select`` judges against).
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import yaml

from starry_guide.config import Paths
from starry_guide.pipeline.stage import STAGE_NOTEBOOKS

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGE = "starry_guide"
#: modules every notebook stage runs through (the runner strips and publishes its outputs)
RUNNER = ("starry_guide", "starry_guide.pipeline.stage")
#: names bound to the project root in the code, and Paths objects
ROOT_NAMES = {"root", "ROOT", "project_root"}
PATHS_NAMES = {"inputs", "paths"}


def stages() -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]


def entries(stage: dict, key: str) -> list[str]:
    return [next(iter(x)) if isinstance(x, dict) else str(x) for x in stage.get(key, [])]


def module_file(name: str) -> Path | None:
    base = SRC / Path(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def imported_modules(tree: ast.AST, current: str = "") -> set[str]:
    """``starry_guide`` modules imported anywhere in ``tree`` (absolute and relative)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == PACKAGE}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = current.split(".")[: -node.level]
                base = ".".join([*parts, *([base] if base else [])])
            if base.split(".")[0] != PACKAGE:
                continue
            found.add(base)
            for alias in node.names:  # `from starry_guide import champion`
                if module_file(f"{base}.{alias.name}") is not None:
                    found.add(f"{base}.{alias.name}")
    return found


def closure(modules: set[str]) -> set[str]:
    """The modules plus everything they import, with each parent package."""
    todo, seen = list(modules), set()
    while todo:
        name = todo.pop()
        if name in seen or module_file(name) is None:
            continue
        seen.add(name)
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]
        path = module_file(name)
        current = name if path.name == "__init__.py" else name
        tree = ast.parse(path.read_text(encoding="utf-8"))
        todo += sorted(imported_modules(tree, current if path.name != "__init__.py"
                                        else name + ".__init__"))
    return seen


def notebook_code(stage_name: str) -> ast.Module:
    # the stage depends on notebooks/.sources/NAME.py (the notebook's cells, written by the
    # notebook_sources stage); the code is read from the notebook itself
    nb = json.loads((ROOT / "notebooks" / STAGE_NOTEBOOKS[stage_name]).read_text())
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    return ast.parse("\n".join(line for line in code.splitlines()
                               if not line.lstrip().startswith(("%", "!"))))


def cli_command(command: str) -> ast.AST:
    """The function behind ``starry COMMAND`` (its name, or ``@app.command("name")``)."""
    tree = ast.parse((SRC / PACKAGE / "cli.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef):
            continue
        for deco in node.decorator_list:
            if isinstance(deco, ast.Call) and getattr(deco.func, "attr", "") == "command":
                named = deco.args[0].value if deco.args and isinstance(
                    deco.args[0], ast.Constant) else node.name.replace("_", "-")
                if named == command:
                    return node
    raise AssertionError(f"dvc.yaml runs `starry {command}`, which cli.py does not define")


def stage_code(name: str, stage: dict) -> tuple[list[ast.AST], set[str]]:
    """The stage's top-level code and the starry_guide modules it runs."""
    words = stage["cmd"].split()
    # scripts/starry only finds the environment and runs `starry` (see the script)
    assert words[0] in ("starry", "scripts/starry"), \
        f"stage {name}: cannot derive the code of {stage['cmd']!r}"
    if words[1] == "stage":
        tree = notebook_code(words[2])
        return [tree], closure(imported_modules(tree) | set(RUNNER))
    function = cli_command(words[1])
    return [function], closure(imported_modules(function, f"{PACKAGE}.cli") | {PACKAGE})


def _path_of(node: ast.AST, variables: dict[str, str]) -> str | None:
    """A project-relative path for ``inputs.X / "a"``, ``settings.paths.X``, ``root / "a"``
    (through simple assignments), else None."""
    paths = Paths(Path("."))
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
        left = _path_of(node.left, variables)
        right = node.right.value if isinstance(node.right, ast.Constant) and isinstance(
            node.right.value, str) else None
        if left is not None and right is not None:
            return str(Path(left) / right)
        return None
    if isinstance(node, ast.Name):
        if node.id in ROOT_NAMES:
            return "."
        return variables.get(node.id)
    if isinstance(node, ast.Attribute) and isinstance(getattr(paths, node.attr, None), Path):
        owner = node.value
        if (isinstance(owner, ast.Name) and owner.id in PATHS_NAMES) or (
                isinstance(owner, ast.Attribute) and owner.attr == "paths"):
            return str(getattr(paths, node.attr))
    return None


def read_paths(trees: list[ast.AST]) -> set[str]:
    """Project paths the code builds (reads, and the writes into staging it makes through
    ``outputs``, which are not matched here)."""
    found = set()
    for tree in trees:
        scopes = [n for n in ast.walk(tree)
                  if isinstance(n, ast.FunctionDef | ast.Module)] or [tree]
        for scope in scopes:
            variables: dict[str, str] = {}
            for node in ast.walk(scope):
                if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(
                        node.targets[0], ast.Name):
                    value = _path_of(node.value, variables)
                    if value is not None:
                        variables[node.targets[0].id] = value
            inner = {id(n.left) for n in ast.walk(scope) if isinstance(n, ast.BinOp)
                     and isinstance(n.op, ast.Div)
                     and _path_of(n, variables) is not None}
            for node in ast.walk(scope):
                if isinstance(node, ast.BinOp | ast.Attribute) and id(node) not in inner:
                    value = _path_of(node, variables)
                    if value is not None and value != ".":
                        found.add(str(Path(value)))
    return found


#: (module, path) pairs a stage's modules name but that are not inputs of its outputs
NOT_STAGE_INPUTS = {
    ("starry_guide.pipeline.stage", "dvc.yaml"): "the runner reads which outputs to publish",
    ("starry_guide.pipeline.stage", "notebooks"): "copy_project / `starry notebooks`, not a stage",
    ("starry_guide.pipeline.stage", "data/raw"): "copy_project / `starry notebooks`, not a stage",
    ("starry_guide.pipeline.stage", "data/production"): "copy_project, not a stage",
    ("starry_guide.pipeline.stage", "mlflow.db"): "the runner closes a killed stage's MLflow runs",
    ("starry_guide.pipeline.sources", ".dvc"): "`starry notebooks` asks whether it is a DVC repo",
    ("starry_guide.pipeline.tracking", "dvc.lock"): "lineage tags, written to MLflow only",
    ("starry_guide.pipeline.tracking", "mlflow.db"): "the MLflow store (runs, registry)",
    ("starry_guide.pipeline.tracking", "mlartifacts"): "the MLflow store's artifacts",
    ("starry_guide.docs.pages", "models/champion/champion.json"): "`starry summary`, not the stage",
    # DVC refuses dvc.yaml as a dependency ("DVC file 'dvc.yaml' cannot be a dependency"): the
    # pipeline page is refreshed whenever docs re-runs, not when only dvc.yaml changed
    ("starry_guide.docs.pages", "dvc.yaml"): "DVC forbids it as a dependency",
}


def covered(path: str, declared: list[str]) -> bool:
    """``path`` is declared, lies in a declared folder, or is a folder whose every file is
    declared (so a new file in it that no stage declares is caught)."""
    if any(path == d or Path(path).is_relative_to(d) for d in declared):
        return True
    folder = ROOT / path
    files = [f.relative_to(ROOT) for f in folder.rglob("*") if f.is_file()] \
        if folder.is_dir() else []
    return bool(files) and all(covered(str(f), declared) for f in files)


def all_reads(name: str, stage: dict) -> set[str]:
    """What the stage's own code and its modules read, less :data:`NOT_STAGE_INPUTS`."""
    trees, modules = stage_code(name, stage)
    reads = read_paths(trees)
    for module in modules:
        tree = ast.parse(module_file(module).read_text(encoding="utf-8"))
        reads |= {p for p in read_paths([tree]) if (module, p) not in NOT_STAGE_INPUTS}
    return reads


STAGES = stages()


@pytest.mark.parametrize("name", sorted(STAGES))
def test_every_module_a_stage_runs_is_a_declared_dependency(name):
    stage = STAGES[name]
    _, modules = stage_code(name, stage)
    deps = entries(stage, "deps")
    missing = sorted(str(module_file(m).relative_to(ROOT)) for m in modules
                     if not covered(str(module_file(m).relative_to(ROOT)), deps))
    assert not missing, (f"dvc.yaml stage '{name}' runs these modules but does not list "
                         f"them under deps: {missing}")


@pytest.mark.parametrize("name", sorted(STAGES))
def test_every_file_a_stage_reads_is_a_declared_dependency(name):
    stage = STAGES[name]
    deps = entries(stage, "deps")
    own = entries(stage, "outs") + entries(stage, "metrics") + entries(stage, "plots")
    # (a folder may mix dependencies and the stage's own outputs: reports/metrics/)
    undeclared = sorted(p for p in all_reads(name, stage) if not covered(p, deps + own))
    assert not undeclared, (f"dvc.yaml stage '{name}' reads {undeclared} but declares "
                            "neither as a dependency nor as its own output")


def test_the_derivation_finds_what_it_should():
    """The checks above can fail: the derivation sees known imports and reads."""
    _, modules = stage_code("select", STAGES["select"])
    assert {"starry_guide.pipeline.champion", "starry_guide.pipeline.registry",
            "starry_guide.core.evaluate",
            "starry_guide.config", "starry_guide.artifacts.bundle"} <= modules
    reads = read_paths(stage_code("select", STAGES["select"])[0])
    assert {"data/processed/rows.parquet", "reports/train_runs.json"} <= reads
    assert not covered("src/starry_guide/pipeline/registry.py",
                       ["src/starry_guide/pipeline/champion.py"])
    assert "reports/select_decision.json" in all_reads("docs", STAGES["docs"])
    assert "models/champion" in all_reads("select", STAGES["select"])  # its own state
    assert not covered("reports/metrics", ["reports/metrics/train.json"])


def test_every_hand_written_docs_file_is_a_dependency_of_the_docs_stage():
    """A page or image under docs/ that the docs stage does not declare would not rebuild
    site/ when edited (docs/generated/ is the stage's own output)."""
    deps = entries(STAGES["docs"], "deps")
    own = entries(STAGES["docs"], "outs")
    files = [str(f.relative_to(ROOT)) for f in (ROOT / "docs").rglob("*") if f.is_file()
             and not f.relative_to(ROOT).is_relative_to("docs/generated")]
    undeclared = sorted(f for f in files if not covered(f, deps + own))
    assert files and not undeclared, f"docs stage deps miss {undeclared}"
