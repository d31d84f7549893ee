"""What every acir CLI shares: error reporting, ``--traceback``, broken pipes.

A tool is ``main(argv) -> int``; its body raises :class:`acir.errors.AcirError` for
anything a user can fix, and this wrapper prints ``acir-<tool>: error: <message>`` and
returns 1 (2 for bad command lines and :class:`~acir.errors.UsageError`, as argparse does).
:class:`~acir.errors.InternalError` and any other exception are acir's bugs, printed as
``internal error``. ``--traceback`` shows the stack.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from typing import Callable

from acir.errors import AcirError, InternalError, UsageError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's own errors, in our format
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def make_parser(prog: str, description: str, epilog: str | None = None) -> argparse.ArgumentParser:
    p = _Parser(prog=prog, description=description, epilog=epilog,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--traceback", action="store_true", help="on error, show the Python stack too")
    return p


def run_cli(prog: str, parser: argparse.ArgumentParser, body: Callable[[argparse.Namespace], int],
            argv: list[str] | None) -> int:
    args = parser.parse_args(argv)
    try:
        return body(args) or 0
    except InternalError as e:  # acir's own fault: say so, and how to see more
        if args.traceback:
            traceback.print_exc()
        print(f"{prog}: error: internal error: {e} (run with --traceback for the stack)", file=sys.stderr)
        return 1
    except AcirError as e:
        if args.traceback:
            traceback.print_exc()
        if isinstance(e, UsageError):
            parser.print_usage(sys.stderr)
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2 if isinstance(e, UsageError) else 1
    except BrokenPipeError:
        # the reader (e.g. `| head`) went away: not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug in acir: say so, briefly, and how to see more
        if args.traceback:
            traceback.print_exc()
        print(f"{prog}: error: internal error: {type(e).__name__}: {e} (run with --traceback for the stack)",
              file=sys.stderr)
        return 1


def add_rederive_flags(p: argparse.ArgumentParser) -> None:
    """--rederive / --no-rederive: whether the verifier re-derives every node's outputs on meta tensors."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--rederive", action="store_true",
                   help="re-derive every node's output shapes, strides and storages on meta tensors also for a binary "
                        "artifact (always done for the text form, where a hand edit can lie; costs a few seconds)")
    g.add_argument("--no-rederive", action="store_true",
                   help="verify without re-deriving each node's output shapes, strides and storages on meta tensors")


def rederive_for(args: argparse.Namespace, module) -> bool:
    """Re-derive for the text form (hand-edited, so it can lie about sizes) unless told not to, and for a
    binary artifact (written by acir, its bytes checked by their checksum) only when asked: re-derivation
    loads torch's meta kernels, which costs seconds."""
    from acir.ir.text_parse import source_map

    if getattr(args, "no_rederive", False):
        return False
    return bool(getattr(args, "rederive", False)) or source_map(module) is not None
