"""Training tier: the authors' feature data files, Algorithm 1 training with the released
recipe, the paper's metrics, and the same commands under torchrun.

    data.py         feature data files and clip lists, FeatureSet, feature extraction to files
    metrics.py      top-1 accuracy and mAP
    recipe.py       Recipe: the released training recipe as data
    trainer.py      Trainer (Algorithm 1), evaluate
    familiar.py     the familiarity statistics (uavm.ood) from training and held-out sets
    distributed.py  torchrun: process groups, shards, barriers

Names are imported on first use, so that ``uavm.train.recipe`` (the command line's options)
does not load torch.
"""
import importlib

from .metrics import average_precision, metrics  # numpy only; `metrics` is also a submodule's name
from .recipe import Recipe

_EXPORTS = {"DataError": "data", "FeatureSet": "data", "extract_features": "data", "feature_data": "data",
            "read_datafile": "data", "Trainer": "trainer", "evaluate": "trainer", "predict_set": "trainer",
            "fit_familiarity": "familiar"}
__all__ = ["DataError", "FeatureSet", "Recipe", "Trainer", "average_precision", "evaluate", "extract_features",
           "feature_data", "fit_familiarity", "metrics", "predict_set", "read_datafile"]


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'uavm.train' has no attribute {name!r}")
