"""Which W&B mode a training run or a report uses, decided without any network access.

Offline unless asked otherwise: the mode is ``WANDB_MODE`` when set, else ``online`` when an API key
is configured (``WANDB_API_KEY`` or ``wandb login``'s netrc entry), else ``offline``. Training runs
(:class:`src.training.loggers.WandbLogger`), the report's W&B run and ``python -m src.wandb_sync`` all
decide it here.
"""

from __future__ import annotations

import netrc
import os
from urllib.parse import urlparse

DEFAULT_HOST = "https://api.wandb.ai"


def logged_in() -> bool:
    """Whether a W&B API key is configured (environment or netrc), without any network access."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL") or DEFAULT_HOST).hostname
    try:
        return netrc.netrc(os.environ.get("NETRC") or None).authenticators(host or "") is not None
    except (OSError, netrc.NetrcParseError):
        return False


def resolve_mode(mode: str | None = None) -> str:
    """The W&B mode: ``mode`` if given, else ``$WANDB_MODE``, else online when logged in, else offline."""
    if mode:
        return str(mode)
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    return "online" if logged_in() else "offline"
