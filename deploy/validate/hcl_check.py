"""Parses every Terraform and Packer file under deploy/ with python-hcl2 and
checks the conventions deploy/ keeps: every variable and output has a
description, every required provider and plugin has a pinned version, and no
variable has a default that looks like a secret.

Usage: python hcl_check.py DEPLOY_DIR
"""

import re
import sys
from pathlib import Path

import hcl2

SECRET_NAME = re.compile(r"(password|secret|token|private_key)", re.IGNORECASE)


def first(value):
    """python-hcl2 wraps attribute values and nested blocks in lists."""
    if isinstance(value, list):
        return value[0] if value else None
    return value


def check_file(path: Path, problems: list[str]) -> None:
    try:
        with path.open(encoding="utf-8") as handle:
            doc = hcl2.load(handle)
    except Exception as error:  # python-hcl2 raises lark errors of several kinds
        problems.append(f"{path}: does not parse: {error}")
        return

    for block in doc.get("variable", []):
        for name, body in block.items():
            name = name.strip('"')
            if not first(body.get("description")):
                problems.append(f"{path}: variable {name} has no description")
            default = first(body.get("default"))
            if SECRET_NAME.search(name) and isinstance(default, str) and default and "file" not in name:
                problems.append(f"{path}: variable {name} has a default that may be a secret")

    for block in doc.get("output", []):
        for name, body in block.items():
            if not first(body.get("description")):
                problems.append(f"{path}: output {name.strip(chr(34))} has no description")

    for settings in doc.get("terraform", []) + doc.get("packer", []):
        for key in ("required_providers", "required_plugins"):
            for providers in settings.get(key, []):
                for name, spec in providers.items():
                    spec = first(spec)
                    if name.startswith("__"):
                        continue
                    if not isinstance(spec, dict) or not first(spec.get("version")):
                        problems.append(f"{path}: {key} entry {name} has no pinned version")


def main() -> int:
    deploy = Path(sys.argv[1])
    files = sorted(p for p in deploy.rglob("*") if p.name.endswith((".tf", ".pkr.hcl")) and ".terraform" not in p.parts)
    problems: list[str] = []
    for path in files:
        check_file(path, problems)
    for problem in problems:
        print(problem)
    print(f"hcl: {len(files)} files parsed, {len(problems)} problems")
    return 1 if problems or not files else 0


if __name__ == "__main__":
    sys.exit(main())
