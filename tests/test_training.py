"""The generic training loop: determinism, warm-up, EMA, checkpoints and bit-identical resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from gtl_verify.forward import MaskedProcess
from gtl_verify.networks import BackboneConfig, DenoiserNet
from gtl_verify.objectives import mdlm_elbo_nats_per_token, mdlm_loss
from gtl_verify.schedules import LogLinearSchedule
from gtl_verify.training import TrainConfig, config_hash, load_checkpoint, lr_factor, train

K, L = 3, 8


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest (and alike everywhere) on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


PROCESS = MaskedProcess(K, LogLinearSchedule())


def markov_data(n: int, seed: int = 0, stay: float = 0.9) -> torch.Tensor:
    """Sequences of a K=3 chain that repeats its token with probability ``stay``."""
    g = torch.Generator().manual_seed(seed)
    s = torch.full((K, K), (1 - stay) / (K - 1), dtype=torch.float64)
    s.fill_diagonal_(stay)
    x = torch.empty(n, L, dtype=torch.long)
    x[:, 0] = torch.randint(0, K, (n,), generator=g)
    for i in range(1, L):
        x[:, i] = torch.multinomial(s[x[:, i - 1]], 1, generator=g).squeeze(1)
    return x


def tiny_denoiser(seed: int = 0, dropout: float = 0.0) -> DenoiserNet:
    torch.manual_seed(seed)
    cfg = BackboneConfig(vocab_size=K, num_embeddings=K + 1, max_length=L, hidden=16, blocks=1, heads=2, cond=8, dropout=dropout)
    return DenoiserNet(cfg)


def loss_fn(model, batch, generator):
    return mdlm_loss(model, batch, None, PROCESS, generator)


def weights(model: nn.Module) -> list[torch.Tensor]:
    return [v.detach().clone() for v in model.state_dict().values()]


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


class Scalar(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.zeros(1, dtype=torch.float64))


# ------------------------------------------------------------------ config
@pytest.mark.parametrize(
    "field, value",
    [("steps", -1), ("batch_size", 0), ("lr", 0.0), ("weight_decay", -1.0), ("warmup", -2), ("grad_clip", -1.0),
     ("checkpoint_every", -1), ("seed", -1), ("log_every", 0), ("ema", 1.0), ("lr_schedule", "linear"),
     ("lr_schedule", 1), ("lr_floor", 1.5), ("lr_floor", -0.1)],
)
def test_invalid_train_config(field, value):
    kwargs = {"steps": 10, "batch_size": 4, field: value}
    with pytest.raises(ValueError, match=field):
        TrainConfig(**kwargs)


def test_config_hash():
    a = config_hash({"b": 1, "a": [1, 2], "c": {"y": 0.5, "x": "s"}})
    assert a == config_hash({"c": {"x": "s", "y": 0.5}, "a": [1, 2], "b": 1})
    assert len(a) == 64 and a != config_hash({"b": 2, "a": [1, 2], "c": {"y": 0.5, "x": "s"}})
    cfg = TrainConfig(steps=10, batch_size=4)
    # the number of steps and the checkpoint/log frequency do not change the trajectory hash
    assert cfg.trajectory_hash("x") == TrainConfig(steps=99, batch_size=4, checkpoint_every=3, log_every=7).trajectory_hash("x")
    assert cfg.trajectory_hash("x") != TrainConfig(steps=10, batch_size=4, lr=1e-3).trajectory_hash("x")
    assert cfg.trajectory_hash("x") != cfg.trajectory_hash("y")
    # a decaying rate depends on the total step count and on its floor
    cosine = TrainConfig(steps=10, batch_size=4, lr_schedule="cosine")
    assert cosine.trajectory_hash("x") != cfg.trajectory_hash("x")
    assert cosine.trajectory_hash("x") != TrainConfig(steps=11, batch_size=4, lr_schedule="cosine").trajectory_hash("x")
    assert cosine.trajectory_hash("x") != TrainConfig(steps=10, batch_size=4, lr_schedule="cosine", lr_floor=0.0).trajectory_hash("x")


def test_train_validates_inputs():
    cfg = TrainConfig(steps=2, batch_size=2)
    with pytest.raises(ValueError, match="config must be a TrainConfig"):
        train(Scalar(), lambda m, b, g: m.p.sum(), torch.zeros(3, 2), {"steps": 2})
    with pytest.raises(ValueError, match="data must"):
        train(Scalar(), lambda m, b, g: m.p.sum(), [1, 2], cfg, progress=False)
    with pytest.raises(ValueError, match="scalar"):
        train(Scalar(), lambda m, b, g: m.p * torch.ones(2), torch.zeros(3, 2), cfg, progress=False)
    with pytest.raises(ValueError, match="non-finite"):
        train(Scalar(), lambda m, b, g: m.p.sum() * float("nan"), torch.zeros(3, 2), cfg, progress=False)


# ------------------------------------------------------------------ optimisation
def test_warmup_and_lr():
    """Adam's first update with a constant gradient of 1 moves by exactly the current lr."""
    model = Scalar()
    cfg = TrainConfig(steps=1, batch_size=1, lr=0.1, warmup=4, grad_clip=0.0)
    train(model, lambda m, b, g: m.p.sum(), torch.zeros(2, 1), cfg, progress=False)
    assert abs(float(model.p.detach()) + 0.1 / 4) < 1e-8


