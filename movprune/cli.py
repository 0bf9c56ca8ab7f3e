"""Command line: ``python -m movprune {run,sweep,list,batch,diagnose,export}``.

    python -m movprune run --task sst2 --model minilm --method movement --remaining 0.1
    python -m movprune run --task sst2 --method soft_movement --final-lambda 200 --distill
    python -m movprune sweep --task sst2 --method magnitude movement --remaining 0.1 0.03 0.01
    python -m movprune list
    python -m movprune batch                     # profile minilm: missing runs + every notebook into results/
    python -m movprune diagnose checkpoints/minilm/<run id>/final --task sst2   # a collapsed model?
    python -m movprune export checkpoints/minilm/<run id>/final model.mvp --quantization per_tensor

Every error in the input (a misspelled flag, unknown task, method or model, missing data, a
malformed data file, v outside (0, 1], lambda < 0, a run folder of another config, ...) ends with
one line on stderr and exit status 2, before any training starts and without touching existing
results (tests/test_bad_input.py holds the catalog).
"""

from __future__ import annotations

import argparse
import difflib
import itertools
import os
import sys

RUN_FIELDS = {  # CLI flag -> (RunConfig field, type, help)
    "task": (str, "task: sst2, mnli, qqp, sick, squad, cola, mrpc, stsb, rte, wnli, qnli, mnli-mm"),
    "model": (str, "model: 'minilm' (offline MiniLM-L6), 'tiny' (random 2-layer BERT), a folder or a hub name"),
    "method": (str, "pruning method: dense, magnitude, movement, soft_movement, l0, zero_encoder (control)"),
    "remaining": (float, "final fraction of encoder linear weights kept, in (0, 1] (magnitude, movement)"),
    "scope": (str, "top-k selection: local (per matrix) or global (one threshold)"),
    "final_lambda": (float, "final regularization weight (soft_movement, l0), >= 0"),
    "final_threshold": (float, "soft movement: final threshold on sigmoid(scores) (paper: 0.1)"),
    "seed": (int, "random seed"),
    "epochs": (float, "training epochs (ignored when --max-steps is given)"),
    "max_steps": (int, "optimizer steps"),
    "batch_size": (int, "training batch size"),
    "max_length": (int, "maximum sequence length (tokens)"),
    "lr": (float, "learning rate of the weights (paper: 3e-5)"),
    "score_lr": (float, "learning rate of the scores (paper: 1e-2; L0 1e-1)"),
    "lr_warmup": (float, "fraction of steps of linear LR warm-up"),
    "sparsity_warmup": (float, "fraction of steps before pruning starts"),
    "sparsity_cooldown": (float, "fraction of steps at the final sparsity"),
    "sparsity_warmup_steps": (int, "optimizer steps before the first weight is pruned (overrides --sparsity-warmup)"),
    "sparsity_cooldown_steps": (int, "optimizer steps at the final sparsity (overrides --sparsity-cooldown)"),
    "alpha_distil": (float, "weight of the distillation loss (paper: 0.9)"),
    "alpha_ce": (float, "weight of the task loss when distilling (paper: 0.1)"),
    "temperature": (float, "distillation temperature (paper: 2)"),
    "max_train_examples": (int, "use a deterministic subset of the training set"),
    "max_eval_examples": (int, "use a deterministic subset of the eval set"),
    "train_split": (str, "training split (e.g. train_sentences for SST-2's sentence-level set)"),
    "eval_split": (str, "split scored at the end (default eval = dev; e.g. test for SICK's 4,927 pairs)"),
    "data_dir": (str, "data folder (GLUE layout; default $MOVPRUNE_DATA_DIR, then ../shared/data, then the hub)"),
    "clip": (str, "gradient clipping to norm 1: all (weights and scores together, default) or weights (scores unclipped)"),
    "teacher_dir": (str, "distillation teacher folder (default: the dense run, trained if missing)"),
}
SWEEPABLE = ("task", "method", "remaining", "scope", "final_lambda", "seed", "model")


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``movprune: error: ...``, exit 2) and a "did you mean" hint."""

    def error(self, message):
        if message.startswith("unrecognized arguments:"):
            flags = [o for a in self._actions for o in a.option_strings if o.startswith("--")]
            for choice in (getattr(a, "choices", None) for a in self._actions):
                if isinstance(choice, dict):  # subcommands: their flags count too
                    flags += [o for sub in choice.values() for a in sub._actions for o in a.option_strings]
            for word in message.split(":", 1)[1].split():
                close = difflib.get_close_matches(word.split("=")[0], flags, n=1) if word.startswith("--") else []
                if close:
                    message += f" (did you mean {close[0]}?)"
                    break
        print(f"movprune: error: {message}; see {self.prog} --help", file=sys.stderr)
        sys.exit(2)


def _add_run_flags(p: argparse.ArgumentParser, sweep: bool) -> None:
    for name, (typ, help_) in RUN_FIELDS.items():
        flag = "--" + name.replace("_", "-")
        if sweep and name in SWEEPABLE:
            p.add_argument(flag, type=typ, nargs="+", help=help_ + " (several values: a grid)")
        else:
            p.add_argument(flag, type=typ, help=help_)
    p.add_argument("--distill", action="store_true", help="distil from a dense fine-tuned teacher")
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                   help="bf16 autocast, fp32 master weights (default: on where the hardware runs bf16 natively: "
                        "CUDA GPUs with bf16, CPUs with avx512_bf16 / AMX; elsewhere emulated at about fp32 "
                        "speed, movprune.bf16; --no-bf16 for fp32)")
    p.add_argument("--group-by-length", action="store_true",
                   help="batches of similar lengths (less padding) instead of uniform shuffling")
    lam = p.add_mutually_exclusive_group()
    lam.add_argument("--constant-lambda", dest="constant_lambda", action="store_true", default=None,
                     help="regularization weight at its final value from step 0 (default for l0)")
    lam.add_argument("--ramp-lambda", dest="constant_lambda", action="store_false",
                     help="regularization weight ramped by the cubic schedule (default for soft_movement)")
    p.add_argument("--stop-on-collapse", action="store_true",
                   help="end training once the loss sits at a collapsed model's level for 200 steps after "
                        "pruning began (classification: the label entropy; SQuAD: ln(window length), "
                        "equal logits everywhere)")
    p.add_argument("--no-freeze-embeddings", action="store_true", help="also train the embeddings")
    p.add_argument("--store", default="results/runs", help="results store folder (default results/runs)")
    p.add_argument("--work-dir", default="checkpoints", help="checkpoints and final models (default checkpoints)")
    p.add_argument("--force", action="store_true", help="retrain even if the store has this run")
    p.add_argument("--save-steps", type=int, default=None,
                   help="checkpoint every N optimizer steps (default 200; not part of the run id)")


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m movprune`` argument parser (subcommands run, sweep, list, batch, diagnose, export)."""
    parser = _Parser(
        prog="python -m movprune", allow_abbrev=False,
        description="Movement pruning (Sanh, Wolf & Rush 2020): fine-prune Hugging Face encoders and "
                    "regenerate the paper's tables and figures.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{run,sweep,list,batch,diagnose,export}")
    p_run = sub.add_parser("run", help="one fine-pruning run (cached in the results store)", allow_abbrev=False)
    _add_run_flags(p_run, sweep=False)
    p_sweep = sub.add_parser("sweep", help="a grid of runs (missing ones only)", allow_abbrev=False)
    _add_run_flags(p_sweep, sweep=True)
    p_list = sub.add_parser("list", help="the runs in the results store", allow_abbrev=False)
    p_list.add_argument("--store", default="results/runs")
    p_batch = sub.add_parser(
        "batch", help="the main job: sweeps for every notebook, then every notebook", allow_abbrev=False,
        description="Train the profile's missing runs, then execute every notebook into results/<profile>/. "
                    "With no --profile: minilm (MiniLM-L6 on SST-2, SICK and SQuAD with the recipe under which "
                    "the methods do not collapse; all its tasks), then the other profiles with committed records "
                    "re-rendered (notebooks only).")
    p_batch.add_argument("--profile", default=None,
                         help="minilm (default: the sound replication) | gpu | paper | demo (300-step quick look, "
                              "most pruned runs collapse) | smoke (tests)")
    p_batch.add_argument("--also", default=None,
                         help="comma-separated profiles whose stored runs are re-rendered afterwards (notebooks "
                              "only), or 'none'; default: with no --profile, every other profile with "
                              "committed runs, else none")
    p_batch.add_argument("--tasks", default=None,
                         help="comma-separated tasks, or 'all' (default: the profile's; minilm: sst2,sick,squad)")
    p_batch.add_argument("--seeds", type=int, default=None, help="seeds per config (default: the profile's)")
    p_batch.add_argument("--results", default="results", help="output folder (default results)")
    p_batch.add_argument("--work-dir", default="checkpoints")
    p_batch.add_argument("--jobs", type=int, default=None,
                         help="parallel runs (default: 2 on a CPU-only machine, 1 with a GPU)")
    p_batch.add_argument("--only", choices=["sweeps", "notebooks"], default=None,
                         help="run only the training sweeps (e.g. on a GPU box) or only the notebooks")
    p_batch.add_argument("--dry-run", action="store_true",
                         help="list the runs without a record and estimate their training time; train nothing")
    p_batch.add_argument("--executor", choices=["local", "ray"], default="local",
                         help="local: this machine's processes, one run per GPU (default); ray: one Ray task per "
                              "run on a Ray cluster (pip install -e '.[cluster]'; docs/cluster.md)")
    p_batch.add_argument("--address", default=None,
                         help="with --executor ray: the cluster to join (auto = the one `ray start` began here; "
                              "default $RAY_ADDRESS, else a new cluster of this machine)")
    p_diag = sub.add_parser("diagnose", help="does a (pruned) model's representation still depend on the input?",
                            description="Per layer: spread of the hidden states across eval tokens vs their "
                                        "common offset, and the predicted-class histogram (movprune/diagnose.py).",
                            allow_abbrev=False)
    p_diag.add_argument("model_dir", help="a model folder (a run's final/ folder, or a plain Hugging Face one)")
    p_diag.add_argument("--task", default="sst2", help="classification task whose eval examples to use")
    p_diag.add_argument("--examples", type=int, default=128, help="number of eval examples (default 128)")
    p_diag.add_argument("--data-dir", default=None)
    p_exp = sub.add_parser("export", help="write a pruned model as a compact sparse int8 file (movprune/export.py)",
                           description="Bake a run's pruned model and write it with movprune.export.export_compact; "
                                       "load it back with movprune.export.load_compact.",
                           allow_abbrev=False)
    p_exp.add_argument("model_dir", help="a run's final/ folder (written by movprune.save_pretrained)")
    p_exp.add_argument("output", help="the compact file to write (e.g. model.mvp)")
    p_exp.add_argument("--quantization", choices=["per_row", "per_tensor"], default="per_row",
                       help="int8 scales per output row (default, more precise) or per matrix (smaller)")
    p_exp.add_argument("--force", action="store_true", help="overwrite an existing output file")
    return parser


