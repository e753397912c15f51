"""cluster/kuberay/: the manifests against KubeRay's CRD schemas, and what the issue asks of them.

No network here, so the CRDs are not fetched: tests/cluster/kuberay_crd_subset.json is the part
of KubeRay's own CRD schemas (ray.io_rayclusters.yaml, ray.io_rayjobs.yaml at the commit its
"source" names) that the manifests reach, cut by scripts/kuberay_crd_subset.py: every required
list on the way, the types, formats and patterns of the fields set, and no other field allowed.
Adding a field to a manifest means re-running that script against the CRDs.
"""

from __future__ import annotations

import json

import jsonschema
import pytest

from tests.cluster.conftest import (
    ROOT,
    SHA,
    config_of,
    is_commit_of_this_repository,
    job_arguments,
    load_yaml,
)

SUBSET = json.loads((ROOT / "tests/cluster/kuberay_crd_subset.json").read_text())
MANIFESTS = {"RayCluster": "cluster/kuberay/raycluster.yaml", "RayJob": "cluster/kuberay/rayjob.yaml"}


@pytest.mark.parametrize("kind", sorted(MANIFESTS))
def test_manifest_validates_against_the_crd_schema(kind):
    manifest = load_yaml(MANIFESTS[kind])
    assert manifest["apiVersion"] == "ray.io/v1" and manifest["kind"] == kind
    jsonschema.validate(manifest, SUBSET[kind])


def test_the_crd_subset_keeps_kuberays_required_fields():
    spec = SUBSET["RayCluster"]["properties"]["spec"]
    assert spec["required"] == ["headGroupSpec"]
    assert spec["properties"]["headGroupSpec"]["required"] == ["template"]
    group = spec["properties"]["workerGroupSpecs"]["items"]
    assert set(group["required"]) == {"groupName", "maxReplicas", "minReplicas", "template"}
    missing = load_yaml(MANIFESTS["RayCluster"])
    del missing["spec"]["workerGroupSpecs"][0]["groupName"]
    with pytest.raises(jsonschema.ValidationError, match="groupName"):
        jsonschema.validate(missing, SUBSET["RayCluster"])


def test_raycluster_autoscales_gpu_workers_with_token_auth_from_a_secret():
    spec = load_yaml(MANIFESTS["RayCluster"])["spec"]
    assert spec["enableInTreeAutoscaling"] and spec["autoscalerOptions"]["version"] == "v2"
    assert spec["autoscalerOptions"]["idleTimeoutSeconds"] > 0
    assert spec["authOptions"] == {"mode": "token", "secretName": "sid-ray-auth-token"}
    assert spec["rayVersion"] >= "2.52.0"  # KubeRay's minimum for token auth
    group = spec["workerGroupSpecs"][0]
    assert group["minReplicas"] == 0 < group["maxReplicas"]
    assert group["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "8"
    assert spec["headGroupSpec"]["serviceType"] == "ClusterIP"  # the dashboard: port-forward only
    env = [e for c in _containers(spec) for e in c.get("env", [])]
    assert all("value" not in e for e in env if "TOKEN" in e["name"])  # secrets referenced, not inlined


def test_images_are_this_repository_at_a_commit():
    spec = load_yaml(MANIFESTS["RayCluster"])["spec"]
    for container in _containers(spec):
        (sha,) = SHA.findall(container["image"])
        assert is_commit_of_this_repository(sha)
    assert (ROOT / "cluster/Dockerfile").is_file()


def test_rayjob_runs_distill_flux_on_flux_dev_that_fits_its_gpus():
    job = load_yaml(MANIFESTS["RayJob"])["spec"]
    assert job["clusterSelector"] == {
        "ray.io/cluster": load_yaml(MANIFESTS["RayCluster"])["metadata"]["name"]
    }
    arguments = job_arguments(job["entrypoint"])
    assert arguments[:3] == ["jobs/distill_flux.py", "--config", "configs/flux_dev.yaml"]
    assert (ROOT / arguments[0]).is_file() and (ROOT / arguments[2]).is_file()
    from sid_ray.train.memory_plan import check_fits

    config = config_of(arguments)  # the job's own config, parsed as the job parses it
    assert check_fits(config) is not None  # planned and fits: the launcher will not refuse it
    group = load_yaml(MANIFESTS["RayCluster"])["spec"]["workerGroupSpecs"][0]
    assert config.train.num_workers <= group["maxReplicas"] * 8


def _containers(spec: dict) -> list[dict]:
    groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
    return [c for g in groups for c in g["template"]["spec"]["containers"]]
