"""Command line: `python -m lib {list, train, train-all, data verify, data download, recipe-search, report}`.

User-caused errors print one line, `error: ...`, and exit with status 2; a report that would be incomplete (a
notebook failed, or a figure has no image) and a full disk print one such line and exit with status 1. Ctrl-C
(SIGINT) and SIGTERM stop a command at a safe point (lib.core.interrupt), print one line `interrupted: ...` and
exit with status 130 and 143.
"""
import argparse
import json
import signal
import sys
import traceback

from lib import data, study
from lib.core.devices import DeviceError, exit_process, in_group, init_distributed, rank_label, world
from lib.core.errors import DiskFullError
from lib.core.interrupt import Interrupted, StoppedAtOnce, terminate_at_once
from lib.core.space import NO_SPACE, disk_full
from lib.core.progress import time_table
from lib.report import IncompleteReport, ReportError
from lib.study import settings
from lib.training.trainer import TrainingError


TRAIN_OPTIONS = {  # command-line flag -> (setting, type)
    "--epochs": ("epochs", int), "--batch-size": ("batch_size", int), "--lr": ("lr", float),
    "--weight-decay": ("weight_decay", float), "--image-size": ("image_size", int), "--seed": ("seed", int),
    "--grad-clip": ("grad_clip", float), "--amp": ("amp", str), "--num-workers": ("num_workers", int),
}


def cmd_list(args):
    print("profiles:", ", ".join(study.PROFILES))
    for name, exp in study.EXPERIMENTS.items():
        print(f"  {name:<20} {exp['title']}")


def cmd_train(args):
    init_distributed(args.device)
    overrides = {setting: value for flag, (setting, _) in TRAIN_OPTIONS.items()
                 if (value := getattr(args, setting)) is not None}
    if args.channels_last is not None:
        overrides["channels_last"] = args.channels_last
    if args.replica < 0:
        raise settings.ConfigError(f"--replica must be 0 or more (the training seed's index), got {args.replica}")
    one = study.Study(args.profile, args.data_dir or "", args.device, args.force,
                      overrides={args.experiment: overrides})
    result = one.run(args.experiment, args.replica, results_dir=args.results_dir)
    if world()[0] == 0:
        metrics = result.metrics
        print(f"{args.experiment} ({args.profile}): val Acc@1 {metrics['val_acc1']:.2f}  Acc@5 "
              f"{metrics['val_acc5']:.2f}  ({result.dir})")


def cmd_train_all(args):
    import torch
    from lib.study.train_all import gpu_list, train_all
    gpus = gpu_list(args.gpus or ",".join(map(str, range(torch.cuda.device_count()))), torch.cuda.device_count())
    ended, logs = train_all(args.profile, gpus, args.experiments, args.data_dir, args.results_dir, args.seeds)
    for name, status in ended.items():
        outcome = "finished" if status == 0 else "not started" if status is None else f"failed ({status})"
        print(f"  {name:<20} {outcome}")
    print(f"logs in {logs}")
    return 0 if all(status == 0 for status in ended.values()) else 1


def cmd_verify(args):
    problems, counts = data.verify(args.root)
    print(json.dumps(counts, indent=2))
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} problem(s) in {args.root}", file=sys.stderr)
        return 1
    print(f"{args.root}: no problems")
    return 0


def cmd_download(args):
    root = data.download(args.root, url=args.url, md5=args.md5, lists_url=args.lists_url)
    print(f"MiniPlaces is ready in {root}; use it with --data-dir {root} --profile full")


def cmd_recipe_search(args):
    from lib.study.recipe_search import search
    search(args.data_dir, args.device)


def cmd_report(args):
    overrides, attack = settings.parse_assignments(args.set)
    from lib.report.build import build  # the Jupyter stack: only where a report is built
    out = build(profile=args.profile, data_dir=args.data_dir, device=args.device,
                       force_retrain=args.force_retrain, formats=args.format, selected=args.notebooks,
                       overrides=overrides, attack=attack, dry_run=args.dry_run, seeds=args.seeds)
    print(time_table(out["times"], out["estimate"] and out["estimate"]["notebooks"]))
    for path in out["report"]:
        print(f"wrote {path}")
    print(f"report finished in {out['seconds']:.0f} s")


class Parser(argparse.ArgumentParser):
    """argparse with the command line's one-line errors (its sub-commands inherit the class)."""

    def error(self, message):
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


