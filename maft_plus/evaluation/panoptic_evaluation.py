"""Panoptic quality over the images that were evaluated, so that skipped images do not stop PQ.

detectron2's ``COCOPanopticEvaluator`` hands panopticapi the dataset's whole ground-truth json,
and panopticapi refuses a prediction set that misses an image. When the evaluation loop skipped
images (unreadable files), this evaluator scores against a copy of the json restricted to the
images that were predicted; with nothing skipped it is detectron2's evaluator as is.
"""

import json
import logging
import tempfile
from pathlib import Path
from types import SimpleNamespace

from detectron2.evaluation import COCOPanopticEvaluator
from detectron2.utils import comm

from .gather import all_gather_list

logger = logging.getLogger(__name__)


class PanopticSubsetEvaluator(COCOPanopticEvaluator):
    """detectron2's ``COCOPanopticEvaluator`` scored on the images it processed (PQ/SQ/RQ for all,
    things and stuff, under ``"panoptic_seg"``)."""

    def state_dict(self) -> dict:
        """The predictions so far (for a resumable evaluation, ``resume.py``)."""
        return {"predictions": list(self._predictions)}

    def load_state_dict(self, state: dict) -> None:
        self._predictions = list(state["predictions"])

    def evaluate(self) -> dict | None:
        """PQ over the processed images; None off the main process."""
        predicted_ids = set(all_gather_list([p["image_id"] for p in self._predictions]))
        if not comm.is_main_process():
            return super().evaluate()  # joins the gathering; returns None
        with open(self._metadata.panoptic_json, encoding="utf-8") as f:
            ground_truth = json.load(f)
        annotations = [a for a in ground_truth["annotations"] if a["image_id"] in predicted_ids]
        if len(annotations) == len(ground_truth["annotations"]):
            return super().evaluate()
        logger.info(
            "%d of %d images were evaluated: panoptic quality over those only",
            len(annotations),
            len(ground_truth["annotations"]),
        )
        ground_truth["annotations"] = annotations
        ground_truth["images"] = [i for i in ground_truth["images"] if i["id"] in predicted_ids]
        metadata = self._metadata
        with tempfile.TemporaryDirectory(prefix="panoptic_subset") as folder:
            subset_json = Path(folder) / Path(metadata.panoptic_json).name
            subset_json.write_text(json.dumps(ground_truth), encoding="utf-8")
            # detectron2's evaluate reads only these two fields of the metadata
            self._metadata = SimpleNamespace(
                panoptic_json=str(subset_json), panoptic_root=metadata.panoptic_root
            )
            try:
                return super().evaluate()
            finally:
                self._metadata = metadata
