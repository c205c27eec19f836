"""Print docs/api.md's `poolscore serve` flag table from ServeConfig (tests/test_docs.py
checks that the doc holds exactly this table)."""
from __future__ import annotations

import dataclasses
import inspect
import re
import typing

from poolscore.server.config import ServeConfig

# fields with no comment in config.py: what the README says of them
NOTES = {
    "max_sessions": "sessions held at once; beyond it RESOURCE_EXHAUSTED (README, Production limits)",
    "max_k": "the largest k a request may ask for; beyond it RESOURCE_EXHAUSTED (README)",
    "max_message_bytes": "64 MiB: the largest message received or sent, replies included (README)",
    "log_level": "the logging level of `serve` (`server/cli.py`)",
}


def comments() -> dict[str, str]:
    source = inspect.getsource(ServeConfig)
    return {m.group(1): m.group(2).strip() for m in re.finditer(r"^\s+(\w+): [^=]+=.*?  # (.*)$", source, re.M)}


def table() -> str:
    said, hints = comments(), typing.get_type_hints(ServeConfig)
    rows = ["| flag | variable | type | default | description |", "|---|---|---|---|---|"]
    for f in dataclasses.fields(ServeConfig):
        text = said.get(f.name) or f"*(no comment)* {NOTES[f.name]}"
        text = text.replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")
        default = f'"{f.default}"' if isinstance(f.default, str) else repr(f.default)
        rows.append(f"| `--{f.name.replace('_', '-')}` | `POOLSCORE_{f.name.upper()}` | {hints[f.name].__name__} | "
                    f"`{default}` | {text} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(table())
