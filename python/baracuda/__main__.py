"""Command line of baracuda: ``python -m baracuda <command>``.

Commands
--------
bench [flash]
    Time :func:`baracuda.flash_attention` over a grid of problems against PyTorch
    SDPA's FlashAttention and cuDNN backends; print a table and write JSON.
    ``flash`` is the default benchmark target.
bench ring
    Time ring attention with one process per GPU: per-GPU throughput against
    baracuda's single-GPU flash attention on one ring step, overlapped and serial
    schedules, causal contiguous and zigzag, against PyTorch's context parallelism
    where it is installed; print a table and write JSON.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import NamedTuple

PROG = "python -m baracuda"
DEFAULT_BENCH_TARGET = "flash"
HELP_FLAGS = ("-h", "--help")


class BenchTarget(NamedTuple):
    """A benchmark of ``python -m baracuda bench``."""

    summary: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def _bench_targets() -> dict[str, BenchTarget]:
    """Return the benchmark targets by name."""
    from baracuda import _bench_flash, _bench_ring

    return {
        "flash": BenchTarget(
            summary=(
                "flash attention forward over dtypes, head dims, sequence lengths, causal "
                "and variants (score modifiers, GQA)"
            ),
            add_arguments=_bench_flash.add_flash_arguments,
            run=_bench_flash.run_flash,
        ),
        "ring": BenchTarget(
            summary=(
                "ring attention across GPUs, one process per GPU, against single-GPU flash "
                "and PyTorch context parallelism"
            ),
            add_arguments=_bench_ring.add_ring_arguments,
            run=_bench_ring.run_ring,
        ),
    }


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of ``python -m baracuda``.

    Returns
    -------
    argparse.ArgumentParser
        Each command sets ``run``, the function that executes it and returns the
        exit status.
    """
    parser = argparse.ArgumentParser(
        prog=PROG, description="baracuda: CUDA attention library tools."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    bench = commands.add_parser(
        "bench",
        help="benchmark baracuda against PyTorch SDPA",
        description=f"Benchmark baracuda. The target defaults to {DEFAULT_BENCH_TARGET!r}.",
    )
    targets = bench.add_subparsers(dest="target", metavar="TARGET", required=True)
    for name, bench_target in _bench_targets().items():
        target = targets.add_parser(
            name, help=bench_target.summary, description=bench_target.summary
        )
        bench_target.add_arguments(target)
        target.set_defaults(run=bench_target.run)
    return parser


def with_default_target(argv: Sequence[str]) -> list[str]:
    """Insert the default benchmark target after ``bench`` when none is named.

    ``bench --quick`` becomes ``bench flash --quick``; ``bench --help`` is left as
    is, so that it lists the targets.
    """
    arguments = list(argv)
    if not arguments or arguments[0] != "bench":
        return arguments
    rest = arguments[1:]
    if rest and (rest[0] in _bench_targets() or rest[0] in HELP_FLAGS):
        return arguments
    return ["bench", DEFAULT_BENCH_TARGET, *rest]


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``) and run the command.

    Returns
    -------
    int
        The process exit status.
    """
    arguments = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(with_default_target(arguments))
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
