"""Images for the predictor: an RGB uint8 array from an array, a PIL image or a file."""

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["ImageInput", "load_rgb"]

ImageInput = np.ndarray | Image.Image | str | os.PathLike


def load_rgb(image: ImageInput) -> np.ndarray:
    """An (H, W, 3) uint8 RGB array from an array, a PIL image or an image file path.

    PIL images are turned upright by their EXIF orientation and converted to RGB (grayscale is
    replicated, 16-bit grayscale scaled to 8 bits, palettes looked up, an alpha channel dropped).
    """
    if isinstance(image, np.ndarray):
        return _check_array(image)
    if isinstance(image, Image.Image):
        return _pil_to_rgb(image)
    if isinstance(image, str | os.PathLike):
        path = Path(image)
        if not path.is_file():
            raise FileNotFoundError(f"image file not found: {path}")
        try:
            with Image.open(path) as opened:
                opened.load()
                return _pil_to_rgb(opened)
        except Image.DecompressionBombError as exc:  # PIL refuses > 2 * MAX_IMAGE_PIXELS
            raise ValueError(
                f"the image {path} has more pixels than PIL opens by default ({exc}); if the file "
                "is trusted, raise PIL.Image.MAX_IMAGE_PIXELS before predicting"
            ) from exc
        except (UnidentifiedImageError, OSError, SyntaxError) as exc:  # PIL's decoding errors
            raise ValueError(f"could not read the image {path}: {exc}") from exc
    raise TypeError(
        "an image is an (H, W, 3) uint8 RGB numpy array, a PIL image or a file path, got "
        f"{type(image).__name__}"
    )


def _check_array(image: np.ndarray) -> np.ndarray:
    """``image`` if it is a non-empty (H, W, 3) uint8 array, else a ValueError."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(
            f"an image array must be (H, W, 3) uint8 RGB, got {image.dtype} {image.shape}; "
            "convert other images with PIL (Image.fromarray(a).convert('RGB'))"
        )
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"the image is empty: shape {image.shape}")
    return image


def _pil_to_rgb(image: Image.Image) -> np.ndarray:
    image = ImageOps.exif_transpose(image)  # upright, as viewers show it
    if image.mode.startswith("I;16") or image.mode == "I":  # 16-bit (or int) grayscale
        # PIL's own conversion clips at 255 (a white image); scale 0..65535 to 0..255 instead
        gray = np.asarray(image).astype(np.float64) / 257.0  # (H, W)
        gray = np.clip(np.rint(gray), 0, 255).astype(np.uint8)
        return _check_array(np.repeat(gray[:, :, None], 3, axis=2))  # (H, W, 3)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")  # PIL converts transparent palettes through RGBA
    return _check_array(np.asarray(image.convert("RGB")))  # (H, W, 3) uint8
