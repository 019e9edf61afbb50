"""`archscale sweep --ray`: the sweep's points as Ray tasks on one or many nodes; the driver alone writes the file.

Each point is a pure function of its `SweepPoint` (`harness.sweep.points.run_point`), so a Ray task measures it wherever
Ray places it and returns its row; the driver waits for tasks as they finish (`ray.wait`) and appends their rows
through `harness.sweep.points.SweepRecorder`, the same path as the serial sweep. Resume, the torn-tail handling and the
file's guarantees are therefore exactly the serial sweep's: workers write nothing, and a driver killed at any moment
leaves the rows appended so far (in-flight tasks die with their owner, the driver; re-running measures the rest).

Resources per point (`ray_resources`): on CUDA one GPU (and one CPU to drive it); a point at tensor-parallel degree
tp > 1 would reserve a placement group of tp bundles of one GPU each on one node (STRICT_PACK), for engine adapters
with tensor parallelism (vLLM, SGLang; not built yet). On the CPU a measurement needs the cores to itself, so by
default a point asks for as many CPUs as the driver's machine has (one point at a time on a node of that size);
`--ray-cpus-per-point` changes it, and the task sets torch's thread count to the CPUs it was given.

Ray is optional (`pip install 'archscale[distributed]'`) and imported only inside these functions.
"""

from __future__ import annotations

import os
from contextlib import contextmanager, suppress
from dataclasses import dataclass

from harness.sweep.points import SweepPoint, SweepRecorder, failure, point_row, run_point
from perfmodel.errors import ArchscaleInputError

INSTALL_HINT = "pip install 'archscale[distributed]'"


@dataclass(frozen=True)
class RayResources:
    """What one point asks Ray for: a plain task (`num_cpus`, `num_gpus`), or, at tp > 1, a placement group of
    `bundles` placed with `strategy`, inside which the point's task runs with no resources of its own (its engine's
    tensor-parallel workers take the bundles)."""

    num_cpus: float
    num_gpus: float
    bundles: tuple[dict, ...] | None = None
    strategy: str | None = None

    def task_options(self) -> dict:
        """Keyword arguments for `ray.remote`: a GPU point gets a fresh worker process (max_calls=1), so each
        measurement starts with its GPU's memory free and the CUDA_VISIBLE_DEVICES Ray gave it."""
        gpu = {"max_calls": 1} if self.num_gpus else {}
        return {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus, **gpu}

    def per_node(self) -> dict:
        """The resources one node must hold for one point (all bundles, as STRICT_PACK puts them on one node)."""
        if self.bundles:
            return {key: sum(bundle.get(key, 0) for bundle in self.bundles) for key in ("CPU", "GPU")}
        return {"CPU": self.num_cpus, "GPU": self.num_gpus}

    def describe(self) -> str:
        need = self.per_node()
        text = _count(need["CPU"], "CPU") + (f", {_count(need['GPU'], 'GPU')}" if need["GPU"] else "")
        return text + (f" ({len(self.bundles)} bundles, {self.strategy})" if self.bundles else "")


def _count(amount: float, unit: str) -> str:
    return f"{amount:g} {unit}" + ("" if amount == 1 else "s")


def ray_resources(device: str, tp: int = 1, cpus: int | None = None) -> RayResources:
    """The Ray request of one point on `device` at tensor-parallel degree `tp`; `cpus`: CPUs per point (per GPU at
    tp > 1); default 1 per GPU on CUDA, and on the CPU all the CPUs of this (the driver's) machine."""
    if tp < 1 or (cpus is not None and cpus < 1):
        raise ArchscaleInputError(f"tp and CPUs per point must be positive, got tp={tp}, cpus={cpus}")
    if device == "cpu":
        if tp > 1:
            raise ArchscaleInputError(f"--tp {tp} splits a model over GPUs: it needs --device cuda")
        return RayResources(num_cpus=cpus or os.cpu_count() or 1, num_gpus=0)
    if device != "cuda":
        raise ArchscaleInputError(f"device must be cpu or cuda, got {device!r}")
    cpus = cpus or 1
    if tp == 1:
        return RayResources(num_cpus=cpus, num_gpus=1)
    return RayResources(num_cpus=0, num_gpus=0, bundles=tuple({"GPU": 1, "CPU": cpus} for _ in range(tp)),
                        strategy="STRICT_PACK")  # fmt: skip


