"""Agent33 (every step's state in PostgreSQL) against raw Celery, same Redis, same worker.

Run:  .venv/bin/python benchmarks/engine_vs_celery.py

Shapes: a chain of 200 no-op steps (`transform`, which the engine fuses); the same chain of a
no-op action that is not inline (`bench_noop`: every step its own message); a 500-wide fan-out
of top-level steps and a 2,000-wide one (a `parallel_group` map: a workflow holds at most
1,000 steps), each with one fan-in; a 100-layer x 4-wide diamond (each step depends on every
step of the previous layer). Each shape runs as an Agent33 workflow and as raw Celery
variants of `bench.noop` on the one worker process (queue `steps`); the baseline of a shape is
its fastest raw variant. Servers run with `agent33 serve`'s default durability (PostgreSQL
fsync on). The last line is `worst ratio agent33/raw-celery: X.XX`, the worst over shapes of
agent33 time / fastest raw time.

Environment:
  BENCH_SCALE        sizes x this (default 1.0; e.g. 0.1 for a quick run)
  BENCH_REPEAT       measurements per variant, the best is kept (default 3: one noisy run
                     does not decide)
  BENCH_TIMEOUT      seconds one measurement may take before it is reported as a lower bound
                     (default 300)
  BENCH_CONCURRENCY  worker processes (prefork, default 2)
  BENCH_SHAPES       only these shapes, comma-separated keys (chain, chain_unfused, fanout_500,
                     fanout_2000, diamond; default: all five)
  DATABASE_URL, REDIS_URL  use these servers; unset: private embedded ones in a temp dir
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from celery import Celery

if __package__ in (None, ""):  # run as a script: make `benchmarks`, `agent33`, `tasks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import harness  # noqa: E402
from benchmarks.shapes import Shape, all_shapes, diamond_shape  # noqa: E402

AGENT33 = "agent33"


@dataclass
class Measurement:
    shape: Shape
    variant: str
    seconds: float
    timed_out: bool = False
    detail: str = ""

    @property
    def is_raw(self) -> bool:
        return self.variant != AGENT33


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    try:
        value = float(raw) if raw else default
    except ValueError:
        raise SystemExit(f"{name} must be a number, got {raw!r}") from None
    if value <= 0:
        raise SystemExit(f"{name} must be positive, got {raw!r}")
    return value


def _drain_queue(app: Celery, quiet_for: float = 1.0, limit: float = 120.0) -> None:
    """After a timed-out canvas: purge until no message showed up for `quiet_for` seconds.

    Tasks still running publish follow-ups (chord bodies, chain links) after a first purge.
    """
    deadline = time.monotonic() + limit
    quiet_since = time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - quiet_since < quiet_for:
        if app.control.purge():
            quiet_since = time.monotonic()
        time.sleep(0.1)


def _measure_raw(shape: Shape, variant: str, repeat: int, timeout: float) -> Measurement:
    from celery.exceptions import TimeoutError as CeleryTimeout

    from benchmarks.bench_app import app

    best: Measurement | None = None
    for _ in range(repeat):
        started = time.perf_counter()
        try:
            shape.raw[variant](timeout)
        except (CeleryTimeout, TimeoutError):
            seconds = time.perf_counter() - started
            _drain_queue(app)
            return Measurement(shape, variant, seconds, timed_out=True)
        seconds = time.perf_counter() - started
        if best is None or seconds < best.seconds:
            best = Measurement(shape, variant, seconds)
    assert best is not None
    return best


def _measure_agent33(
    shape: Shape, repeat: int, timeout: float, worker: harness.Worker
) -> Measurement:
    name = harness.register_workflow(shape.document)
    best: Measurement | None = None
    for _ in range(repeat):
        errors_before = len(worker.task_errors())
        result = harness.run_agent33(name, timeout=timeout)
        if result.timed_out:
            errors = worker.task_errors()[errors_before:]
            detail = f"timed out after {timeout:g}s" + (
                f"; {len(errors)} step task(s) crashed, first: {errors[0]}" if errors else ""
            )
            return Measurement(shape, AGENT33, result.seconds, timed_out=True, detail=detail)
        detail = result.timings.describe() if result.timings else ""
        if best is None or result.seconds < best.seconds:
            best = Measurement(shape, AGENT33, result.seconds, detail=detail)
    assert best is not None
    return best


def _warm_up(timeout: float, worker: harness.Worker) -> None:
    """Import everything and open connections in every worker process before measuring."""
    small = diamond_shape(3)
    for variant in small.raw:
        if _measure_raw(small, variant, repeat=2, timeout=timeout).timed_out:
            raise harness.BenchmarkError(f"warm-up {variant} timed out:\n{worker.log_tail()}")
    warm = _measure_agent33(small, repeat=2, timeout=min(timeout, 60.0), worker=worker)
    if warm.timed_out:
        raise harness.BenchmarkError(f"warm-up Agent33 run: {warm.detail}\n{worker.log_tail()}")


def _seconds(m: Measurement) -> str:
    return f"{'>' if m.timed_out else ''}{m.seconds:.2f}"


def _ratio(m: Measurement, baseline: Measurement) -> str:
    """`m`'s time over the baseline's; a timed-out time is a lower bound (`>`), over a
    timed-out baseline the ratio is unknown (`?`)."""
    if baseline.timed_out and m is not baseline:
        return "?"
    return f"{'>' if m.timed_out else ''}{m.seconds / baseline.seconds:.2f}"


def _print_table(results: list[Measurement]) -> float:
    """Print every variant with its ratio to the shape's fastest raw; returns the worst ratio.

    A shape whose raw variants all timed out has no baseline and does not count.
    """
    header = f"{'shape':<26} {'variant':<38} {'steps':>6} {'wall s':>9} {'ms/step':>9} {'ratio':>8}"
    print(header)
    print("-" * len(header))
    worst = 0.0
    details: list[str] = []
    shapes = list({id(m.shape): m.shape for m in results}.values())
    for shape in shapes:
        rows = [m for m in results if m.shape is shape]
        baseline = min((m for m in rows if m.is_raw), key=lambda m: (m.timed_out, m.seconds))
        for m in rows:
            mark = "  <- fastest raw" if m is baseline else ""
            print(
                f"{shape.label:<26} {m.variant:<38} {shape.steps:>6} {_seconds(m):>9}"
                f" {m.seconds * 1000 / shape.steps:>9.2f} {_ratio(m, baseline):>8}{mark}"
            )
            if m.is_raw:
                continue
            if not baseline.timed_out:
                worst = max(worst, m.seconds / baseline.seconds)
            if m.detail:
                details.append(f"{shape.label}: {m.detail}")
    if details:
        print()
        print("Agent33 step timings (from step rows):")
        for line in details:
            print(f"  {line}")
    return worst


MAKESPAN_STEPS = {  # id: (seconds, depends_on); the critical path is a -> b -> d
    "a": (0.6, []),
    "b": (1.0, ["a"]),
    "c": (0.4, ["a"]),
    "e": (0.5, ["a"]),
    "d": (0.8, ["b", "c"]),
}
CRITICAL_PATH = 0.6 + 1.0 + 0.8


def _makespan(timeout: float) -> str:
    """A DAG of sleeping steps must finish within 10% (plus 0.5 s) of its critical path."""
    document = {
        "name": "bench_makespan",
        "steps": [
            {"id": sid, "action": "wait", "with": {"seconds": sec}, "depends_on": deps}
            for sid, (sec, deps) in MAKESPAN_STEPS.items()
        ],
    }
    result = harness.run_agent33(harness.register_workflow(document), timeout=timeout)
    limit = CRITICAL_PATH * 1.1 + 0.5
    verdict = "ok" if not result.timed_out and result.seconds <= limit else "TOO SLOW"
    return (
        f"makespan: {result.seconds:.2f} s for a critical path of {CRITICAL_PATH:.2f} s"
        f" (limit {limit:.2f} s): {verdict}"
    )


def _run_all(scale: float, repeat: int, timeout: float, concurrency: int) -> float:
    shapes = all_shapes(scale)
    wanted = [k.strip() for k in os.environ.get("BENCH_SHAPES", "").split(",") if k.strip()]
    if wanted:
        unknown = set(wanted) - {s.key for s in shapes}
        if unknown:
            raise SystemExit(
                f"BENCH_SHAPES: unknown {sorted(unknown)}; known {[s.key for s in shapes]}"
            )
        shapes = [s for s in shapes if s.key in wanted]
    with harness.services() as settings:
        print(
            f"scale {scale:g}, repeat {repeat}, timeout {timeout:g}s,"
            f" worker: prefork x{concurrency} on queue steps",
            flush=True,
        )
        log_dir = settings.var_dir
        with harness.worker(settings, concurrency=concurrency, log_dir=log_dir) as worker:
            _warm_up(timeout, worker)
            results: list[Measurement] = []
            for shape in shapes:
                for variant in shape.raw:
                    results.append(_measure_raw(shape, variant, repeat, timeout))
                    print(f"  {shape.label}: {variant}: {_seconds(results[-1])} s", flush=True)
                results.append(_measure_agent33(shape, repeat, timeout, worker))
                print(f"  {shape.label}: {AGENT33}: {_seconds(results[-1])} s", flush=True)
            makespan = _makespan(timeout)
        print()
        worst = _print_table(results)
        print()
        print(makespan)
        return worst


def main() -> int:
    scale = _env_float("BENCH_SCALE", 1.0)
    repeat = int(_env_float("BENCH_REPEAT", 3))
    timeout = _env_float("BENCH_TIMEOUT", 300.0)
    concurrency = int(_env_float("BENCH_CONCURRENCY", 2))
    try:
        with harness.sigterm_as_interrupt():
            worst = _run_all(scale, repeat, timeout, concurrency)
    except KeyboardInterrupt:
        print("interrupted; everything this benchmark started is stopped", file=sys.stderr)
        return 130
    except harness.BenchmarkError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    print(f"worst ratio agent33/raw-celery: {worst:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
