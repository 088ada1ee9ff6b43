"""The top floor: what a user runs. The `sidflow` command line (`cli/`), the closed-loop A/B
simulation and its report (`closed_loop/`) and the screenshots of the UIs."""

import sidflow  # noqa: F401  (telemetry off before any library of this package loads)
