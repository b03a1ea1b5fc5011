"""``python3 -m circuit_breaker_ext [name]``: run the extension (the launcher passes its file name)."""

from __future__ import annotations

import sys

from .main import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
