"""``models/champion/champion.json``: the tracked champion card — its one reader and writer.

The card names the champion in production by content id (``model_id``), with its candidate
recipe, scores, the per-station recalibration maps its bundle serves
(``station_calibration``), the models rolled back from (never tried again) and the lineage
chain of every decision (:mod:`starry_guide.artifacts.lineage`). The select stage writes it
after each decision, ``starry champion rollback`` after a rollback; both through
:func:`write`, so the file has one shape whoever wrote it. It is committed: the next
decision reads it back (:func:`read`) as its incumbent.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from starry_guide.artifacts.reports import read_json, write_json

FILE = "champion.json"


@dataclass(frozen=True)
class ChampionCard:
    """What ``champion.json`` holds."""

    model_name: str
    candidate: str
    model_id: str
    scores: dict = field(default_factory=dict)
    rolled_back: list[dict] = field(default_factory=list)
    station_calibration: dict[str, dict] = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def read(champion_dir: Path) -> dict | None:
    """The card in ``champion_dir`` as a dict when it names a model by content id, else
    None (no champion yet, or a card from before content ids)."""
    path = Path(champion_dir) / FILE
    if not path.is_file():
        return None
    card = read_json(path)
    return card if card.get("model_id") else None


def write(champion_dir: Path, card: ChampionCard) -> Path:
    """Write ``card`` as ``champion_dir/champion.json`` (stable JSON: sorted keys, rounded
    floats)."""
    return write_json(Path(champion_dir) / FILE, card.as_dict())
