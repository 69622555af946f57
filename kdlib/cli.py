"""The `kdstudy` command.

    kdstudy run --params params/quick.yaml            run every notebook, skipping finished steps
    kdstudy run --params params/quick.yaml --only 01  run one step (repeat --only for more)
    kdstudy status --params params/quick.yaml         each step: up to date, or stale and why
    kdstudy check --params params/quick.yaml          validate a parameter file and exit
    kdstudy steps                                      list the steps
    kdstudy report --params params/quick.yaml         build reports/<profile>/report.pdf and .html from the results
    kdstudy verdicts --params params/quick.yaml       the runs behind the report's findings, once per seed
    kdstudy bench --model DIR --data Q.json --profile pi5 --out result.json   time one QA model (step 06)
    kdstudy export --model DIR --runtime onnx --precision int8 --out DIR [--params F]   a deployable artifact
    kdstudy init --data FILE --text-column C --label-column C [--teacher M] [--name N]   a profile for your data
"""
from __future__ import annotations

import argparse
import contextlib
import shlex
import sys
import warnings

from kdlib.inference import bench as standalone_bench
from kdlib.pipeline.lock import ProfileLocked, profile_lock

# The commands that write reports/<profile>/ (train, time, render): one at a time per profile.
LOCKED = ("run", "verdicts", "report")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kdstudy", description="Run the BERT knowledge-distillation study.")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute the notebooks in order with papermill")
    run.add_argument("--params", required=True, help="a profile, e.g. params/quick.yaml")
    run.add_argument("--only", action="append", metavar="STEP", help="a step number or name (repeatable)")
    run.add_argument("--force", action="store_true", help="run steps even when they are up to date")
    status = sub.add_parser("status", help="list every step as up to date or stale, with the reason")
    status.add_argument("--params", required=True)
    check = sub.add_parser("check", help="validate a parameter file")
    check.add_argument("--params", required=True)
    sub.add_parser("steps", help="list the notebooks the runner executes")
    report = sub.add_parser("report", help="build the PDF and HTML report from the results there are")
    report.add_argument("--params", required=True)
    verdicts = sub.add_parser("verdicts", help="repeat the runs behind the report's findings over seeds "
                                               "(resumable; writes reports/<profile>/verdicts/*.csv)")
    verdicts.add_argument("--params", required=True)
    verdicts.add_argument("--claim", action="append", help="only this claim (repeatable)")
    verdicts.add_argument("--train-only", action="store_true",
                          help="train every seed now, time later (for a machine that is busy now)")
    export = sub.add_parser("export", help="write a classifier on one inference route as a deployable folder")
    export.add_argument("--model", required=True, help="a saved classifier folder (config.json, weights, tokenizer)")
    export.add_argument("--runtime", required=True, help="onnx or openvino")
    export.add_argument("--precision", required=True, help="a route's precision as 04's tables name it: fp32, int8 or int8_static on "
                                                             "onnx; fp32, int8_static (or int8) or bf16 on openvino")
    export.add_argument("--out", required=True, help="the artifact folder to write")
    export.add_argument("--params", help="a profile: measure accuracy on its test split (and calibrate on its "
                                         "training split where the route needs it)")
    export.add_argument("--threads", type=int, help="threads of the runtime session (default: the runtime's)")
    init = sub.add_parser("init", help="write params/NAME.yaml for your own labelled texts (from the quick profile)")
    init.add_argument("--data", required=True, help="a .csv/.tsv/.jsonl/.parquet file, or a folder of train/"
                                                    "validation/test files")
    init.add_argument("--text-column", required=True)
    init.add_argument("--label-column", required=True)
    init.add_argument("--text-pair-column", help="the second text of a sentence pair")
    init.add_argument("--encoding", help="the file's encoding (default: utf-8)")
    init.add_argument("--drop-empty", action="store_true", help="drop rows with an empty text or label (counted)")
    init.add_argument("--train-size", type=int, help="train on this many rows (a stratified subset): a first, faster run")
    init.add_argument("--teacher", default="minilm", help="a local model folder, a hub id (online) or minilm")
    init.add_argument("--name", help="the profile's name (default: from the file's name)")
    init.add_argument("--force", action="store_true", help="replace params/NAME.yaml if it exists")
    init.add_argument("--params-dir", help="write the profile into this folder (default: the project's params/)")
    bench = sub.add_parser("bench", help="time one QA model on SQuAD questions, batch 1 (e.g. on a Raspberry Pi)")
    standalone_bench.add_arguments(bench)
    return p


