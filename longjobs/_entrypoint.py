"""Running a command so it exits with its real code every time.

The SDK's native core can abort the interpreter at exit after a client or worker was used (sdk-python issue
300: ``Fatal Python error: PyGILState_Release``, exit 134 or 139). A command line tool must not: so every
entry point flushes its output and leaves with ``os._exit`` once its coroutine has returned.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Coroutine
from typing import Any

from longjobs._connection import UserError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def run_command(main: Coroutine[Any, Any, int], *, prog: str) -> None:
    """Run ``main`` and exit with its code; a :class:`UserError` is one line on stderr and exit 2."""
    code = EXIT_USAGE
    try:
        code = asyncio.run(main)
    except UserError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        code = EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        code = 130
    except SystemExit as exc:  # sys.exit() somewhere in the command: its code, still through os._exit
        code = exc.code if isinstance(exc.code, int) else 0
    except Exception:
        logging.getLogger(prog).exception("unexpected error (please report it)")
        code = EXIT_FAILED
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
