"""UAVM: the Unified Audio-Visual Model (Gong, Liu, Rouditchenko, Glass; IEEE SPL 2022).

Names are imported on first use, so that ``import uavm.media`` (the decoder processes)
does not load torch.
"""
import importlib

_EXPORTS = {
    "Bundle": "bundle", "BundleError": "bundle", "load_bundle": "bundle", "random_bundle": "bundle",
    "save_bundle": "bundle", "Preprocessing": "features", "Features": "inference", "Pipeline": "inference",
    "Prediction": "inference", "MediaError": "media", "UAVM": "model", "ModelConfig": "model",
    "FeatureSet": "train", "Trainer": "train", "Recipe": "train", "UAVMError": "errors",
    "load": "hub",  # a Bundle by name ("vggsound-uavm", "hf-hub:ORG/NAME") or by folder
}
__all__ = sorted(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    try:
        return importlib.import_module(f".{name}", __name__)  # submodules: uavm.media, uavm.analysis, ...
    except ModuleNotFoundError:
        raise AttributeError(f"module 'uavm' has no attribute {name!r}") from None
