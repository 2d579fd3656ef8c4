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

    measures.py  the numbers, as functions of models and arrays (checked against direct computations)
    report.py    end to end: CSV files and a self-contained HTML page (needs scikit-learn and plotly)
"""
from .measures import (
                       AnalysisError,
                       Representations,
                       attention_difference_rows,
                       attention_maps,
                       balanced_subset,
                       coefficient_rows,
                       halves,
                       probe,
                       probe_rows,
                       recall_at,
                       representations,
                       retrieval_rows,
                       run_sweep,
                       summarize,
                       sweep_points,
                       temporal_rows,
                       tsne_rows,
)

__all__ = ["AnalysisError", "Representations", "attention_difference_rows", "attention_maps", "balanced_subset",
           "coefficient_rows", "halves", "probe", "probe_rows", "recall_at", "representations", "retrieval_rows",
           "run_sweep", "summarize", "sweep_points", "temporal_rows", "tsne_rows"]
