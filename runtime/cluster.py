"""`vem-run --ray ADDRESS`: a batch on a Ray cluster, one pipeline per worker.

    vem-run catalog/ -o out/ --ray local                    # a cluster of this machine's cores
    vem-run /shared/in/ -o /shared/out/ --ray head:6379     # a running cluster (ray start --head)

Each worker is a Ray actor that loads the bundle once (`VideoWorker`) and then generates the videos
the driver hands it, one at a time, so a slow video holds up no other and a lost worker loses one
video. A worker runs the very code of a local batch (`run.generate_captured`: the same outputs,
each written atomically, the same reports and messages); the driver prints what it captured, draws
the progress of the whole cluster, and ends as a local batch ends (`run.finish_batch`: the summary
JSON, the last line naming the failures, the exit code of the first failure in the order the
videos were given).

Shared storage: the driver expands folders and names the outputs; the workers open the inputs and
write the outputs at those same paths, from the driver's working folder when it exists on their
node (relative paths), so every node must see the inputs and outputs at the same paths (one
machine, or an NFS/Lustre/... mount at the same place on every node).

Ray is imported only here, and only with --ray: the base install does not need it (the `cluster`
extra brings it). A local cluster gets the cores of this machine (``num_cpus`` explicit), no
dashboard and a small object store (the workers return small records, never audio); whatever
happens, Ctrl-C included, the driver disconnects and a local cluster is shut down.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import socket
import sys
import time

from .errors import UsageError, VemError
from .progress import BatchProgress, Progress
from .run import FAILED, Outputs, VideoOutcome, as_failure, generate_captured, print_outcome

LOCAL = "local"
DEFAULT_CPUS_PER_WORKER = 4  # ONNX Runtime threads of a CPU pipeline: more scale poorly on these graphs
LOCAL_OBJECT_STORE_BYTES = 100 * 1024 * 1024  # results are small records; Ray's minimum is 75 MiB


def _enter(cwd: str) -> None:
    """Work from the driver's folder when this node has it (shared storage): relative paths then
    mean what they meant to the user."""
    if os.path.isdir(cwd):
        os.chdir(cwd)


class VideoWorker:
    """One pipeline on a Ray worker (made a Ray actor by `run_on_ray`); loads the bundle once."""

    def __init__(self, args: argparse.Namespace, cwd: str, threads: int | None):
        from .pipeline import Pipeline

        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.failure: VemError | None = None  # pickled whole: its class (exit code), message and hint
        self.pipeline = None
        _enter(cwd)
        try:
            self.pipeline = Pipeline.load(args.bundle, backend=args.backend, precision=args.precision,
                                          threads=threads,
                                          components=Pipeline.PARSE_COMPONENTS if args.parse_only else None)
        except Exception as error:  # noqa: BLE001 - reported by the driver as a local run reports it
            self.failure = as_failure(error)

    def ready(self) -> dict:
        return {"worker": self.name, "failure": self.failure}

    def generate(self, args: argparse.Namespace, cwd: str, video: str, outputs: Outputs, parse,
                 parse_source: dict | None) -> VideoOutcome:
        _enter(cwd)
        return generate_captured(self.pipeline, args, video, outputs, parse, parse_source, self.name)


def _connect(args: argparse.Namespace):
    """ray.init for --ray ADDRESS; returns the ray module."""
    import logging

    import ray

    quiet_logs = {"log_to_driver": bool(args.debug), "logging_level": logging.DEBUG if args.debug else logging.ERROR}
    if args.ray.strip().lower() == LOCAL:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False,
                 object_store_memory=LOCAL_OBJECT_STORE_BYTES, **quiet_logs)
        return ray
    try:
        ray.init(address=args.ray, **quiet_logs)
    except Exception as error:  # noqa: BLE001 - Ray raises ConnectionError, RuntimeError, ValueError...
        raise UsageError(f"--ray {args.ray}: cannot connect to a Ray cluster there ({' '.join(str(error).split())})",
                         hint="start one with `ray start --head` and give its address (host:6379), "
                              "or use --ray local") from None
    return ray


def plan_workers(args: argparse.Namespace, nodes: list[dict], videos: int) -> tuple[int, float, float]:
    """(workers, CPUs each, GPUs each) for this cluster: one pipeline per GPU when it has GPUs,
    else one per DEFAULT_CPUS_PER_WORKER cores, at most one per video; the flags override.
    ``nodes`` are the alive nodes' resources ({"CPU": 16, "GPU": 2, ...})."""
    total_gpus = sum(node.get("GPU", 0.0) for node in nodes)
    largest = max((node.get("CPU", 0.0) for node in nodes), default=0.0)
    gpus = args.gpus_per_worker if args.gpus_per_worker is not None else (1.0 if total_gpus >= 1 else 0.0)
    if args.cpus_per_worker is not None:
        cpus = args.cpus_per_worker
    else:
        cpus = 1.0 if gpus > 0 else max(1.0, min(float(DEFAULT_CPUS_PER_WORKER), largest))
    if gpus > 0 and total_gpus == 0:
        raise UsageError(f"--gpus-per-worker {gpus:g}: the cluster has no GPUs",
                         hint="leave the flag out (0 on a CPU cluster), or add GPU nodes")
    if cpus > largest:
        raise UsageError(f"--cpus-per-worker {cpus:g}: the largest node of the cluster has {largest:g} CPUs")

    def fits(node: dict) -> int:
        room = math.floor(node.get("CPU", 0.0) / cpus + 1e-9)
        if gpus > 0:
            room = min(room, math.floor(node.get("GPU", 0.0) / gpus + 1e-9))
        return room

    capacity = sum(fits(node) for node in nodes)
    if args.ray_workers is not None:
        if args.ray_workers > capacity:
            need = f"{cpus:g} CPU" + (f" and {gpus:g} GPU" if gpus > 0 else "")
            raise UsageError(f"--ray-workers {args.ray_workers}: the cluster has room for {capacity} workers "
                             f"of {need} each", hint="lower --ray-workers or --cpus-per-worker/--gpus-per-worker, "
                                                     "or add nodes")
        return args.ray_workers, cpus, gpus
    return max(1, min(capacity, videos)), cpus, gpus


