"""Installs the maft_plus package. Use scripts/setup.sh for a complete environment."""

from setuptools import find_packages, setup

setup(
    name="maft-plus",
    version="0.1.0",
    description="MAFT+: collaborative vision-text optimizing for open-vocabulary segmentation",
    license="MIT",
    python_requires=">=3.11,<3.13",
    packages=find_packages(include=["maft_plus", "maft_plus.*"]),
    package_data={"maft_plus": ["**/*.json", "**/*.txt"]},
    # torch/torchvision and detectron2 come from scripts/setup.sh (detectron2 is not on PyPI).
    install_requires=[
        "numpy<2",
        "open_clip_torch>=3.3",
        "timm>=1.0.31",
        "scipy",
        "pillow",
        "tqdm",
        "safetensors",
        "panopticapi-lite",
    ],
)
