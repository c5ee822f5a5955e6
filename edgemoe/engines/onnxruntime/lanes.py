"""Run launched stages at once within a thread budget: the encoders of different sensors, and the
experts chosen for a frame, do not depend on each other.

ONNX Runtime releases the GIL inside ``run_with_iobinding``, so N threads run N stage sessions
(each at one intra-op thread) truly in parallel. ``Lanes(N)`` starts N-1 worker threads at load;
the thread that drives the executor is the N-th lane. ``launch`` queues a run; ``wait`` runs its
own engine inline if no worker has taken it yet, else helps with other queued runs, and only then
sleeps until a worker finishes it. So a stage that runs alone (the gate, the head, a one-sensor
mask's encoder) never crosses a thread, and a worker is woken only when a second run is queued.
Nothing is allocated per run beyond the queue entry: no futures, no events; one lock and two
conditions are shared by every engine of the budget.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

IDLE, QUEUED, RUNNING = 0, 1, 2


class Job:
    """One engine's run slot: the call, its state and the error it raised (re-raised by ``wait``)."""

    __slots__ = ("error", "run", "state")

    def __init__(self) -> None:
        self.run: Callable[[], None] = _nothing
        self.state = IDLE
        self.error: BaseException | None = None


class Lanes:
    """A thread budget shared by the engines of a process that were loaded with it."""

    def __init__(self, threads: int) -> None:
        if threads < 1:
            raise ValueError(f"thread budget {threads} must be at least 1")
        self.threads = threads
        self._lock = threading.Lock()
        self._queued_work = threading.Condition(self._lock)  # workers sleep here
        self._finished = threading.Condition(self._lock)  # waiting callers sleep here
        self._queue: deque[Job] = deque()
        self._idle = 0
        self._workers = [threading.Thread(target=self._work, name=f"edgemoe-lane-{i + 1}", daemon=True)
                         for i in range(threads - 1)]
        for worker in self._workers:
            worker.start()

    def launch(self, job: Job, run: Callable[[], None]) -> None:
        """Queue ``run``; wake an idle worker only if the caller has more than one run to share."""
        with self._lock:
            job.run, job.state, job.error = run, QUEUED, None
            self._queue.append(job)
            if len(self._queue) > 1 and self._idle:
                self._queued_work.notify()

    def wait(self, job: Job) -> None:
        """Return once ``job`` ran (on this thread if still queued); re-raise its error."""
        lock = self._lock
        lock.acquire()
        try:
            while job.state != IDLE:
                if job.state == QUEUED:
                    self._queue.remove(job)
                    self._execute(job)
                elif self._queue:  # a worker has ours: help with the rest meanwhile
                    self._execute(self._queue.popleft())
                else:
                    self._finished.wait()
        finally:
            lock.release()
        error, job.error = job.error, None
        if error is not None:
            raise error

    def _execute(self, job: Job) -> None:
        """Run ``job`` with the lock released (called and returning with it held)."""
        job.state = RUNNING
        self._lock.release()
        try:
            job.run()
        except BaseException as exc:  # handed to the waiting caller
            job.error = exc
        finally:
            self._lock.acquire()
            job.state = IDLE
            self._finished.notify_all()

    def _work(self) -> None:
        with self._lock:
            while True:
                while not self._queue:
                    self._idle += 1
                    self._queued_work.wait()
                    self._idle -= 1
                self._execute(self._queue.popleft())


def _nothing() -> None:
    return None


_SHARED: dict[int, Lanes] = {}
_SHARED_LOCK = threading.Lock()


def shared_lanes(threads: int) -> Lanes | None:
    """The process's lanes for a budget of ``threads`` (started on the first load that asks for
    them, so at load, never per frame); None for a budget of 1: runs then stay on the caller."""
    if threads <= 1:
        return None
    with _SHARED_LOCK:
        lanes = _SHARED.get(threads)
        if lanes is None:
            lanes = _SHARED[threads] = Lanes(threads)
        return lanes
