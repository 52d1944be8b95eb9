"""The store writes predictions through the driver's own executemany (BulkInsert): the rows
it stores must be exactly what SQLAlchemy's usual insert stores — byte for byte in the
database (SQLite keeps datetimes as text: one format or the other would break ordering and
equality) — on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from starry_guide.serve.store import database
from starry_guide.serve.store.database import Prediction, Store

ISSUED = dt.datetime(2026, 11, 27, 23, tzinfo=dt.UTC)


def prediction(prediction_id: str) -> Prediction:
    return Prediction(
        prediction_id, "v7", "nowcast", 36.123456, -79.987654, ISSUED,
        [(h, ISSUED + dt.timedelta(hours=h), 0.1 * h) for h in (1, 2, 3)],
        station_id="kgso", features={"temp_air_c": 3.9, "latitude": 36.123456,
                                     "visibility_km": float("nan")},
        target_sun_elevation_deg=[-20.5, -30.25, None])


def raw_rows(store: Store, table: str, prediction_id: str) -> list[tuple]:
    """The stored values as the driver returns them, without SQLAlchemy's types."""
    with store.engine.connect() as db:
        rows = db.execute(sa.text(f"SELECT * FROM {table} WHERE prediction_id = :id"),
                          {"id": prediction_id}).all()
    return sorted(tuple("<id>" if value == prediction_id else value for value in row)
                  for row in rows)


def test_bulk_inserts_store_what_sqlalchemy_stores(store_url):
    store = Store(store_url, maintenance=False)
    try:
        store.log_predictions([prediction("bulk")])
        # the same prediction through SQLAlchemy's insert of dictionaries, as before
        p = prediction("usual")
        created = raw_created(store, "bulk")
        with store.write() as db:
            db.execute(database.predictions.insert(), [{
                "prediction_id": p.prediction_id, "created_at": created,
                "model_version": p.model_version, "kind": p.kind, "station_id": p.station_id,
                "latitude": round(p.latitude, 2), "longitude": round(p.longitude, 2),
                "issued_for": p.issued_for}])
            db.execute(database.prediction_horizons.insert(), [
                {"prediction_id": p.prediction_id, "horizon_h": h, "target_time": t,
                 "p_clear": pc, "target_sun_elevation_deg": sun}
                for (h, t, pc), sun in zip(p.horizons, p.target_sun_elevation_deg,
                                           strict=True)])
            db.execute(database.prediction_inputs.insert(), [{
                "prediction_id": p.prediction_id,
                "features": '{"temp_air_c":3.9,"latitude":36.12,"visibility_km":null}'}])
        for table in ("predictions", "prediction_horizons", "prediction_inputs"):
            assert raw_rows(store, table, "bulk") == raw_rows(store, table, "usual"), table
        # and read back through the store as aware UTC datetimes, in horizon order
        latest = store.latest_prediction("kgso")
        assert latest["issued_for"] == ISSUED
        assert [f["target_time"] for f in latest["forecasts"]] == [
            ISSUED + dt.timedelta(hours=h) for h in (1, 2, 3)]
        assert [f["target_sun_elevation_deg"] for f in latest["forecasts"]] == [
            -20.5, -30.25, None]
    finally:
        store.close()


def raw_created(store: Store, prediction_id: str) -> dt.datetime:
    with store.engine.connect() as db:
        return db.execute(sa.select(database.predictions.c.created_at).where(
            database.predictions.c.prediction_id == prediction_id)).scalar_one()


def test_a_batch_stores_what_sqlalchemy_stores(store_url):
    """Several predictions in one commit, as the group commit writes them: shared issue and
    target hours (converted once per batch), missing suns, two kinds, places and stations."""
    def batch(prefix: str) -> list[Prediction]:
        return [Prediction(
            f"{prefix}{i}", "v7", ("nowcast", "night")[i % 2], 36.1 + i / 7, -79.9 - i / 3,
            ISSUED + dt.timedelta(hours=i // 3),
            [(h, ISSUED + dt.timedelta(hours=i // 3 + h), round(0.05 * h + i / 100, 6))
             for h in range(1, 13)],
            station_id=None if i % 3 else f"s{i}", features={"temp_air_c": i / 10},
            target_sun_elevation_deg=[None if (h + i) % 5 == 0 else -h * 1.5 - i
                                      for h in range(1, 13)])
            for i in range(7)]

    store = Store(store_url, maintenance=False)
    try:
        store.log_predictions(batch("bulk"))
        created = raw_created(store, "bulk0")
        usual = batch("usual")
        with store.write() as db:
            db.execute(database.predictions.insert(), [{
                "prediction_id": p.prediction_id, "created_at": created,
                "model_version": p.model_version, "kind": p.kind, "station_id": p.station_id,
                "latitude": round(p.latitude, 2), "longitude": round(p.longitude, 2),
                "issued_for": p.issued_for} for p in usual])
            db.execute(database.prediction_horizons.insert(), [
                {"prediction_id": p.prediction_id, "horizon_h": h, "target_time": t,
                 "p_clear": pc, "target_sun_elevation_deg": sun}
                for p in usual
                for (h, t, pc), sun in zip(p.horizons, p.target_sun_elevation_deg,
                                           strict=True)])
            db.execute(database.prediction_inputs.insert(), [{
                "prediction_id": p.prediction_id,
                "features": f'{{"temp_air_c":{p.features["temp_air_c"]}}}'} for p in usual])
        for i in range(7):
            for table in ("predictions", "prediction_horizons", "prediction_inputs"):
                bulk = raw_rows(store, table, f"bulk{i}")
                assert bulk and bulk == raw_rows(store, table, f"usual{i}"), (table, i)
    finally:
        store.close()
