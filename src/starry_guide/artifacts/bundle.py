"""The portable transfer bundle: the champion as ONNX, its feature specification, a model card
and checksums — everything another system (the Starry Guide app, the API, batch scoring)
needs to predict, with no Python model objects and nothing unpickled.

Layout of a bundle folder::

    model.onnx          input "features" float32 [N, F] (NaN = missing) -> output "p_clear" [N]
    feature_spec.json   the F feature names in order, horizons, label definition
    climatology.json    P(clear) by station, month and local hour (for nights without data)
    model_card.json     version, candidate, metrics, lineage, ONNX parity, SHA-256 of each file

This module reads and verifies a bundle (and fetches one from the registry);
:mod:`starry_guide.artifacts.onnx_export` writes it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from starry_guide.config import FeatureSettings, Settings

INPUT, OUTPUT = "features", "p_clear"
FILES = ("model.onnx", "feature_spec.json", "climatology.json")


class BundleError(RuntimeError):
    """A bundle is missing, incomplete or corrupt; the message says what to do."""


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class Bundle:
    """A verified bundle, ready to predict with onnxruntime."""

    path: Path
    card: dict
    features: list[str]
    spec: dict
    climatology: dict
    session: object

    @property
    def version(self) -> str:
        return str(self.card.get("version", "unknown"))

    @property
    def feature_settings(self) -> FeatureSettings:
        """The lag, window and tendency lengths the model was trained with."""
        return FeatureSettings(tuple(self.spec["cloud_lags_h"]),
                               tuple(self.spec["rolling_windows_h"]), self.spec["tendency_h"])

    @property
    def horizons(self) -> tuple[int, ...]:
        return tuple(int(h) for h in self.spec["horizons"])

    def predict(self, rows: pd.DataFrame) -> np.ndarray:
        """P(clear) for model rows (from :func:`starry_guide.core.features.model_rows`)."""
        return self.predict_matrix(rows[self.features].to_numpy(np.float32))

    def predict_matrix(self, matrix: np.ndarray) -> np.ndarray:
        """P(clear) for a float32 matrix whose columns are :attr:`features`, in order."""
        return self.session.run([OUTPUT], {INPUT: matrix})[0].astype(float)

    @property
    def station_calibration(self) -> dict[str, dict]:
        """Per-station recalibration maps learned from production nights
        (:mod:`starry_guide.core.adaptation`), by station id; empty when there are none."""
        return dict(self.card.get("station_calibration") or {})

    def adapt(self, p: np.ndarray, station_ids) -> np.ndarray:
        """``p`` (one row per entry of ``station_ids``, any number of columns) with each
        registered station's map applied; rows of other places (None) unchanged."""
        from starry_guide.core.adaptation import apply_station_maps

        maps = self.station_calibration
        p = np.asarray(p, dtype=float)
        if not maps:
            return p
        ids = np.repeat(np.asarray(station_ids, dtype=object), p.shape[1] if p.ndim == 2 else 1)
        return apply_station_maps(p.reshape(-1), ids, maps).reshape(p.shape)


def load_bundle(path: Path, threads: int = 1) -> Bundle:
    """Open a bundle folder after verifying every file against its model card's SHA-256.

    ``threads`` is onnxruntime's intra-op thread count (0: one per core).

    Raises
    ------
    BundleError
        naming the missing or corrupt file, and what to do.
    """
    import onnxruntime as ort

    path = Path(path)
    card_file = path / "model_card.json"
    if not card_file.is_file():
        raise BundleError(f"{card_file} not found: no champion bundle at {path}. Run "
                          "`dvc repro` (the select stage exports it) or pass --bundle PATH")
    try:
        card = json.loads(card_file.read_text())
    except json.JSONDecodeError as exc:
        raise BundleError(f"{card_file} is not valid JSON ({exc}); re-export with "
                          "`dvc repro -f select`") from None
    for name in FILES:
        expected = card.get("sha256", {}).get(name)
        if not (path / name).is_file():
            raise BundleError(f"{path / name} is missing from the bundle; re-export with "
                              "`dvc repro -f select`")
        actual = sha256(path / name)
        if actual != expected:
            raise BundleError(f"{path / name} is corrupt: SHA-256 {actual[:12]}… does not "
                              f"match the model card's {str(expected)[:12]}…; re-export with "
                              "`dvc repro -f select`")
    spec = json.loads((path / "feature_spec.json").read_text())
    options = ort.SessionOptions()
    # one thread, no spin-waiting: a request's dozen rows gain nothing from a thread pool,
    # and spinning threads take the CPU from the event loop (measured: 12 -> 68 us per run
    # under load on 2 cores). Scale out with processes (uvicorn workers, Dask) instead.
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path / "model.onnx"), options,
                                   providers=["CPUExecutionProvider"])
    return Bundle(path, card, list(spec["features"]), spec,
                  json.loads((path / "climatology.json").read_text()), session)


def feature_spec(settings: Settings) -> dict:
    """What a consumer needs to build the model's inputs from raw hourly observations."""
    return {
        "horizons": list(settings.label.horizons),
        "cloud_lags_h": list(settings.features.cloud_lags_h),
        "rolling_windows_h": list(settings.features.rolling_windows_h),
        "tendency_h": settings.features.tendency_h,
        "history_h": settings.features.history_h,
        "clear_max_opaque_tenths": settings.label.clear_max_opaque_tenths,
        "night_max_sun_elevation_deg": settings.label.night_max_sun_elevation_deg,
        "input": f"{INPUT}: float32 [N, F], NaN = missing; output {OUTPUT}: float32 [N]",
    }


def resolve_alias(model_name: str, alias: str, cache_dir: Path) -> Path:
    """Download the bundle of ``models:/model_name@alias`` into ``cache_dir``.

    Raises
    ------
    BundleError
        when the registry has no such alias or the version carries no bundle.
    """
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    try:
        version = MlflowClient().get_model_version_by_alias(model_name, alias)
    except MlflowException:
        raise BundleError(
            f"the model registry ({mlflow.get_tracking_uri()}) has no '{model_name}@{alias}': "
            "no champion yet. Run `dvc repro` first, or pass --bundle models/champion/bundle"
        ) from None
    uri = version.tags.get("bundle_uri")
    if not uri:
        raise BundleError(f"{model_name} version {version.version} (@{alias}) has no bundle; "
                          "re-run the select stage (`dvc repro -f select`)")
    target = Path(cache_dir) / f"{model_name}-v{version.version}"
    if target.exists():
        import shutil

        shutil.rmtree(target)
    target.mkdir(parents=True)
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(target)))
