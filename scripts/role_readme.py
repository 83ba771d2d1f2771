"""Write the "Role variables" section of each role's README from its meta/argument_specs.yml.

Usage: python scripts/role_readme.py [--check]   (--check: exit 1 if a README is out of date)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- BEGIN VARIABLES (scripts/role_readme.py) -->", "<!-- END VARIABLES -->"


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def variables_section(spec_file: Path) -> str:
    options = yaml.safe_load(spec_file.read_text())["argument_specs"]["main"]["options"]
    rows = ["| Variable | Type | Default | Description |", "|---|---|---|---|"]
    for name, option in options.items():
        if option.get("required"):
            default = "required"
        elif "default" in option:
            default = f"`{json.dumps(option['default'])}`"
        else:
            default = "unset"
        description = " ".join(option.get("description", "")) if isinstance(option.get("description"), list) \
            else option.get("description", "")
        rows.append(f"| `{name}` | {option.get('type', 'str')} | {_cell(default)} | {_cell(description)} |")
    return "\n".join([BEGIN, *rows, END])


def render(readme: Path, spec_file: Path) -> str:
    text = readme.read_text()
    start, end = text.index(BEGIN), text.index(END) + len(END)
    return text[:start] + variables_section(spec_file) + text[end:]


def main() -> int:
    check = "--check" in sys.argv[1:]
    stale = []
    for role in sorted((ROOT / "roles").iterdir()):
        readme, spec = role / "README.md", role / "meta" / "argument_specs.yml"
        new = render(readme, spec)
        if new != readme.read_text():
            stale.append(str(readme.relative_to(ROOT)))
            if not check:
                readme.write_text(new)
    if check and stale:
        print("out of date (run python scripts/role_readme.py):", *stale)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
