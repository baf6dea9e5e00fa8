"""The ``qkdmeet`` command line.

Each layer contributes its sub-commands from a module ``qkdmeet.<layer>.cli``
that defines ``register(subparsers)``; every registered sub-command sets a
``func`` default that takes the parsed namespace and returns an exit code
(an ``int``, or an awaitable of one). ``qkdmeet bench LAYER`` runs the
``main(argv)`` of the module :data:`qkdmeet.bench.SUITES` names for it.

An error of qkdmeet's own (:class:`qkdmeet.errors.QkdmeetError`: a bad config
file or option, a KME that is not reachable, ...) that reaches the top is
printed as one line, ``qkdmeet COMMAND ACTION: message; what to do``, and the
exit status is 2; ``-vv`` logs its traceback too.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util
import inspect
import logging
import sys
from collections.abc import Sequence

from qkdmeet import __version__
from qkdmeet.bench import SUITES
from qkdmeet.errors import QkdmeetError

log = logging.getLogger("qkdmeet")

#: Layers that may contribute sub-commands, in the order they are listed.
LAYERS: tuple[str, ...] = ("qkd", "kme", "vpn", "testbed", "conference", "demo")
#: Layers with a benchmark suite behind ``qkdmeet bench``.
BENCH_LAYERS: tuple[str, ...] = tuple(SUITES)


def _layer_module(name: str) -> str:
    return f"qkdmeet.{name}.cli"


def _available(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def _run_bench(args: argparse.Namespace) -> int:
    module = SUITES[args.layer]
    if not _available(module):
        print(f"qkdmeet bench: no benchmark suite for {args.layer!r} yet", file=sys.stderr)
        return 2
    mod = importlib.import_module(module)
    result: int = mod.main(list(args.rest))
    return result


def command_name(args: argparse.Namespace) -> str:
    """``qkdmeet COMMAND ACTION`` of a parsed command line (each layer's
    sub-commands set ``<command>_command``)."""
    words = ["qkdmeet", getattr(args, "command", None)]
    if words[1] is not None:
        words.append(getattr(args, f"{words[1]}_command", None))
    return " ".join(w for w in words if w)


def one_line(exc: BaseException) -> str:
    """The exception's message on one line."""
    return "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qkdmeet",
        description="QKD-secured video conference: QKD link, ETSI 014 KMEs, OTP VPN, WebRTC.",
    )
    parser.add_argument("--version", action="version", version=f"qkdmeet {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for layer in LAYERS:
        module = _layer_module(layer)
        if _available(module):
            importlib.import_module(module).register(sub)
    bench = sub.add_parser("bench", help="run a layer's benchmarks (prints JSON with --json)")
    bench.add_argument("layer", choices=BENCH_LAYERS)
    bench.add_argument("rest", nargs=argparse.REMAINDER, help="options for the benchmark")
    bench.set_defaults(func=_run_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(int(args.verbose), 2)
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        result = func(args)
        if inspect.isawaitable(result):
            result = asyncio.run(result)  # type: ignore[arg-type]
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except QkdmeetError as exc:
        log.debug("%s failed", command_name(args), exc_info=True)
        print(f"{command_name(args)}: {one_line(exc) or type(exc).__name__}", file=sys.stderr)
        return 2
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
