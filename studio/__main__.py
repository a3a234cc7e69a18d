"""``python -m studio``: the command line (``--verbose`` keeps the libraries' warnings and progress bars)."""

import os
import sys

from studio.quiet import quiet, strip_verbose

argv, verbose = strip_verbose(sys.argv[1:])
quiet(verbose)

from studio.cli.main import main  # noqa: E402  (after quiet(): libraries read their settings when imported)

try:
    code = main(argv)
    sys.stdout.flush()
except BrokenPipeError:  # the reader went away (``| head``): no traceback; Python's documented recipe
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    code = 1
sys.exit(code)
