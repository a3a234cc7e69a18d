"""``python -m studio``: the command line (``--verbose`` keeps the libraries' warnings and progress bars)."""

import sys

from studio.quiet import quiet, strip_verbose

argv, verbose = strip_verbose(sys.argv[1:])
quiet(verbose)

from studio.cli import main  # noqa: E402  (after quiet(): libraries read their settings when imported)

sys.exit(main(argv))
