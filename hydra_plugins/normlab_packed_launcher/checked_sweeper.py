"""``hydra/sweeper=checked``: :class:`src.sweep.checked_sweeper.CheckedSweeper`, registered where Hydra looks
for sweepers (a plugin class must be defined in the ``hydra_plugins`` package)."""

from src.sweep import checked_sweeper as _checked


class CheckedSweeper(_checked.CheckedSweeper):
    """See :class:`src.sweep.checked_sweeper.CheckedSweeper`."""
