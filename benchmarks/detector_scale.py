"""How much to upscale small images before face detection: each detector at several sizes.

For every detector (at its default score threshold) and every ``--min-sides`` value: recall and
false alarms on scikit-image's lfw_subset (100 face crops, 100 non-faces, 25x25), and on the
shared and synthetic heads the share of face views (views.json sensitive) and of back-of-head
views (neutral) in which it finds a face. Needs ``pip install 'privhead[audit]'``.

    python benchmarks/detector_scale.py --min-sides 160,320,480
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from skimage.data import lfw_subset

from privhead.data.formats import load_dataset
from privhead.data.synthetic import write_synthetic_head
from privhead.privacy.faces import DETECTOR_CLASSES, installed_detectors

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from privacy_table import shared_root  # noqa: E402


def heads(out: Path) -> list:
    folders = sorted((shared_root() / "data" / "heads").glob("ict_s*/r*_v30"))
    for seed in (0, 1, 2):
        path = out / "synthetic" / f"s{seed}_r64"
        if not (path / "views.json").is_file():
            write_synthetic_head(path, seed=seed, overwrite=True)
        folders.append(path)
    return [load_dataset(f) for f in folders]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-sides", default="160,320,480")
    parser.add_argument("--pad", type=float, default=0.25)
    parser.add_argument("--out", default=str(REPO / "out" / "privacy"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    lfw = lfw_subset()
    datasets = heads(Path(args.out))
    lines = [
        "| detector | min side (px) | lfw recall | lfw false alarms | head face views found "
        "| head back views flagged | ms / image |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in installed_detectors():
        for min_side in (int(v) for v in args.min_sides.split(",")):
            detector = DETECTOR_CLASSES[name](min_side=min_side, pad_fraction=args.pad)
            start, count = time.perf_counter(), 0

            def fires(image, detector=detector) -> bool:
                return bool(detector.detect(image))

            lfw_found = np.array([fires(im) for im in lfw])
            count += len(lfw)
            face, back = [], []
            for dataset in datasets:
                sensitive = set(dataset.views["sensitive_indices"])
                for i, image in enumerate(dataset.images):
                    (face if i in sensitive else back).append(fires(image))
                count += len(dataset.images)
            ms = 1000 * (time.perf_counter() - start) / count
            lines.append(
                f"| {name} | {min_side} | {lfw_found[:100].mean():.2f} | "
                f"{lfw_found[100:].mean():.2f} | {sum(face)}/{len(face)} | "
                f"{sum(back)}/{len(back)} | {ms:.0f} |"
            )
            print(lines[-1], flush=True)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
