"""Writing stage outputs in stable, diff-friendly forms, and swapping them in whole."""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # only an annotation here: the stage runner imports this module and
    import pandas as pd  # need not pay pandas' import


def jsonable(value: Any) -> Any:
    """``value`` as JSON-ready builtins: str keys, lists, NaN as None, floats to 6 significant
    digits (so files are identical across runs and machines)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str | bytes):  # numpy scalars
        value = value.item()
    if isinstance(value, float):
        # NaN is not JSON; 6 significant digits keep files identical across runs and machines
        return None if not math.isfinite(value) else float(f"{value:.6g}")
    return value


def write_json(path: Path, payload: Any) -> Path:
    """Write ``payload`` as indented JSON with sorted keys and rounded floats."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(jsonable(payload), indent=2, sort_keys=True) + "\n",
                    encoding="utf-8")
    return path


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_csv(path: Path, frame: pd.DataFrame) -> Path:
    """Write a plot/metric table as CSV with a fixed float format."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False, float_format="%.6g", lineterminator="\n")
    return path


def replace_atomically(staged: Path, target: Path) -> None:
    """Move ``staged`` onto ``target``: a rename, so readers never see half a file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if staged.is_dir():
        backup = target.with_name(target.name + ".previous")
        if backup.exists():
            shutil.rmtree(backup)
        if target.exists():
            target.rename(backup)
        staged.rename(target)
        if backup.exists():
            shutil.rmtree(backup)
    else:
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(staged, target)
