"""Train the full mmkd-hf pipeline: teachers -> ensemble weights -> distilled student -> baselines -> evaluation.

    accelerate launch train.py                      # the embedded mini-kitchens default, on CPU or GPU
    accelerate launch train.py --config my.json     # a real dataset / stage / subset of teachers
    accelerate launch train.py --help               # every option, with help text

All logic lives in ``mmkd_hf.pipeline``; this file only hands it the command line.
"""

import sys

from mmkd_hf.pipeline import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
