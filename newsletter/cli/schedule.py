"""`newsletter run`: fetch, then send every list whose scheduled slot is due."""

from __future__ import annotations
