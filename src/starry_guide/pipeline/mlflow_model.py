"""The candidates as MLflow models that load anywhere and answer P(clear).

Each candidate is logged as an MLflow ``python_function`` model with a custom loader (this
module): the fitted scikit-learn estimator is stored with skops (no pickle), and the
``starry_guide`` package travels inside the model (MLflow ``code_paths``), so
``mlflow.pyfunc.load_model(uri)`` works in any environment with the pinned requirements —
no checkout of this repository needed. ``predict`` returns one column, ``p_clear``, as the
model's signature says.

Inside the project, :func:`load_estimator` returns the scikit-learn estimator itself (for
scoring, refitting clones and ONNX export).
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

#: the single output column of every logged model
OUTPUT_COLUMN = "p_clear"
_ESTIMATOR_FILE = "estimator.skops"
_TRUSTED_FILE = "trusted_types.json"


def pip_requirements() -> list[str]:
    """What a logged model needs at load time, pinned to this environment's versions."""
    from importlib.metadata import version

    return [f"{name}=={version(name)}"
            for name in ("mlflow", "scikit-learn", "pandas", "numpy", "skops", "pyarrow")]


def package_dir() -> Path:
    """The ``starry_guide`` package folder (copied into every logged model: the loader
    module below and the estimators' classes in ``core.models`` live in it)."""
    import starry_guide

    return Path(starry_guide.__file__).resolve().parent


class ClearSkyModel:
    """What ``mlflow.pyfunc.load_model`` wraps: ``predict`` gives P(clear) per row."""

    def __init__(self, estimator) -> None:
        self.estimator = estimator

    def predict(self, data: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        p = self.estimator.predict_proba(data)[:, 1]
        return pd.DataFrame({OUTPUT_COLUMN: np.asarray(p, dtype=float)},
                            index=getattr(data, "index", None))

    def get_raw_model(self):
        """The fitted scikit-learn estimator."""
        return self.estimator


def _load_pyfunc(data_path: str) -> ClearSkyModel:
    """MLflow's entry point (``loader_module``): read the estimator saved by :func:`log`."""
    import skops.io

    folder = Path(data_path)
    trusted = json.loads((folder / _TRUSTED_FILE).read_text(encoding="utf-8"))
    return ClearSkyModel(skops.io.load(folder / _ESTIMATOR_FILE, trusted=trusted))


def trusted_types(estimator=None, dump: Path | None = None) -> list[str]:
    """Types skops must trust to load ``estimator``: exactly those in its own dump (``dump``:
    a file skops already wrote, read instead of serialising the estimator again)."""
    import skops.io

    if dump is not None:
        return sorted(skops.io.get_untrusted_types(file=dump))
    return sorted(skops.io.get_untrusted_types(data=skops.io.dumps(estimator)))


def log(estimator, example: pd.DataFrame, name: str = "model"):
    """Log ``estimator`` into the active run as a portable P(clear) model; returns MLflow's
    ``ModelInfo`` (``model_uri``)."""
    import mlflow
    import skops.io
    from mlflow.models import infer_signature

    output = ClearSkyModel(estimator).predict(example)
    signature = infer_signature(example, output)
    with tempfile.TemporaryDirectory() as tmp:
        code = Path(tmp) / "code" / "starry_guide"
        shutil.copytree(package_dir(), code,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        data = Path(tmp) / "estimator"
        data.mkdir()
        skops.io.dump(estimator, data / _ESTIMATOR_FILE)
        (data / _TRUSTED_FILE).write_text(json.dumps(trusted_types(dump=data / _ESTIMATOR_FILE)),
                                          encoding="utf-8")
        return mlflow.pyfunc.log_model(
            name=name,
            loader_module=__name__,
            data_path=str(data),
            code_paths=[str(code)],
            signature=signature,
            input_example=example,
            pip_requirements=pip_requirements(),
        )


def load_estimator(model_uri: str):
    """The scikit-learn estimator of a logged model (also reads the models logged with
    MLflow's sklearn flavor before this format)."""
    import mlflow

    # MLflow puts the model's copy of the package (code_paths) first on sys.path for good;
    # the estimator is unpickled by then, and any module imported later — in this process or
    # in a child process, which inherits sys.path — must come from this package's code, not
    # the copy a model was logged with
    path = list(sys.path)
    try:
        # suppress_warnings: MLflow would compare the model's pinned requirements with this
        # environment, scanning every installed distribution's metadata (~1.5 s a process);
        # inside the project they are this environment's own versions (pip_requirements)
        model = mlflow.pyfunc.load_model(model_uri, suppress_warnings=True)
        try:
            return model.get_raw_model()
        except NotImplementedError:  # pragma: no cover - only very old formats
            import mlflow.sklearn

            return mlflow.sklearn.load_model(model_uri)
    finally:
        sys.path[:] = path
