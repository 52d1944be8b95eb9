"""Running the project's own commands in a copy of it (the end-to-end tests)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml


def run(args: list[str], cwd: Path, env: dict, check: bool = True,
        timeout: float | None = None) -> subprocess.CompletedProcess:
    """Run a command in the copy; on failure (with ``check``) show the ends of its output."""
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True,
                            check=False, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed:\n{result.stdout[-4000:]}\n"
                             f"{result.stderr[-4000:]}")
    return result


def set_params(copy: Path, **changes) -> None:
    """Change ``params.yaml`` of the copy: ``set_params(copy, **{"train.search.budget": 0})``."""
    params = yaml.safe_load((copy / "params.yaml").read_text())
    for dotted, value in changes.items():
        *path, key = dotted.split(".")
        node = params
        for part in path:
            node = node[part]
        node[key] = value
    (copy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
