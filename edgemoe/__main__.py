"""``python -m edgemoe``, which is how ``torchrun -m edgemoe train ...`` starts each process."""

import sys

from edgemoe.cli import main

sys.exit(main())
