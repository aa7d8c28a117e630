"""bf16 autocast and torch.compile on CPU: the GPU configs' numerics, checked without a GPU.

The denoiser and ratio networks are built at the sizes of the language ``cpu-tiny`` config
(vocabulary = its BPE size, length = its segment length) and compared with float32 eager.

Tolerances (first-order rounding model). A network whose output passes through D rounding
stages (a stage = one matmul: AdaLN modulation, qkv, the two attention products, projection,
two MLP layers per block, then the final modulation and the head's layers) commits a relative
error of at most u per stage (u = 2^-8 for bf16, 2^-24 for float32). LayerNorm keeps every
hidden state at unit scale, so to first order each stage moves the output by at most
u * S, S = max(1, max|y|) (the output scale), and

    max |y_low - y_fp32| <= 2 D u S,

the factor 2 covering cancellation in the final layer (sum |W||h| up to ~2 |W h| here). A
per-position law built from outputs that differ elementwise by at most e (in log space, after
normalisation: 2 e for a log-softmax) has TV <= 1 - exp(-2 e) to the exact one.
"""

from __future__ import annotations

import time

import pytest
import torch

from gtl_verify import guidance
from gtl_verify.learned import NetworkDenoiser, NetworkRatio
from gtl_verify.networks import BackboneConfig, DenoiserNet, SequenceNet
from gtl_verify.rules import GTL
from gtl_verify.samplers import SamplerConfig, ancestral_sample
from gtl_verify.schedules import LogLinearSchedule
from language.config import load_config

SCHEDULE = LogLinearSchedule()  # the language pipeline's schedule (language.run_folder.Run.schedule)

BF16_U = 2.0**-8
FP32_U = 2.0**-24
CONFIG = load_config("cpu-tiny")
K = CONFIG.data.bpe_vocab_size
LENGTH = CONFIG.data.segment_length
MASK_ID = K - 1  # a tokenizer mask id inside the vocabulary, as with the BPE tokenizer
RATIO_SCALE = 100.0  # stretch the freshly initialised ratio head to log-ratios up to ~4.5 nats


def _backbone(size) -> BackboneConfig:
    return BackboneConfig(vocab_size=K, num_embeddings=K, max_length=LENGTH, hidden=size.hidden, blocks=size.blocks,
                          heads=size.heads, cond=size.cond, mlp_ratio=size.mlp_ratio, dropout=size.dropout,
                          positions=size.positions)


def _stages(size, head_layers: int) -> int:
    return 7 * size.blocks + 1 + head_layers


def networks() -> tuple[DenoiserNet, SequenceNet]:
    torch.manual_seed(0)
    den = DenoiserNet(_backbone(CONFIG.models.denoiser)).eval()
    rat = SequenceNet(_backbone(CONFIG.models.ratio)).eval()
    with torch.no_grad():
        rat.head[-1].weight.mul_(RATIO_SCALE)
    return den, rat


def tokens(rows: int = 16, masked_share: float = 0.5) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    z = torch.randint(K - 1, (rows, LENGTH), generator=gen)
    return torch.where(torch.rand(z.shape, generator=gen) < masked_share, torch.full_like(z, MASK_ID), z)


def bound(y_fp32: torch.Tensor, stages: int, u: float) -> float:
    return 2 * stages * u * max(1.0, float(y_fp32.abs().max()))


D_DEN = _stages(CONFIG.models.denoiser, 1)
D_RAT = _stages(CONFIG.models.ratio, 2)


@torch.no_grad()
def _outputs(den, rat, z, autocast: bool):
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        return den(z), rat(z)[:, 0]


def test_bf16_autocast_outputs_within_rounding_bound():
    den, rat = networks()
    z = tokens()
    d32, r32 = _outputs(den, rat, z, False)
    db, rb = _outputs(den, rat, z, True)
    assert float(r32.abs().max()) > 3.0  # log-ratios of a few nats: bf16 rounding is visible there
    d_err, r_err = float((db.float() - d32).abs().max()), float((rb.float() - r32).abs().max())
    assert 0 < d_err <= bound(d32, D_DEN, BF16_U)
    assert 0 < r_err <= bound(r32, D_RAT, BF16_U)