def check_cluster(resources: RayResources, nodes: list[dict]) -> None:
    """One clear error unless some node (`nodes`: each live node's resource totals, as in ray.nodes()) can hold a
    point; otherwise Ray would leave every point waiting for a node that never comes."""
    need = resources.per_node()
    if any(all(node.get(key, 0) >= amount for key, amount in need.items()) for node in nodes):
        return
    most = {key: max((node.get(key, 0) for node in nodes), default=0) for key in need}
    have = f"the largest node has {_count(most['CPU'], 'CPU')}" + (
        f" and {_count(most['GPU'], 'GPU')}" if need["GPU"] else ""
    )
    hint = "start a larger node or lower --ray-cpus-per-point"
    if need["GPU"] > most["GPU"]:
        hint = "start nodes with GPUs (`ray start` sees the GPUs CUDA_VISIBLE_DEVICES shows) or sweep --device cpu"
    raise ArchscaleInputError(f"no node of the Ray cluster can hold a point, which needs {resources.describe()}: "
                              f"{have} ({hint})")  # fmt: skip


def import_ray():
    try:
        import ray
    except ImportError:
        raise ArchscaleInputError(f"--ray needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


@contextmanager
def ray_session(address: str | None):
    """Connected to Ray for the duration: `address` as `ray.init(address=...)` takes it (HOST:PORT, ray://HOST:PORT,
    auto, local); empty or None: as Ray does, RAY_ADDRESS, else the cluster started last on this machine, else a new
    local one. A session someone already opened in this process (a test, a notebook) is used and left open."""
    import logging

    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    try:
        ray.init(address=address or None, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
        where = f"at {address}" if address else "(RAY_ADDRESS or a local cluster)"
        raise ArchscaleInputError(f"--ray: cannot connect to Ray {where}: {str(exc).splitlines()[0][:300]}") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def measure_point(point: SweepPoint, threads: int) -> dict:
    """A Ray task: measure one point on this worker with torch using `threads` threads (the CPUs Ray gave the task).
    Returns the row and the worker's own metadata (host, GPU, CPU, versions), or the message of a mistake in the
    sweep's arguments, which stops the sweep."""
    import torch

    from harness.sweep.metadata import run_metadata

    torch.set_num_threads(threads)
    try:
        row = run_point(point)
    except ArchscaleInputError as exc:
        return {"input_error": str(exc)}
    import ray

    worker = {k: v for k, v in run_metadata([]).items() if k not in ("command", "time_utc")}
    return {"row": row, "metadata": {**worker, "ray_node_ip": ray.util.get_node_ip_address()}}


def run_sweep_ray(todo: list[SweepPoint], out, metadata: dict, *, resources: RayResources, progress: bool = True,
                  on_row=None) -> list[dict]:  # fmt: skip
    """Measure `todo` as Ray tasks (Ray connected: `ray_session`), appending each row to `out` as its task finishes;
    returns the new rows. A worker or node lost after Ray's retry makes the point an error row (oom when Ray's memory
    monitor killed it); a mistake in the sweep's arguments stops the sweep; stopping cancels the tasks in flight."""
    ray = import_ray()
    if resources.bundles:
        raise ArchscaleInputError("placement-group points (--tp > 1) need an engine adapter with tensor parallelism")
    if todo:
        check_cluster(resources, [node["Resources"] for node in ray.nodes() if node.get("Alive")])
    task = ray.remote(**resources.task_options(), max_retries=1)(measure_point)
    threads = max(1, int(resources.num_cpus))
    pending = {task.remote(point, threads): point for point in todo}  # in submission order (dicts keep it)
    try:
        with SweepRecorder(out, metadata, len(todo), progress=progress, on_row=on_row) as recorder:
            while pending:
                first = next(iter(pending.values()))
                more = f" (+{len(pending) - 1} queued or running)" if len(pending) > 1 else ""
                recorder.running(first.label() + more)
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)  # a timeout keeps Ctrl-C prompt
                for ref in ready:
                    point = pending.pop(ref)
                    row, worker = _result(ray, ref, point)
                    recorder.finish(row, worker)
    finally:
        for ref in pending:  # Ctrl-C, an input error, a bug: no task goes on measuring for nobody
            with suppress(Exception):  # Ray itself gone: nothing left to cancel, and the first error is the one to tell
                ray.cancel(ref, force=True)
    return recorder.rows


def _result(ray, ref, point: SweepPoint) -> tuple[dict, dict | None]:
    """The finished task's row and worker metadata; a lost worker's point as an error (or oom) row."""
    try:
        result = ray.get(ref)
    except ray.exceptions.RayTaskError:
        raise  # an exception escaped run_point: a bug in our code, which stops the serial sweep too
    except ray.exceptions.RayError as exc:  # the worker process or its node died (after Ray's retry)
        status = "oom" if isinstance(exc, ray.exceptions.OutOfMemoryError) else "error"
        return point_row(point, failure(exc, status), started=None), None
    if "input_error" in result:
        raise ArchscaleInputError(result["input_error"])
    return result["row"], result["metadata"]
