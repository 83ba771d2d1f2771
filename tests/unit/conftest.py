"""Make this checkout importable as ansible_collections.opendove.mailserver (collections/ links to it)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "collections"))
