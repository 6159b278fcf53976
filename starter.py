"""Start and look after durable long-running HTTP jobs: ``python starter.py COMMAND ...`` (``--help`` lists them).

Exit codes: 0 success; 1 the job failed, timed out or was cancelled; 2 bad input (unknown API or job id,
malformed JSON or flag, Temporal unreachable), in which case nothing was started or changed.
"""

from __future__ import annotations

import logging
import sys

from longjobs import run_command
from longjobs._cli import COMMANDS, build_parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "demo":
        from longjobs._demo import run_demo

        # The demo narrates every step itself; the SDK's own warnings would only repeat them.
        logging.getLogger("temporalio").setLevel(logging.ERROR)
        run_command(run_demo(keep=args.keep), prog="starter.py demo")
    run_command(COMMANDS[args.command](args), prog=f"starter.py {args.command}")


if __name__ == "__main__":
    main(sys.argv[1:])