def _export(args) -> str:
    """``export``: check everything before loading, write through a temporary file."""
    from .export import export_compact
    from .pruner import WEIGHTS_NAME, bake, from_pretrained, is_sparsified

    if not os.path.isdir(args.model_dir):
        raise ValueError(f"model folder {args.model_dir} does not exist")
    if not os.path.isfile(os.path.join(args.model_dir, WEIGHTS_NAME)):
        raise ValueError(f"{args.model_dir} has no {WEIGHTS_NAME}: give a run's final/ folder "
                         "(written by movprune.save_pretrained)")
    if os.path.exists(args.output) and not args.force:
        raise ValueError(f"{args.output} exists; pass --force to overwrite it")
    out_dir = os.path.dirname(os.path.abspath(args.output))
    if not os.path.isdir(out_dir):
        raise ValueError(f"output folder {out_dir} does not exist")
    model = from_pretrained(args.model_dir)
    if is_sparsified(model):
        bake(model)
    tmp = f"{args.output}.tmp-{os.getpid()}"
    try:
        report = export_compact(model, tmp, quantization=args.quantization)
        os.replace(tmp, args.output)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return (f"wrote {args.output}: {report['file_bytes'] / 1e6:.2f} MB; encoder "
            f"{report['encoder_bytes'] / 1e6:.3f} MB = {report['bytes_per_kept_weight']:.3f} bytes per kept weight "
            f"({report['kept_weights']:,} of {report['target_weights']:,} kept, {100 * report['density']:.2f}%); "
            f"int8 {args.quantization}, {report['kept_weights_quantized_to_zero']:,} kept weights rounded to 0; "
            f"the fp32 state dict is {report['fp32_state_dict_bytes'] / 1e6:.1f} MB")


