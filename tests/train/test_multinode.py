"""A run spread over two Ray nodes of this machine: one worker per node (STRICT_SPREAD)."""

from __future__ import annotations

import json
import os

import pytest

from sid_ray.train.launcher import launch
from tests.train.conftest import toy_config


@pytest.fixture
def two_node_cluster():
    import ray
    from ray.cluster_utils import Cluster

    os.environ["RAY_AUTH_MODE"] = "disabled"  # a throwaway cluster nothing outside can reach
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
    cluster.add_node(num_cpus=2)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    yield cluster
    ray.shutdown()
    cluster.shutdown()


@pytest.mark.ray
@pytest.mark.slow
def test_two_nodes_strict_spread_trains_and_checkpoints(two_node_cluster, tmp_path):
    import ray

    config = toy_config(
        tmp_path,
        "two-nodes",
        "train.total_kimg=0.032",
        "train.checkpoint_every_kimg=0.016",
        "train.placement_strategy=STRICT_SPREAD",
    )
    result = launch(config, show_progress=False)
    assert result.metrics["iteration"] == 4
    assert [r["iteration"] for r in result.rows] == [1, 2, 3, 4]
    checkpoints = sorted(p.name for p in result.run_dir.glob("checkpoint_0*"))
    assert checkpoints == ["checkpoint_00000002", "checkpoint_00000004"]
    final = result.run_dir / "checkpoint_00000004"
    placement = [json.loads((final / "placement" / f"rank{r}.json").read_text()) for r in (0, 1)]
    nodes = {p["node_id"] for p in placement}
    assert len(nodes) == 2, placement  # one worker on each node
    assert nodes == {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    for name in ("fake", "generator"):  # both ranks' ZeRO partitions reached storage
        files = {p.name for p in (final / name / "state").iterdir()}
        assert {f"zero_pp_rank_{r}_mp_rank_00_optim_states.pt" for r in (0, 1)} <= files
    assert (result.export_dir / "generator.safetensors").is_file()
