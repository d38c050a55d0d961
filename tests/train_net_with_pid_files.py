"""train_net.py for the distributed fault tests: every process of the run writes its pid to
``$MAFT_PLUS_PID_DIR/rank<R>`` once its process group is up, so that a test can kill one rank.

Run it like train_net.py, with the repository root on PYTHONPATH.
"""

import os
from pathlib import Path

from detectron2.utils import comm

import train_net


def main(args):
    pid_file = Path(os.environ["MAFT_PLUS_PID_DIR"]) / f"rank{comm.get_rank()}"
    pid_file.write_text(str(os.getpid()))
    return train_net.main(args)


if __name__ == "__main__":
    train_net.launch_main(train_net.argument_parser().parse_args(), main_function=main)
