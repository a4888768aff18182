"""Start-up time of the commands that need no data: median wall time of N fresh processes.

    python benchmarks/bench_startup.py [--repeat 5]

Each command runs as ``python -m agc_cli ...`` in a new interpreter (what typing ``agc`` costs,
less the console-script shim). ``stats Reddit`` answers from catalog metadata with an empty
``--root``, so nothing is downloaded. Target: each below 1 s.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time

TARGET_S = 1.0


def median_seconds(args: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "agc_cli", *args], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per command (median)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="agc-bench-") as root:
        commands = {
            "agc --version": ["--version"],
            "agc --help": ["--help"],
            "agc stats Reddit": ["stats", "Reddit", "--root", root],
        }
        results = {name: median_seconds(argv, args.repeat) for name, argv in commands.items()}
    line = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in results.items())
    verdict = "all below" if max(results.values()) < TARGET_S else "NOT all below"
    print(f"startup (median of {args.repeat}): {line} ({verdict} {TARGET_S:.0f} s)")


if __name__ == "__main__":
    main()
