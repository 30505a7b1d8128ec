"""Time series: one row per (device, metric, labels), raw samples and their roll-ups."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Float, ForeignKey, Integer, String, Table, Text, UniqueConstraint

from server.store.metadata import metadata

series = Table(
    "series",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("device_id", Integer, ForeignKey("devices.id", ondelete="CASCADE"), nullable=False),
    Column("metric", String(64), nullable=False),
    Column("labels", Text, nullable=False, default=""),  # canonical JSON of the label dict
    UniqueConstraint("device_id", "metric", "labels", name="uq_series_key"),
)


samples = Table(
    "samples",
    metadata,
    Column("series_id", Integer, ForeignKey("series.id", ondelete="CASCADE"), primary_key=True),
    Column("ts", BigInteger, primary_key=True),
    Column("value", Float, nullable=False),
)


rollups = Table(
    "rollups",
    metadata,
    Column("series_id", Integer, ForeignKey("series.id", ondelete="CASCADE"), primary_key=True),
    Column("resolution", Integer, primary_key=True),  # seconds: 300 or 3600
    Column("ts", BigInteger, primary_key=True),
    Column("vmin", Float, nullable=False),
    Column("vmax", Float, nullable=False),
    Column("vavg", Float, nullable=False),
    Column("n", Integer, nullable=False),
)
