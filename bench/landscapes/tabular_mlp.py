"""Writes the model of the `tabular_mlp` landscapes: a scikit-learn MLP classifier, as ONNX.

A model family no default of the search was chosen on: a dense network (two hidden layers of
1024 and 512 units) on a synthetic table of 256 features and 8 classes, trained for a few
epochs with scikit-learn and converted with skl2onnx (class probabilities as a plain tensor).
One sample is about 0.8 million multiply-adds: on 2 cores a request's cost is Triton's path as
much as the network, and batching decides much.

    python bench/landscapes/tabular_mlp.py      # -> model_repository/tabular_mlp/1/model.onnx
"""

from __future__ import annotations

import warnings

from _sklearn_onnx import write_classifier
from sklearn.datasets import make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier


def main() -> None:
    x, y = make_classification(
        n_samples=4000, n_features=256, n_informative=48, n_classes=8, n_clusters_per_class=2, random_state=0
    )
    x = x.astype("float32")
    mlp = MLPClassifier(hidden_layer_sizes=(1024, 512), max_iter=8, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # a few epochs are enough for a benchmark
        mlp.fit(x, y)
    write_classifier(mlp, x, y, "tabular_mlp")


if __name__ == "__main__":
    main()
