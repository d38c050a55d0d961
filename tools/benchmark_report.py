"""The results of tools/benchmark.py as a table, and its targets checked."""

ADE847_NUM_CLASSES = 847
TARGET_RATIO = 1.3  # inference time / CLIP-V trunk time
TARGET_VOCAB_MEMORY = 1.2  # peak inference memory, ADE-847 / ADE-150
TARGET_FLOOR_RATIO = 1.6  # training step time / its floor (student trunk fwd + bwd, teacher fwd)


def check_targets(results: dict) -> list[str]:
    lines = []
    for row in results.get("inference", []):
        ok = row["ratio"] <= TARGET_RATIO
        low, high = min(row["round_ratios"]), max(row["round_ratios"])
        lines.append(
            f"{'PASS' if ok else 'MISS'} inference / trunk = {row['ratio']:.2f}x, rounds "
            f"{low:.2f}-{high:.2f}x (target <= {TARGET_RATIO}) [{row['vocabulary']}]"
        )
    if "train" in results:
        train = results["train"]
        ok = train["floor_ratio"] <= TARGET_FLOOR_RATIO
        low, high = min(train["round_floor_ratios"]), max(train["round_floor_ratios"])
        lines.append(
            f"{'PASS' if ok else 'MISS'} train step / floor = {train['floor_ratio']:.2f}x, rounds "
            f"{low:.2f}-{high:.2f}x (target <= {TARGET_FLOOR_RATIO}; floor: the student trunk's "
            "forward and backward and the teacher's forward)"
        )
    rows = {row["num_classes"]: row for row in results.get("inference", [])}
    if 150 in rows and ADE847_NUM_CLASSES in rows:
        for key, what in (
            ("peak_memory_mib", "peak memory"),
            ("peak_memory_without_output_mib", "peak memory without the semantic output"),
        ):
            ratio = rows[ADE847_NUM_CLASSES][key] / rows[150][key]
            lines.append(
                f"{'PASS' if ratio <= TARGET_VOCAB_MEMORY else 'MISS'} {what}, ADE-847 / ADE-150 ="
                f" {ratio:.2f}x (target <= {TARGET_VOCAB_MEMORY})"
            )
    losses = results.get("loss_memory", [])
    if len(losses) > 1:
        growth = losses[-1]["peak_memory_mib"] - losses[0]["peak_memory_mib"]
        buffer = losses[0]["mask_buffer_mib"]
        lines.append(
            f"{'PASS' if growth <= buffer else 'MISS'} L_ma peak growth {losses[0]['segments']} -> "
            f"{losses[-1]['segments']} segments = {growth:.0f} MiB (one mask buffer: {buffer:.0f})"
        )
    return lines


def table(results: dict) -> str:
    lines = [
        f"device {results['device']}, {results['size']}x{results['size']}, amp {results['amp']}, "
        f"channels_last {results['channels_last']}, threads {results['threads']}, median of "
        f"{results['repeats']} after {results['warmup']} warm-up",
        f"text embeddings: {results['text_embeddings']}",
        f"freed CPU memory in the timed runs: {results['freed_memory']} (maft_plus/allocator.py)",
        "| measurement | K | S | time ms | trunk ms | ratio | img/s | peak MiB | w/o output |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results.get("inference", []):
        lines.append(
            f"| inference {r['vocabulary']} | {r['num_classes']} | {r['num_synonyms']} | "
            f"{r['inference_ms']:.0f} | {r['trunk_ms']:.0f} | {r['ratio']:.2f} | "
            f"{r['images_per_s']:.2f} | {r['peak_memory_mib']:.0f} | "
            f"{r['peak_memory_without_output_mib']:.0f} |"
        )
    if "train" in results:
        r = results["train"]
        lines.append(
            f"| train step, batch {r['batch']} at {r['size']} | {r['num_classes']} | "
            f"{r['num_synonyms']} | {r['step_ms']:.0f} | {r['floor_ms']:.0f} (floor) | "
            f"{r['floor_ratio']:.2f} | {r['images_per_s']:.2f} | "
            f"{r['peak_memory_mib']:.0f} | |"
        )
    for r in results.get("loss_memory", []):
        lines.append(
            f"| L_ma, {r['segments']} segments, Q={r['queries']} at {r['size']} | | | "
            f"{r['time_ms']:.0f} | | | | {r['peak_memory_mib']:.0f} | |"
        )
    for r in results.get("inference", []):
        stages = ", ".join(f"{k} {v:.0f}" for k, v in r["stages_ms"].items())
        lines.append(f"stages of inference {r['vocabulary']}, ms: {stages}")
        lines.append(
            f"matrix products of inference {r['vocabulary']}: {r['inference_gflop']:.1f} GFLOP, "
            f"trunk {r['trunk_gflop']:.1f}: {r['product_ratio']:.2f}x, the ratio if every "
            "product ran at the trunk's speed and nothing else took time"
        )
    return "\n".join(lines + [""] + check_targets(results))
