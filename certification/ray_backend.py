"""CERTIFY on a Ray cluster: a thin scheduling layer over the single-process engine.

W actors (Ray workers) each hold one onnxruntime session and one noise pool (a :class:`SmoothedClassifier` of the
exact model bytes the driver hashed) and certify tasks of a few examples with the engine's own
:meth:`SmoothedClassifier.iter_certify`. The noise of an example is drawn from its streams (seed, index, phase),
so every count, prediction and radius equals the single-process run's whatever the number of workers, the order in
which tasks finish, or a task retried after its worker died (only the timing field ``seconds`` differs).

Guarantees of :meth:`RayPool.certify`: each example of the run is yielded exactly once (in completion order; the
caller writes them in example order); a worker killed mid-task is restarted and its tasks retried up to
``retries`` times; a task that still fails stops the run with one line naming its example indices; no result is
made up or repeated. Model and data travel from the driver through Ray's object store, so only the driver needs the
files; the workers need this package and its dependencies (the same lock).

Ray is an optional dependency (the ``ray`` extra), imported only here and only when a Ray run starts.
"""
from __future__ import annotations

import logging
import math
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np

from certification.errors import InputError, ParameterError
from certification.fileio import sha256_bytes
from certification.onnx_model import default_threads
from certification.ray_worker import CertifyWorker
from certification.smoothing import CertifyResult, SmoothedClassifier

BACKENDS = ("local", "ray")
#: Noisy samples (n0 + n per example) a task should hold: about a second of one core's work on the default model,
#: so per-task overhead is negligible and the last tasks leave little idle time.
TASK_SAMPLES = 20_000
#: At least this many tasks per worker, so the work stays balanced when examples are few.
MIN_TASKS_PER_WORKER = 4


class ClusterError(InputError):
    """The Ray cluster could not do the work: unreachable, too small, or a task that keeps failing. One line;
    the examples finished before it stay in the partial file, so a rerun resumes."""


def check_backend(name: Any) -> str:
    """``name`` if it is a known certification backend (local, ray); ParameterError otherwise."""
    if name not in BACKENDS:
        raise ParameterError(f"unknown certification backend {name!r}; use one of {', '.join(BACKENDS)}")
    return str(name)


