"""METAR conversion speed: reports per second through the whole path (splitting, python-metar,
the contract, the hour rule) against python-metar alone on the same reports in the same run
(the baseline: the parser's own cost), and LCD files per second.

    python benchmarks/metar_convert.py  # prints a table; results/metar_convert.json

Inputs: the real reports of tests/data/metar/ (bulletins and Atlanta's/Lincoln's METARs) and
the stations stage's two LCD files. Each timing is the best of ``REPEATS`` runs.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
import warnings
from pathlib import Path

from metar import Metar

from starry_guide.ingest import lcd, metar

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "metar"
REPEATS = 5


def best(function) -> float:
    times = []
    for _ in range(REPEATS):
        began = time.perf_counter()
        function()
        times.append(time.perf_counter() - began)
    return min(times)


def main() -> None:
    texts = [(name, (DATA / name).read_text()) for name in (
        "katl_2020-01-01_10_lcd_rem.txt", "klnk_2023-01-01_10_lcd_rem.txt")]
    until = dt.datetime(2023, 1, 11, tzinfo=dt.UTC)
    reports = [r.text for name, text in texts for r in metar.split_reports(text, name)[0]]
    metar.station_table()  # loaded once per process: not part of the per-report cost

    def parser_alone():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for text in reports:
                Metar.Metar(text, month=1, year=2020, strict=False)

    baseline = best(parser_alone)
    whole = best(lambda: metar.convert_text(texts, until))
    table_load = best(lambda: (metar.station_table.cache_clear(), metar.station_table()))
    files = sorted((ROOT / "data/raw/packaged/noaa-weather-hourly").glob("*.csv"))
    lcd_time = best(lambda: [lcd.read_lcd(f) for f in files]) if files else float("nan")
    result = {
        "reports": len(reports),
        "parser_alone_reports_per_s": round(len(reports) / baseline),
        "convert_reports_per_s": round(len(reports) / whole),
        "convert_vs_parser_time_ratio": round(whole / baseline, 2),
        "station_tables_load_s": round(table_load, 3),
        "lcd_files": len(files),
        "lcd_seconds_per_file": round(lcd_time / max(len(files), 1), 3),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }
    for key, value in result.items():
        print(f"{key:32s} {value}")
    out = ROOT / "benchmarks" / "results" / "metar_convert.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