def _config_kwargs(args, overrides=None) -> dict:
    kwargs = {name: getattr(args, name) for name in RUN_FIELDS if getattr(args, name, None) is not None}
    kwargs.update(overrides or {})
    for flag in ("distill", "group_by_length", "stop_on_collapse"):
        kwargs[flag] = getattr(args, flag)
    if args.bf16 is None:
        from .train import bf16_native

        kwargs["bf16"] = bf16_native()
    else:
        kwargs["bf16"] = args.bf16
        import torch

        from .train import bf16_native, emulated_bf16_note

        if args.bf16 and not torch.cuda.is_available() and not bf16_native():
            print(f"movprune: note: {emulated_bf16_note('--bf16')}", file=sys.stderr)
    if args.constant_lambda is not None:
        kwargs["constant_lambda"] = args.constant_lambda
    if getattr(args, "save_steps", None) is not None:
        kwargs["save_steps"] = args.save_steps
    if args.no_freeze_embeddings:
        kwargs["freeze_embeddings"] = False
    return kwargs


def _fmt(record: dict, work_dir: str = "checkpoints") -> str:
    from .records import predicts_one_class

    metrics = ", ".join(f"{k} {v:.2f}" for k, v in record["metrics"].items())
    line = (f"{record['run_id']}: {metrics} | remaining {record['remaining']:.4f} "
            f"(paper convention {record['remaining_paper']:.4f}) | {record.get('train_time_s', 0):.0f}s")
    if predicts_one_class(record):
        line += (" | COLLAPSED: every eval example predicted as one class; see "
                 f"python -m movprune diagnose {os.path.join(work_dir, record['run_id'], 'final')} --task {record['task']}")
    return line


