"""ImageSizes: the three sizes one image's outputs are computed between, each (height, width)."""

from typing import NamedTuple


class ImageSizes(NamedTuple):
    """Where one image sits in the batch and the size its outputs are wanted at.

    The mask logits cover ``padded_size``; the image is its top-left ``image_size``; the outputs
    are resized to ``output_size`` (the original image's height and width).
    """

    padded_size: tuple[int, int]  # the batch's padded network input
    image_size: tuple[int, int]  # this image in the network input, before padding
    output_size: tuple[int, int]  # the outputs: the original image

    def check(self, what: str) -> None:
        """Raise a ValueError naming ``what`` unless the image fits inside the padded input."""
        image, padded = tuple(self.image_size), tuple(self.padded_size)
        if image[0] > padded[0] or image[1] > padded[1]:
            raise ValueError(
                f"{what} expects image_size {image} to fit inside padded_size {padded}"
            )
