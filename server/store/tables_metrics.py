"""Time series: one row per (device, metric, labels), raw samples and their roll-ups."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Float, Integer, String, Table, Text, UniqueConstraint

from server.store.columns import id_table, ref
from server.store.metadata import metadata

series = id_table(
    "series",
    ref("device_id", "devices"),
    Column("metric", String(64), nullable=False),
    Column("labels", Text, nullable=False, default=""),  # canonical JSON of the label dict
    UniqueConstraint("device_id", "metric", "labels", name="uq_series_key"),
)


samples = Table(
    "samples",
    metadata,
    ref("series_id", "series", primary_key=True),
    Column("ts", BigInteger, primary_key=True),
    Column("value", Float, nullable=False),
)


rollups = Table(
    "rollups",
    metadata,
    ref("series_id", "series", primary_key=True),
    Column("resolution", Integer, primary_key=True),  # seconds: 300 or 3600
    Column("ts", BigInteger, primary_key=True),
    Column("vmin", Float, nullable=False),
    Column("vmax", Float, nullable=False),
    Column("vavg", Float, nullable=False),
    Column("n", Integer, nullable=False),
)
