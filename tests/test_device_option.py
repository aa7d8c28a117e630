"""``--device`` of ``gtl theory`` and ``gtl markov``: checked with its name before any work, and passed
explicitly to where the computation runs (the CUDA comparison runs where a GPU is present)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from gtl_verify.checks import suite
from gtl_verify.checks.base import Check
from gtl_verify.cli import main
from gtl_verify.learned import NetworkDenoiser, on_device
from markov import benchmark
from markov.presets import make_pair
from markov.oracle import PairOracle

from test_markov_benchmark import TINY

NO_CUDA = not torch.cuda.is_available()


@pytest.mark.skipif(not NO_CUDA, reason="checks the message on a machine without CUDA")
@pytest.mark.parametrize("argv", [["theory", "--only", "r4"], ["markov", "--preset", "paper"],
                                  ["markov", "validate", "markov.examples:Unstabilised"]])
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_cuda_without_cuda_is_one_line_before_any_work(argv, device, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv + ["--device", device, "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"--device {device}: CUDA is not available here" in err, err
    assert not (tmp_path / "runs").exists()  # no run folder, nothing trained


@pytest.mark.parametrize("argv", [["theory"], ["markov"]])
def test_malformed_device_is_named(argv, capsys):
    assert main(argv + ["--device", "gpu0", "--quiet"]) == 2
    assert "--device must be cpu, cuda, cuda:N or mps, got 'gpu0'" in capsys.readouterr().err


def test_theory_checks_compute_on_the_given_device_and_cpu_only_checks_stay_on_the_cpu():
    seen = {}

    def recorder(name):
        def case(gen, device):
            seen[name] = (device, torch.get_default_device(), torch.zeros(1).device)
            return 0.0
        return case

    meta = torch.device("meta")  # stands for an accelerator: only where the tensors go is looked at
    suite.run_check(Check("torch", "", recorder("torch")), 1, 0, meta)
    suite.run_check(Check("rational", "", recorder("rational"), torch_device=False), 1, 0, meta)
    assert seen["torch"] == (meta, meta, meta) and seen["rational"] == (torch.device("cpu"),) * 3
    assert [c.name for c in suite.CHECKS if not c.torch_device] == [
        "theorem1-ctmc-masked", "theorem1-ctmc-uniform", "rational-theorem1-masked", "rational-theorem1-uniform",
        "rational-r1-masked", "rational-r4"]


def test_theory_problems_do_not_depend_on_the_device_argument():
    """The problems are drawn from the CPU generator whatever the device: on the CPU the residuals
    with device='cpu' given explicitly are those of the default."""
    default = suite.run_checks(cases=2, seed=5, only=["r4", "top-n-tv", "jensen"], progress=False)
    explicit = suite.run_checks(cases=2, seed=5, only=["r4", "top-n-tv", "jensen"], progress=False, device="cpu")
    assert [r.to_dict() for r in default] == [r.to_dict() for r in explicit]


@pytest.mark.skipif(NO_CUDA, reason="needs a CUDA device")
def test_theory_on_cuda_matches_the_cpu():
    names = [c.name for c in suite.CHECKS if c.torch_device]
    cpu = suite.run_checks(cases=3, seed=2, only=names, progress=False)
    gpu = suite.run_checks(cases=3, seed=2, only=names, progress=False, device="cuda")
    assert all(r.passed for r in gpu)
    for a, b in zip(cpu, gpu):
        assert abs(a.residual - b.residual) <= max(a.tolerance, 1e-12), a.name


def test_on_device_moves_a_copy_of_a_network_and_leaves_oracles():
    net = nn.Sequential(nn.Embedding(4, 3), nn.Linear(3, 3))
    net.head = net[1]
    adapter = NetworkDenoiser(net, mask_id=3)
    assert on_device(adapter, torch.device("cpu")) is adapter
    moved = on_device(adapter, torch.device("meta"))
    assert moved is not adapter and next(moved.net.parameters()).device.type == "meta"
    assert next(adapter.net.parameters()).device.type == "cpu"  # the cached original stays
    oracle = PairOracle(make_pair("paper"))
    assert on_device(oracle, torch.device("meta")) is oracle and on_device(None, torch.device("meta")) is None


class _Reached(Exception):
    pass


def test_benchmark_passes_its_device_to_the_samplers(monkeypatch):
    def stop(component, device):
        raise _Reached(device)

    monkeypatch.setattr(benchmark, "on_device", stop)
    config = dataclasses.replace(TINY, methods=("source-only",), gamma_sweep=(), overlap_sweep=())
    with pytest.raises(_Reached) as reached:
        benchmark.run_benchmark(config, None, progress=False, device=torch.device("meta"))
    assert reached.value.args[0] == torch.device("meta")


def test_markov_cli_passes_the_checked_device(monkeypatch):
    got = {}
    monkeypatch.setattr(benchmark, "run_from_args", lambda args, device: got.setdefault("device", device) and 0)
    assert main(["markov", "--device", "cpu", "--quiet"]) == 0
    assert got["device"] == torch.device("cpu")
