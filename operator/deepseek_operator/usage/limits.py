"""The fixed limits of a release, importable without loading OpenDP (the CLI's parser).

The per-user bounds are capped so that every integer OpenDP handles stays far inside its
i64: the sensitivity of a metric is max_cells x bound <= 10^3 x 10^12 = 10^15, and the
noise scale sensitivity / ε_metric stays a finite float that OpenDP's search can reach.
(OpenDP's clamped sums and noisy values saturate at the i64 limits rather than fail.)
The caps are far above any real day: 10^9 requests is over 11 000 a second all day long.
"""

from typing import Final

MAX_EPSILON: Final = 0.5  # the most ε one release may spend, per day it covers
MIN_EPSILON: Final = 1e-3  # the least: below it the noise would drown any count
MIN_METRIC_EPSILON: Final = 1e-4  # the least ε of requests or tokens (--requests-share)
MAX_CELLS: Final = 1_000  # --max-cells-per-user
MAX_REQUESTS: Final = 10**9  # --max-requests: requests one user counts per cell and day
MAX_TOKENS: Final = 10**12  # --max-tokens: tokens one user counts per cell and day
