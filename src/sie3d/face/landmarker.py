"""Photo -> `FaceObservation`s with MediaPipe Face Landmarker (Tasks API, mediapipe 1.2.x).

The `.task` bundle comes from the asset registry. Its own BlazeFace detector also runs on its own
(through the FaceDetector task) to give each face a detection confidence, which the landmarker does
not expose.

MediaPipe's C++ core logs to the process's stderr (file descriptor 2) whatever glog/absl flags say. This
module leaves the descriptor alone (redirecting it would swallow other threads' output); a program that
wants a clean terminal filters those lines itself (`sie3d.logs.native_logs_filtered`, the CLI does).
"""

from __future__ import annotations

import logging
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from sie3d.assets.registry import asset_file
from sie3d.errors import NoFaceError, UsageError
from sie3d.face.observation import BLENDSHAPE_NAMES, N_LANDMARKS, FaceObservation
from sie3d.photo import Photo

log = logging.getLogger(__name__)

MAX_FACES = 10


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


class FaceObserver:
    """Reusable MediaPipe face landmarker + detector. Use as a context manager, or call `close()`.

    >>> with FaceObserver() as observer:
    ...     faces = observer.observe_all(photo)
    """

    def __init__(self, task_file: Path | None = None, *, max_faces: int = MAX_FACES,
                 min_confidence: float = 0.5) -> None:
        import mediapipe as mp  # heavy import, kept out of `import sie3d`

        self._mp = mp
        task_file = task_file or asset_file("face_landmarker")
        self._create(task_file, max_faces, min_confidence)

    def _create(self, task_file: Path, max_faces: int, min_confidence: float) -> None:
        from mediapipe.tasks.python import BaseOptions, vision

        self._landmarker = vision.FaceLandmarker.create_from_options(
            vision.FaceLandmarkerOptions(
                base_options=BaseOptions(model_asset_path=str(task_file)),
                running_mode=vision.RunningMode.IMAGE,
                num_faces=max_faces,
                min_face_detection_confidence=min_confidence,
                min_face_presence_confidence=min_confidence,
                output_face_blendshapes=True,
                output_facial_transformation_matrixes=True,
            )
        )
        with zipfile.ZipFile(task_file) as bundle:
            detector_model = bundle.read("face_detector.tflite")
        self._detector = vision.FaceDetector.create_from_options(
            vision.FaceDetectorOptions(
                base_options=BaseOptions(model_asset_buffer=detector_model),
                running_mode=vision.RunningMode.IMAGE,
                min_detection_confidence=min_confidence * 0.5,
            )
        )

    def __enter__(self) -> FaceObserver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for task in (getattr(self, "_landmarker", None), getattr(self, "_detector", None)):
            if task is not None:
                task.close()
        self._landmarker = self._detector = None

    def observe_all(self, photo: Photo) -> list[FaceObservation]:
        """Every face in the photo, largest first. Empty list when there is none."""
        if self._landmarker is None:
            raise RuntimeError("FaceObserver is closed")
        image = self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=photo.rgb)
        result = self._landmarker.detect(image)
        detections = self._detector.detect(image).detections
        det_boxes = [
            (d.bounding_box.origin_x, d.bounding_box.origin_y,
             d.bounding_box.origin_x + d.bounding_box.width, d.bounding_box.origin_y + d.bounding_box.height,
             d.categories[0].score)
            for d in detections
        ]  # fmt: skip
        size = np.array([photo.width, photo.height, photo.width], np.float32)
        faces = []
        for k, points in enumerate(result.face_landmarks):
            landmarks = np.array([(p.x, p.y, p.z) for p in points], np.float32) * size
            if landmarks.shape != (N_LANDMARKS, 3):
                raise RuntimeError(f"MediaPipe returned {landmarks.shape[0]} landmarks, expected {N_LANDMARKS}")
            scores = {c.category_name: c.score for c in result.face_blendshapes[k]}
            if set(scores) != set(BLENDSHAPE_NAMES):
                unexpected = sorted(set(scores) ^ set(BLENDSHAPE_NAMES))
                raise RuntimeError(f"unexpected MediaPipe blendshape names: {unexpected}")
            blendshapes = np.array([scores[n] for n in BLENDSHAPE_NAMES], np.float32)
            box = (*landmarks[:, :2].min(0).tolist(), *landmarks[:, :2].max(0).tolist())
            overlaps = [(_iou(box, d[:4]), d[4]) for d in det_boxes]
            best = max(overlaps, default=(0.0, float("nan")))
            confidence = best[1] if best[0] > 0.3 else float("nan")
            faces.append(
                FaceObservation(
                    landmarks_px=landmarks,
                    blendshapes=blendshapes,
                    head_pose=np.asarray(result.facial_transformation_matrixes[k], np.float32),
                    box=tuple(float(v) for v in box),
                    confidence=float(confidence),
                    image_size=(photo.width, photo.height),
                )
            )
        faces.sort(key=lambda f: f.box_area, reverse=True)
        return [replace(f, index=i) for i, f in enumerate(faces)]

    def observe(self, photo: Photo, face: int = 0) -> tuple[FaceObservation, list[FaceObservation]]:
        """The chosen face (0 = largest) and all faces; `NoFaceError` when there is none."""
        faces = self.observe_all(photo)
        name = photo.path or "the image"
        if not faces:
            raise NoFaceError(
                f"no face found in {name}",
                "use a photo where one face is clearly visible, roughly frontal, at least ~100 px wide",
            )
        if not 0 <= face < len(faces):
            raise UsageError(
                f"--face {face} requested but {name} has {len(faces)} face(s)",
                f"choose --face between 0 and {len(faces) - 1} (0 = largest)",
            )
        return faces[face], faces

