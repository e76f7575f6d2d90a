"""The demo's worker processes: plain subprocesses that import helpers.demo, not the
caller's script, fed one slide at a time as a JSON line on their stdin and answering with
one on their stdout. Ctrl-C stops a build within about a second, leaving the finished
slides recorded (``on_done``), and the workers exit when their parent dies
(tests/test_demo_safety.py holds both).

Why not a library's process pool (issue 19, tried):

- the standard library's ``concurrent.futures.ProcessPoolExecutor`` imports the caller's
  script again in each worker it spawns (a script without a main guard starts its build
  again there), and on Ctrl-C it waits for the running slides;
- joblib's loky (:mod:`helpers.runs` uses it) starts two resource trackers beside the
  workers, which can outlive a stopped build for a moment; a shutdown with slides still
  queued prints a ``KeyError`` traceback of its manager thread (joblib 1.6's loky 3.6); it
  kills its workers with SIGKILL, leaving their temporary files; and it has no parent watch:
  the workers (and trackers) of a killed build wait for their next task for ever.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import cv2

from helpers.demo.manifest import FileRecord
from helpers.demo.plan import CohortError, SlideSpec
from helpers.demo.process import build_one


def _worker_main() -> None:
    """Loop of a build worker: one JSON task per stdin line, one JSON result per line.

    The worker ignores Ctrl-C (the parent stops it), turns SIGTERM into a normal exit (so
    half-written temporary files are removed) and exits when its parent dies.
    """
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # anything printed goes to stderr, not into the answers
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    for line in sys.stdin:
        task = json.loads(line)
        spec = SlideSpec(**task["spec"])
        answer: dict[str, Any]
        try:
            answer = {"name": spec.name, "files": build_one(spec, task["root"], task["seed"])}
        except OSError as exc:  # a full disk, a read-only folder: raised again by the parent
            answer = {"name": spec.name, "error": traceback.format_exc()}
            answer["oserror"] = [exc.errno, exc.strerror or str(exc), exc.filename]
        except Exception:  # noqa: BLE001 - reported by the parent
            answer = {"name": spec.name, "error": traceback.format_exc()}
        out.write(json.dumps(answer) + "\n")
        out.flush()


def _watch_parent(parent: int) -> None:
    """Stop this worker (SIGTERM, then at once after 5 s) when ``parent`` is gone."""
    while os.getppid() == parent:
        time.sleep(0.25)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(5)
    os._exit(1)


@contextmanager
def _ctrl_c_held() -> Iterator[None]:
    """Hold SIGINT in the block (only the main thread can, where the platform allows it)."""
    hold = threading.current_thread() is threading.main_thread()
    hold = hold and hasattr(signal, "pthread_sigmask")
    if hold:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        if hold:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


class _WorkerPool:
    """``n`` worker subprocesses fed from a queue; :meth:`close` stops them at once."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []
        self.tasks: queue.Queue[dict] = queue.Queue()
        self.results: queue.Queue[dict] = queue.Queue()

    def start(self, n: int, tasks: list[dict]) -> None:
        """Start ``n`` workers on ``tasks`` (Ctrl-C waits until they are all started, so
        :meth:`close` always knows every one of them)."""
        package_root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [package_root] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
        )
        code = "from helpers.demo.workers import _worker_main; _worker_main()"
        for task in tasks:
            self.tasks.put(task)
        with _ctrl_c_held():
            for _ in range(n):
                self.procs.append(
                    subprocess.Popen(
                        [sys.executable, "-c", code],
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        text=True,
                        env=env,
                    )
                )
        for proc in self.procs:
            threading.Thread(target=self._feed, args=(proc,), daemon=True).start()

    def _feed(self, proc: subprocess.Popen) -> None:
        """Hand ``proc`` one task after another (a thread per worker), queueing its answers."""
        assert proc.stdin is not None and proc.stdout is not None
        while True:
            try:
                task = self.tasks.get_nowait()
            except queue.Empty:
                return
            try:
                proc.stdin.write(json.dumps(task) + "\n")
                proc.stdin.flush()
                line = proc.stdout.readline()
            except (OSError, ValueError):
                line = ""
            if not line:
                self.results.put({"name": task["spec"]["name"], "error": "the worker died"})
                return
            self.results.put(json.loads(line))

    def next_result(self) -> dict:
        """The next answer of any worker (waiting in short steps, so that Ctrl-C is seen)."""
        while True:
            try:
                return self.results.get(timeout=0.2)
            except queue.Empty:
                continue

    def close(self) -> None:
        """Stop every worker (SIGTERM, SIGKILL after 5 s) and close its pipes."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 5
        for proc in self.procs:
            try:
                proc.wait(max(deadline - time.monotonic(), 0.1))
            except Exception:  # noqa: BLE001 - still alive: kill it
                proc.kill()
                proc.wait()
            for stream in (proc.stdin, proc.stdout):
                try:
                    if stream is not None:
                        stream.close()
                except OSError:
                    pass


def raise_worker_error(answer: dict) -> None:
    """A worker's failure raised here: its ``OSError`` (a full disk) as the same
    ``OSError``, anything else as a :class:`CohortError` with the worker's traceback."""
    if "oserror" in answer:
        raise OSError(*answer["oserror"])
    if "error" in answer:
        raise CohortError(f"building {answer['name']} failed:\n{answer['error']}")


def build_slides(
    todo: list[SlideSpec],
    root: Path,
    seed: int,
    workers: int,
    on_done: Callable[[str, dict[str, FileRecord]], None],
) -> None:
    """Build ``todo``; ``on_done(name, records)`` runs in this process after each slide."""
    if workers == 1 or len(todo) <= 1:
        for s in todo:  # process_slide runs torch on one thread
            on_done(s.name, build_one(s, str(root), seed))
        return
    tasks = [{"spec": asdict(s), "root": str(root), "seed": seed} for s in todo]
    pool = _WorkerPool()
    try:
        pool.start(min(workers, len(todo)), tasks)
        for _ in todo:
            answer = pool.next_result()
            raise_worker_error(answer)
            on_done(answer["name"], answer["files"])
    finally:
        pool.close()
