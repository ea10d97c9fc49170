"""Pre-processing of the OCR pipeline (Triton python backend).

An HWC uint8 image -> the float CHW tensor the PP-OCRv4 detector takes: scaled to [0, 1] and
normalized with the ImageNet mean and deviation per channel, as PaddleOCR's detector expects.
The requests of one execution (a batch the dynamic batcher formed) are normalized together.
"""

import numpy as np
import triton_python_backend_utils as pb_utils

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32).reshape(1, 3, 1, 1)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32).reshape(1, 3, 1, 1)


class TritonPythonModel:
    def execute(self, requests):
        images = [pb_utils.get_input_tensor_by_name(r, "image").as_numpy() for r in requests]
        batch = np.concatenate(images).transpose(0, 3, 1, 2).astype(np.float32)
        normalized = (batch / 255.0 - MEAN) / STD
        responses, start = [], 0
        for image in images:
            part = np.ascontiguousarray(normalized[start : start + len(image)])
            start += len(image)
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("x", part)]))
        return responses