def _positive_or_none(value: Any, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ParameterError(f"{what} must be a positive integer (or unset for the default), got {value!r}")
    return int(value)


@dataclass(frozen=True)
class RaySettings:
    """Where and how wide a Ray run is; none of it changes a result.

    ``address``: an existing cluster (``host:port`` of its head, ``ray://host:port`` for Ray Client, or ``auto``);
    None or "": start a local Ray on this machine's usable cores. ``workers``: actors (default: one per CPU of
    the cluster); each gets cluster CPUs // workers cores and sizes its onnxruntime and noise threads from them.
    ``retries``: restarts of a dead worker and retries of its tasks. ``connect_timeout_s``: how long an address
    may take to answer; ``start_timeout_s``: how long the workers may take to start (a cluster without room for
    them fails then). ``examples_per_task``: default from :data:`TASK_SAMPLES`."""

    address: str | None = None
    workers: int | None = None
    retries: int = 3
    connect_timeout_s: float = 5.0
    start_timeout_s: float = 120.0
    examples_per_task: int | None = None

    def __post_init__(self) -> None:
        if self.address is not None and not isinstance(self.address, str):
            raise ParameterError(f"the Ray address must be a string such as host:6379 or auto, got {self.address!r}")
        _positive_or_none(self.workers, "the number of Ray workers (--workers, runtime.certify_workers)")
        _positive_or_none(self.examples_per_task, "examples per Ray task")
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or self.retries < 0:
            raise ParameterError(f"Ray retries must be a non-negative integer, got {self.retries!r}")
        if self.address:
            _probe_target(self.address)  # the form is checked before anything starts

    @property
    def local(self) -> bool:
        return not self.address


def _probe_target(address: str) -> tuple[str, int] | None:
    """(host, port) to probe for ``address``; None for ``auto``; ParameterError for a malformed address."""
    if address == "auto":
        return None
    text = address.removeprefix("ray://")
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ParameterError(f"Ray address {address!r}: expected HOST:PORT of the head node (e.g. 10.0.0.5:6379), "
                             "ray://HOST:10001 or auto")
    return host.strip("[]"), int(port)


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ParameterError("the ray backend needs Ray: pip install -r requirements.lock (or pip install '.[ray]')") from None
    return ray


def start_local_ray(num_cpus: int | None = None) -> None:
    """Start a local Ray in this process on ``num_cpus`` logical CPUs (default: the usable cores), quietly: no
    dashboard, workers' output kept off the driver's terminal, Ray's own logging at WARNING. (A new local cluster
    turns on Ray's token authentication and announces it at WARNING; that notice is held back.)"""
    ray = _import_ray()
    notice = logging.getLogger("ray._private.authentication.authentication_token_setup")
    level = notice.level
    notice.setLevel(logging.ERROR)
    try:
        ray.init(address="local", num_cpus=num_cpus or default_threads(), include_dashboard=False, log_to_driver=False,
                 logging_level=logging.WARNING)
    except Exception as exc:  # noqa: BLE001 - Ray raises many types for a failed start
        raise ClusterError(f"could not start a local Ray ({_first_line(exc)}); check that /tmp/ray is writable or "
                           "pass an existing cluster's address") from None
    finally:
        notice.setLevel(level)


@dataclass(frozen=True)
class TaskResult:
    """One finished task: its examples' CERTIFY results (in the task's example order), the worker slot and the
    pid of the process that computed them (a new pid in a slot means its worker was restarted)."""

    task: int
    results: list[CertifyResult]
    slot: int
    pid: int


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]


def _name_examples(indices: Sequence[int]) -> str:
    shown = ", ".join(str(int(i)) for i in indices[:10])
    return f"example{'s' if len(indices) > 1 else ''} {shown}{', ...' if len(indices) > 10 else ''}"


def examples_per_task(samples_per_example: int, examples: int, workers: int) -> int:
    """Examples per task: about :data:`TASK_SAMPLES` samples, and at least :data:`MIN_TASKS_PER_WORKER` tasks
    per worker when there are enough examples."""
    by_samples = math.ceil(TASK_SAMPLES / max(1, samples_per_example))
    by_balance = math.ceil(examples / (workers * MIN_TASKS_PER_WORKER))
    return max(1, min(by_samples, by_balance))


