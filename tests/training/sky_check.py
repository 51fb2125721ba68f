"""Check SkyPilot task YAML files with SkyPilot's own parser; run by the Python of the SkyPilot venv (.venv-sky).

    .venv-sky/bin/python tests/training/sky_check.py TASK.yaml ...   -> one JSON line per file
    .venv-sky/bin/python tests/training/sky_check.py --single-node   -> the clouds SkyPilot launches single nodes on

Per file: `sky.Task.from_yaml` (schema, resources, secrets, file mounts), then, for several nodes on a named cloud,
the cloud's own feature check (`check_features_are_supported` with MULTI_NODE). Neither needs cloud credentials or
the network; `sky launch --dryrun` does (it downloads the GPU catalog), so it is not used.
"""

from __future__ import annotations

import json
import sys


def check(path):
    import sky
    from sky import clouds

    try:
        task = sky.Task.from_yaml(path)
    except Exception as exc:  # the parser's own message is the result
        return {"path": path, "ok": False, "error": f"{type(exc).__name__}: {exc}"}
    (resources,) = task.resources
    result = {
        "path": path,
        "ok": True,
        "name": task.name,
        "num_nodes": task.num_nodes,
        "cloud": None if resources.cloud is None else str(resources.cloud),
        "accelerators": resources.accelerators,
        "disk_size": resources.disk_size,
        "envs": dict(task.envs),
        "file_mounts": dict(task.file_mounts or {}),
        "workdir": task.workdir,
        "setup": task.setup,
        "run": task.run,
    }
    if task.num_nodes > 1 and resources.cloud is not None:
        try:
            resources.cloud.check_features_are_supported(resources, {clouds.CloudImplementationFeatures.MULTI_NODE})
        except Exception as exc:
            result.update(ok=False, error=f"{type(exc).__name__}: {' '.join(str(exc).split())}")
    return result


def single_node_clouds():
    from sky import clouds
    from sky.utils import registry

    feature = clouds.CloudImplementationFeatures.MULTI_NODE
    return sorted(
        name
        for name, cloud in registry.CLOUD_REGISTRY.items()
        if feature in getattr(cloud, "_CLOUD_UNSUPPORTED_FEATURES", {})
    )


if __name__ == "__main__":
    if sys.argv[1:] == ["--single-node"]:
        sys.stdout.write(json.dumps(single_node_clouds()) + "\n")
    else:
        for argument in sys.argv[1:]:
            sys.stdout.write(json.dumps(check(argument), default=str) + "\n")