def test_lr_factor_values():
    assert [lr_factor(k, 10, 4) for k in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    floor = 0.1
    assert lr_factor(4, 14, 4, "cosine", floor) == 1.0  # right after warm-up
    assert abs(lr_factor(9, 14, 4, "cosine", floor) - (1 + floor) / 2) < 1e-15  # half way: cos(pi/2) = 0
    assert lr_factor(14, 14, 4, "cosine", floor) == pytest.approx(floor, abs=1e-15)
    assert lr_factor(99, 14, 4, "cosine", floor) == pytest.approx(floor, abs=1e-15)  # an extended run stays at the floor
    decay = [lr_factor(k, 50, 5, "cosine", floor) for k in range(5, 50)]
    assert all(a >= b for a, b in zip(decay, decay[1:])) and min(decay) > floor
    assert lr_factor(3, 3, 3, "cosine") == 1.0  # all warm-up: no decay left (a TrainConfig refuses it)
    with pytest.raises(ValueError, match="lr_schedule"):
        lr_factor(0, 10, 0, "step")
    with pytest.raises(ValueError, match="needs warmup < steps, got warmup=10, steps=10"):
        TrainConfig(steps=10, batch_size=2, warmup=10, lr_schedule="cosine")
    assert TrainConfig(steps=0, batch_size=2, warmup=10, lr_schedule="cosine").steps == 0  # nothing to train


def test_cosine_schedule_drives_the_optimiser():
    """Adam with a constant gradient of 1 moves by exactly the step's rate, so the parameter after
    the run is minus the sum of the scheduled rates."""
    model = Scalar()
    steps, warmup, lr, floor = 12, 3, 0.1, 0.2
    cfg = TrainConfig(steps=steps, batch_size=1, lr=lr, warmup=warmup, grad_clip=0.0, lr_schedule="cosine", lr_floor=floor)
    train(model, lambda m, b, g: m.p.sum(), torch.zeros(2, 1), cfg, progress=False)
    expected = -sum(lr * lr_factor(k, steps, warmup, "cosine", floor) for k in range(steps))
    assert abs(float(model.p.detach()) - expected) < 1e-6


def test_ema_copied_at_end():
    model = Scalar()
    decay, lr, steps = 0.5, 0.1, 6
    cfg = TrainConfig(steps=steps, batch_size=1, lr=lr, grad_clip=0.0, ema=decay)
    train(model, lambda m, b, g: m.p.sum(), torch.zeros(2, 1), cfg, progress=False)
    # constant gradient: Adam moves by lr each step, p_k = -k lr; EMA from e_0 = 0
    e = 0.0
    for k in range(1, steps + 1):
        e = decay * e + (1 - decay) * (-k * lr)
    assert abs(float(model.p.detach()) - e) < 1e-6


def test_callable_data_and_determinism():
    def batches(g):
        return torch.randint(0, K, (8, L), generator=g)

    runs = []
    for _ in range(2):
        model = tiny_denoiser()
        res = train(model, loss_fn, batches, TrainConfig(steps=5, batch_size=8, seed=3), progress=False)
        runs.append((weights(model), res.losses))
    assert same(runs[0][0], runs[1][0]) and runs[0][1] == runs[1][1]
    other = tiny_denoiser()
    train(other, loss_fn, batches, TrainConfig(steps=5, batch_size=8, seed=4), progress=False)
    assert not same(runs[0][0], weights(other))


def test_epochs_visit_every_row():
    seen: list[torch.Tensor] = []

    def record(model, batch, generator):
        seen.append(batch[:, 0].clone())
        return model.p.sum()

    data = torch.arange(10)[:, None]
    train(Scalar(), record, data, TrainConfig(steps=5, batch_size=4), progress=False)
    order = torch.cat(seen)
    assert torch.equal(order[:10].sort().values, torch.arange(10))  # first epoch: each row once
    assert torch.equal(order[10:20].sort().values, torch.arange(10))


def test_tiny_denoiser_learns_markov_toy():
    data = markov_data(2000)
    held_out = markov_data(400, seed=1)
    model = tiny_denoiser()
    before = mdlm_elbo_nats_per_token(model, held_out, None, PROCESS, torch.Generator().manual_seed(0), samples=2)
    res = train(model, loss_fn, data, TrainConfig(steps=200, batch_size=32, lr=3e-3), progress=False)
    after = mdlm_elbo_nats_per_token(model, held_out, None, PROCESS, torch.Generator().manual_seed(0), samples=2)
    # entropy rate of the toy: (log 3 + 7 H(0.9, 0.05, 0.05)) / 8 = 0.482 nats per token
    assert res.steps == 200 and len(res.losses) == 200
    assert before > 1.0 and after < 0.75 and after < before - 0.3
    assert sum(res.losses[-20:]) / 20 < sum(res.losses[:20]) / 20


# ------------------------------------------------------------------ checkpoints
def test_resume_is_bit_identical(tmp_path):
    data = markov_data(100)
    cfg = TrainConfig(steps=20, batch_size=16, lr=3e-3, warmup=5, ema=0.9, checkpoint_every=3)
    reference = tiny_denoiser(dropout=0.1)
    full = train(reference, loss_fn, data, cfg, progress=False)

    path = tmp_path / "ckpt.pt"
    model = tiny_denoiser(dropout=0.1)
    first = train(model, loss_fn, data, cfg, checkpoint_path=path, progress=False, config_hash="abc", stop_at=10)
    assert first.steps == 10 and load_checkpoint(path)["step"] == 10
    resumed_model = tiny_denoiser(seed=123, dropout=0.1)  # weights come from the checkpoint
    second = train(resumed_model, loss_fn, data, cfg, checkpoint_path=path, progress=False, config_hash="abc")
    assert second.resumed_from == 10 and second.steps == 20
    assert second.losses == full.losses
    assert same(weights(resumed_model), weights(reference))
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_finished_checkpoint_and_extension(tmp_path):
    data = markov_data(100)
    path = tmp_path / "ckpt.pt"
    reference = tiny_denoiser()
    train(reference, loss_fn, data, TrainConfig(steps=12, batch_size=8), progress=False)
    model = tiny_denoiser()
    train(model, loss_fn, data, TrainConfig(steps=6, batch_size=8), checkpoint_path=path, progress=False)
    again = train(tiny_denoiser(), loss_fn, data, TrainConfig(steps=6, batch_size=8), checkpoint_path=path, progress=False)
    assert again.resumed_from == 6 and again.steps == 6 and len(again.losses) == 6
    longer = tiny_denoiser()
    train(longer, loss_fn, data, TrainConfig(steps=12, batch_size=8), checkpoint_path=path, progress=False)
    assert same(weights(longer), weights(reference))


def test_checkpoint_from_other_config_raises(tmp_path):
    data = markov_data(50)
    path = tmp_path / "ckpt.pt"
    train(tiny_denoiser(), loss_fn, data, TrainConfig(steps=2, batch_size=4), checkpoint_path=path, progress=False, config_hash="a")
    with pytest.raises(ValueError, match="was written by a different config"):
        train(tiny_denoiser(), loss_fn, data, TrainConfig(steps=4, batch_size=4), checkpoint_path=path, progress=False, config_hash="b")
    with pytest.raises(ValueError, match="was written by a different config"):
        train(tiny_denoiser(), loss_fn, data, TrainConfig(steps=4, batch_size=4, lr=1e-2), checkpoint_path=path, progress=False, config_hash="a")
    # a damaged checkpoint is a cache: named in a warning, removed, and training starts afresh
    from gtl_verify.storage import DamagedCacheWarning

    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.warns(DamagedCacheWarning, match="junk.pt"):
        result = train(tiny_denoiser(), loss_fn, data, TrainConfig(steps=4, batch_size=4), checkpoint_path=tmp_path / "junk.pt",
                       progress=False)
    assert result.steps == 4


SCRIPT = textwrap.dedent(
    """
    import sys, time
    import torch
    sys.path.insert(0, {tests!r})
    from test_training import loss_fn, markov_data, tiny_denoiser
    from gtl_verify.training import TrainConfig, train

    torch.set_num_threads(1)  # every run of this script alike, whatever the parent uses
    path, out, delay = sys.argv[1], sys.argv[2], float(sys.argv[3])

    def slow_loss(model, batch, generator):
        time.sleep(delay)
        return loss_fn(model, batch, generator)

    model = tiny_denoiser(dropout=0.1)
    cfg = TrainConfig(steps=40, batch_size=16, lr=3e-3, ema=0.9, checkpoint_every=5)
    train(model, slow_loss, markov_data(100), cfg, checkpoint_path=path, progress=False, config_hash="kill")
    torch.save(model.state_dict(), out)
    """
)


def test_resume_after_sigkill(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT.format(tests=str(Path(__file__).resolve().parent)))
    env = {**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1"}

    def run(ckpt: str, out: str, delay: float) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, str(script), str(tmp_path / ckpt), str(tmp_path / out), str(delay)], env=env)

    # uninterrupted reference, here on one thread like the script
    reference = tiny_denoiser(dropout=0.1)
    cfg = TrainConfig(steps=40, batch_size=16, lr=3e-3, ema=0.9, checkpoint_every=5)
    train(reference, loss_fn, markov_data(100), cfg, checkpoint_path=tmp_path / "ref.pt", progress=False, config_hash="kill")
    # a run killed with SIGKILL after its first checkpoints
    proc = run("ckpt.pt", "never.pt", 0.05)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if (tmp_path / "ckpt.pt").exists() and load_checkpoint(tmp_path / "ckpt.pt")["step"] >= 10:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    killed_at = load_checkpoint(tmp_path / "ckpt.pt")["step"]
    assert 10 <= killed_at < 40 and not (tmp_path / "never.pt").exists()
    # resume to the end in a fresh process
    assert run("ckpt.pt", "resumed_final.pt", 0.0).wait(timeout=120) == 0
    resumed = torch.load(tmp_path / "resumed_final.pt", weights_only=True)
    assert same(weights(reference), list(resumed.values()))
    assert load_checkpoint(tmp_path / "ckpt.pt")["losses"] == load_checkpoint(tmp_path / "ref.pt")["losses"]
