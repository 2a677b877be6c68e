"""Hair from the photo, and a hair volume on the avatar.

- `segmentation`: MediaPipe selfie segmentation (person probability) through sie3d's .tflite -> torch converter;
- `mask`: photo + face landmarks -> `HairMask` (which pixels are hair, a confidence, bald / headwear verdicts);
- `geometry`: mask + fitted head -> `HairMesh`, a shell over the scalp shaped by the photo's hair outline;
- `texture`: the shell's RGBA texture from the photo, synthesized where the photo does not see it;
- `volume`: the stages chained (`build_hair` -> `Hair`); `render`: drawing a `Hair` over a rendered head.

Used by `reconstruct` when `ReconstructConfig.hair.enabled` (on by default).
"""
