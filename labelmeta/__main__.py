"""``python -m labelmeta``: the ``labelmeta`` command."""
import sys

from .cli import main

sys.exit(main())
