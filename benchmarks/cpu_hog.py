"""Keep CPUs busy, to run the tests (or a job) on a loaded machine.

    python benchmarks/cpu_hog.py                 # two busy processes until stopped
    python benchmarks/cpu_hog.py --processes 4 --seconds 600

Each process spins on arithmetic at normal priority, as another user's job would;
Ctrl-C (or SIGTERM) stops them all. To prove a test waits on state rather than on
time, run it beside the hog, e.g.:

    python benchmarks/cpu_hog.py & python -m pytest tests/integration; kill %1
"""

from __future__ import annotations

import argparse
import multiprocessing
import signal
import sys
import time


def spin(deadline: float) -> None:
    """Busy-loop until ``deadline`` (``time.monotonic()``; infinite for ever)."""
    x = 0
    while time.monotonic() < deadline:
        for _ in range(100_000):
            x = (x * 31 + 7) % 1_000_003


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=2, help="busy processes (default 2)")
    parser.add_argument(
        "--seconds", type=float, default=float("inf"), help="default: until stopped"
    )
    args = parser.parse_args(argv)
    if args.processes < 1 or args.seconds <= 0:
        parser.error("--processes must be at least 1 and --seconds above 0")
    deadline = time.monotonic() + args.seconds
    workers = [
        multiprocessing.Process(target=spin, args=(deadline,), daemon=True)
        for _ in range(args.processes)
    ]
    for worker in workers:
        worker.start()
    print(f"cpu_hog: {args.processes} busy processes", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        for worker in workers:
            worker.join()
    except KeyboardInterrupt:
        pass
    finally:
        for worker in workers:
            worker.terminate()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
