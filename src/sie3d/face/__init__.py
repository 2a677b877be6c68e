"""Photo -> face observation: MediaPipe landmarks, blendshapes and pose, plus an SFace identity embedding."""

from __future__ import annotations

from dataclasses import replace

from sie3d.face.observation import FaceObservation
from sie3d.photo import Photo


def observe_photo(photo: Photo, observer, embedder, face: int = 0) -> tuple[FaceObservation, list[FaceObservation]]:
    """The chosen face with its identity embedding, and every face found (largest first).

    `observer` is a `landmarker.FaceObserver`, `embedder` an `sface.IdentityEmbedder`; both are passed in
    so that a caller processing many photos loads the models once.
    """
    chosen, faces = observer.observe(photo, face=face)
    chosen = replace(chosen, identity=embedder(photo.rgb, chosen))
    return chosen, [chosen if f.index == chosen.index else f for f in faces]
