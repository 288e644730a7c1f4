"""`python -m modelops_operator.plugin`: the same program as the `kubectl-modelops` script."""

import sys

from .main import main

sys.exit(main())
