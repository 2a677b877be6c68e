"""Held-out judges: the models that MEASURE identity and expression, never used to optimise.

- `expression.FacexJudge`: facex MobileNetV2, (H, W, 3) uint8 RGB + face -> (7,) probabilities in the
  order of `expression.CLASSES` (anger, disgust, fear, happy, neutral, sadness, surprised);
- `identity.FacenetJudge`: FaceNet InceptionResNetV1 ported to PyTorch, (H, W, 3) uint8 RGB + face ->
  (512,) unit embedding;
- `crops`: the landmark crop rule of each judge, shared by photos and renders, calibrated against the
  detectors the judges were trained with (`crop_calibration.json`, written by
  benchmarks/calibrate_judge_crops.py).

Nothing in the generation path (face/, head/, render/, export/, semantics/, perception/, avatar.py)
may import this package: tests/test_judges.py scans the source tree to enforce it. Import the
submodules directly; this file imports nothing so that loading one judge does not load the other.
"""
