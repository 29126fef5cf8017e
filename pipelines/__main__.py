"""``python -m pipelines`` is the ``twotower`` command."""
import sys

from pipelines.cli.main import main

sys.exit(main())