def _lost(video: str, worker: str, error: BaseException) -> VideoOutcome:
    """The outcome of a video whose worker died under it (node lost, out of memory, killed)."""
    failure = VemError(f"{video}: the Ray worker {worker} stopped while generating it "
                       f"({type(error).__name__})",
                       hint="see that node's Ray logs; run again with --skip-existing to retry the failed videos")
    return VideoOutcome(video, FAILED, worker, 0.0, [], failure.exit_code, failure.message,
                        stderr=failure.user_message() + "\n")


def _sweep(outputs: Outputs) -> None:
    """Remove the temporary files a killed worker left for a video's outputs (shared storage)."""
    from .atomic import remove_partials

    for path in outputs.files():
        remove_partials(path)


def run_on_ray(args: argparse.Namespace, videos: list[str], plans: dict[str, Outputs], parse, parse_source):
    """Generate ``videos`` on the cluster at ``args.ray``. Returns (outcomes by video, the
    summary's cluster fields, the KeyboardInterrupt that stopped the run or None, which
    `finish_batch` reports). A failure that stops everything (no cluster, a bundle that does not
    load) raises its VemError."""
    cwd = os.getcwd()
    began = time.perf_counter()
    ray = _connect(args)
    outcomes: dict[str, VideoOutcome] = {}
    running: dict = {}  # object ref -> (video, actor, worker name, start time)
    actors: list = []
    stopped: KeyboardInterrupt | None = None
    nodes: list[dict] = []
    cpus = gpus = 0.0
    ready_s = None
    try:
        nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
        workers, cpus, gpus = plan_workers(args, nodes, len(videos))
        threads = max(1, int(cpus)) if gpus == 0 else None
        remote = ray.remote(VideoWorker).options(num_cpus=cpus, num_gpus=gpus, max_restarts=0)
        actors = [remote.remote(args, cwd, threads) for _ in range(workers)]
        ready = _wait_all(ray, [actor.ready.remote() for actor in actors], quiet=args.quiet)
        for state in ready:
            if state["failure"] is not None:
                raise state["failure"]
        names = {id(actor): state["worker"] for actor, state in zip(actors, ready)}
        ready_s = time.perf_counter() - began  # connect (or start a local cluster), start workers, load bundles
        worker_args = copy.copy(args)
        worker_args.quiet = True  # no per-stage progress from the workers: the driver draws the batch's
        progress = BatchProgress(Progress.for_stream(sys.stderr, quiet=args.quiet), len(videos))
        queue = list(videos)
        idle = list(actors)
        try:
            while queue or running:
                while queue and idle:
                    actor, video = idle.pop(0), queue.pop(0)
                    ref = actor.generate.remote(worker_args, cwd, video, plans[video], parse, parse_source)
                    running[ref] = (video, actor, names[id(actor)], time.perf_counter())
                    progress.start()
                done, _ = ray.wait(list(running), num_returns=1, timeout=0.5)
                for ref in done:
                    video, actor, name, started = running.pop(ref)
                    try:
                        outcome = ray.get(ref)
                        idle.append(actor)
                    except ray.exceptions.RayError as error:  # the worker is gone: so is its video
                        outcome = _lost(video, name, error)
                        outcome.seconds = time.perf_counter() - started
                        _sweep(plans[video])
                        if not idle and not running:
                            queue, lost = [], queue  # no worker left for the rest
                            for rest in lost:
                                outcomes[rest] = _lost(rest, name, error)
                    outcomes[video] = outcome
                    with progress.writing():
                        print_outcome(outcome, args.quiet)
                    progress.finish(video, outcome.status, name, outcome.seconds)
        finally:
            progress.close()
    except KeyboardInterrupt as error:
        stopped = error
    finally:
        try:
            if stopped is not None:
                # A worker cannot be interrupted in the middle of a video: kill it, wait until it
                # is gone, then remove the temporary files it was writing (shared storage).
                for actor in actors:
                    ray.kill(actor, no_restart=True)
                if running:
                    ray.wait(list(running), num_returns=len(running), timeout=10.0)
                for video, *_ in running.values():
                    _sweep(plans[video])
        finally:
            ray.shutdown()
    extra = {"mode": "ray", "ray_address": args.ray, "workers": len(actors), "cpus_per_worker": cpus,
             "gpus_per_worker": gpus, "nodes": len(nodes),
             "cluster_ready_s": round(ready_s, 3) if ready_s is not None else None}
    return outcomes, extra, stopped


WAIT_NOTICE_S = 30.0  # after this long without all workers, say what the run is waiting for


def _wait_all(ray, refs: list, quiet: bool = False) -> list:
    """ray.get of the workers' first replies, in short waits so that a signal is seen at once;
    says so when it waits long (a busy cluster: the workers wait for free CPUs or GPUs)."""
    pending = list(refs)
    started = time.perf_counter()
    told = quiet
    while pending:
        _, pending = ray.wait(pending, num_returns=len(pending), timeout=0.5)
        if pending and not told and time.perf_counter() - started > WAIT_NOTICE_S:
            print(f"waiting for {len(pending)} of {len(refs)} Ray workers to start (the cluster's CPUs or "
                  "GPUs may be taken by other jobs)", file=sys.stderr, flush=True)
            told = True
    return ray.get(refs)


__all__ = ["LOCAL", "VideoWorker", "plan_workers", "run_on_ray"]
