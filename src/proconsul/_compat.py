"""The one switch that makes every selector pick the pure-Python twin.

PROCONSUL_NO_EXTENSIONS=1 at build time builds nothing; at run time it makes selectors import the
pure twins even when compiled ones are installed (so one install can test both paths).
Implementations other than CPython always use the pure twins.
"""

import os
import sys

NO_EXTENSIONS: bool = bool(os.environ.get("PROCONSUL_NO_EXTENSIONS")) or (
    sys.implementation.name != "cpython"
)
