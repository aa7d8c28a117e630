"""``gtl language``: arXiv CS -> Physics transfer pipeline.

    gtl language run [--config NAME_OR_FILE] [--data PATH] [--out DIR] [--seed N] [--allow-config-change] [--quiet]
    gtl language check-data [--data PATH]

``--config`` takes a named config (``cpu-tiny``, ``cpu``, ``gpu``, ``paper``: files in
``language/configs``) or a TOML file; the default is ``cpu``. A run folder (default
``runs/language-<config name>``) keeps every trained model and sample set, so running the same
command again resumes where it stopped. The folder records its config (``config.json``); resuming
it with a config that changes results stops with the differing settings, unless
``--allow-config-change`` (the components whose settings are unchanged are reused).
"""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_CONFIG = "cpu"


def _run(args: argparse.Namespace) -> int:
    from . import pipeline
    from .config import load_config, with_seed

    config = load_config(args.config, path=args.data)
    if args.seed is not None:
        config = with_seed(config, args.seed)
    suffix = "" if args.seed is None else f"-seed{config.seed}"
    out = Path(args.out) if args.out else Path("runs") / f"language-{config.name}{suffix}"
    results, results_path, report = pipeline.run(config, out, progress=not args.quiet,
                                                  allow_config_change=args.allow_config_change)
    runs = len(config.evaluation.mauve_seeds) * len(config.replicate_seeds)
    print(f"MiniLM-feature MAUVE against held-out physics (mean ± std over {len(config.replicate_seeds)} replicate(s) x "
          f"{len(config.evaluation.mauve_seeds)} k-means seed(s) = {runs} values; intervals in the report):")
    print(pipeline.mauve_table(results))
    from .evaluate import mauve_text

    for what, ref in (("ceiling", results.reference_mauve), ("floor", results.floor_mauve)):
        print(f"{what}: {ref['samples']} {ref['method']} segments against the reference: "
              + mauve_text(ref["mauve_mean"], ref["mauve_std"], ref["buckets"], ref["meaningful"]))
    print("truncation: " + "; ".join(f"{t['method']} {t['text']}" for t in results.truncation))
    flagged = results.mauve_guard["flagged"]
    if flagged:
        print(f"WARNING: MAUVE is NOT MEANINGFUL for {len(flagged)} sample set(s) below the size guard; first: {flagged[0]}"
              + (f" (all listed in {report})" if len(flagged) > 1 else ""))
    print(f"results: {results_path}\nreport: {report}")
    return 0


def _check_data(args: argparse.Namespace) -> int:
    from .data import count_domains, data_files, resolve_data_dir

    data_dir = resolve_data_dir(args.data)
    files = data_files(data_dir)
    print(f"data: {data_dir} ({', '.join(p.name for p in files)})")
    counts = count_domains(data_dir)
    print(f"{'scheme':16s}{'source (cs.*)':>16s}{'target (physics)':>18s}{'other':>10s}")
    for scheme, c in counts.items():
        print(f"{scheme:16s}{c['source']:>16,d}{c['target']:>18,d}{c['other']:>10,d}")
    empty = [f"{scheme}: {d}" for scheme, c in counts.items() for d in ("source", "target") if c[d] == 0]
    if empty:
        raise ValueError(f"empty domain(s) in {data_dir}: {', '.join(empty)}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("language", help="arXiv CS -> Physics transfer pipeline",
                            description=__doc__.split("\n\n")[0])
    inner = parser.add_subparsers(dest="language_command", metavar="SUBCOMMAND")
    parser.set_defaults(func=lambda args: parser.error("choose a subcommand: run or check-data"))

    run = inner.add_parser("run", help="train every component, sample every method, evaluate, report")
    run.add_argument("--config", default=DEFAULT_CONFIG, metavar="NAME_OR_FILE",
                     help="named config (cpu-tiny, cpu, gpu, paper) or a TOML file (default: cpu)")
    run.add_argument("--data", metavar="PATH", help="folder (or file) of arXiv JSON lines (default: $GTL_ARXIV_DATA, else ../shared/data/arxiv)")
    run.add_argument("--out", metavar="DIR", help="run folder (default runs/language-<config name>); re-running resumes it")
    run.add_argument("--seed", type=int, metavar="N",
                     help="the config's seed (default: the file's): the source side (data split, tokenizer, source denoiser, "
                          "planner), and the one target-side replicate when the config lists no seeds; a config's seeds = [...] "
                          "are its target-side replicates")
    run.add_argument("--allow-config-change", action="store_true",
                     help="resume a run folder started with a different config: record the new config and reuse "
                          "the components whose settings are unchanged")
    run.add_argument("--quiet", action="store_true", help="no progress bars or stage messages")
    run.set_defaults(func=_run)

    check = inner.add_parser("check-data", help="count the papers of each domain in the arXiv files")
    check.add_argument("--data", metavar="PATH", help="folder (or file) of arXiv JSON lines (default: $GTL_ARXIV_DATA, else ../shared/data/arxiv)")
    check.set_defaults(func=_check_data)
