"""Paths and inputs shared by the bench scripts: the shared model and images, and the preprocessing of
tests/reference/numpy_deit.py (timm's eval transform on PIL: bicubic resize of the shorter side to
floor(224 / 0.875) = 256, center crop 224, normalise), the same one prune_reference.py uses."""
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
REFERENCE = REPO / "tests" / "reference"
SHARED = Path(os.environ.get("ZP_SHARED", REPO.parent / "shared"))
MODEL_DIR = SHARED / "models" / "deit-tiny-patch16-224"
VAL_DIR = SHARED / "data" / "imagenet-val-1300"
OUT = HERE / "out"

if str(REFERENCE) not in sys.path:
    sys.path.insert(0, str(REFERENCE))


def labels(val_dir: Path = VAL_DIR) -> dict:
    out = {}
    for line in (val_dir / "labels.tsv").read_text().splitlines():
        if line.strip():
            f, lab = line.split("\t")
            out[f] = int(lab)
    return out


def image_files(n=None, val_dir: Path = VAL_DIR):
    """The first n labelled images in file-name order (the order `zeroprune eval` uses)."""
    files = sorted(labels(val_dir))
    if n is not None:
        files = files[:n]
    return [val_dir / "images" / f for f in files]


def preprocess(path, cfg):
    """[3, 224, 224] float32, normalised (numpy_deit.preprocess, mode 'resize')."""
    import numpy_deit

    return numpy_deit.preprocess(path, "resize", cfg)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor()
