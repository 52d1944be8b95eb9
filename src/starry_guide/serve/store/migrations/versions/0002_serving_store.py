"""The serving store: stations, observations (with corrections), predictions split into a
header, its horizons and its inputs, feedback once per prediction (clear/partly/cloudy).
Times become UTC timestamps. Rows of the old prediction log are carried over.

Revision ID: 0002
Revises: 0001
"""

import datetime as dt

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

WEATHER = ["opaque_cloud_tenths", "total_cloud_tenths", "temp_air_c", "temp_dew_c",
           "relative_humidity", "pressure_hpa", "wind_speed_ms", "wind_direction_deg",
           "visibility_km", "ceiling_m", "precipitable_water_cm"]
CHUNK = 10_000


def _utc(text):
    if text is None:
        return None
    value = dt.datetime.fromisoformat(text)
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


def _create_tables() -> None:
    op.create_table(
        "stations",
        sa.Column("station_id", sa.String(64), primary_key=True),
        sa.Column("latitude", sa.Float, nullable=False),
        sa.Column("longitude", sa.Float, nullable=False),
        sa.Column("elevation_m", sa.Float, nullable=False),
        sa.Column("name", sa.String(200)),
        sa.Column("registered_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "observations",
        sa.Column("station_id", sa.String(64), sa.ForeignKey("stations.station_id"),
                  primary_key=True),
        sa.Column("time", sa.DateTime, primary_key=True),
        *(sa.Column(name, sa.Float) for name in WEATHER),
        sa.Column("received_at", sa.DateTime, nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
    )
    op.create_table(
        "observation_corrections",
        sa.Column("correction_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("station_id", sa.String(64), nullable=False),
        sa.Column("time", sa.DateTime, nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        *(sa.Column(name, sa.Float) for name in WEATHER),
        sa.Column("received_at", sa.DateTime, nullable=False),
        sa.Column("corrected_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_observation_corrections_station_time", "observation_corrections",
                    ["station_id", "time"])
    op.create_table(
        "predictions",
        sa.Column("prediction_id", sa.String(64), primary_key=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("station_id", sa.String(64)),
        sa.Column("latitude", sa.Float, nullable=False),
        sa.Column("longitude", sa.Float, nullable=False),
        sa.Column("issued_for", sa.DateTime, nullable=False),
        sa.CheckConstraint("kind IN ('nowcast', 'night')", name="ck_predictions_kind"),
    )
    op.create_index("ix_predictions_created_at", "predictions", ["created_at"])
    op.create_index("ix_predictions_station_issued", "predictions", ["station_id", "issued_for"])
    op.create_table(
        "prediction_horizons",
        sa.Column("prediction_id", sa.String(64), sa.ForeignKey("predictions.prediction_id"),
                  primary_key=True),
        sa.Column("horizon_h", sa.Integer, primary_key=True),
        sa.Column("target_time", sa.DateTime, nullable=False),
        sa.Column("p_clear", sa.Float, nullable=False),
    )
    op.create_index("ix_prediction_horizons_target_time", "prediction_horizons",
                    ["target_time"])
    op.create_table(
        "prediction_inputs",
        sa.Column("prediction_id", sa.String(64), sa.ForeignKey("predictions.prediction_id"),
                  primary_key=True),
        sa.Column("features", sa.Text, nullable=False),
    )
    op.create_table(
        "feedback",
        sa.Column("feedback_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("prediction_id", sa.String(64), sa.ForeignKey("predictions.prediction_id"),
                  nullable=False, unique=True),
        sa.Column("received_at", sa.DateTime, nullable=False),
        sa.Column("observed_at", sa.DateTime),
        sa.Column("observed", sa.String(16), nullable=False),
        sa.CheckConstraint("observed IN ('clear', 'partly', 'cloudy')",
                           name="ck_feedback_observed"),
    )


def _insert(bind, table: sa.Table, rows: list[dict]) -> None:
    for start in range(0, len(rows), CHUNK):
        bind.execute(table.insert(), rows[start:start + CHUNK])


def upgrade() -> None:
    bind = op.get_bind()
    # the old log's rows, read before its tables make way for the new ones
    old = bind.execute(sa.text(
        "SELECT prediction_id, created_at, model_version, latitude, longitude, issued_for, "
        "horizon_h, target_time, p_clear FROM predictions ORDER BY prediction_id, horizon_h"
    )).all()
    old_feedback = bind.execute(sa.text(
        "SELECT feedback_id, prediction_id, received_at, observed_at, observed FROM feedback "
        "ORDER BY feedback_id")).all()
    op.drop_table("feedback")
    op.drop_table("predictions")
    _create_tables()

    meta = sa.MetaData()
    meta.reflect(bind, only=["predictions", "prediction_horizons", "feedback"])
    heads, horizons = {}, []
    for row in old:
        heads.setdefault(row.prediction_id, {
            "prediction_id": row.prediction_id, "created_at": _utc(row.created_at),
            "model_version": row.model_version, "kind": "nowcast", "station_id": None,
            "latitude": row.latitude, "longitude": row.longitude,
            "issued_for": _utc(row.issued_for)})
        horizons.append({"prediction_id": row.prediction_id, "horizon_h": row.horizon_h,
                         "target_time": _utc(row.target_time), "p_clear": row.p_clear})
    _insert(bind, meta.tables["predictions"], list(heads.values()))
    _insert(bind, meta.tables["prediction_horizons"], horizons)
    answered = set()
    kept = []
    for row in old_feedback:  # one answer per prediction now: the first one stays
        if row.prediction_id in heads and row.prediction_id not in answered:
            answered.add(row.prediction_id)
            kept.append({"prediction_id": row.prediction_id,
                         "received_at": _utc(row.received_at),
                         "observed_at": _utc(row.observed_at), "observed": row.observed})
    _insert(bind, meta.tables["feedback"], kept)


def downgrade() -> None:
    raise NotImplementedError("the serving store does not go back to the prediction log")