def _one_line_warning(message, category, *args, **kwargs) -> str:
    return f"warning: {message}\n"


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    warnings.formatwarning = _one_line_warning  # a user reads what happened, not where in kdlib
    if args.command == "bench":  # only what the benchmark needs: it runs alone on small devices
        return standalone_bench.run_from_args(args)
    # The study's own modules import torch, transformers and datasets, which a device that only runs the
    # benchmark lacks: they are imported past the benchmark's branch (here and in _study), nowhere else.
    from kdlib.pipeline.config import ParamsError, load_params

    try:
        # Taken before _study's slower imports, so that a second process is turned away at once.
        lock = (profile_lock(load_params(args.params, check_models=False).profile, _command_line(argv)) if args.command in LOCKED
                else contextlib.nullcontext())
        with lock:
            _study(args)
    except ProfileLocked as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ParamsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ValueError as e:  # e.g. an unknown --only step
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished steps are kept; run the same command again to resume", file=sys.stderr)
        return 130
    except Exception as e:  # a notebook failed: say which, and where its partial run is
        name = type(e).__name__
        if name == "PapermillExecutionError":
            print(f"error: a notebook failed: {e.ename}: {e.evalue}\n(the executed part is saved as "
                  f"reports/<profile>/<step>/<step>.failed.ipynb)", file=sys.stderr)
            return 1
        raise
    return 0


def _command_line(argv) -> str:
    """The command as typed, for the lock's record."""
    return shlex.join(["kdstudy", *(sys.argv[1:] if argv is None else argv)])


def _study(args) -> None:
    """Every command but the benchmark."""
    from kdlib.inference.export import export
    from kdlib.pipeline import runner, steps
    from kdlib.pipeline.config import load_params
    from kdlib.pipeline.scaffold import init_profile
    from kdlib.report import render
    from kdlib.studies import verdicts

    if args.command == "check":
        cfg = load_params(args.params)
        print(f"{args.params}: valid (profile {cfg.profile}, fingerprint {cfg.fingerprint()})")
    elif args.command == "init":
        path, facts = init_profile(args.data, args.text_column, args.label_column, args.teacher, args.name,
                                   args.text_pair_column, args.encoding, args.drop_empty, args.train_size,
                                   args.params_dir, force=args.force)
        print(path.read_text(encoding="utf-8").split("\n\n")[0])
        print(f"wrote {path}\nnext: kdstudy run --params {path}")
    elif args.command == "steps":
        for step in steps.STEPS:
            print(f"{step.stem:<20} {step.title}  (needs: {', '.join(step.needs) or '-'}; "
                  f"parameters: {', '.join(step.sections)})")
    elif args.command == "verdicts":
        for claim, path in verdicts.run(load_params(args.params), args.train_only, args.claim).items():
            print(f"{claim}: {path}")
    elif args.command == "export":
        cfg = load_params(args.params, check_models=False) if args.params else None  # data only
        manifest = export(args.model, args.runtime, args.precision, args.out, cfg, args.threads)
        accuracy = manifest["accuracy"]
        measured = (f"accuracy {accuracy['accuracy']:.4f} on {accuracy['n']} test examples" if accuracy
                    else manifest["accuracy_note"])
        print(f"{args.out}: {manifest['route']['runtime']}/{manifest['route']['precision']}, "
              f"{manifest['size_mb']:.1f} MB, {measured}")
    elif args.command == "report":
        built = render.build(load_params(args.params, check_models=False))  # reads results only
        print(f"{built['pdf']} ({built['n_pages']} pages) and {built['html']}; sections with a step not run: "
              f"{built['sections_not_run']}")
    elif args.command == "status":
        for row in runner.status(args.params):
            state = ("off in this profile" if row["off"] else "up to date" if row["up_to_date"]
                     else "stale: " + "; ".join(row["reasons"]))
            print(f"{row['step']:<20} {state}")
    else:
        runner.run(args.params, only=args.only, force=args.force)


if __name__ == "__main__":
    sys.exit(main())
