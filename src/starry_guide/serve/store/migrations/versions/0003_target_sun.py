"""The sun's elevation at each prediction's target hour, so that labels can be restricted to
night hours exactly as in training (NULL for rows carried over from the prediction log).

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("prediction_horizons") as batch:
        batch.add_column(sa.Column("target_sun_elevation_deg", sa.Float))


def downgrade() -> None:
    with op.batch_alter_table("prediction_horizons") as batch:
        batch.drop_column("target_sun_elevation_deg")
