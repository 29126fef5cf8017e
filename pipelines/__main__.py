"""``python -m pipelines`` is the ``twotower`` command."""
import sys

from pipelines.cli import main

sys.exit(main())
