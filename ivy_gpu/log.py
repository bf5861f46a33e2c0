"""The package's logger and warning category.

Library code logs through ``logging.getLogger("ivy_gpu")`` (silent unless the
application configures logging; the CLI's ``--verbose``/``--quiet`` set its level)
and reports problems a caller of the Python API should see through
``warnings.warn(..., IvyGpuWarning)``.
"""

from __future__ import annotations

import logging

log = logging.getLogger("ivy_gpu")
log.addHandler(logging.NullHandler())


class IvyGpuWarning(UserWarning):
    """A result the caller should look at (filled nodes, camera motion, a stretched line...)."""


def configure(verbosity: int = 0, quiet: bool = False) -> None:
    """Log the package to stderr: WARNING, INFO (-v) or DEBUG (-vv); ERROR when quiet."""
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO)[min(verbosity, 1)]
    if verbosity >= 2 and not quiet:
        level = logging.DEBUG
    log.setLevel(level)
    if not any(getattr(h, "_ivy_gpu_cli", False) for h in log.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        handler._ivy_gpu_cli = True  # type: ignore[attr-defined]
        log.addHandler(handler)
