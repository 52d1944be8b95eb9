"""``reports/metrics/select.json``: the select stage's metrics as one typed record — its
writer is the select notebook (:meth:`SelectMetrics.write`), its reader the docs
(:func:`read`), so both agree on one shape."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from starry_guide.artifacts.reports import read_json, write_json

#: the file's fields besides the champion's scores by split
FIELDS = ("champion", "selection_metric", "candidates_held_out", "held_out_bss_by_horizon",
          "onnx_parity_max_abs", "leave_one_station_out", "loso_headline", "adaptation",
          "by_label_origin", "loso_by_profile")


@dataclass(frozen=True)
class SelectMetrics:
    """The champion and what the select stage measured."""

    champion: str
    selection_metric: str
    #: the champion's scores by split (``validation``, ``held_out``, ``unseen``, and
    #: ``recent`` once production data exist)
    scores: dict[str, dict[str, float]]
    #: every candidate's held-out Brier, BSS and ROC AUC, by candidate
    candidates_held_out: dict[str, dict[str, float]] = field(default_factory=dict)
    #: held-out BSS by candidate and horizon
    held_out_bss_by_horizon: dict[str, dict] = field(default_factory=dict)
    onnx_parity_max_abs: float | None = None
    #: leave-one-station-out summaries by candidate, and the candidate the headline is for
    leave_one_station_out: dict[str, dict] = field(default_factory=dict)
    loso_headline: str | None = None
    #: the adaptation simulation by labelled nights
    adaptation: dict[str, dict] = field(default_factory=dict)
    #: the champion vs calibrated persistence by split (``held_out``, ``unseen``) and label
    #: origin (``observed``, ``filled``, ``unknown``): brier, brier_reference, bss, rows
    by_label_origin: dict[str, dict] = field(default_factory=dict)
    #: the champion's recipe left one station out under each input profile, against
    #: calibrated persistence on that profile's fields
    #: (:func:`starry_guide.pipeline.loso.profile_table`), by profile
    loso_by_profile: dict[str, dict] = field(default_factory=dict)

    def as_json(self) -> dict:
        """The file's layout: the champion's splits at the top level."""
        return {"champion": self.champion, "selection_metric": self.selection_metric,
                **self.scores,
                "candidates_held_out": self.candidates_held_out,
                "held_out_bss_by_horizon": self.held_out_bss_by_horizon,
                "onnx_parity_max_abs": self.onnx_parity_max_abs,
                "leave_one_station_out": self.leave_one_station_out,
                "loso_headline": self.loso_headline,
                "adaptation": self.adaptation,
                "by_label_origin": self.by_label_origin,
                "loso_by_profile": self.loso_by_profile}

    def write(self, path: Path) -> Path:
        return write_json(Path(path), self.as_json())


def read(path: Path) -> SelectMetrics:
    """The record in ``path`` (a ``select.json`` the select stage wrote)."""
    data = read_json(path)
    return SelectMetrics(
        champion=data["champion"], selection_metric=data["selection_metric"],
        scores={split: scores for split, scores in data.items() if split not in FIELDS},
        candidates_held_out=data.get("candidates_held_out", {}),
        held_out_bss_by_horizon=data.get("held_out_bss_by_horizon", {}),
        onnx_parity_max_abs=data.get("onnx_parity_max_abs"),
        leave_one_station_out=data.get("leave_one_station_out", {}),
        loso_headline=data.get("loso_headline"),
        adaptation=data.get("adaptation", {}),
        by_label_origin=data.get("by_label_origin", {}),
        loso_by_profile=data.get("loso_by_profile", {}))
