"""Web Push: the subscriptions the app registers and the ledger of nudges sent, which makes
"one push per subscription, night and window" hold across decider runs, restarts, worker
processes and hosts (see :mod:`starry_guide.serve.push.subscriptions`).

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "push_subscriptions",
        sa.Column("subscription_id", sa.String(32), primary_key=True),
        sa.Column("secret_sha256", sa.String(64), nullable=False),
        sa.Column("endpoint", sa.String(2048), nullable=False, unique=True),
        sa.Column("p256dh", sa.String(100), nullable=False),
        sa.Column("auth", sa.String(40), nullable=False),
        sa.Column("station_id", sa.String(64), nullable=False),
        sa.Column("min_probability", sa.Float, nullable=False),
        sa.Column("min_minutes", sa.Integer, nullable=False),
        sa.Column("time_zone", sa.String(64), nullable=False),
        sa.Column("quiet_start", sa.String(5)),
        sa.Column("quiet_end", sa.String(5)),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("last_seen_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_push_subscriptions_station", "push_subscriptions", ["station_id"])
    op.create_table(
        "push_deliveries",
        sa.Column("delivery_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("subscription_id", sa.String(32),
                  sa.ForeignKey("push_subscriptions.subscription_id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("night", sa.Date, nullable=False),
        sa.Column("window_start", sa.DateTime, nullable=False),
        sa.Column("window_end", sa.DateTime, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("claimed_at", sa.DateTime, nullable=False),
        sa.Column("sent_at", sa.DateTime),
        sa.CheckConstraint("status IN ('sending', 'sent')", name="ck_push_deliveries_status"),
    )
    op.create_index("ix_push_deliveries_subscription_night", "push_deliveries",
                    ["subscription_id", "night"])


def downgrade() -> None:
    op.drop_index("ix_push_deliveries_subscription_night", "push_deliveries")
    op.drop_table("push_deliveries")
    op.drop_index("ix_push_subscriptions_station", "push_subscriptions")
    op.drop_table("push_subscriptions")
