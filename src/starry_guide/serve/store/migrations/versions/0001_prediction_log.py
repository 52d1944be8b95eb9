"""The prediction log as ``serve/predlog.py`` wrote it before the store existed: one row
per prediction and horizon, times as ISO 8601 text, any number of feedback per prediction.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "predictions",
        sa.Column("prediction_id", sa.Text, nullable=False),
        sa.Column("created_at", sa.Text, nullable=False),
        sa.Column("model_version", sa.Text, nullable=False),
        sa.Column("latitude", sa.Float, nullable=False),
        sa.Column("longitude", sa.Float, nullable=False),
        sa.Column("issued_for", sa.Text, nullable=False),
        sa.Column("horizon_h", sa.Integer, nullable=False),
        sa.Column("target_time", sa.Text, nullable=False),
        sa.Column("p_clear", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("prediction_id", "horizon_h"),
    )
    op.create_table(
        "feedback",
        sa.Column("feedback_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("prediction_id", sa.Text, nullable=False),
        sa.Column("received_at", sa.Text, nullable=False),
        sa.Column("observed_at", sa.Text),
        sa.Column("observed", sa.Text, nullable=False),
        sa.CheckConstraint("observed IN ('clear', 'cloudy')"),
    )


def downgrade() -> None:
    op.drop_table("feedback")
    op.drop_table("predictions")
