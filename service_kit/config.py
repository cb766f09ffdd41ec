"""Command-line flags that fall back to environment variables, documented in ``--help``."""

from __future__ import annotations

import argparse
import os
from typing import Any


class EnvArgumentParser(argparse.ArgumentParser):
    """An ArgumentParser whose ``add_argument(..., env="NAME")`` reads a default from ``$NAME``.

    The flag wins over the variable, the variable over the default; ``--help`` shows all three.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", argparse.ArgumentDefaultsHelpFormatter)
        super().__init__(*args, **kwargs)

    def add_argument(self, *args: Any, env: str | None = None, **kwargs: Any) -> argparse.Action:  # type: ignore[override]
        if env is not None:
            kwargs["help"] = f"{kwargs.get('help', '')} [env: {env}]".strip()
            if env in os.environ:
                raw = os.environ[env]
                action = kwargs.get("action")
                if action in ("store_true", "store_false"):
                    kwargs["default"] = raw.lower() in ("1", "true", "yes", "on")
                elif kwargs.get("nargs") in ("*", "+"):
                    kwargs["default"] = [x for x in raw.replace(",", " ").split() if x]
                else:
                    kwargs["default"] = kwargs.get("type", str)(raw)
                kwargs.pop("required", None)
        return super().add_argument(*args, **kwargs)
