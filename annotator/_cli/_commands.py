"""Import every command module so that each registers its commands on the group."""

from __future__ import annotations
