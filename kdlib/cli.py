"""The `kdstudy` command.

    kdstudy run --params params/quick.yaml            run every notebook, skipping finished steps
    kdstudy run --params params/quick.yaml --only 01  run one step (repeat --only for more)
    kdstudy status --params params/quick.yaml         each step: up to date, or stale and why
    kdstudy check --params params/quick.yaml          validate a parameter file and exit
    kdstudy steps                                      list the steps
"""
from __future__ import annotations

import argparse
import sys

from kdlib.config import ParamsError, load_params


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
    return p


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    from kdlib import runner, steps

    try:
        if args.command == "check":
            cfg = load_params(args.params)
            print(f"{args.params}: valid (profile {cfg.profile}, fingerprint {cfg.fingerprint()})")
        elif args.command == "steps":
            for step in steps.STEPS:
                print(f"{step.stem:<20} {step.title}  (needs: {', '.join(step.needs) or '-'}; "
                      f"parameters: {', '.join(step.sections)})")
        elif args.command == "status":
            for row in runner.status(args.params):
                state = "up to date" if row["up_to_date"] else "stale: " + "; ".join(row["reasons"])
                print(f"{row['step']:<20} {state}")
        else:
            runner.run(args.params, only=args.only, force=args.force)
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


if __name__ == "__main__":
    sys.exit(main())
