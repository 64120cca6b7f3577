"""Regenerate the README's generated tables (connection extras, resource catalogue) from the code.

python scripts/readme_tables.py           # rewrite README.md in place
python scripts/readme_tables.py --check   # exit 1 if README.md is stale (the test suite does this)
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from peak_provider.extras import EXTRAS
from peak_provider.resources import APPLICATIONS, get_application

README = Path(__file__).resolve().parents[1] / "README.md"


def extras_table() -> str:
    lines = ["| Extra | Default | Meaning |", "|---|---|---|"]
    for name, spec in EXTRAS.items():
        if name == "solution_name":
            default = "(required)"
        elif name == "timestamp_format":
            default = "(application's)"
        else:
            default = f"`{spec.default}`" if spec.default != "" else '`""`'
        text = spec.description
        if spec.enum:
            text += " One of " + ", ".join(f"`{v}`" for v in spec.enum) + "."
        lines.append(f"| `{name}` | {default} | {text} |")
    return "\n".join(lines)


def catalogue_table() -> str:
    lines = []
    for app_name in APPLICATIONS:
        app = get_application(app_name)
        lines += [
            f"**`{app_name}`** — {app.description}; timestamps `{app.timestamp_format}`.",
            "",
            "| Resource | Object | Primary key | Required fields | Other fields | References | Default op | Source |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for res in app.resources.values():
            required = ", ".join(f.name for f in res.fields if f.required and f.name not in res.primary_key)
            others = ", ".join(f.name for f in res.fields if not f.required and f.name not in res.primary_key)
            refs = ", ".join(sorted({fk.references for fk in res.foreign_keys if fk.references != res.name}))
            source = "seed page" if res.provenance == "seed" else "API guide"
            lines.append(
                f"| `{res.name}` | `{{prefix}}{res.object}{{suffix}}` | {', '.join(res.primary_key)} | {required or '—'} "
                f"| {others or '—'} | {refs or '—'} | {res.default_operation} | {source} |"
            )
        lines.append("")
    return "\n".join(lines).rstrip()


def render(text: str) -> str:
    from peak_provider.retries import markdown_table

    tables = (("extras", extras_table()), ("catalogue", catalogue_table()), ("retries", markdown_table()))
    for name, table in tables:
        pattern = re.compile(
            rf"(<!-- BEGIN GENERATED: {name} \(scripts/readme_tables.py\) -->\n).*?(<!-- END GENERATED: {name} -->)",
            re.S,
        )
        if not pattern.search(text):
            raise SystemExit(f"README.md lacks the markers of the generated {name} table")
        text = pattern.sub(lambda m, t=table: f"{m[1]}{t}\n{m[2]}", text)
    return text


def main() -> int:
    current = README.read_text(encoding="utf-8")
    fresh = render(current)
    if "--check" in sys.argv:
        if fresh != current:
            print("README.md tables are stale: run python scripts/readme_tables.py", file=sys.stderr)
            return 1
        return 0
    README.write_text(fresh, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
