"""The docs say what the code does: docs/api.md's `serve` flag table is the one ServeConfig
makes, so a new flag cannot go undocumented."""
from __future__ import annotations

import dataclasses
import runpy
from pathlib import Path

from poolscore.server.config import ServeConfig

ROOT = Path(__file__).resolve().parent.parent


def test_the_serve_flag_table_is_the_configs() -> None:
    table = runpy.run_path(str(ROOT / "scripts" / "flags_table.py"))["table"]()
    assert table in (ROOT / "docs" / "api.md").read_text(), "docs/api.md: run python scripts/flags_table.py"
    for f in dataclasses.fields(ServeConfig):  # every flag, with its variable
        assert f"`--{f.name.replace('_', '-')}` | `POOLSCORE_{f.name.upper()}`" in table
