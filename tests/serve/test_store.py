"""The serving store, on SQLite and on a real PostgreSQL server: batches are all-or-nothing,
times and places are stored as documented, feedback comes once per prediction, the schema
migrates forward, and SQLite's WAL is folded back off the request path."""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import time

import pytest
import sqlalchemy as sa

from starry_guide.serve.store import database as serving
from starry_guide.serve.store.database import FeedbackExists, Prediction, Store, UnknownPrediction

T0 = dt.datetime(2001, 1, 1, tzinfo=dt.UTC)


def predictions(n: int, start: int = 0, **extra) -> list[Prediction]:
    return [Prediction(f"id{start + i}", "1", "nowcast", 36.1234, -79.9876, T0,
                       [(h, T0 + dt.timedelta(hours=h), 0.5) for h in range(1, 13)], **extra)
            for i in range(n)]


@pytest.fixture()
def store(store_url):
    opened = Store(store_url)
    yield opened
    opened.close()


def test_a_batch_is_committed_whole_or_not_at_all(store):
    store.log_predictions(predictions(3))
    assert store.count("predictions") == 3
    assert store.count("prediction_horizons") == 36
    # the second batch repeats id1: the primary key refuses it, and its new rows go too
    with pytest.raises(sa.exc.IntegrityError):
        store.log_predictions([*predictions(2, start=10), *predictions(1, start=1)])
    assert store.count("predictions") == 3
    assert store.count("prediction_horizons") == 36


def test_times_places_and_inputs_are_stored_as_documented(store):
    store.log_predictions(predictions(1, station_id="kgso",
                                      features={"opaque_cloud_tenths": 3.0, "ceiling_m": float(
                                          "nan")}))
    with store.engine.connect() as db:
        head = db.execute(sa.select(serving.predictions)).one()
        horizons = db.execute(sa.select(serving.prediction_horizons)
                              .order_by(serving.prediction_horizons.c.horizon_h)).all()
        inputs = db.execute(sa.select(serving.prediction_inputs)).one()
    assert (head.latitude, head.longitude) == (36.12, -79.99)  # 0.01° by default
    assert head.issued_for == T0 and head.issued_for.tzinfo == dt.UTC
    assert head.kind == "nowcast" and head.station_id == "kgso"
    assert [h.target_time for h in horizons] == [T0 + dt.timedelta(hours=h)
                                                 for h in range(1, 13)]
    assert json.loads(inputs.features) == {"opaque_cloud_tenths": 3.0, "ceiling_m": None}


def test_feedback_comes_once_per_known_prediction(store):
    store.log_predictions(predictions(1))
    with pytest.raises(UnknownPrediction):
        store.add_feedback("nope", "clear")
    assert store.add_feedback("id0", "partly", T0) >= 1
    with pytest.raises(FeedbackExists, match="already has feedback .'partly'"):
        store.add_feedback("id0", "cloudy")
    assert store.count("feedback") == 1


def test_a_store_at_the_first_revision_is_migrated_with_its_rows(store_url):
    # revision 0001 is the old prediction log: per-horizon rows, ISO text, repeated feedback
    engine = sa.create_engine(store_url)
    serving.upgrade(engine, "0001")
    with engine.begin() as db:
        for h in (1, 2):
            db.exec_driver_sql(
                "INSERT INTO predictions VALUES ('old', '2026-01-01T00:00:00.000+00:00', '3', "
                f"36.1, -79.9, '2025-12-31T23:00:00+00:00', {h}, "
                f"'2026-01-01T{h - 1:02d}:00:00+00:00', 0.25)")
        db.exec_driver_sql("INSERT INTO feedback (prediction_id, received_at, observed) VALUES "
                           "('old', '2026-01-01T01:00:00+00:00', 'cloudy'), "
                           "('old', '2026-01-01T02:00:00+00:00', 'clear')")
    engine.dispose()
    assert serving.current_revision(sa.create_engine(store_url)) == "0001"
    opened = Store(store_url)
    try:
        assert serving.current_revision(opened.engine) == serving.HEAD_REVISION
        assert opened.count("predictions") == 1 and opened.count("prediction_horizons") == 2
        with opened.engine.connect() as db:
            head = db.execute(sa.select(serving.predictions)).one()
            answer = db.execute(sa.select(serving.feedback)).one()
        assert head.issued_for == dt.datetime(2025, 12, 31, 23, tzinfo=dt.UTC)
        assert answer.observed == "cloudy"  # the first answer stays
        opened.log_predictions(predictions(1))  # and the migrated store takes new rows
    finally:
        opened.close()


def test_a_prediction_log_from_before_the_store_is_adopted(tmp_path):
    path = tmp_path / "prediction_log.sqlite"
    with sqlite3.connect(path) as db:  # exactly what serve/predlog.py created
        db.executescript("""
            CREATE TABLE predictions (prediction_id TEXT NOT NULL, created_at TEXT NOT NULL,
                model_version TEXT NOT NULL, latitude REAL NOT NULL, longitude REAL NOT NULL,
                issued_for TEXT NOT NULL, horizon_h INTEGER NOT NULL, target_time TEXT NOT NULL,
                p_clear REAL NOT NULL, PRIMARY KEY (prediction_id, horizon_h));
            CREATE TABLE feedback (feedback_id INTEGER PRIMARY KEY AUTOINCREMENT,
                prediction_id TEXT NOT NULL, received_at TEXT NOT NULL, observed_at TEXT,
                observed TEXT NOT NULL CHECK (observed IN ('clear', 'cloudy')));
            INSERT INTO predictions VALUES ('a', '2026-01-01T00:00:00.000+00:00', '1', 1, 2,
                '2026-01-01T00:00:00+00:00', 1, '2026-01-01T01:00:00+00:00', 0.5);
        """)
    opened = Store(path)
    try:
        assert opened.count("predictions") == 1 and opened.count("prediction_horizons") == 1
    finally:
        opened.close()


