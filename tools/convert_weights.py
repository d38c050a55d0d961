"""Convert MAFT+ weights (a released .pth or our checkpoint) to model.safetensors + config.yaml.

    python tools/convert_weights.py maftp_l.pth converted/maftp_l \
        --config-file configs/semantic/maftp_l_eval.yaml
    python tools/convert_weights.py output/model_final.pth converted/mine \
        --config-file configs/tiny/maftp_tiny.yaml MODEL.MAFT_PLUS.DECODER.NUM_QUERIES 8

The input is read as tensors only (``--allow-pickle`` for trusted files that need unpickling); of a
training checkpoint (model, optimizer, iteration) only the model is kept. The weights are checked
against the model the config builds (built on the meta device: shapes only, no memory, no CLIP
download) with the same strict check as loading, so a Base file with a Large config fails before
anything is written. The output folder then holds:

    model.safetensors   the state dict in our key names (maft_plus/safetensors_weights.py)
    config.yaml         the full config (no _BASE_) with MODEL.WEIGHTS empty, and with
                        MODEL.MAFT_PLUS.CLIP_PRETRAINED empty when the file holds CLIP's text
                        tower too (then loading downloads nothing)

Load it with ``Predictor.from_pretrained("OUTPUT_DIR")``, or upload both files to a Hugging Face
Hub model repo and use ``Predictor.from_pretrained("org/repo")``. Existing outputs are kept unless
``--overwrite``.
"""

import argparse
import logging
from pathlib import Path

import torch
from detectron2.config import CfgNode
from detectron2.modeling import build_model
from detectron2.utils.logger import setup_logger

from maft_plus.checkpoint import check_compatible, convert_official_state_dict, load_state_dict_file
from maft_plus.config import setup_cfg
from maft_plus.files import write_atomically
from maft_plus.pretrained import CONFIG_NAME, WEIGHTS_NAME
from maft_plus.safetensors_weights import save_safetensors_weights

logger = logging.getLogger("maft_plus")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input", help="the .pth (or .safetensors) file to convert")
    parser.add_argument(
        "output_dir", help=f"the folder to write {WEIGHTS_NAME} and {CONFIG_NAME} to"
    )
    parser.add_argument("--config-file", required=True, help="the config the weights are for")
    parser.add_argument(
        "--allow-pickle",
        action="store_true",
        help="also read files holding more than tensors (unpickling runs code: trusted files only)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument("opts", nargs="*", default=[], help="KEY VALUE config overrides")
    return parser.parse_intermixed_args(argv)  # opts may follow --config-file


def model_shapes(cfg: CfgNode) -> dict[str, tuple[int, ...]]:
    """State-dict shapes of the model ``cfg`` builds, built on the meta device (no weights)."""
    shape_cfg = cfg.clone()
    shape_cfg.defrost()
    shape_cfg.MODEL.DEVICE = "meta"
    shape_cfg.MODEL.WEIGHTS = ""
    shape_cfg.MODEL.MAFT_PLUS.CLIP_PRETRAINED = ""  # shapes do not depend on CLIP's weights
    with torch.device("meta"):
        model = build_model(shape_cfg)
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def pretrained_config(cfg: CfgNode, *, has_text_tower: bool) -> CfgNode:
    """``cfg`` as a pretrained model's config: no MODEL.WEIGHTS, and no CLIP_PRETRAINED when the
    weights hold every key (CLIP's text tower included)."""
    out = cfg.clone()
    out.defrost()
    out.MODEL.WEIGHTS = ""
    if has_text_tower:
        out.MODEL.MAFT_PLUS.CLIP_PRETRAINED = ""
    out.freeze()
    return out


def main(argv: list[str] | None = None) -> dict:
    """Convert; return the paths written, the tensor count and the CLIP_PRETRAINED kept."""
    args = parse_args(argv)
    setup_logger(name="maft_plus")
    output_dir = Path(args.output_dir)
    weights_path, config_path = output_dir / WEIGHTS_NAME, output_dir / CONFIG_NAME
    existing = [str(path) for path in (weights_path, config_path) if path.exists()]
    if existing and not args.overwrite:
        raise SystemExit(f"{' and '.join(existing)} already exist; pass --overwrite to replace")
    cfg = setup_cfg(args.config_file, args.opts)
    try:
        checkpoint = load_state_dict_file(args.input, allow_pickle=args.allow_pickle)
        state = convert_official_state_dict(checkpoint)
        left_unset = check_compatible(
            model_shapes(cfg), {key: tuple(value.shape) for key, value in state.items()}
        )
    except (FileNotFoundError, ValueError) as exc:
        raise SystemExit(f"{args.input} was not converted (nothing written): {exc}") from exc
    clip_pretrained = cfg.MODEL.MAFT_PLUS.CLIP_PRETRAINED
    if left_unset and not clip_pretrained:
        raise SystemExit(
            f"{args.input} lacks CLIP's text tower ({len(left_unset)} keys, e.g. "
            f"{left_unset[0]}) and MODEL.MAFT_PLUS.CLIP_PRETRAINED is empty, so the text tower "
            "would be random: name the CLIP weights it was trained with, e.g. "
            "MODEL.MAFT_PLUS.CLIP_PRETRAINED laion2b_s29b_b131k_ft_soup (nothing written)"
        )
    try:
        save_safetensors_weights(state, weights_path, source=args.input)
    except ValueError as exc:
        raise SystemExit(f"{args.input} was not converted (nothing written): {exc}") from exc
    config = pretrained_config(cfg, has_text_tower=not left_unset)
    header = f"# MAFT+ config written by tools/convert_weights.py from {args.config_file}\n"
    write_atomically(config_path, lambda tmp: Path(tmp).write_text(header + config.dump()))

    size_mib = weights_path.stat().st_size / 2**20
    print(f"wrote {weights_path}: {len(state)} tensors, {size_mib:.1f} MiB (from {args.input})")
    print(f"wrote {config_path}: the full config, MODEL.WEIGHTS empty")
    if left_unset:
        print(
            f"  the file has no CLIP text tower ({len(left_unset)} keys): {CONFIG_NAME} keeps "
            f"MODEL.MAFT_PLUS.CLIP_PRETRAINED = {clip_pretrained!r}, which loading fetches"
        )
    else:
        print("  the file holds every model key: MODEL.MAFT_PLUS.CLIP_PRETRAINED emptied")
    print(f"load it with: Predictor.from_pretrained({str(output_dir)!r})")
    return {
        "weights": weights_path,
        "config": config_path,
        "num_tensors": len(state),
        "clip_pretrained": config.MODEL.MAFT_PLUS.CLIP_PRETRAINED,
    }


if __name__ == "__main__":
    main()
