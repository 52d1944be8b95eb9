"""The prediction log: batches are all-or-nothing, checkpoints happen off the request path."""

from __future__ import annotations

import sqlite3
import time

import pytest

from starry_guide.serve.predlog import PredictionLog


def predictions(n: int, start: int = 0) -> list[tuple]:
    return [(f"id{start + i}", "1", 36.1, -79.9, "2001-01-01T00:00:00+00:00",
             [(h, f"2001-01-01T{h:02d}:00:00+00:00", 0.5) for h in range(1, 13)])
            for i in range(n)]


def test_a_batch_is_committed_whole_or_not_at_all(tmp_path):
    log = PredictionLog(tmp_path / "log.sqlite")
    log.log_many(predictions(3))
    assert log.count("predictions") == 36
    # the second batch repeats id1: the primary key refuses it, and its new rows go too
    with pytest.raises(sqlite3.IntegrityError):
        log.log_many([*predictions(2, start=10), *predictions(1, start=1)])
    assert log.count("predictions") == 36


def test_the_background_thread_folds_the_wal_into_the_database(tmp_path):
    path = tmp_path / "log.sqlite"
    log = PredictionLog(path)
    empty = path.stat().st_size
    for batch in range(20):
        log.log_many(predictions(100, start=100 * batch))
    deadline = time.time() + 10 * log.CHECKPOINT_SECONDS
    while path.stat().st_size <= empty + 1_000_000 and time.time() < deadline:
        time.sleep(0.1)
    # 24 000 rows reached the database file itself: only a checkpoint puts them there
    assert path.stat().st_size > empty + 1_000_000
    assert log.count("predictions") == 24_000
