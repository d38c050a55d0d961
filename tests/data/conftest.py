"""Tiny fake downloads of the benchmarks, in their original on-disk formats, and their scripts.

Each ``fake_*`` fixture gives an object whose ``write(root)`` lays out a small download under a
datasets root and whose ``prepare(root)`` runs the matching ``datasets/prepare_*.py`` scripts on it
(told the fake image counts). Its upper-case attributes are what the download holds, so that tests
can compute the expected outputs. Test modules cannot import one another
(``--import-mode=importlib``), hence fixtures.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from detectron2.data.datasets.builtin_meta import COCO_CATEGORIES
from panopticapi.utils import id2rgb
from PIL import Image
from script_loader import load_script

from maft_plus.data.vocabulary.class_lists import read_builtin_vocabulary


def save_image(array: np.ndarray, path: Path) -> None:
    """Write ``array`` as the image ``path`` (format from its suffix), making its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def random_pixels(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8 noise, the content of every fake photo."""
    return rng.integers(0, 256, (*shape, 3), dtype=np.uint8)


class FakeCoco:
    """COCO 2017: images, COCO-Stuff maps, COCO-Panoptic json + pngs; a few images per split."""

    NUM = {"train2017": 3, "val2017": 2}  # images per split
    H, W = 8, 12
    # Stored COCO-Stuff value (id - 1) -> expected contiguous id.
    STUFF_VALUES = {
        0: 0,  # person (id 1), the first thing
        1: 1,  # bicycle (id 2)
        89: 79,  # toothbrush (id 90), the last thing
        91: 80,  # banner (id 92), the first stuff
        181: 170,  # wood (id 182), the last stuff
        11: 255,  # street sign (id 12), not one of the 171
        90: 255,  # id 91, not one of the 171
        255: 255,  # unlabeled
    }
    # Panoptic segments of every image: segment id -> (category id, iscrowd, expected class).
    SEGMENTS = {
        1: (1, 0, 0),  # person
        2: (1, 1, 0),  # a crowd of persons: keeps its class
        3: (187, 0, 119),  # sky-other-merged
        65793: (184, 0, 116),  # tree-merged; an id that needs all three colour channels
    }

    def __init__(self) -> None:
        self.stuff_script = load_script("datasets/prepare_coco_stuff.py")
        self.panoptic_script = load_script("datasets/prepare_coco_panoptic.py")

    @staticmethod
    def stem(split: str, i: int) -> str:
        return f"{(1 if split == 'train2017' else 9) * 1000 + i:012d}"

    UNLABELLED = ("train2017", 2)  # this map has no labelled pixel: left out of training

    def stuff_source(self, i: int, split: str = "val2017") -> np.ndarray:
        """(H, W) uint8 COCO-Stuff map: each row one stored value, cycling through STUFF_VALUES;
        the ``UNLABELLED`` map holds only values that become 255."""
        if (split, i) == self.UNLABELLED:
            return np.tile(np.array([255, 11], dtype=np.uint8), (self.H, self.W // 2))
        values = np.array(list(self.STUFF_VALUES), dtype=np.uint8)
        rows = values[(np.arange(self.H) + i) % len(values)]
        return np.repeat(rows[:, None], self.W, axis=1)

    def segment_ids(self, i: int) -> np.ndarray:
        """(H, W) segment ids: two rows per segment, void (0) in the rest, rolled by ``i`` rows."""
        ids = np.zeros((self.H, self.W), dtype=np.int64)
        for row, segment_id in enumerate(self.SEGMENTS):
            ids[2 * row : 2 * row + 2, : self.W - 2] = segment_id  # the last two columns: void
        return np.roll(ids, i, axis=0)

    def write(self, root: Path) -> None:
        coco = root / "coco"
        rng = np.random.default_rng(0)
        categories = [
            {k: c[k] for k in ("id", "name", "isthing", "color")} for c in COCO_CATEGORIES
        ]
        for split, num in self.NUM.items():
            images, annotations = [], []
            for i in range(num):
                stem = self.stem(split, i)
                save_image(random_pixels(rng, (self.H, self.W)), coco / split / f"{stem}.jpg")
                stuff = coco / "stuffthingmaps_trainval2017" / split / f"{stem}.png"
                save_image(self.stuff_source(i, split), stuff)
                save_image(id2rgb(self.segment_ids(i)), coco / f"panoptic_{split}/{stem}.png")
                segments = [
                    {"id": sid, "category_id": cid, "iscrowd": crowd, "bbox": [0, 0, self.W - 2, 2]}
                    for sid, (cid, crowd, _) in self.SEGMENTS.items()
                ]
                images.append(
                    {"id": int(stem), "file_name": f"{stem}.jpg", "height": self.H, "width": self.W}
                )
                annotations.append(
                    {"image_id": int(stem), "file_name": f"{stem}.png", "segments_info": segments}
                )
            content = {"images": images, "annotations": annotations, "categories": categories}
            (coco / "annotations").mkdir(exist_ok=True)
            (coco / "annotations" / f"panoptic_{split}.json").write_text(json.dumps(content))

    def args(self, root: Path, *extra: str, workers: int = 1) -> list[str]:
        """Prepare-script arguments for this download: its image counts, ``workers`` processes."""
        return [
            *("--root", str(root)),
            *("--expected-train-images", str(self.NUM["train2017"])),
            *("--expected-val-images", str(self.NUM["val2017"])),
            *("--workers", str(workers)),
            *extra,
        ]

    def prepare(self, root: Path) -> None:
        self.stuff_script.main(self.args(root))
        self.panoptic_script.main(self.args(root))


class FakeADE:
    """ADEChallengeData2016 (3 val images with instance pngs) and ADE20K_2021_17_01 (1 training and
    2 validation images, one of them 1024 x 768 so that it is resized)."""

    # Scene-parsing labels: wall (1), sky (3) and floor (4) are stuff; bed (8), person (13), car
    # (21) and flag (150) things (their ADE-150 classes are in the instance-category table).
    WALL, SKY, FLOOR, BED, PERSON, CAR, FLAG = 1, 3, 4, 8, 13, 21, 150
    PERSON_R, CAR_R = 4, 9  # their instance-challenge categories (R of the instance pngs)
    NUM_VAL = 3  # scene-parsing validation images (A-150, panoptic)
    VAL_SEMANTIC = np.array(
        [
            [1, 1, 1, 1, 1, 1, 1, 1],
            [1, 13, 13, 1, 1, 13, 13, 1],
            [1, 13, 13, 1, 1, 13, 13, 1],
            [4, 4, 4, 4, 4, 4, 8, 8],  # bed, without an instance: unlabeled in panoptic
            [4, 4, 4, 4, 4, 4, 0, 0],
            [1, 1, 4, 4, 21, 21, 3, 4],  # a second wall region (same segment); one sky pixel
        ],
        dtype=np.uint8,
    )
    # (R, G) instance -> its pixels; G identifies the instance. Person 1 also covers a wall pixel,
    # person 3 lies on floor (a person all the same), the car covers the only sky pixel.
    VAL_INSTANCES = {
        (PERSON_R, 1): [(0, 1), (1, 1), (1, 2), (2, 1), (2, 2)],
        (PERSON_R, 2): [(1, 5), (1, 6), (2, 5), (2, 6)],
        (PERSON_R, 3): [(4, 0), (4, 1)],
        (CAR_R, 4): [(5, 4), (5, 5), (5, 6)],
    }

    # ADE20K full: object codes (R // 10 * 256 + G of a _seg.png). In the A-847 table: 2978 wall
    # (train id 0), 312 building (1), 3148 adding machine (846); codes 1 and 5 are not.
    FULL_CODES = np.array([[0, 2978, 2978, 312, 3148], [5, 1, 3148, 2978, 0], [312] * 4 + [0]])
    FULL_EXPECTED = np.array(
        [[65535, 0, 0, 1, 846], [65535, 65535, 846, 0, 65535], [1, 1, 1, 1, 65535]],
        dtype=np.uint16,
    )
    LARGE = (768, 1024)  # (H, W) of the second validation image: resized to 512 x 683
    # (folder, file name) of the images; only validation is converted
    FULL_IMAGES = [
        ("training/urban/street", "ADE_train_00000001"),
        ("validation/urban/street", "ADE_val_00000001"),
        ("validation/home/kitchen", "ADE_val_00000002"),
    ]
    NUM_FULL_VAL = 2  # A-847 validation images

    def __init__(self) -> None:
        self.ade150_script = load_script("datasets/prepare_ade20k_150.py")
        self.ade847_script = load_script("datasets/prepare_ade20k_847.py")
        self.panoptic_script = load_script("datasets/prepare_ade20k_panoptic.py")

    @staticmethod
    def instance_png(shape: tuple[int, int], instances: dict) -> np.ndarray:
        """(H, W, 3) instance-challenge png: R the category, G the instance of each pixel."""
        rgb = np.zeros((*shape, 3), dtype=np.uint8)
        rgb[..., 2] = 77  # B is unused
        for (red, green), pixels in instances.items():
            for y, x in pixels:
                rgb[y, x, :2] = red, green
        return rgb

    def write(self, root: Path) -> None:
        self.write_scene_parsing(root)
        self.write_full(root)

    def write_scene_parsing(self, root: Path) -> list[np.ndarray]:
        """ADEChallengeData2016; returns the (H, W) labels of the validation images, in order."""
        ade = root / "ADEChallengeData2016"
        rng = np.random.default_rng(0)
        full_wall = np.full((6, 8), self.WALL, dtype=np.uint8)
        full_wall[0, 0] = self.FLAG  # the last class, a thing without an instance
        with_person = np.full((6, 8), self.FLOOR, dtype=np.uint8)
        with_person[2:4, 2:4] = self.PERSON
        val = [
            (self.VAL_SEMANTIC, self.VAL_INSTANCES),
            (full_wall, {}),
            (with_person, {(self.PERSON_R, 7): [(2, 2), (2, 3), (3, 2), (3, 3)]}),
        ]
        for i, (semantic, instances) in enumerate(val, start=1):
            stem = f"ADE_val_{i:08d}"
            save_image(random_pixels(rng, (6, 8)), ade / f"images/validation/{stem}.jpg")
            save_image(semantic, ade / f"annotations/validation/{stem}.png")
            instance_png = self.instance_png(semantic.shape, instances)
            save_image(instance_png, ade / f"annotations_instance/validation/{stem}.png")
        return [semantic for semantic, _ in val]

    def large_codes(self) -> np.ndarray:
        """(768, 1024) codes of the large image: stripes of wall, building and unknown codes."""
        height, width = self.LARGE
        stripes = np.array([2978, 312, 5])[(np.arange(width) // 3) % 3]  # (W,) 3-pixel stripes
        codes = np.repeat(stripes[None], height, axis=0)  # (H, W)
        codes[::7] = 3148  # and every 7th row
        return codes

    def write_full(self, root: Path) -> None:
        """ADE20K_2021_17_01: images and their ``_seg.png`` object maps."""
        ade = root / "ADE20K_2021_17_01"
        rng = np.random.default_rng(1)
        for folder, stem in self.FULL_IMAGES:
            image_folder = ade / "images/ADE" / folder
            if stem == "ADE_val_00000002":
                codes_map = self.large_codes()
                gradient = np.linspace(0, 255, codes_map.shape[1]).astype(np.uint8)  # (W,)
                pixels = np.broadcast_to(gradient[None, :, None], (*codes_map.shape, 3))
            else:
                codes_map = self.FULL_CODES if stem == "ADE_val_00000001" else np.ones((3, 5))
                pixels = random_pixels(rng, codes_map.shape)
            save_image(np.ascontiguousarray(pixels), image_folder / f"{stem}.jpg")
            codes_map = codes_map.astype(np.int64)
            seg = np.zeros((*codes_map.shape, 3), dtype=np.uint8)
            seg[..., 0] = codes_map // 256 * 10 + 3  # R // 10 * 256 + G; R % 10 carries no class
            seg[..., 1] = codes_map % 256
            seg[..., 2] = 9  # instance masks, not read
            save_image(seg, image_folder / f"{stem}_seg.png")

    def prepare_ade150(self, root: Path) -> None:
        self.ade150_script.main(["--root", str(root), "--expected-val-images", str(self.NUM_VAL)])

    def prepare_ade847(self, root: Path) -> None:
        num = str(self.NUM_FULL_VAL)
        self.ade847_script.main(["--root", str(root), "--expected-val-images", num])

    def prepare_panoptic(self, root: Path) -> None:
        num = str(self.NUM_VAL)
        self.panoptic_script.main(["--root", str(root), "--expected-val-images", num])

    def prepare(self, root: Path) -> None:
        self.prepare_ade150(root)
        self.prepare_ade847(root)
        self.prepare_panoptic(root)


class FakePascal:
    """VOC2010 + PASCAL-Context and VOC2012 segmentation: 4 validation and 1 training image each."""

    VAL_IDS = ["2008_000002", "2008_000007", "2009_000013", "2010_000021"]
    TRAIN_IDS = ["2008_000005"]  # in JPEGImages but not in the validation split
    # labels.txt as in the release: the 459 names of the shipped plain list, in order, one written
    # as "potted plant" (names are compared ignoring spaces and case)
    LABEL_NAMES = [
        "potted plant" if name == "pottedplant" else name
        for name in read_builtin_vocabulary("pc459", "plain")
    ]

    def __init__(self) -> None:
        self.context_script = load_script("datasets/prepare_pascal_context.py")
        self.voc_script = load_script("datasets/prepare_pascal_voc.py")

    @staticmethod
    def image_shape(i: int) -> tuple[int, int]:
        return 10 + i, 14 + 2 * i  # (H, W), different per image so a mismatched pair is caught

    def write(self, root: Path) -> None:
        self.write_context(root)
        self.write_voc(root)

    def write_context(self, root: Path) -> dict[str, np.ndarray]:
        """VOC2010 + PASCAL-Context; returns the LabelMap of each validation id."""
        voc = root / "VOCdevkit/VOC2010"
        context = voc / "pascal_context"
        (voc / "ImageSets/Main").mkdir(parents=True)
        (voc / "ImageSets/Main/val.txt").write_text("\n".join(self.VAL_IDS) + "\n")
        (context / "trainval").mkdir(parents=True)
        lines = [f"{k}: {name}" for k, name in enumerate(self.LABEL_NAMES, start=1)]
        (context / "labels.txt").write_text("\n".join(lines) + "\n")
        num_labels = len(self.LABEL_NAMES)
        label_maps = {}
        for i, image_id in enumerate(self.VAL_IDS + self.TRAIN_IDS):
            shape = self.image_shape(i)
            rng = np.random.default_rng(i)
            save_image(random_pixels(rng, shape), voc / "JPEGImages" / f"{image_id}.jpg")
            rng = np.random.default_rng(i)
            label_map = rng.integers(0, num_labels + 1, shape).astype(np.uint16)
            label_map[0, :3] = (0, 1, num_labels)  # unlabeled, the first and the last label
            scipy.io.savemat(context / "trainval" / f"{image_id}.mat", {"LabelMap": label_map})
            label_maps[image_id] = label_map
        return {image_id: label_maps[image_id] for image_id in self.VAL_IDS}

    def write_voc(self, root: Path) -> dict[str, np.ndarray]:
        """VOC2012 segmentation; returns the class indices of each validation id."""
        voc = root / "VOCdevkit/VOC2012"
        (voc / "ImageSets/Segmentation").mkdir(parents=True)
        (voc / "ImageSets/Segmentation/val.txt").write_text("\n".join(self.VAL_IDS) + "\n")
        (voc / "SegmentationClass").mkdir(parents=True)
        palette = np.random.default_rng(0).integers(0, 256, 768, dtype=np.uint8)
        classes = {}
        for i, image_id in enumerate(self.VAL_IDS + self.TRAIN_IDS):
            shape = self.image_shape(i)
            rng = np.random.default_rng(100 + i)
            save_image(random_pixels(rng, shape), voc / "JPEGImages" / f"{image_id}.jpg")
            rng = np.random.default_rng(100 + i)
            indices = rng.integers(0, 21, shape).astype(np.uint8)
            indices[0, :3] = (0, 1, 20)
            indices[-1, :] = 255  # an object boundary
            png = Image.fromarray(indices, mode="P")
            png.putpalette(palette.tolist())
            png.save(voc / "SegmentationClass" / f"{image_id}.png")
            classes[image_id] = indices
        return {image_id: classes[image_id] for image_id in self.VAL_IDS}

    def prepare_context(self, root: Path) -> None:
        num = str(len(self.VAL_IDS))
        self.context_script.main(["--root", str(root), "--expected-val-images", num])

    def prepare_voc(self, root: Path) -> None:
        self.voc_script.main(["--root", str(root), "--expected-val-images", str(len(self.VAL_IDS))])

    def prepare(self, root: Path) -> None:
        self.prepare_context(root)
        self.prepare_voc(root)


@pytest.fixture(scope="session")
def fake_coco() -> FakeCoco:
    return FakeCoco()


@pytest.fixture(scope="session")
def fake_ade() -> FakeADE:
    return FakeADE()


@pytest.fixture(scope="session")
def fake_pascal() -> FakePascal:
    return FakePascal()
