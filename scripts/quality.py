#!/usr/bin/env python3
"""The generated-video quality evaluation of moddit-tiny (docs/QUALITY.md),
the same as `python -m moddit.quality`: --smoke runs the whole path on the CPU
at the small size; --budget-seconds bounds the full run (GPU)."""
from moddit.quality.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
