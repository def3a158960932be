"""Base model shared by every persisted cellvec record."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

SCHEMA_VERSION = 1
"""Version of the persisted record layout; bumped when a stored field changes meaning."""


class Record(BaseModel):
    """Frozen pydantic model that rejects unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)
