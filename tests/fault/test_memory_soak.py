"""F22, short form: hundreds of short steps on one worker whose pool children are replaced
every few tasks (`worker_max_tasks_per_child`). Replacement must neither deadlock nor loop,
every run succeeds once, and no child grows: RSS sampled with psutil throughout."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import psutil
import pytest

from agent33.config import Settings
from agent33.db import session_scope
from agent33.engine import service
from tests.fault.harness import bench, save_chain
from tests.integration.engine.helpers import steps_of

pytestmark = [pytest.mark.fault, pytest.mark.timeout(240), pytest.mark.usefixtures("committed_db")]
RUNS = 40
STEPS = 5
TASKS_PER_CHILD = 10


class RssSampler:
    """Every 0.2 s, the resident size of each pool child of `pid` (the largest seen per child)."""

    def __init__(self, pid: int) -> None:
        self.main = psutil.Process(pid)
        self.peak: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            try:
                children = self.main.children()
            except psutil.NoSuchProcess:
                return
            for child in children:
                try:
                    rss = child.memory_info().rss
                except psutil.NoSuchProcess:
                    continue
                self.peak[child.pid] = max(rss, self.peak.get(child.pid, 0))

    def stop(self) -> dict[int, int]:
        self._stop.set()
        self._thread.join(5)
        return dict(self.peak)


def test_f22_children_replaced_under_many_short_steps(settings: Settings, tmp_path: Path) -> None:
    with bench(settings, tmp_path) as made:
        save_chain("f22_chain", made.ledger, STEPS, ms=0)
        extra = json.dumps({"worker_max_tasks_per_child": TASKS_PER_CHILD})
        worker = made.start_worker(concurrency=2, AGENT33_CELERY_EXTRA=extra)
        sampler = RssSampler(worker.pid)
        started = time.monotonic()
        made.start_runs("f22_chain", RUNS)
        made.check("F22 short soak", steps=STEPS)
        took = time.monotonic() - started
        peaks = sampler.stop()
        pids: set[int] = set()
        with session_scope() as session:
            for run_id in made.run_ids:
                run = service.get_run(session=session, run_id=run_id)
                pids.update(int(s.worker.rsplit(":", 1)[1]) for s in steps_of(run).values())
        steps = RUNS * STEPS
        # A child runs at most TASKS_PER_CHILD tasks, and each of these steps is one task.
        assert len(pids) >= steps // TASKS_PER_CHILD, f"{len(pids)} children ran {steps} steps"
        assert len(peaks) >= steps // TASKS_PER_CHILD // 2, f"only {len(peaks)} children seen"
        early = list(peaks.values())[: max(1, len(peaks) // 4)]  # the first children seen
        baseline = max(early)
        largest = max(peaks.values())
        assert largest < baseline * 1.5, f"a child grew to {largest >> 20} MiB ({baseline >> 20})"
        print(
            f"F22: {steps} steps in {took:.1f} s on {len(pids)} pool children "
            f"(max {TASKS_PER_CHILD} tasks each), child RSS {min(peaks.values()) >> 20}"
            f"-{largest >> 20} MiB"
        )
