"""Train / validation / held-out-month / unseen-station splits.

Whole months are held out (a row's ``t`` and ``t + h`` share one month, see
:mod:`starry_guide.core.features`), so no evaluation row has a training row an hour away.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from starry_guide.config import SplitSettings

#: ``recent`` and ``excluded`` hold production rows (see :mod:`starry_guide.pipeline.production`)
SPLITS = ("train", "validation", "held_out", "unseen", "recent", "excluded")


def assign_splits(rows: pd.DataFrame, settings: SplitSettings) -> pd.Series:
    """The split of each row: ``unseen`` for held-out stations, else by the row's month.

    With ``settings.train_on_filled_labels`` false, a training-month row whose label hour was
    filled by the file's producer (``target_label_origin == "filled"``) is ``excluded``."""
    month = rows["segment"] % 100  # segment: month (typical years) or yyyymm (real records)
    filled = (rows["target_label_origin"].eq("filled") if "target_label_origin" in rows
              else pd.Series(False, index=rows.index))
    split = np.select(
        [
            rows["station_id"].isin(settings.unseen_stations),
            month.isin(settings.held_out_months),
            month.isin(settings.validation_months),
            filled & (not settings.train_on_filled_labels),
        ],
        ["unseen", "held_out", "validation", "excluded"],
        default="train",
    )
    return pd.Series(pd.Categorical(split, categories=SPLITS), index=rows.index, name="split")


def split_summary(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows, stations and clear-sky rate per split (a table for the prepare notebook)."""
    summary = rows.groupby("split", observed=False).agg(
        rows=("clear", "size"),
        stations=("station_id", "nunique"),
        months=("segment", "nunique"),
        clear_rate=("clear", "mean"),
    )
    return summary.round({"clear_rate": 4})
