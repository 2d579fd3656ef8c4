"""UAVM: the Unified Audio-Visual Model (Gong, Liu, Rouditchenko, Glass; IEEE SPL 2022)."""
from .bundle import Bundle, BundleError, load_bundle, random_bundle, save_bundle
from .features import Preprocessing
from .inference import Features, Pipeline, Prediction
from .media import MediaError
from .model import UAVM, ModelConfig

__all__ = ["Bundle", "BundleError", "Features", "MediaError", "ModelConfig", "Pipeline", "Prediction",
           "Preprocessing", "UAVM", "load_bundle", "random_bundle", "save_bundle"]
__version__ = "0.1.0"
