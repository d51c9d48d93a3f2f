"""Renderers: JSON documents (:mod:`.json`), human tables (:mod:`.table`), doctor's findings
(:mod:`.findings`). Commands choose one by :class:`OutputFormat`; nothing else prints data."""

from __future__ import annotations

from enum import Enum


class OutputFormat(str, Enum):
    TABLE = "table"  # the human table (rich on a terminal, plain columns on a pipe)
    WIDE = "wide"  # the human table with more columns
    JSON = "json"  # the versioned JSON document
    TEXT = "text"  # prose for people (doctor's findings)