def test_bf16_autocast_outputs_are_float32():
    """The heads compute in float32 under autocast: outputs are not rounded to bf16 before they
    are cast up for guidance (without it the cpu-tiny log-ratio error was 0.084 nats, with it 0.032)."""
    den, rat = networks()
    db, rb = _outputs(den, rat, tokens(), True)
    assert db.dtype == torch.float32 and rb.dtype == torch.float32


def test_guided_combine_receives_float64_under_autocast(monkeypatch):
    """GTL sampling under bf16 autocast: the combine sees float64 denoiser log-probs and ratios,
    and the categorical draw float64 weights; the guided law of the first step is within the TV
    bound of the float32 one."""
    den, rat = networks()
    seen: list[tuple[torch.dtype, torch.dtype]] = []
    real_combine, real_draw = guidance.combine, guidance.sample_categorical
    draws: list[torch.dtype] = []

    def combine(lp, lr, gamma):
        seen.append((lp.dtype, lr.dtype))
        return real_combine(lp, lr, gamma)

    def draw(w, generator=None):
        draws.append(w.dtype)
        return real_draw(w, generator)

    monkeypatch.setattr(guidance, "combine", combine)
    monkeypatch.setattr(guidance, "sample_categorical", draw)
    config = SamplerConfig(num_samples=4, length=LENGTH, steps=4, gamma=1.0, rule=GTL(candidates=4), final_argmax=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = ancestral_sample(NetworkDenoiser(den, MASK_ID), NetworkRatio(rat), SCHEDULE, config,
                               torch.Generator().manual_seed(0))
    assert out.tokens.shape == (4, LENGTH) and not (out.tokens == MASK_ID).any()
    assert seen and all(d == (torch.float64, torch.float64) for d in seen)
    assert draws and all(d == torch.float64 for d in draws)


def test_guided_law_within_tv_bound_under_autocast():
    den, rat = networks()
    z = tokens(rows=4)
    laws = []
    for low in (False, True):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=low):
            lp = NetworkDenoiser(den, MASK_ID)(z)
            positions = (z == MASK_ID).nonzero()
            values, ids = guidance.top_n(lp[positions[:, 0], positions[:, 1]].double(), 4)
            log_r = guidance.score_candidates(NetworkRatio(rat), z, positions, ids)
        laws.append((guidance.combine(values, log_r, 1.0), ids, values, log_r))
    (q32, ids32, v32, r32), (qb, idsb, vb, rb) = laws
    same = (ids32 == idsb).all(-1)  # positions whose top-4 set did not change under rounding
    assert same.float().mean() > 0.5
    eps = float((vb - v32)[same].abs().max() + (rb - r32)[same].abs().max())
    tv = 0.5 * (qb.exp() - q32.exp())[same].abs().sum(-1)
    assert float(tv.max()) <= 1 - torch.exp(torch.tensor(-2 * eps)).item()


def _compiled_matches(backend: str, autocast: bool) -> float:
    den, rat = networks()
    z = tokens()
    d32, r32 = _outputs(den, rat, z, False)
    start = time.perf_counter()
    cd, cr = torch.compile(den, backend=backend), torch.compile(rat, backend=backend)
    dc, rc = _outputs(cd, cr, z, autocast)
    u = BF16_U if autocast else FP32_U
    assert float((dc.float() - d32).abs().max()) <= bound(d32, D_DEN, u)
    assert float((rc.float() - r32).abs().max()) <= bound(r32, D_RAT, u)
    return time.perf_counter() - start


@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "bf16"])
def test_compile_aot_eager_matches_eager(autocast):
    """torch.compile through dynamo and AOT autograd (the graph capture of the GPU configs);
    inductor code generation is the slow test below."""
    torch._dynamo.reset()
    _compiled_matches("aot_eager", autocast)


@pytest.mark.slow
@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "bf16"])
def test_compile_inductor_matches_eager(autocast):
    """Inductor's generated C++ kernels (about a minute per network pair to compile on 2 cores)."""
    torch._dynamo.reset()
    _compiled_matches("inductor", autocast)

