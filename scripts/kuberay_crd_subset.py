"""Cut KubeRay's CRD schemas down to the part cluster/kuberay/*.yaml use, for the offline tests.

KubeRay's CRDs (ray-operator/config/crd/bases/ray.io_rayclusters.yaml and ray.io_rayjobs.yaml,
~1 MB each: every embedded pod template is spelled out) are too large to ship. This keeps, for
every object the manifests reach, its `required` list, the schemas of the fields the manifests
set and of every required field, and forbids other fields (`additionalProperties: false`, as
`kubectl apply --validate=strict` does), with descriptions dropped. A manifest field the CRD does
not define fails here, at extraction. tests/cluster/test_kuberay.py validates the manifests
against the result with jsonschema.

    python scripts/kuberay_crd_subset.py --crd-dir <kuberay>/ray-operator/config/crd/bases \
        --source "ray-project/kuberay@<commit>"
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = {"RayCluster": "cluster/kuberay/raycluster.yaml", "RayJob": "cluster/kuberay/rayjob.yaml"}
CRD_FILES = {"RayCluster": "ray.io_rayclusters.yaml", "RayJob": "ray.io_rayjobs.yaml"}
OUTPUT = ROOT / "tests" / "cluster" / "kuberay_crd_subset.json"
KEPT = ("type", "required", "enum", "format", "pattern", "anyOf", "x-kubernetes-int-or-string")


def _leaf(schema: dict) -> dict:
    """A schema without descriptions (deep)."""
    if isinstance(schema, dict):
        return {k: _leaf(v) for k, v in schema.items() if k != "description"}
    if isinstance(schema, list):
        return [_leaf(v) for v in schema]
    return schema


def prune(schema: dict, instances: list[Any], path: str) -> dict:
    """`schema` reduced to what `instances` (values at `path` in the manifests) and its required use."""
    out = {k: _leaf(schema[k]) for k in KEPT if k in schema}
    if "properties" in schema:
        dicts = [i for i in instances if isinstance(i, dict)]
        keys = {k for d in dicts for k in d} | set(schema.get("required", []))
        unknown = keys - set(schema["properties"])
        if unknown:
            raise SystemExit(f"{path}: fields {sorted(unknown)} are not in the CRD")
        out["properties"] = {
            k: prune(schema["properties"][k], [d[k] for d in dicts if k in d], f"{path}.{k}")
            for k in sorted(keys)
        }
        if not schema.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    elif "additionalProperties" in schema:
        out["additionalProperties"] = _leaf(schema["additionalProperties"])
    elif "items" in schema:
        elements = [e for i in instances if isinstance(i, list) for e in i]
        out["items"] = prune(schema["items"], elements, f"{path}[]")
    return out


def crd_schema(crd_file: Path) -> dict:
    crd = yaml.safe_load(crd_file.read_text())
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    return version["schema"]["openAPIV3Schema"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--crd-dir", type=Path, required=True)
    parser.add_argument("--source", required=True, help="where the CRDs came from (repository@commit)")
    args = parser.parse_args()
    subset = {"source": args.source}
    for kind, manifest in MANIFESTS.items():
        document = yaml.safe_load((ROOT / manifest).read_text())
        subset[kind] = prune(crd_schema(args.crd_dir / CRD_FILES[kind]), [document], kind)
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(json.dumps(subset, indent=1, sort_keys=True) + "\n")
    print(f"wrote {OUTPUT.relative_to(ROOT)} ({OUTPUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