def test_the_head_revision_is_the_migrations_head():
    from alembic.script import ScriptDirectory

    from starry_guide.serve.store.database import MIGRATIONS

    script = ScriptDirectory(str(MIGRATIONS))
    assert script.get_heads() == [serving.HEAD_REVISION]


def test_a_newer_schema_is_refused_with_a_clear_message(store_url):
    Store(store_url, maintenance=False).close()
    engine = sa.create_engine(store_url)
    with engine.begin() as db:
        db.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    engine.dispose()
    with pytest.raises(serving.StoreError, match="newer Starry Guide"):
        Store(store_url)


def test_the_sqlite_file_is_private_and_durable(tmp_path):
    opened = Store(tmp_path / "s.sqlite")
    try:
        opened.log_predictions(predictions(1))
        for suffix in ("", "-wal", "-shm", ".lock"):
            assert os.stat(tmp_path / f"s.sqlite{suffix}").st_mode & 0o077 == 0
        with opened.engine.connect() as db:
            assert db.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert db.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    finally:
        opened.close()


def test_the_background_thread_folds_the_wal_into_the_database(tmp_path):
    path = tmp_path / "log.sqlite"
    opened = Store(path)
    empty = path.stat().st_size
    for batch in range(20):
        opened.log_predictions(predictions(100, start=100 * batch))
    deadline = time.time() + 10 * opened.CHECKPOINT_SECONDS
    while path.stat().st_size <= empty + 1_000_000 and time.time() < deadline:
        time.sleep(0.1)
    # 24 000 horizon rows reached the database file itself: only a checkpoint puts them there
    assert path.stat().st_size > empty + 1_000_000
    assert opened.count("prediction_horizons") == 24_000
    assert opened.maintenance.status()["state"] == "ok"
    opened.close()


def test_the_wal_stays_bounded_under_sustained_writes(tmp_path):
    """20 s of two busy writers and a reader (passive checkpoints alone let the WAL grow
    ~18 MB/s here): TRUNCATE checkpoints that get their turn keep it near its limit."""
    import threading
    import uuid

    opened = Store(tmp_path / "s.sqlite", maintenance=False)
    opened.maintenance.WAL_LIMIT_BYTES = 4 * 1024 * 1024
    opened.maintenance.start()
    features = {f"feature_{i}": 1.5 for i in range(30)}
    stop = time.monotonic() + 20
    errors = []

    def write() -> None:
        try:
            while time.monotonic() < stop:
                opened.log_predictions([
                    Prediction(uuid.uuid4().hex, "1", "nowcast", 1.0, 2.0, T0,
                               [(h, T0, 0.5) for h in range(1, 13)], features=features)
                    for _ in range(20)])
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def read() -> None:
        while time.monotonic() < stop:
            opened.count("predictions")
            time.sleep(0.05)

    threads = [threading.Thread(target=write) for _ in range(2)] + [threading.Thread(
        target=read)]
    for thread in threads:
        thread.start()
    largest = 0
    while time.monotonic() < stop:
        largest = max(largest, opened.file_sizes()["wal"])
        time.sleep(0.05)
    for thread in threads:
        thread.join()
    status = opened.maintenance.status()
    database = opened.file_sizes()["database"]
    opened.close()
    assert not errors
    assert status["state"] == "ok" and status["wal_truncations"] > 0
    # without resets the WAL holds every page ever written, more than the database itself;
    # here it never held half of it (a loaded 2-core machine delays the checks: no tighter)
    assert database > 2 * largest, (database, largest)
    assert largest < 4 * 1024 * 1024 + 40_000_000


def test_a_failing_maintenance_is_reported_not_silent(bundle_dir, tmp_path):
    from fastapi.testclient import TestClient

    from starry_guide.artifacts.bundle import load_bundle
    from starry_guide.serve.app import create_app
    from starry_guide.serve.service import Service

    (tmp_path / "a").mkdir()
    opened = Store(tmp_path / "a" / "s.sqlite")  # its maintenance thread runs
    service = Service(load_bundle(bundle_dir), opened)
    with TestClient(create_app(service)) as client:
        opened.maintenance.run_once()
        assert client.get("/healthz").json()["store"]["maintenance"]["state"] == "ok"
        assert "starry_store_maintenance_failing 0.0" in client.get("/metrics").text
        # the store's folder moves away under the server: new connections cannot open it
        opened.engine.dispose()
        (tmp_path / "a").rename(tmp_path / "b")
        for _ in range(opened.maintenance.FAILING_AFTER):
            opened.maintenance.run_once()
        health = client.get("/healthz")
        assert health.status_code == 503 and health.json()["status"] == "degraded"
        assert "unable to open" in health.json()["store"]["maintenance"]["last_error"]
        metrics = client.get("/metrics").text
        assert "starry_store_maintenance_failing 1.0" in metrics
        assert "starry_store_maintenance_failures_total 0.0" not in metrics
    opened.close()
