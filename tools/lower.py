"""acir-lower: an acir artifact -> the Python source of its torch.fx GraphModule."""

from __future__ import annotations

import sys

from acir.tools._cli import add_rederive_flags, make_parser, rederive_for, run_cli

EPILOG = """\
examples:
  acir-lower r18.acir -o step.py       # a standalone file defining step(*inputs)
  acir-capture mlp | acir-lower | less

The generated step(*inputs) takes the graph inputs in the order listed at the top of the
file (parameters, buffers, optimizer state, batch), updates them in place under
torch.no_grad() and returns (loss,). Ops are resolved by overload name from the artifact alone.
"""


def _body(args) -> int:
    from acir.errors import RunError
    from acir.ir.artifact import read_path
    from acir.ir.verify import verify
    from acir.runtime.lower import python_source

    module = read_path(args.file)
    verify(module, rederive=rederive_for(args, module))
    src = python_source(module)
    if args.output in (None, "-"):
        sys.stdout.write(src)
    else:
        try:
            with open(args.output, "w") as f:
                f.write(src)
        except OSError as e:
            raise RunError(f"cannot write {args.output}: {e.strerror}") from None
    return 0


def main(argv: list[str] | None = None) -> int:
    p = make_parser("acir-lower", "Lower an acir artifact to a runnable torch.fx GraphModule and print its "
                    "Python source.", EPILOG)
    p.add_argument("file", nargs="?", default="-", help="artifact (binary or text); default: stdin")
    p.add_argument("-o", "--output", help="output .py file (default stdout)")
    add_rederive_flags(p)
    return run_cli("acir-lower", p, _body, argv)


if __name__ == "__main__":
    sys.exit(main())
