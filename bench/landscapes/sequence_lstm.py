"""Writes the model of the `sequence_lstm` landscape: a recurrent sequence classifier, as ONNX.

A model family no default of the search was chosen on: token ids (INT64, [N, 64], a vocabulary of
1000) -> an embedding of 128 -> one LSTM layer of 256 units over the 64 steps -> its last state ->
4 class scores. The weights are drawn at random with a fixed seed: the speed of the graph, not
what it predicts, is what the landscape measures (the tuner's accuracy check compares each variant
with the FP32 model). One sample is about 25 million multiply-adds in 64 dependent steps, so a
batch turns the steps' matrix-vector products into matrix products.

    python bench/landscapes/sequence_lstm.py    # -> model_repository/sequence_lstm/1/model.onnx
"""

from __future__ import annotations

import io
from pathlib import Path

import onnx
import torch

OUT = Path(__file__).resolve().parents[2] / "model_repository" / "sequence_lstm" / "1" / "model.onnx"
STEPS = 64


class SequenceClassifier(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embedding = torch.nn.Embedding(1000, 128)
        self.lstm = torch.nn.LSTM(128, 256, batch_first=True)
        self.head = torch.nn.Linear(256, 4)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        _, (state, _) = self.lstm(self.embedding(tokens))
        return self.head(state[-1])


def main() -> None:
    torch.manual_seed(0)
    model = SequenceClassifier().eval()
    buffer = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(
            model,
            (torch.zeros(2, STEPS, dtype=torch.int64),),
            buffer,
            input_names=["tokens"],
            output_names=["scores"],
            dynamic_axes={"tokens": {0: "batch"}, "scores": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    exported = onnx.load_from_string(buffer.getvalue())
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_bytes(exported.SerializeToString())
    print(f"{OUT}: {OUT.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
