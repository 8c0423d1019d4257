"""`newsletter check`: the preflight of the next digest."""

from __future__ import annotations
