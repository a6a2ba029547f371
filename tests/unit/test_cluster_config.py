"""``cluster.yaml`` is a valid Ray cluster launcher config, and it sets up what the project needs.

Validated against the JSON schema that ships inside the installed Ray and with
Ray's own ``validate_config`` (what ``ray up`` runs), so a key Ray no longer
accepts fails here rather than on the first ``ray up``.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import ray.autoscaler
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from cars.paths import PROJECT_ROOT
from cars.sweep_config import PRESETS

CLUSTER_FILE = PROJECT_ROOT / "cluster.yaml"


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    """The cluster-config schema of the installed Ray."""
    path = Path(ray.autoscaler.__file__).parent / "ray-schema.json"
    return json.loads(path.read_text())


@pytest.fixture
def cluster() -> dict[str, Any]:
    """A fresh copy of ``cluster.yaml``, parsed."""
    return yaml.safe_load(CLUSTER_FILE.read_text())


def _gpus(node_type: dict[str, Any]) -> float:
    return float(node_type["resources"].get("GPU", 0))


def _ray_start_commands(commands: list[str]) -> list[str]:
    """Each shell statement of ``commands`` that runs ``ray start``."""
    statements = [s.strip() for c in commands for s in re.split(r";|&&|\|\|", c)]
    return [s for s in statements if re.search(r"\bray start\b", s)]


def test_cluster_yaml_matches_rays_json_schema(
    cluster: dict[str, Any], schema: dict[str, Any]
) -> None:
    jsonschema.validate(cluster, schema)


def test_cluster_yaml_passes_rays_validate_config_also_after_prepare_config(
    cluster: dict[str, Any],
) -> None:
    validate_config(copy.deepcopy(cluster))
    prepared = prepare_config(copy.deepcopy(cluster))
    validate_config(prepared)
    assert prepared["head_node_type"] == cluster["head_node_type"]
    assert set(prepared["available_node_types"]) == set(cluster["available_node_types"])


def test_schema_rejects_a_config_without_provider(
    cluster: dict[str, Any], schema: dict[str, Any]
) -> None:
    del cluster["provider"]
    with pytest.raises(jsonschema.ValidationError, match="provider"):
        jsonschema.validate(cluster, schema)
    with pytest.raises(jsonschema.ValidationError, match="provider"):
        validate_config(cluster)


def test_schema_rejects_an_unknown_top_level_key(
    cluster: dict[str, Any], schema: dict[str, Any]
) -> None:
    cluster["head_node_typo"] = "head"
    with pytest.raises(jsonschema.ValidationError, match="head_node_typo"):
        jsonschema.validate(cluster, schema)


def test_validate_config_rejects_a_head_type_that_is_not_defined(
    cluster: dict[str, Any],
) -> None:
    cluster["head_node_type"] = "no-such-type"
    with pytest.raises(ValueError, match="head_node_type"):
        validate_config(cluster)


def test_cluster_name_and_provider_type_are_set(cluster: dict[str, Any]) -> None:
    assert isinstance(cluster["cluster_name"], str)
    assert cluster["cluster_name"].strip()
    assert isinstance(cluster["provider"]["type"], str)
    assert cluster["provider"]["type"].strip()


def test_every_node_type_has_resources_and_an_explicit_image(cluster: dict[str, Any]) -> None:
    node_types = cluster["available_node_types"]
    assert node_types
    for name, node_type in node_types.items():
        assert isinstance(node_type.get("resources"), dict), name
        node_config = node_type.get("node_config")
        assert isinstance(node_config, dict), name
        image = node_config.get("ImageId")
        assert isinstance(image, str), f"{name} has no explicit ImageId"
        assert image.startswith("ami-"), f"{name}: ImageId {image!r} is not an AMI id"


def test_head_has_no_gpu_and_gpu_workers_autoscale_from_zero(cluster: dict[str, Any]) -> None:
    node_types = cluster["available_node_types"]
    head = cluster["head_node_type"]
    assert head in node_types
    assert _gpus(node_types[head]) == 0
    gpu_workers = {n: t for n, t in node_types.items() if n != head and _gpus(t) > 0}
    assert gpu_workers, "no worker node type offers GPUs"
    for name, node_type in gpu_workers.items():
        assert node_type.get("min_workers") == 0, f"{name} does not scale down to zero"
        assert node_type.get("max_workers", 0) > 0, f"{name} can never be started"


def test_head_dashboard_binds_to_localhost_only(cluster: dict[str, Any]) -> None:
    starts = _ray_start_commands(cluster["head_start_ray_commands"])
    assert len(starts) == 1
    assert "--head" in starts[0]
    assert "--dashboard-host=127.0.0.1" in starts[0]
    assert "0.0.0.0" not in " ".join(cluster["head_start_ray_commands"])


def test_every_ray_start_runs_with_token_authentication(cluster: dict[str, Any]) -> None:
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        starts = _ray_start_commands(cluster[key])
        assert starts, f"{key} never runs ray start"
        for statement in starts:
            assert re.search(r"(^|\s)RAY_AUTH_MODE=token\s", statement), statement


def test_setup_commands_install_the_mounted_project(cluster: dict[str, Any]) -> None:
    commands = cluster["setup_commands"]
    assert any(re.search(r"pip install -e ~/cars(\s|$)", c) for c in commands), commands
    assert "~/cars" in cluster["file_mounts"]


def test_readme_and_cluster_yaml_size_trials_as_the_full_preset_does(
    cluster: dict[str, Any],
) -> None:
    full = PRESETS["full"]
    gpus_per_trial = full["num_workers"]
    assert full["use_gpu"] and gpus_per_trial == 2, "full trains each trial over two GPUs"
    readme = (PROJECT_ROOT / "README.md").read_text()
    assert f"data-parallel over {gpus_per_trial} GPUs" in readme
    # "--max-concurrent-trials 8 ... (8 = 4 nodes x 4 GPUs / 2 GPUs per trial)"
    concurrent = re.search(r"--max-concurrent-trials (\d+)", readme)
    arithmetic = re.search(
        r"\((\d+) = (\d+) nodes x (\d+) GPUs / (\d+) GPUs per trial\)", " ".join(readme.split())
    )
    assert concurrent and arithmetic, "README's cluster section no longer sizes the trials"
    trials, nodes, gpus, per_trial = map(int, arithmetic.groups())
    assert int(concurrent.group(1)) == trials == nodes * gpus // per_trial
    assert per_trial == gpus_per_trial
    node_types = cluster["available_node_types"]
    workers = [t for t in node_types.values() if _gpus(t) > 0]
    assert [(t["max_workers"], _gpus(t)) for t in workers] == [(nodes, gpus)]
    # The node's CPUs hold a worker (cpus_per_worker) on each of its GPUs.
    assert workers[0]["resources"]["CPU"] >= gpus * full["cpus_per_worker"]
    comment = re.search(r"\((\d+) GPUs per trial\)", CLUSTER_FILE.read_text())
    assert comment and int(comment.group(1)) == gpus_per_trial
