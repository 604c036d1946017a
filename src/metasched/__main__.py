"""``python -m metasched``, and ``torchrun -m metasched train ...`` for several processes."""

import sys

from metasched.cli import main

sys.exit(main())