@dataclass
class RayPool:
    """Ray workers holding ``classifier``'s model, for :meth:`certify`; a context manager that connects (or
    starts a local Ray), starts the workers and waits until each has loaded the model, and on exit stops them
    (and the local Ray it started). ``threads``/``noise_threads``: per worker (default from its CPUs)."""

    settings: RaySettings
    classifier: SmoothedClassifier
    threads: int | None = None
    noise_threads: int | None = None
    provider: str = "auto"
    workers: list[Any] = field(default_factory=list, init=False)
    worker_info: list[dict[str, Any]] = field(default_factory=list, init=False)
    cpus_per_worker: int = field(default=0, init=False)
    tasks_done: int = field(default=0, init=False)
    seconds: float = field(default=0.0, init=False)
    _started_ray: bool = field(default=False, init=False)
    _pids: dict[int, set[int]] = field(default_factory=dict, init=False)
    _model_ref: Any = field(default=None, init=False)

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> "RayPool":
        ray = _import_ray()
        try:
            self._connect(ray)
            self._start_workers(ray)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Stop the workers, and the local Ray when this pool started it."""
        if not self.workers and not self._started_ray:
            return
        import ray

        for worker in self.workers:
            try:
                ray.kill(worker, no_restart=True)
            except Exception:  # noqa: BLE001 - a worker that is already gone needs no stopping
                pass
        self.workers = []
        self._model_ref = None
        if self._started_ray:
            ray.shutdown()
            self._started_ray = False

    def _connect(self, ray: Any) -> None:
        if self.settings.address:
            self._probe()
        if ray.is_initialized():  # the caller's own Ray session (e.g. a driver script): use it as it is
            return
        if self.settings.local:
            start_local_ray()
            self._started_ray = True
            return
        address = self.settings.address or ""
        try:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        except Exception as exc:  # noqa: BLE001
            raise ClusterError(f"could not attach to the Ray cluster at {address} ({_first_line(exc)}); "
                               "check the address and that the cluster runs Ray " + ray.__version__) from None
        self._started_ray = True  # attached by us: disconnect afterwards (the cluster keeps running)

    def _probe(self) -> None:
        """Fail fast (``connect_timeout_s``) when the address's head port does not answer."""
        address = self.settings.address or ""
        target = _probe_target(address)
        if target is None:
            return
        try:
            socket.create_connection(target, timeout=self.settings.connect_timeout_s).close()
        except OSError as exc:
            reason = exc.strerror or ("timed out" if isinstance(exc, TimeoutError) else type(exc).__name__)
            raise ClusterError(f"Ray cluster at {address} is unreachable ({reason}, {self.settings.connect_timeout_s:g} s "
                               "timeout); check the address `ray start --head` printed and that its port is open from "
                               "here") from None

    def _start_workers(self, ray: Any) -> None:
        total = int(ray.cluster_resources().get("CPU", 0))
        workers = self.settings.workers if self.settings.workers is not None else max(1, total)
        if total < 1 or workers > total:
            raise ParameterError(f"{workers} Ray workers need at least {workers} CPUs, but the cluster has {total}; "
                                 f"use at most {max(total, 1)} workers")
        self.cpus_per_worker = total // workers
        base = self.classifier.base_classifier
        model = base.path.read_bytes()
        if sha256_bytes(model) != base.sha256:
            raise InputError(f"{base.path}: the model file changed while the run was starting; rerun")
        self._model_ref = ray.put(model)
        actor = ray.remote(CertifyWorker).options(
            num_cpus=self.cpus_per_worker, max_restarts=self.settings.retries,
            max_task_retries=self.settings.retries, max_concurrency=1)
        lighting = None if self.classifier.lighting is None else self.classifier.lighting.to_record()
        self.workers = [actor.remote(base.path.name, base.sha256, self.classifier.sigma, self.classifier.batch_size,
                                     self.provider, self.threads, self.noise_threads, lighting) for _ in range(workers)]
        pending = [worker.info.remote([self._model_ref]) for worker in self.workers]
        try:
            self.worker_info = ray.get(pending, timeout=self.settings.start_timeout_s)
        except ray.exceptions.GetTimeoutError:
            ready, _ = ray.wait(pending, num_returns=len(pending), timeout=0)
            raise ClusterError(f"{len(pending) - len(ready)} of {workers} Ray workers did not start within "
                               f"{self.settings.start_timeout_s:g} s (each needs {self.cpus_per_worker} CPUs); use "
                               "fewer workers or a cluster with free CPUs") from None
        except Exception as exc:  # noqa: BLE001 - the worker's constructor failed (bad model, missing package)
            cause = getattr(exc, "cause", None) or exc
            if isinstance(cause, InputError):
                raise InputError(str(cause)) from None
            raise ClusterError(f"a Ray worker could not start ({_first_line(cause)}); the workers need this package "
                               "and the lock's dependencies (see README, Scaling out)") from None
        self._pids = {slot: {info["pid"]} for slot, info in enumerate(self.worker_info)}

    # ------------------------------------------------------------------ work
    @property
    def restarts(self) -> int:
        """Worker processes that were replaced during the run (seen as new pids of a slot)."""
        return sum(len(pids) - 1 for pids in self._pids.values())

    def certify(self, images_of: Any, labels: np.ndarray, todo: np.ndarray, n0: int, n: int, alpha: float,
                seed: int) -> Iterator[TaskResult]:
        """CERTIFY the examples ``todo`` (``images_of(indices)``: their float32 (m, C, H, W) images; ``labels``:
        every example's label by position), yielding each task's results as it completes. Each worker has one
        task at a time; a failed task (after Ray's retries) raises a one-line error naming its examples."""
        import ray

        todo = np.asarray(todo, dtype=np.int64)
        size = self.settings.examples_per_task or examples_per_task(int(n0) + int(n), len(todo), len(self.workers))
        tasks = [todo[start:start + size] for start in range(0, len(todo), size)]
        queue = list(range(len(tasks)))[::-1]
        inflight: dict[Any, tuple[int, int]] = {}
        started = time.perf_counter()

        def submit(slot: int) -> None:
            if queue:
                task = queue.pop()
                part = tasks[task]
                ref = self.workers[slot].certify.remote([self._model_ref], images_of(part), labels[part], part,
                                                        int(n0), int(n), float(alpha), int(seed))
                inflight[ref] = (task, slot)

        for slot in range(len(self.workers)):
            submit(slot)
        try:
            while inflight:
                (ref,), _ = ray.wait(list(inflight), num_returns=1)
                task, slot = inflight.pop(ref)
                try:
                    pid, results = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - Ray's task and actor errors, after its retries
                    raise self._task_error(exc, tasks[task]) from None
                if [r.index for r in results] != [int(i) for i in tasks[task]]:
                    raise RuntimeError(f"task {task} returned examples {[r.index for r in results]}, not {tasks[task].tolist()}")
                self._pids.setdefault(slot, set()).add(int(pid))
                self.tasks_done += 1
                submit(slot)
                yield TaskResult(task=task, results=results, slot=slot, pid=int(pid))
        finally:
            self.seconds += time.perf_counter() - started
            for ref in inflight:  # a failed run: the other workers' tasks are dropped (their workers stop after)
                try:
                    ray.cancel(ref, force=False)
                except Exception:  # noqa: BLE001 - a task that already finished or whose worker died
                    pass

    def _task_error(self, exc: BaseException, indices: np.ndarray) -> InputError:
        import ray

        named = _name_examples(indices.tolist())
        cause = getattr(exc, "cause", None)
        if isinstance(cause, InputError):  # the engine refused the input: retrying cannot help
            return InputError(f"{named}: {cause}")
        if isinstance(exc, ray.exceptions.RayActorError):
            return ClusterError(f"{named} failed: their Ray worker died {self.settings.retries + 1} time(s) (killed, "
                                "out of memory or its node lost); the finished examples are kept, rerun to resume")
        return ClusterError(f"{named} failed on a Ray worker ({_first_line(cause or exc)}); the finished examples "
                            "are kept, rerun to resume")

    def runtime_record(self) -> dict[str, Any]:
        """The run's ``runtime`` block: backend, workers, CPUs and tasks, restarts, wall seconds, and the workers'
        onnxruntime/noise/platform record (the first worker's, with ``per_worker`` listing all when they differ)."""
        runtimes = [info["runtime"] for info in self.worker_info]
        shared = dict(runtimes[0])
        if any(r != runtimes[0] for r in runtimes):
            shared["per_worker"] = runtimes
        return {**shared, "backend": "ray", "ray_address": self.settings.address or "local", "workers": len(self.worker_info),
                "cpus_per_worker": self.cpus_per_worker, "tasks": self.tasks_done, "worker_restarts": self.restarts,
                "wall_seconds": round(self.seconds, 3)}

    def noise_kernels(self) -> dict[str, Any]:
        """The workers' numpy noise loops (:func:`noise_kernels`): the first worker's, with ``per_worker`` listing
        every worker's when they differ (a mixed cluster)."""
        kernels = [info["noise_kernels"] for info in self.worker_info]
        first = dict(kernels[0])
        return first if all(k == kernels[0] for k in kernels) else {**first, "per_worker": kernels}
