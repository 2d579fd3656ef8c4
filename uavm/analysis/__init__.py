"""The paper's analyses (Sec. III-B to E) for any bundle and any labelled set.

* ``probe``      a logistic-regression modality classifier on each layer's mean-pooled
                 representation, half the clips to fit, half to test; the last layer's
                 sorted coefficients; a t-SNE of each layer by modality (Fig. 3).
* ``retrieval``  audio-to-video retrieval recall@k by cosine similarity at every
                 layer and the logits, on a class-balanced subset (Fig. 4).
* ``attention``  per-layer mean absolute difference between the attention maps of
                 paired audio and video inputs; per-head temporal attention of a clip (Fig. 5).
* ``sweep``      train and evaluate over S_dim, Ns (N + Ns fixed) and lambda_MT, one
                 factor at a time from a base model, several seeds (Fig. 2).

Over a whole set, beyond the paper:

* ``robustness``  each pass's accuracy, mAP and calibration against a share of clips missing a
                  modality, a muted / blanked span and the degradations; relative and effective
                  robustness (MultiBench) -- conditions.py (the features, once per level),
                  robustness.py (the figures), levels.py (the kinds and their defaults).
* ``vggsounder``  VGGSounder's modality-aware metrics and modality confusion for the three passes.

    measures.py  the numbers, as functions of models and arrays (checked against direct computations)
    report.py    end to end: CSV files and a self-contained HTML page (needs scikit-learn and plotly)
"""
# the measures load torch: imported when first used, so that the CLI's help (which reads
# uavm.analysis.levels) stays light
_MEASURES = ("AnalysisError", "Representations", "attention_difference_rows", "attention_maps", "balanced_subset",
             "coefficient_rows", "halves", "probe", "probe_rows", "recall_at", "representations", "retrieval_rows",
             "run_sweep", "summarize", "sweep_points", "temporal_rows", "tsne_rows")
__all__ = list(_MEASURES)


def __getattr__(name):
    if name in _MEASURES:
        from . import measures

        return getattr(measures, name)
    raise AttributeError(f"module 'uavm.analysis' has no attribute {name!r}")
