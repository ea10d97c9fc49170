"""Post-processing of the OCR pipeline (Triton python backend).

The detector's text probability map -> the share of pixels above the threshold (the config's
``threshold`` parameter) and the number of text regions: the connected components of the
thresholded map, as PaddleOCR's DB post-processing finds boxes before it fits them.
"""

import json

import numpy as np
import triton_python_backend_utils as pb_utils
from scipy import ndimage


class TritonPythonModel:
    def initialize(self, args):
        parameters = json.loads(args["model_config"]).get("parameters", {})
        self.threshold = float(parameters.get("threshold", {}).get("string_value", "0.3"))

    def execute(self, requests):
        responses = []
        for request in requests:
            maps = pb_utils.get_input_tensor_by_name(request, "probability").as_numpy()
            masks = maps[:, 0] > self.threshold
            fraction = masks.mean(axis=(1, 2)).astype(np.float32).reshape(-1, 1)
            regions = np.array([ndimage.label(mask)[1] for mask in masks], dtype=np.int32).reshape(-1, 1)
            outputs = [pb_utils.Tensor("text_fraction", fraction), pb_utils.Tensor("text_regions", regions)]
            responses.append(pb_utils.InferenceResponse(output_tensors=outputs))
        return responses
