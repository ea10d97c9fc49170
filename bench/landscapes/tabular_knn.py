"""Writes the model of the `tabular_knn` landscapes: a scikit-learn nearest-neighbours classifier, as ONNX.

A model family no default of the search was chosen on, recorded after the warm start learned to
drop an accelerator that cannot load the model: instance-based, no weights to multiply but the
whole training table to compare with. Each sample's class comes from its 15 nearest neighbours
among 3,000 stored rows of 64 features (a distance to every row, then a top-k), converted with
skl2onnx (class probabilities as a plain tensor). The work grows with the batch and the table,
not with a network's depth.

    python bench/landscapes/tabular_knn.py      # -> model_repository/tabular_knn/1/model.onnx
"""

from __future__ import annotations

from _sklearn_onnx import write_classifier
from sklearn.datasets import make_classification
from sklearn.neighbors import KNeighborsClassifier


def main() -> None:
    x, y = make_classification(
        n_samples=3000, n_features=64, n_informative=24, n_classes=6, n_clusters_per_class=2, random_state=1
    )
    x = x.astype("float32")
    knn = KNeighborsClassifier(n_neighbors=15).fit(x, y)
    write_classifier(knn, x, y, "tabular_knn")


if __name__ == "__main__":
    main()
