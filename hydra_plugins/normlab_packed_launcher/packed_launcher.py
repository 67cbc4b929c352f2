"""``hydra/launcher=packed``: :class:`src.sweep.launcher.PackedLauncher`, registered where Hydra looks for
launchers (a plugin class must be defined in the ``hydra_plugins`` package)."""

from src.sweep import launcher as _launcher


class PackedLauncher(_launcher.PackedLauncher):
    """See :class:`src.sweep.launcher.PackedLauncher`."""
