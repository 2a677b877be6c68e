"""Frozen perception networks as differentiable PyTorch modules, for losses on renders.

- `mini_xception`: the expression classifier (7 classes) from fer's Keras .hdf5 (`load_mini_xception`);
- `face_mesh`: MediaPipe's face landmark (478 points) and blendshape (52 scores) networks from the
  face landmarker .task bundle, and `FaceMeshReader`, their chain image -> landmarks -> blendshapes;
- `crops`: differentiable face crops placed from landmarks the way each network is fed;
- `tflite_graph`: the .tflite flatbuffer -> torch converter behind `face_mesh`.

SFace (identity) is `sie3d.face.sface`. Every module takes batched (B, C, H, W) float tensors, keeps
its weights frozen (``requires_grad=False``, eval mode) and imposes no ``torch.no_grad``, so gradients
reach the input images. Weights come from the asset registry only. The held-out judges
(`sie3d.eval.judges`) are never imported here: what a loss uses is not what the evaluation reports.
Import the submodules directly; this file imports nothing.
"""
