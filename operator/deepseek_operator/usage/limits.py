"""The fixed limit of a release, importable without loading OpenDP (the CLI's parser)."""

from typing import Final

MAX_EPSILON: Final = 0.5  # the most ε one release may spend, per day it covers