def parser():
    p = Parser(prog="python -m lib", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list experiments and profiles").set_defaults(func=cmd_list)

    train = sub.add_parser("train", help="train one experiment (or re-use its cached run)")
    train.add_argument("experiment")
    train.add_argument("--profile", default="sample")
    train.add_argument("--data-dir", help="MiniPlaces root (default: the embedded sample)")
    train.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    train.add_argument("--force", action="store_true", help="retrain even if a finished run exists")
    train.add_argument("--results-dir", help="default: results/")
    train.add_argument("--replica", type=int, default=0, help="train the run of training seed number REPLICA (seed + "
                       "REPLICA; an init_from source's seed moved with it), as `report --seeds` asks for it")
    train.add_argument("--channels-last", action=argparse.BooleanOptionalAction,
                       help="memory format of the weights and batches (default: the registry's; the CNNs use it)")
    for flag, (setting, kind) in TRAIN_OPTIONS.items():
        train.add_argument(flag, dest=setting, type=kind)
    train.set_defaults(func=cmd_train)

    every = sub.add_parser("train-all", help="train every run a report of the profile asks for (each training seed), "
                           "one per GPU, init_from order kept")
    every.add_argument("--profile", default="full")
    every.add_argument("--seeds", type=int, help="training seeds per compared experiment, as `report --seeds` "
                       "(default: the profile's, 1 for smoke and sample, 3 for full)")
    every.add_argument("--gpus", help="GPU indices, e.g. 0,1,2,3 (default: every visible GPU); 'cpu' for a try-out")
    every.add_argument("--experiments", nargs="+", help="default: every experiment")
    every.add_argument("--data-dir", help="MiniPlaces root (default: the embedded sample)")
    every.add_argument("--results-dir", help="default: results/")
    every.set_defaults(func=cmd_train_all)

    data_cmd = sub.add_parser("data", help="check or fetch the data set").add_subparsers(dest="action", required=True)
    verify = data_cmd.add_parser("verify", help="check list files, images, labels and counts")
    verify.add_argument("root", nargs="?", default=str(data.SAMPLE_ROOT))
    verify.set_defaults(func=cmd_verify)
    download = data_cmd.add_parser("download", help="download, check (MD5), extract and verify the MiniPlaces release")
    download.add_argument("root", help="a new or empty folder for the data set")
    download.add_argument("--url", default=data.DATA_URL, help="the archive (default: the official one)")
    download.add_argument("--md5", default=data.DATA_MD5, help="the archive's MD5 (default: the official one's)")
    download.add_argument("--lists-url", default=data.LISTS_URL,
                          help="folder URL of categories.txt, train.txt, val.txt (default: the development kit's)")
    download.set_defaults(func=cmd_download)

    search = sub.add_parser("recipe-search", help="choose cpu-full AdvSimpleNet's recipe on the tune split "
                            "(docs/cpu-full.md): train the missing probes, print the probe table")
    search.add_argument("--data-dir", required=True, help="the full MiniPlaces data set")
    search.add_argument("--device", default="auto")
    search.set_defaults(func=cmd_recipe_search)

    rep = sub.add_parser("report", help="run every notebook and export results/report.pdf and .html")
    rep.add_argument("--profile", default="sample")
    rep.add_argument("--data-dir")
    rep.add_argument("--device", default="auto")
    rep.add_argument("--force-retrain", action="store_true")
    rep.add_argument("--format", nargs="+", default=["pdf", "html"], help="pdf and/or html")
    rep.add_argument("--notebooks", nargs="+", help="run only notebooks whose names start with these (e.g. 00 01)")
    rep.add_argument("--set", action="append", default=[], metavar="EXPERIMENT.SETTING=VALUE",
                     help="change a setting, e.g. simplenet.epochs=20 or attack.epsilon=8 (/255); repeatable")
    rep.add_argument("--seeds", type=int, help="training seeds per experiment behind a comparative finding "
                     "(seed, seed + 1, ...; default: the profile's, 1 for smoke and sample, 3 for full)")
    rep.add_argument("--dry-run", action="store_true",
                     help="every notebook with training and evaluations capped to a few batches (report-dryrun.*)")
    rep.set_defaults(func=cmd_report)
    return p


def continue_hint(message, args):
    """`message` with its advice to run the same command again made right for a command run with --force or
    --force-retrain (which would start over): to run it again without that flag."""
    forced = [flag for flag, name in (("--force", "force"), ("--force-retrain", "force_retrain"))
              if getattr(args, name, False)]
    return message.replace("run the same command again", f"run the command again without {forced[0]}") if forced \
        else message


USER_ERRORS = (data.DataError, settings.ConfigError, ReportError, DeviceError, TrainingError, ValueError,
               DiskFullError)


def main(argv=None):
    """Run a command; returns its exit status: 2 after a user-caused error (1 for an incomplete report or a full
    disk), printed as one line (with the rank under torchrun); 130 or 143 after SIGINT or SIGTERM, one line saying
    what is kept; under torchrun also 1 after any other error, its traceback printed (outside torchrun that error
    propagates)."""
    args = parser().parse_args(argv)
    try:
        with terminate_at_once():
            return args.func(args) or 0
    except USER_ERRORS as error:
        print(f"{rank_label()}error: {error}", file=sys.stderr)
        return 1 if isinstance(error, (IncompleteReport, DiskFullError)) else 2
    except KeyboardInterrupt as error:
        interrupted = error if isinstance(error, Interrupted) else StoppedAtOnce(signal.SIGINT)  # outside any block
        print(f"{rank_label()}interrupted: {continue_hint(str(interrupted), args)}", file=sys.stderr)
        return interrupted.status
    except OSError as error:
        if error.errno not in NO_SPACE:
            raise
        print(f"{rank_label()}error: {disk_full('a file', error.filename or '.')}", file=sys.stderr)
        return 1
    except Exception:
        if not in_group():
            raise
        print(f"{rank_label()}failed:", file=sys.stderr)
        traceback.print_exc()
        return 1


if __name__ == "__main__":
    exit_process(main())
