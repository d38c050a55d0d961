"""Write the synthetic dataset (coloured shapes on textured ground) used by the tiny configs.

    python datasets/prepare_synthetic.py [--num-train 256] [--num-val 32] [--image-size 96]

It lands in $DETECTRON2_DATASETS/maftp_synthetic (default datasets/maftp_synthetic) in the real
on-disk formats: semantic pngs (COCO-Stuff/ADE style) and panoptic png + json (COCO style). Safe
to re-run: the same seed writes the same files.
"""

import argparse
import logging

from maft_plus.data.datasets import datasets_root
from maft_plus.data.datasets.builtin import SYNTHETIC_FOLDER
from maft_plus.data.synthetic import write_synthetic_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(datasets_root() / SYNTHETIC_FOLDER))
    parser.add_argument("--num-train", type=int, default=256, help="training images")
    parser.add_argument("--num-val", type=int, default=32, help="validation images")
    parser.add_argument("--image-size", type=int, default=96, help="side of the square images")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    dataset = write_synthetic_dataset(
        args.root,
        num_train=args.num_train,
        num_val=args.num_val,
        image_size=args.image_size,
        seed=args.seed,
    )
    counts = ", ".join(f"{n} {split}" for split, n in dataset.num_images.items())
    print(f"synthetic dataset at {dataset.root}: {counts} images, classes {dataset.class_names}")


if __name__ == "__main__":
    main()
