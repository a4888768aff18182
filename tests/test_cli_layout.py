"""The CLI surface is declared once: no option is spelled out in more than one command module."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

CLI = Path(__file__).resolve().parents[1] / "agc_cli" / "cli"


def test_no_option_is_declared_in_more_than_one_command_module():
    declared: Counter[str] = Counter()
    for module in CLI.glob("*.py"):
        if module.name == "options.py":
            continue
        names = set(re.findall(r'typer\.Option\(\s*"(--[a-z0-9-]+)', module.read_text()))
        declared.update(names)
    repeated = sorted(name for name, count in declared.items() if count > 1)
    assert repeated == [], f"declare these once in cli/options.py: {repeated}"
