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


# Who may import whom (DESIGN.md, "Layers"): the library packages import only downward; every
# import counts, also one inside a function.
ALLOWED = {
    "data": {"data", "errors", "utils"},
    "sampling": {"sampling", "data", "errors", "utils"},
    "models": {"models", "data", "errors", "utils"},
    "cluster": {"cluster", "errors", "utils"},
    "engine": {"engine", "data", "sampling", "models", "cluster", "settings", "errors", "utils",
               "presets"},
}  # fmt: skip


def test_library_packages_import_only_downward():
    import ast

    root = CLI.parent
    wrong = []
    for package, allowed in ALLOWED.items():
        for module in (root / package).rglob("*.py"):
            for node in ast.walk(ast.parse(module.read_text())):
                names = []
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names = [node.module]
                elif isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                for name in names:
                    parts = name.split(".")
                    if parts[0] == "agc_cli" and len(parts) > 1 and parts[1] not in allowed:
                        wrong.append(f"{module.relative_to(root)} imports {name}")
    assert wrong == []
