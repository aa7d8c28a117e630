"""Tasks in forked workers: same results as in-process, order kept, errors surface."""

from __future__ import annotations

import os

import pytest
import torch

from gtl_verify.workers import run_tasks


def _tiny_training(seed: int) -> list[float]:
    from gtl_verify.networks import BackboneConfig, DenoiserNet
    from gtl_verify.objectives import mdlm_loss
    from gtl_verify.schedules import LogLinearSchedule
    from gtl_verify.training import TrainConfig, build_seeded, train

    cfg = BackboneConfig(vocab_size=3, num_embeddings=4, max_length=5, hidden=8, blocks=1, heads=2, cond=4)
    net = build_seeded(lambda: DenoiserNet(cfg), f"{seed:016x}")
    data = torch.randint(0, 3, (40, 5), generator=torch.Generator().manual_seed(seed))
    sched = LogLinearSchedule()
    result = train(net, lambda m, x, g: mdlm_loss(m, x, sched, 3, g), data, TrainConfig(steps=6, batch_size=8, seed=seed),
                   progress=False)
    return result.losses


def test_workers_give_the_in_process_results_in_order():
    tasks = [lambda s=s: _tiny_training(s) for s in range(3)]
    serial = run_tasks(tasks, 1)
    assert run_tasks(tasks, 2) == serial  # bit-identical loss trajectories, task order kept


def test_tasks_really_run_in_other_processes():
    pids = run_tasks([os.getpid, os.getpid, os.getpid], 2)
    assert os.getpid() not in pids and run_tasks([os.getpid], 2) == [os.getpid()]


def _fail():
    raise RuntimeError("task three broke")


def test_errors_and_bad_input():
    with pytest.raises(RuntimeError, match="task three broke"):
        run_tasks([lambda: 1, lambda: 2, _fail], 2)
    with pytest.raises(ValueError, match="workers"):
        run_tasks([lambda: 1], 0)
    with pytest.raises(ValueError, match=r"tasks\[1\] must be callable"):
        run_tasks([lambda: 1, 5], 2)
    assert run_tasks([], 2) == []


def test_workers_do_not_hang_after_the_parent_used_several_threads():
    """Forking after a multi-threaded OpenMP region: a worker that opened one again would wait forever
    for pool threads the fork did not copy (seen in the suite); workers run on one thread instead."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent("""
        import torch
        from gtl_verify.workers import run_tasks
        torch.set_num_threads(2)
        a = torch.randn(512, 512)
        torch.nn.functional.gelu(a @ a).sum()

        def task():
            x = torch.randn(512, 512)
            return (torch.get_num_threads(), float(torch.nn.functional.gelu(x @ x).sum()))

        print([n for n, _ in run_tasks([task] * 3, 2)])
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[1, 1, 1]"


def test_workers_option_takes_a_count_or_auto():
    from gtl_verify.workers import parse_workers, usable_cpus

    assert parse_workers("3") == 3 and parse_workers(2) == 2
    assert parse_workers("auto") == parse_workers(" AUTO ") == usable_cpus() >= 1
    for bad in ("0", "-1", "two", "1.5", 1.5, None, ""):
        with pytest.raises(ValueError, match=r"--workers must be a positive integer or 'auto', got"):
            parse_workers(bad)


def test_gtl_markov_defaults_to_the_usable_cores():
    from gtl_verify.cli import build_parser

    args = build_parser().parse_args(["markov"])
    assert args.workers == "auto"
