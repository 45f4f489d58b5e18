"""``python -m dada`` (and ``torchrun ... -m dada train PRESET``): the ``dada`` command."""

import sys

from dada.cli import main

sys.exit(main())
