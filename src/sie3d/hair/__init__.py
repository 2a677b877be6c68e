"""Hair from the photo.

- `segmentation`: MediaPipe selfie segmentation (person probability) through sie3d's .tflite -> torch converter;
- `mask`: photo + face landmarks -> `HairMask` (which pixels are hair, a confidence, bald / headwear verdicts).

Hair geometry and texture are later stages; nothing here is used by `reconstruct` yet.
"""
