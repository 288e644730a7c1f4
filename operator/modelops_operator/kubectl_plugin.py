"""`kubectl modelops`, under its historical module name: the program lives in `plugin/`.

`python -m modelops_operator.kubectl_plugin` and the names older code imports keep working.
"""

from __future__ import annotations

import sys

from .plugin.main import main
from .plugin.views import format_report, format_status

__all__ = ["format_report", "format_status", "main"]

if __name__ == "__main__":
    sys.exit(main())
