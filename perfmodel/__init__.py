"""perfmodel: the throughput side I_N(P) — architectures, GPU specs and the roofline + KV-cache I/O estimator.

numpy + stdlib only, so `archscale predict` starts fast and runs anywhere.
"""

from perfmodel.arch import Arch
from perfmodel.arch_batch import ArchBatch
from perfmodel.calibration import Calibration, engine_priors, get_calibration
from perfmodel.errors import ArchscaleInputError
from perfmodel.estimator import Estimate, estimate
from perfmodel.hardware import Hardware, get_gpu, list_gpus
from perfmodel.predict import Prediction, predict
from perfmodel.presets import PRESETS, resolve_arch

__all__ = [
    "PRESETS",
    "Arch",
    "ArchBatch",
    "ArchscaleInputError",
    "Calibration",
    "Estimate",
    "Hardware",
    "Prediction",
    "estimate",
    "engine_priors",
    "get_calibration",
    "get_gpu",
    "list_gpus",
    "predict",
    "resolve_arch",
]
