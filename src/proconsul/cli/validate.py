"""`consul validate`: check configuration files without starting an agent.

It runs the agent's own loader over the given files and directories, so a file that validates is
a file the agent accepts; deployment pipelines rely on the exit status (0 valid, 1 not).
"""

from __future__ import annotations

from proconsul.cli import err, out
from proconsul.cli.flags import Flag, FlagSet, parse_args
from proconsul.errors import ConfigError

HELP = """
Usage: consul validate [options] FILE_OR_DIRECTORY...

  Performs a basic sanity test on Consul configuration files. For each file
  or directory given, the validate command will attempt to parse the
  contents just as the "consul agent" command would, and catch any errors.
  This is useful to do a test of the configuration only, without actually
  starting the agent.

  Returns 0 if the configuration is valid, or 1 if there are problems.
"""


def _flags() -> tuple[FlagSet, Flag[bool], Flag[str]]:
    fs = FlagSet()
    quiet = fs.bool_flag("quiet", False, "When given, a successful run will produce no output.")
    fmt = fs.str_flag(
        "config-format", "",
        "Config files are in this format irrespective of their extensions. Must be 'hcl' or "
        "'json'")
    return fs, quiet, fmt


def help_text() -> str:
    return _flags()[0].usage(HELP)


def run(argv: list[str]) -> int:
    fs, quiet, fmt = _flags()
    paths = parse_args(fs, argv)
    if paths is None:
        return 1
    if not paths:
        err("Must specify at least one config file or directory")
        return 1
    if fmt.value not in ("", "hcl", "json"):
        err("Config validation failed: -config-format must be either 'hcl' or 'json'")
        return 1
    from proconsul.config import validate_paths

    try:
        result = validate_paths(paths, fmt.value)
    except ConfigError as exc:
        err(f"Config validation failed: {exc}")
        return 1
    if not quiet.value:
        warnings = result[1] if isinstance(result, tuple) and len(result) == 2 else []
        for warning in warnings or []:
            err(str(warning))
        out("Configuration is valid!")
    return 0
