"""Build script: the list of compiled twins, built with Cython unless PROCONSUL_NO_EXTENSIONS=1.

cythonize runs inside build_ext (not at import time) so that `pip install .` from a clone needs
only the build requirements from pyproject.toml.
"""

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

NO_EXTENSIONS = bool(os.environ.get("PROCONSUL_NO_EXTENSIONS")) or (
    sys.implementation.name != "cpython"
)
DEBUG = bool(os.environ.get("PROCONSUL_DEBUG_BUILD"))
TRACE = bool(os.environ.get("PROCONSUL_CYTHON_TRACE"))

CFLAGS = ["-O0", "-g3"] if DEBUG else ["-O2"]
if sys.platform != "win32":
    CFLAGS += ["-Wall", "-Wno-unused-function"]

# name -> source, mirroring the package path under ext/ (Cython ignores a module's own .pxd
# otherwise).
EXTENSIONS = {
    "proconsul._speedups.dns_wire": "ext/proconsul/_speedups/dns_wire.pyx",
    "proconsul._speedups.gossip_codec": "ext/proconsul/_speedups/gossip_codec.pyx",
    "proconsul._speedups.gossip_lzw": "ext/proconsul/_speedups/gossip_lzw.pyx",
    "proconsul._speedups.http_wire": "ext/proconsul/_speedups/http_wire.pyx",
    "proconsul._speedups.raft_log": "ext/proconsul/_speedups/raft_log.pyx",
}


class BuildExt(build_ext):
    """Defers cythonize until the build runs, with trace/annotate knobs from the environment."""

    def finalize_options(self) -> None:
        from Cython.Build import cythonize

        directives = {"language_level": 3, "embedsignature": True}
        if TRACE:
            directives["linetrace"] = True
        self.distribution.ext_modules = cythonize(
            self.distribution.ext_modules,
            include_path=["ext"],
            build_dir="build/cython",
            compiler_directives=directives,
            annotate=DEBUG,
        )
        super().finalize_options()


def extensions() -> list[Extension]:
    if NO_EXTENSIONS:
        print("*** proconsul: pure Python build (PROCONSUL_NO_EXTENSIONS set) ***")
        return []
    macros = [("CYTHON_TRACE", "1")] if TRACE else []
    return [
        Extension(name, [src], extra_compile_args=CFLAGS, define_macros=macros)
        for name, src in EXTENSIONS.items()
    ]


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildExt})
