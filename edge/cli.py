"""``geo-edge``: parse flags/env into an ``EdgeConfig`` and serve it with uvicorn."""

from __future__ import annotations

import sys
from typing import Sequence

from edge.config import parse_config
from service_kit.logs import configure_logging


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_config(argv)
    configure_logging(config.log_level, service="geo-edge", region=config.region, edge=config.node_id)
    from edge.server import run
    run(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
