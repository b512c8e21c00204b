"""``python -m mmkd_hf.pipeline [options]``: the same as ``train.py [options]``."""

import sys

from .main import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
