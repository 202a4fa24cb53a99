"""`cotlab <command> ...`: one subcommand per pipeline stage; the Snakemake rules call exactly these.

Each command lives in its own module with ``add_arguments(parser)`` and ``main(args) -> int``.
Modules are imported only when their command runs, so `cotlab generate` never imports torch.
`cotlab --help` lists the commands; a command's --help shows its options' defaults and an example
(`cotlab aggregate --help` also lists the cards of the default config dir, read at help time).
A bad value (ConfigError) or an OS error (no space, no permission, a file in the way) is one line
on stderr, `cotlab <command>: error: ...`, and exit status 2; argparse's own errors exit 2 as well.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

from cotlab import __version__
from cotlab.config import ConfigError, clip

# name -> (module, one-line description, example invocation shown in its --help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "generate": ("cotlab.data.generate_cli", "generate one split of a data point as Parquet shards",
                 "cotlab generate --out data/eval --split eval --set vocab_size=64 --set n_sequences=2000"),
    "coverage": ("cotlab.data.coverage", "TokenCoverage, answer entropy and majority baselines of a dataset",
                 "cotlab coverage data/train --n 10000"),
    "train": ("cotlab.train", "train a model on a dataset (DDP via torchrun), evaluating as it goes",
              "cotlab train --data data/train --eval-data data/eval --out runs/cot --format cot "
              "--set model=smoke-tf4"),
    "evaluate": ("cotlab.evaluate", "score a trained model with and without CoT",
                 "cotlab evaluate runs/cot --eval-data data/eval --out eval/cot.parquet --n 512"),
    "aggregate": ("cotlab.aggregate", "join an experiment's runs into its table and figure",
                  "cotlab aggregate fig_vocab --scale smoke"),
    "plan": ("cotlab.plan", "jobs, training tokens and estimated GPU hours of a workflow config",
             "cotlab plan --scale reduced --set experiments='[fig_vocab]'"),
    "prompts": ("cotlab.prompts_export", "write a dataset's eval prompts as token ids (Parquet), to score "
                "a model elsewhere", "cotlab prompts data/eval --format cot --n 512 --out prompts.parquet"),
}


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Descriptions and epilogs as written; every option's default, unless it says nothing (None,
    False, an empty list) or the help text already names one."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("default" in text or default is None or default is False or default == []
                or default is argparse.SUPPRESS):
            return text
        return super()._get_help_string(action)


class TopHelpFormatter(argparse.RawDescriptionHelpFormatter):
    """`cotlab --help`: the commands' descriptions in one column (argparse leaves the indented
    command names out of its column width, which would push `aggregate`'s onto a line of its own)."""

    def add_argument(self, action: argparse.Action) -> None:
        super().add_argument(action)
        if isinstance(action, argparse._SubParsersAction):
            longest = max(len(name) for name in action.choices) + self._current_indent + 2 * self._indent_increment
            self._action_max_length = max(self._action_max_length, longest)


class CommandParser(argparse.ArgumentParser):
    """A command's parser; `more_help`, if set, is appended to the epilog when help is printed."""

    more_help: Callable[[argparse.ArgumentParser], str] | None = None

    def format_help(self) -> str:
        if self.more_help is not None:
            self.epilog, self.more_help = f"{self.epilog}\n\n{self.more_help(self)}", None
        return super().format_help()


def card_ids(parser: argparse.ArgumentParser) -> str:
    """The cards `cotlab aggregate` can take from its default --config-dir (looked up at help time)."""
    experiments = Path(parser.get_default("config_dir") or "config") / "experiments"
    cards = sorted(p.stem for p in experiments.glob("*.yaml")) if experiments.is_dir() else []
    if not cards:
        return (f"cards: none found in {experiments}/ (run from the repository root, or pass "
                "--config-dir DIR and see DIR/experiments/)")
    return textwrap.fill(f"cards in {experiments}/: {', '.join(cards)}; or `claims`", width=88,
                         break_on_hyphens=False)


MORE_HELP: dict[str, Callable[[argparse.ArgumentParser], str]] = {"aggregate": card_ids}


def top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cotlab", formatter_class=TopHelpFormatter,
        description="CoT-ICL Lab pipeline: generate -> train -> evaluate -> aggregate.",
        epilog="Run `cotlab <command> --help` for a command's options, their defaults and an example.")
    parser.add_argument("--version", action="version", version=f"cotlab {__version__}")
    commands = parser.add_subparsers(title="commands", dest="command", metavar="command", required=True,
                                     help="one of:")
    for name, (_, description, _) in COMMANDS.items():
        commands.add_parser(name, help=description)
    return parser


def command_parser(name: str) -> tuple[argparse.ArgumentParser, object]:
    """The parser of command `name` (its module's options, defaults shown, an example) and its module."""
    module_name, description, example = COMMANDS[name]
    module = importlib.import_module(module_name)
    parser = CommandParser(prog=f"cotlab {name}", description=description)
    module.add_arguments(parser)
    parser.formatter_class = HelpFormatter  # also over a module's own RawDescriptionHelpFormatter
    parser.epilog = "\n\n".join(filter(None, [parser.epilog, f"example:\n  {example}"]))
    parser.more_help = MORE_HELP.get(name)
    return parser, module


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        top_parser().parse_args(argv)  # prints help / version / a clear error and exits
        return 2
    name, rest = argv[0], argv[1:]
    parser, module = command_parser(name)
    args = parser.parse_args(rest)
    try:
        return int(module.main(args) or 0)
    except ConfigError as exc:
        print(f"cotlab {name}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `cotlab coverage DIR | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # no space, no permission, a file in the way: one line naming the path
        reason = exc.strerror or (str(exc).splitlines() or [type(exc).__name__])[0]
        where = "" if exc.filename is None else f"{clip(str(exc.filename))}: "
        print(f"cotlab {name}: error: {where}{clip(reason)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
