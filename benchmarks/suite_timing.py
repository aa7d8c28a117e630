"""Wall time of the default test suite, ``gtl markov`` and ``gtl theory``.

Runs, each in a subprocess of the current Python, timing the wall clock and the CPU time (user +
system of the child) and recording the load average before and after:

- tests:  ``python -m pytest -q -p no:cacheprovider --durations N`` with HYPOTHESIS_PROFILE=ci
          (the CI command; ``--durations`` only adds the slowest-tests report), compared with the
          CI budget of about 8 minutes on 2 cores;
- markov: ``gtl markov`` with the default configuration, or ``--markov-config PATH``, into a
          fresh temporary run folder (an existing folder would be resumed and time nothing);
- theory: ``gtl theory --quiet``.

The results file (a "benchmark" results JSON, default runs/perf/suite_timing.json; render with
``gtl report``) holds a table of the jobs, a table of the slowest tests and a bar-like figure of
the wall times; each job's full output goes to a log file next to it. The wall time depends on
what else runs on the machine: compare the CPU time and the load averages when reading it.

    python benchmarks/suite_timing.py                                  # all three, default config
    python benchmarks/suite_timing.py --skip-tests --markov-config runs/tiny.toml
    python benchmarks/suite_timing.py --skip-markov --threads 2        # OMP_NUM_THREADS=2 in the children
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from gtl_verify.provenance import atomic_write_text, provenance, write_results  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CI_BUDGET_S = 8 * 60
JOBS_TABLE = "Jobs"
SLOWEST_TABLE = "Slowest tests (pytest --durations)"
DURATION_LINE = re.compile(r"^\s*([0-9.]+)s\s+(call|setup|teardown)\s+(\S.*)$")
SUMMARY_LINE = re.compile(r"(\d+ (?:passed|failed|skipped|error|errors|xfailed|xpassed|deselected|warnings?)[^\n]*) in ([0-9.]+)s")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_job(name: str, cmd: list[str], env: dict[str, str], log: Path, timeout: float | None) -> dict[str, Any]:
    """Run ``cmd`` (cwd = repository root), write its output to ``log``; wall/CPU time and load."""
    load_before = os.getloadavg()
    cpu_before = _children_cpu()
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        rc, output = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as exc:
        rc = "timeout"
        output = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        output += f"\n[timed out after {timeout} s]"
    wall = time.perf_counter() - start
    cpu = _children_cpu() - cpu_before
    load_after = os.getloadavg()
    atomic_write_text(log, output)
    tail = [line for line in output.strip().splitlines() if line.strip()][-1:] or [""]
    return {"job": name, "command": " ".join(cmd), "wall_s": wall, "cpu_s": cpu, "rc": rc,
            "summary": tail[0][:200], "load_before_1min": load_before[0], "load_after_1min": load_after[0],
            "log": str(log), "_output": output}


def parse_pytest(output: str) -> tuple[str, list[dict[str, Any]]]:
    """(summary line such as '412 passed, 3 skipped in 301.2s', slowest tests from --durations)."""
    summary = ""
    for m in SUMMARY_LINE.finditer(output):
        summary = f"{m.group(1)} in {m.group(2)}s"
    slow = []
    for line in output.splitlines():
        m = DURATION_LINE.match(line)
        if m:
            slow.append({"seconds": float(m.group(1)), "phase": m.group(2), "test": m.group(3).strip()})
    return summary, slow


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--skip-tests", action="store_true", help="do not time the test suite")
    p.add_argument("--skip-markov", action="store_true", help="do not time gtl markov")
    p.add_argument("--skip-theory", action="store_true", help="do not time gtl theory")
    p.add_argument("--markov-config", metavar="PATH", help="TOML config of gtl markov (default: the default configuration)")
    p.add_argument("--durations", type=int, default=15, help="slowest tests to report (default 15)")
    p.add_argument("--pytest-args", nargs=argparse.REMAINDER, default=[],
                   help="extra pytest arguments (everything after this flag), e.g. tests/test_guidance.py")
    p.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS of the children (default: inherited)")
    p.add_argument("--timeout", type=float, default=None, help="seconds before a job is stopped (default: none)")
    p.add_argument("--out", default="runs/perf", help="output folder (default runs/perf)")
    args = p.parse_args(argv)
    if args.markov_config is not None and not Path(args.markov_config).is_file():
        p.error(f"--markov-config file not found: {args.markov_config}")
    if args.durations < 0:
        p.error(f"--durations must be >= 0, got {args.durations}")
    if args.threads is not None and args.threads < 1:
        p.error(f"--threads must be >= 1, got {args.threads}")
    if args.timeout is not None and args.timeout <= 0:
        p.error(f"--timeout must be > 0, got {args.timeout}")
    if args.skip_tests and args.skip_markov and args.skip_theory:
        p.error("nothing to time: all of --skip-tests, --skip-markov and --skip-theory were given")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if args.threads is not None:
        env["OMP_NUM_THREADS"] = str(args.threads)
    py = sys.executable
    jobs: list[dict[str, Any]] = []
    slowest: list[dict[str, Any]] = []
    start = time.perf_counter()
    print(f"cpus={os.cpu_count()} load average {' '.join(f'{v:.2f}' for v in os.getloadavg())} "
          f"OMP_NUM_THREADS={env.get('OMP_NUM_THREADS', 'unset')}", flush=True)

    if not args.skip_tests:
        cmd = [py, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        if args.durations:
            cmd.append(f"--durations={args.durations}")
        cmd += args.pytest_args
        job = run_job("tests (HYPOTHESIS_PROFILE=ci)", cmd, {**env, "HYPOTHESIS_PROFILE": "ci"}, out / "suite_timing_tests.log", args.timeout)
        summary, slowest = parse_pytest(job["_output"])
        job["summary"] = summary or job["summary"]
        job["within_ci_budget"] = bool(job["wall_s"] <= CI_BUDGET_S)
        jobs.append(job)
        print(f"tests: {job['wall_s']:.1f} s wall, {job['cpu_s']:.1f} s CPU, rc {job['rc']}: {job['summary']}", flush=True)

    if not args.skip_markov:
        run_dir = Path(tempfile.mkdtemp(prefix="suite-timing-markov-"))
        try:
            cmd = [py, "-m", "gtl_verify.cli", "markov", "--out", str(run_dir), "--quiet"]
            if args.markov_config:
                cmd += ["--config", str(Path(args.markov_config).resolve())]
            job = run_job("gtl markov" + (f" ({args.markov_config})" if args.markov_config else " (default config)"),
                          cmd, env, out / "suite_timing_markov.log", args.timeout)
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)
        jobs.append(job)
        print(f"markov: {job['wall_s']:.1f} s wall, {job['cpu_s']:.1f} s CPU, rc {job['rc']}", flush=True)

    if not args.skip_theory:
        job = run_job("gtl theory", [py, "-m", "gtl_verify.cli", "theory", "--quiet"], env, out / "suite_timing_theory.log", args.timeout)
        jobs.append(job)
        print(f"theory: {job['wall_s']:.1f} s wall, {job['cpu_s']:.1f} s CPU, rc {job['rc']}", flush=True)

    for job in jobs:
        job.pop("_output", None)
    failed = [j["job"] for j in jobs if j["rc"] != 0]
    results = {
        "title": "Wall time of the test suite, gtl markov and gtl theory",
        "tables": {JOBS_TABLE: jobs, **({SLOWEST_TABLE: slowest} if slowest else {})},
        "columns": {JOBS_TABLE: ["job", "wall_s", "cpu_s", "rc", "summary", "within_ci_budget", "load_before_1min",
                                 "load_after_1min", "command", "log"],
                    SLOWEST_TABLE: ["seconds", "phase", "test"]},
        "figures": [{"title": "Wall and CPU time per job", "x": "job", "y": "seconds", "series": "measure",
                     "xlabel": "job", "ylabel": "seconds", "logx": False, "logy": False,
                     "rows": [{"job": j["job"], "measure": m, "seconds": j[k]} for j in jobs
                              for m, k in (("wall", "wall_s"), ("CPU (user + system)", "cpu_s"))]}],
        "ci_budget_s": CI_BUDGET_S,
        "cpus": os.cpu_count(),
    }
    config = {k: v for k, v in vars(args).items()}
    path = write_results(out / "suite_timing.json", "benchmark", results, provenance(config, [], time.perf_counter() - start))
    print(f"results: {path}")
    if failed:
        print(f"failed: {', '.join(failed)} (see the logs)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