def main(argv=None) -> int:
    """Run the command line on ``argv`` (default ``sys.argv[1:]``); returns the exit status, errors as one line."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help (0) or a usage error (2, already printed on one line)
        return e.code if isinstance(e.code, int) else 2
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        if args.command == "run":
            from .train import RunConfig, run

            config = RunConfig(**_config_kwargs(args))
            record = run(config, store=args.store, work_dir=args.work_dir, force=args.force)
            print(_fmt(record, args.work_dir))
        elif args.command == "sweep":
            from .train import RunConfig, run

            grid = {name: getattr(args, name) for name in SWEEPABLE if getattr(args, name) is not None}
            combos = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
            base = {k: v for k, v in _config_kwargs(args).items() if k not in grid}
            configs = [RunConfig(**base, **combo) for combo in combos]  # validate all before training any
            for i, config in enumerate(configs, 1):
                print(f"[{i}/{len(configs)}] {config.run_id()}")
                print(_fmt(run(config, store=args.store, work_dir=args.work_dir, force=args.force), args.work_dir))
        elif args.command == "list":
            from .store import ResultStore

            for record in ResultStore(args.store).records():
                print(_fmt(record))
        elif args.command == "batch":
            from .batch import committed_profiles, run_batch
            from .profiles import DEFAULT_PROFILE

            profile = args.profile or DEFAULT_PROFILE
            if args.also is None:  # never demo (not a result), smoke (tests) or paper (no records of ours)
                also = [] if args.profile else committed_profiles(args.results,
                                                                  exclude=[profile, "smoke", "demo", "paper"])
            elif args.also.strip().lower() == "none":
                also = []
            else:
                also = [p.strip() for p in args.also.split(",") if p.strip() and p.strip() != profile]
            return run_batch(profile=profile, tasks=args.tasks, seeds=args.seeds, results=args.results,
                             work_dir=args.work_dir, only=args.only, jobs=args.jobs, also=also,
                             dry_run=args.dry_run, executor=args.executor, address=args.address)
        elif args.command == "diagnose":
            from .diagnose import diagnose_folder, format_report

            print(format_report(diagnose_folder(args.model_dir, args.task, args.examples, args.data_dir)))
        elif args.command == "export":
            print(_export(args))
    except (ValueError, OSError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"movprune: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("movprune: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
