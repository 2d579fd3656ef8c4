"""Training tier: the authors' feature data files, Algorithm 1 training with the released
recipe, the paper's metrics, and the same commands under torchrun.

    data.py         feature data files and clip lists, FeatureSet, feature extraction to files
    metrics.py      top-1 accuracy and mAP
    trainer.py      Recipe, Trainer (Algorithm 1), evaluate
    distributed.py  torchrun: process groups, shards, barriers
"""
from .data import DataError, FeatureSet, extract_features, feature_data, read_datafile
from .metrics import average_precision, metrics
from .trainer import Recipe, Trainer, evaluate, predict_set

__all__ = ["DataError", "FeatureSet", "Recipe", "Trainer", "average_precision", "evaluate", "extract_features",
           "feature_data", "metrics", "predict_set", "read_datafile"]
