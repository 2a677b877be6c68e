"""Frozen perception nets (sie3d.perception) against their original runtimes, on real photos.

- mini-Xception: Keras 3 (torch backend, no TensorFlow) loading fer's .hdf5 itself, layer by layer;
- MediaPipe's face landmark and blendshape networks: LiteRT (the TFLite runtime MediaPipe uses) on
  the same inputs, every intermediate tensor of the landmark net; and MediaPipe's own Tasks output;
- crops against OpenCV resampling; gradients reach the images; no judge is importable from here.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from sie3d.assets.registry import asset_file
from sie3d.expressions import EMOTIONS
from sie3d.face.observation import BLENDSHAPE_NAMES
from sie3d.perception.crops import (
    SFACE_SIZE,
    CropBox,
    as_srgb,
    crop,
    haar_box,
    linear_to_srgb,
    mediapipe_detection_roi,
    mediapipe_roi,
    sface_input,
    to_gray,
)
from sie3d.perception.face_mesh import (
    BLENDSHAPE_LANDMARKS,
    BLENDSHAPE_MODEL,
    LANDMARK_INPUT_SIZE,
    LANDMARK_MODEL,
    FaceMeshReader,
    load_blendshape_net,
    load_face_landmark_net,
)
from sie3d.perception.mini_xception import (
    CLASSES,
    INPUT_SIZE,
    ExpressionReader,
    MiniXception,
    load_mini_xception,
)
from sie3d.perception.tflite_graph import TFLiteFormatError, TFLiteGraph
from sie3d.photo import Photo, load_photo

from conftest import REPO

log = logging.getLogger(__name__)

# Studio photos (neutral, smiling), a posed anger and surprise, a phone photo; one is also rotated 25°.
PHOTOS = ("london_001_happy.jpg", "london_010_neutral.jpg", "max_angry.jpg", "max_surprised.jpeg", "zoom_30cm.jpg")
ROTATED = ("london_005_happy.jpg", 25.0)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _image_tensor(rgb: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) float sRGB in [0, 1]."""
    return torch.from_numpy(np.array(rgb)).permute(2, 0, 1)[None].float() / 255.0


@pytest.fixture(scope="module")
def photos(observer, faces: Path) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """name -> ((H, W, 3) uint8 RGB, (478, 3) MediaPipe landmarks px, (52,) MediaPipe blendshapes)."""
    result = {}
    for name in PHOTOS:
        photo = load_photo(faces / name)
        obs = observer.observe(photo)[0]
        result[name] = (photo.rgb, obs.landmarks_px, obs.blendshapes)
    name, degrees = ROTATED
    photo = load_photo(faces / name)
    h, w = photo.rgb.shape[:2]
    rotated = cv2.warpAffine(photo.rgb, cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0), (w, h))
    obs = observer.observe(Photo(rotated, None, (w, h), 1.0))[0]
    result[f"{name} rotated {degrees:g}°"] = (rotated, obs.landmarks_px, obs.blendshapes)
    return result


def _litert(model_bytes: bytes, preserve: bool = False):
    interpreter_module = pytest.importorskip("ai_edge_litert.interpreter")
    interpreter = interpreter_module.Interpreter(model_content=model_bytes, num_threads=1,
                                                 experimental_preserve_all_tensors=preserve)  # fmt: skip
    interpreter.allocate_tensors()
    return interpreter


def _bundle(name: str) -> bytes:
    with zipfile.ZipFile(asset_file("face_landmarker")) as bundle:
        return bundle.read(name)


@pytest.fixture(scope="module")
def landmark_net():
    return load_face_landmark_net()


@pytest.fixture(scope="module")
def blendshape_net():
    return load_blendshape_net()


@pytest.fixture(scope="module")
def mini_xception() -> MiniXception:
    return load_mini_xception()


# -- MediaPipe face landmark network vs LiteRT ------------------------------------------------------


@pytest.fixture(scope="module")
def landmark_crops(photos: dict) -> tuple[list[str], torch.Tensor]:
    """(names, (N, 3, 256, 256) sRGB crops by MediaPipe's landmark ROI rule)."""
    names = list(photos)
    crops = [crop(_image_tensor(rgb), mediapipe_roi(torch.from_numpy(lm)[None]), LANDMARK_INPUT_SIZE)
             for rgb, lm, _ in photos.values()]  # fmt: skip
    return names, torch.cat(crops)


def test_landmark_net_matches_litert_on_real_faces(landmark_net, landmark_crops) -> None:
    names, crops = landmark_crops
    interpreter = _litert(_bundle(LANDMARK_MODEL))
    inp, outs = interpreter.get_input_details()[0]["index"], interpreter.get_output_details()
    with torch.no_grad():
        port = landmark_net(crops)
        raw = landmark_net.graph(crops.permute(0, 2, 3, 1))
    worst_xy, worst_presence = 0.0, 0.0
    for k, name in enumerate(names):
        interpreter.set_tensor(inp, crops[k : k + 1].permute(0, 2, 3, 1).numpy().copy())
        interpreter.invoke()
        for graph_out, detail in zip(raw, outs, strict=True):
            reference = interpreter.get_tensor(detail["index"])
            err = np.abs(graph_out[k : k + 1].numpy().reshape(reference.shape) - reference).max()
            assert err < 2e-3 * max(1.0, np.abs(reference).max()), f"{name} {detail['name']}: {err}"
        reference_xyz = interpreter.get_tensor(outs[0]["index"]).reshape(478, 3)
        worst_xy = max(worst_xy, float(np.abs(port.landmarks[k, :, :2].numpy() - reference_xyz[:, :2]).max()))
        presence = 1 / (1 + np.exp(-interpreter.get_tensor(outs[1]["index"]).item()))
        worst_presence = max(worst_presence, abs(port.presence[k].item() - presence))
        assert port.presence[k] > 0.9, f"{name}: face presence {port.presence[k]:.3f}"
    log.info("face landmark port vs LiteRT over %d real crops: max |xy| %.2e crop px, max |presence| %.1e",
             len(names), worst_xy, worst_presence)  # fmt: skip
    assert worst_xy < 5e-3, f"landmarks differ by {worst_xy:.2e} crop px (of 256)"


def test_landmark_net_matches_litert_tensor_by_tensor(landmark_net, landmark_crops) -> None:
    """Every intermediate activation of one real crop, relative to that tensor's range."""
    _, crops = landmark_crops
    interpreter = _litert(_bundle(LANDMARK_MODEL), preserve=True)
    x = crops[:1].permute(0, 2, 3, 1).contiguous()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x.numpy().copy())
    interpreter.invoke()
    with torch.no_grad():
        ours = landmark_net.graph.outputs_of(x)
    worst = (0.0, "")
    for index, value in ours.items():
        reference = interpreter.get_tensor(index)
        relative = np.abs(value.numpy().reshape(reference.shape) - reference).max() / max(np.abs(reference).max(), 1e-6)
        worst = max(worst, (float(relative), landmark_net.graph.tensors[index].name))
    log.info("landmark net, %d activations: worst relative difference %.2e (%s)", len(ours), *worst)
    assert len(ours) == len(landmark_net.graph.ops) + 1 and worst[0] < 1e-4, worst  # + the input


def test_landmark_net_is_batched_and_rejects_wrong_input(landmark_net, landmark_crops) -> None:
    _, crops = landmark_crops
    with torch.no_grad():
        together = landmark_net(crops[:3]).landmarks
        alone = torch.cat([landmark_net(crops[k : k + 1]).landmarks for k in range(3)])
    assert torch.allclose(together, alone, atol=1e-3)
    with pytest.raises(ValueError, match=r"\(B, 3, 256, 256\)"):
        landmark_net(crops.permute(0, 2, 3, 1))


# -- blendshape network ---------------------------------------------------------------------------


def test_blendshape_net_matches_litert_and_mediapipe(blendshape_net, photos: dict) -> None:
    """MediaPipe's own landmarks through the 146-point subset give MediaPipe's own scores (which
    checks the subset and the pixel convention), and the port equals LiteRT on them."""
    interpreter = _litert(_bundle(BLENDSHAPE_MODEL))
    inp, out = interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"]
    landmarks = torch.from_numpy(np.stack([lm for _, lm, _ in photos.values()]))
    with torch.no_grad():
        port = blendshape_net.from_landmarks(landmarks).numpy()
    worst_runtime = worst_mediapipe = 0.0
    for k, (_, lm, scores) in enumerate(photos.values()):
        interpreter.set_tensor(inp, lm[None, list(BLENDSHAPE_LANDMARKS), :2].astype(np.float32))
        interpreter.invoke()
        worst_runtime = max(worst_runtime, float(np.abs(port[k] - interpreter.get_tensor(out)).max()))
        worst_mediapipe = max(worst_mediapipe, float(np.abs(port[k] - scores).max()))
    log.info("blendshape port: max |score - LiteRT| %.1e, max |score - MediaPipe Tasks| %.1e", worst_runtime,
             worst_mediapipe)  # fmt: skip
    assert port.shape == (len(photos), len(BLENDSHAPE_NAMES))
    assert worst_runtime < 5e-5 and worst_mediapipe < 1e-4


def test_blendshape_net_ignores_the_pixel_frame(blendshape_net, photos: dict) -> None:
    """The network centres and scales its input: a shifted, scaled copy of a face reads the same."""
    lm = torch.from_numpy(photos["max_angry.jpg"][1])[None]
    moved = lm.clone()
    moved[..., :2] = lm[..., :2] * 0.37 + torch.tensor([55.0, -20.0])
    with torch.no_grad():
        assert torch.allclose(blendshape_net.from_landmarks(lm), blendshape_net.from_landmarks(moved), atol=1e-5)


# -- the chain on real photos ---------------------------------------------------------------------


def _chain_vs_mediapipe(reader: FaceMeshReader, rgb: np.ndarray, lm: np.ndarray, scores: np.ndarray,
                        roi: CropBox | None) -> tuple[float, float, float, float]:
    """(median, max landmark distance in eye distances, mean, max |blendshape difference|) between the
    chain -- read through `roi`, or the landmark ROI when None -- and MediaPipe's Tasks output."""
    with torch.no_grad():
        if roi is None:
            reading = reader(_image_tensor(rgb), torch.from_numpy(lm)[None])
            xy, blend, presence = reading.landmarks_px[0, :, :2], reading.blendshapes[0], reading.presence[0]
        else:
            out = reader.landmark_net(crop(_image_tensor(rgb), roi, LANDMARK_INPUT_SIZE))
            xy = roi.to_image(out.landmarks[..., :2], LANDMARK_INPUT_SIZE)[0]
            blend, presence = reader.blendshape_net(xy[None, list(BLENDSHAPE_LANDMARKS)])[0], out.presence[0]
    assert presence > 0.9
    error = np.linalg.norm(xy.numpy() - lm[:, :2], axis=1) / np.linalg.norm(lm[263, :2] - lm[33, :2])
    difference = np.abs(blend.numpy() - scores)
    return float(np.median(error)), float(error.max()), float(difference.mean()), float(difference.max())


def test_chain_with_mediapipe_detector_crop_reproduces_mediapipe(landmark_net, blendshape_net, photos: dict) -> None:
    """MediaPipe places its first crop on a still photo from its face detector. Given that crop (from
    the detector's rounded pixel box), the chain reproduces MediaPipe's landmarks and blendshapes."""
    vision = pytest.importorskip("mediapipe.tasks.python.vision")
    from mediapipe import Image, ImageFormat
    from mediapipe.tasks.python import BaseOptions

    with zipfile.ZipFile(asset_file("face_landmarker")) as bundle:
        detector_model = bundle.read("face_detector.tflite")
    options = vision.FaceDetectorOptions(base_options=BaseOptions(model_asset_buffer=detector_model))
    reader, rows = FaceMeshReader(landmark_net, blendshape_net), []
    with vision.FaceDetector.create_from_options(options) as detector:
        for name, (rgb, lm, scores) in photos.items():
            found = detector.detect(Image(image_format=ImageFormat.SRGB, data=np.ascontiguousarray(rgb))).detections
            best = max(found, key=lambda d: d.bounding_box.width)
            b, (height, width) = best.bounding_box, rgb.shape[:2]
            eyes = [torch.tensor([[k.x * width, k.y * height]]) for k in best.keypoints[:2]]
            box = torch.tensor([[b.origin_x, b.origin_y, b.origin_x + b.width, b.origin_y + b.height]]).float()
            rows.append((name, *_chain_vs_mediapipe(reader, rgb, lm, scores, mediapipe_detection_roi(box, *eyes))))
    for row in rows:
        log.info("detector crop, %s: landmarks median %.4f / max %.4f eye distances; blendshapes mean %.3f / max %.3f",
                 *row)  # fmt: skip
    assert max(r[1] for r in rows) < 0.01 and max(r[2] for r in rows) < 0.03, rows
    assert max(r[3] for r in rows) < 0.02 and max(r[4] for r in rows) < 0.15, rows


def test_chain_with_landmark_crop_reads_photos_like_mediapipe(landmark_net, blendshape_net, photos: dict) -> None:
    """The chain as a render uses it: crop placed from landmarks by MediaPipe's tracking rule. This ROI
    differs from the detector's, and the networks' reading moves with it: close to MediaPipe, not equal."""
    reader, rows = FaceMeshReader(landmark_net, blendshape_net), []
    for name, (rgb, lm, scores) in photos.items():
        rows.append((name, *_chain_vs_mediapipe(reader, rgb, lm, scores, None)))
    for row in rows:
        log.info("landmark crop, %s: landmarks median %.4f / max %.4f eye distances; blendshapes mean %.3f / max %.3f",
                 *row)  # fmt: skip
    assert max(r[1] for r in rows) < 0.025 and max(r[2] for r in rows) < 0.12, rows
    assert max(r[3] for r in rows) < 0.05 and max(r[4] for r in rows) < 0.45, rows


def test_chain_accepts_linear_renders(landmark_net, blendshape_net, photos: dict) -> None:
    """color="linear" converts to sRGB first: a linearised photo reads as the photo itself."""
    reader = FaceMeshReader(landmark_net, blendshape_net)
    rgb, lm, _ = photos["london_001_happy.jpg"]
    image = _image_tensor(rgb)
    linear = torch.where(image <= 0.04045, image / 12.92, ((image + 0.055) / 1.055) ** 2.4)
    landmarks = torch.from_numpy(lm)[None]
    with torch.no_grad():
        a, b = reader(image, landmarks), reader(linear, landmarks, color="linear")
    assert (a.landmarks_px - b.landmarks_px).abs().max() < 0.05
    assert (a.blendshapes - b.blendshapes).abs().max() < 1e-3
    with pytest.raises(ValueError, match="color"):
        reader(image, landmarks, color="rec709")


# -- mini-Xception vs Keras -----------------------------------------------------------------------


def _fer_faces(reader: ExpressionReader, photos: dict) -> torch.Tensor:
    """(N, 1, 64, 64) in [-1, 1]: each photo's face cropped for mini-Xception by the differentiable crop."""
    boxes = [haar_box(torch.from_numpy(lm)[None]) for _, lm, _ in photos.values()]
    return torch.cat([reader.faces(_image_tensor(rgb), box) for (rgb, _, _), box in zip(photos.values(), boxes,
                                                                                         strict=True)])


def test_mini_xception_matches_keras_layer_by_layer(mini_xception: MiniXception, photos: dict, tmp_path: Path) -> None:
    if importlib.util.find_spec("keras") is None:  # importing it here would pick a backend for this process
        pytest.skip("keras is not installed (pip install -e .[test])")
    faces = _fer_faces(ExpressionReader(mini_xception), photos)
    np.savez(tmp_path / "in.npz", faces=faces.permute(0, 2, 3, 1).numpy())
    env = {**os.environ, "KERAS_BACKEND": "torch", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(REPO / "tests" / "keras_reference.py"), str(asset_file("mini_xception")),
                           str(tmp_path / "in.npz"), str(tmp_path / "out.npz")], capture_output=True, text=True,
                          env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    reference = np.load(tmp_path / "out.npz")
    with torch.no_grad():
        ours = mini_xception.outputs(faces)
        probabilities = mini_xception.probabilities(faces).numpy()
    compared = 0
    for name, value in ours.items():
        if name == mini_xception.input_name:
            continue
        expected = reference[name]
        got = value.numpy().transpose(0, 2, 3, 1) if value.ndim == 4 else value.numpy()
        relative = np.abs(got - expected).max() / max(np.abs(expected).max(), 1e-6)
        assert relative < 1e-5, f"layer {name}: relative difference {relative:.2e}"
        compared += 1
    difference = np.abs(probabilities - reference["predictions"]).max()
    log.info("mini-Xception vs Keras %s: %d layers, max |probability difference| %.1e over %d real faces",
             reference["__version__"], compared, difference, len(faces))  # fmt: skip
    assert compared == len(mini_xception.order) and difference < 1e-5
    assert list(CLASSES) == ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]


def test_differentiable_fer_crop_equals_fer_preprocessing(photos: dict) -> None:
    """The crop equals fer's own steps (gray, integer box slice, cv2.resize bilinear) for an integer box."""
    rgb, lm, _ = photos["london_010_neutral.jpg"]
    box = haar_box(torch.from_numpy(lm)[None])
    side = float(np.round(box.side.item()))
    x0, y0 = (float(np.round(v - side / 2)) for v in box.centre[0].tolist())
    integer_box = CropBox(torch.tensor([[x0 + side / 2, y0 + side / 2]]), torch.tensor([side]), torch.zeros(1))
    ours = crop(to_gray(_image_tensor(rgb)), integer_box, INPUT_SIZE)[0, 0].numpy() * 255
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    fer = cv2.resize(gray[int(y0) : int(y0 + side), int(x0) : int(x0 + side)], (INPUT_SIZE, INPUT_SIZE))
    # fer rounds the gray image to uint8 first and cv2.resize rounds its output: at most ~1 grey level apart.
    assert np.abs(ours - fer.astype(np.float32)).max() < 1.6


def test_mini_xception_reads_neutral_photos(mini_xception: MiniXception, london_observations: dict,
                                            faces: Path) -> None:  # fmt: skip
    """Sanity of the crop and input range on the 24 neutral studio photos (a prototype measured 0.96 there)."""
    names = sorted(n for n in london_observations if n.endswith("_neutral"))
    reader, predicted = ExpressionReader(mini_xception), []
    for name in names:
        lm = torch.from_numpy(london_observations[name].landmarks_px)[None]
        image = _image_tensor(load_photo(faces / f"{name}.jpg").rgb)
        with torch.no_grad():
            reading = reader(image, lm)
        sad = reading.probabilities[0, CLASSES.index("sad")]
        assert torch.equal(reading.emotions[0, EMOTIONS.index("sadness")], sad)
        predicted.append(EMOTIONS[int(reading.emotions[0].argmax())])
    accuracy = float(np.mean([p == "neutral" for p in predicted]))
    log.info("mini-Xception on %d neutral studio photos: %.2f read as neutral", len(names), accuracy)
    assert accuracy >= 0.8


def test_sface_crop_equals_the_project_alignment(photos: dict) -> None:
    """`sface_input` (a differentiable box crop) equals sie3d.face.align.align_face (cv2.warpAffine), and
    SFace reads the two the same; the gradient of an identity loss reaches the image."""
    from sie3d.face.align import align_face
    from sie3d.face.sface import CROP_SIZE, load_sface

    assert CROP_SIZE == SFACE_SIZE
    sface = load_sface()
    names = list(photos)
    ours = torch.cat([sface_input(_image_tensor(rgb), torch.from_numpy(lm)[None]) for rgb, lm, _ in photos.values()])
    reference = np.stack([align_face(rgb, lm) for rgb, lm, _ in photos.values()])
    difference = np.abs(ours.permute(0, 2, 3, 1).numpy() - reference)
    assert difference[:, 2:-2, 2:-2].max() < 2.0, f"max {difference.max():.2f} grey levels"  # cv2 rounds to uint8
    with torch.no_grad():
        cosine = (sface.embed(ours) * sface.embed(torch.from_numpy(reference).permute(0, 3, 1, 2).float())).sum(1)
    log.info("SFace on the differentiable crop vs cv2's: min cosine %.6f over %s", cosine.min().item(), names)
    assert cosine.min() > 0.999
    rgb, lm, _ = photos["london_001_happy.jpg"]
    image = _image_tensor(rgb).requires_grad_(True)
    other = reference[names.index("london_010_neutral.jpg")]
    target = sface.embed(torch.from_numpy(other).permute(2, 0, 1)[None].float())
    (grad,) = torch.autograd.grad((sface.embed(sface_input(image, torch.from_numpy(lm)[None])) * target).sum(), image)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


# -- crops, colour ----------------------------------------------------------------------------------


def test_crop_equals_opencv_warp_for_a_rotated_box() -> None:
    rng = np.random.default_rng(3)
    image = rng.uniform(0, 1, (90, 120, 3)).astype(np.float32)
    box = CropBox(torch.tensor([[61.3, 40.7]]), torch.tensor([47.5]), torch.tensor([0.4]))
    size = 32
    ours = crop(torch.from_numpy(image).permute(2, 0, 1)[None], box, size)[0].permute(1, 2, 0).numpy()
    # OpenCV: destination pixel index (i, j) -> source index p - 0.5 with p the continuous point.
    rot = box.rotation()[0].double().numpy()
    scale = box.side.item() / size
    linear = rot * scale
    offset = box.centre[0].double().numpy() + rot @ np.array([-box.side.item() / 2] * 2) + linear @ [0.5, 0.5] - 0.5
    matrix = np.concatenate([linear, offset[:, None]], 1)
    reference = cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0)  # fmt: skip
    assert np.abs(ours - reference)[2:-2, 2:-2].max() < 2e-3  # OpenCV's fixed-point weights: 1/32 steps
    points = torch.tensor([[[3.0, 4.0], [31.5, 0.25]]])
    assert torch.allclose(box.to_crop(box.to_image(points, size), size), points, atol=1e-4)


def test_crop_gradcheck() -> None:
    """Bilinear crops are differentiable in the image and in the box placement (float64, generic positions)."""
    image = torch.rand(1, 2, 9, 11, dtype=torch.float64, requires_grad=True)
    centre = torch.tensor([[5.3, 4.1]], dtype=torch.float64, requires_grad=True)
    side = torch.tensor([6.7], dtype=torch.float64, requires_grad=True)
    angle = torch.tensor([0.31], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, c, s, a: crop(x, CropBox(c, s, a), 5), (image, centre, side, angle))


def test_mediapipe_roi_known_value() -> None:
    """A tilted square of landmarks: centre of their box, 1.5 x the longer side, angle of 33 -> 263."""
    lm = torch.zeros(1, 478, 2)
    lm[0, :, 0] = torch.linspace(100, 300, 478)
    lm[0, :, 1] = torch.linspace(50, 170, 478)
    lm[0, 33], lm[0, 263] = torch.tensor([150.0, 100.0]), torch.tensor([250.0, 100.0 + 100.0 * np.tan(0.3)])
    roi = mediapipe_roi(lm)
    assert torch.allclose(roi.centre, torch.tensor([[200.0, 110.0]]))
    assert roi.side.item() == pytest.approx(300.0) and roi.angle.item() == pytest.approx(0.3, abs=1e-6)


def test_colour_helpers() -> None:
    x = torch.tensor([0.0, 0.002, 0.2, 1.0, 1.5], requires_grad=True)
    srgb = linear_to_srgb(x)
    v = x.detach().clamp(0, 1).numpy()
    expected = np.where(v <= 0.0031308, 12.92 * v, 1.055 * v ** (1 / 2.4) - 0.055)
    assert np.allclose(srgb.detach().numpy(), expected, atol=1e-6)
    srgb.sum().backward()
    assert torch.isfinite(x.grad).all()
    assert to_gray(torch.ones(2, 3, 4, 5)).shape == (2, 1, 4, 5)
    with pytest.raises(ValueError):
        as_srgb(torch.zeros(1, 4, 8, 8), "srgb")


# -- gradients, frozen weights ---------------------------------------------------------------------


def test_gradients_reach_the_images(landmark_net, blendshape_net, mini_xception: MiniXception, photos: dict) -> None:
    """Each net's output, through its differentiable crop, has a finite non-zero gradient on the image,
    and a small step along it moves the output the right way. No weight needs or gets a gradient."""
    rgb, lm, _ = photos["london_001_happy.jpg"]
    landmarks = torch.from_numpy(lm)[None]
    image = _image_tensor(rgb).requires_grad_(True)
    reader = FaceMeshReader(landmark_net, blendshape_net)

    def smile(x: torch.Tensor) -> torch.Tensor:
        scores = reader(x, landmarks).blendshapes[0]
        return scores[BLENDSHAPE_NAMES.index("mouthSmileLeft")] + scores[BLENDSHAPE_NAMES.index("mouthSmileRight")]

    expression = ExpressionReader(mini_xception)

    def happy(x: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(expression(x, landmarks).logits, -1)[0, CLASSES.index("happy")]

    for name, objective in (("blendshape smile", smile), ("mini-Xception happy", happy)):
        value = objective(image)
        (grad,) = torch.autograd.grad(value, image)
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0, name
        with torch.no_grad():
            lower = objective(image - 0.5 * grad / grad.abs().max())
        assert lower < value, f"{name}: {value.item():.4f} -> {lower.item():.4f} against its gradient"
    for module in (landmark_net, blendshape_net, mini_xception, reader, expression):
        assert not module.training and not any(p.requires_grad for p in module.parameters())
        assert sum(p.numel() for p in module.parameters()) > 50_000


def test_render_to_blendshapes_is_a_differentiable_signal(happy, models, landmark_net, blendshape_net,
                                                         mini_xception: MiniXception) -> None:  # fmt: skip
    """render -> 478 landmarks -> 52 blendshapes on the reconstructed avatar of a smiling photo: the render
    reads as a face, the networks find the projected model landmarks, the smile shows, and the gradient
    of MediaPipe's smile score reaches the 53 expression coefficients through the renderer. The same
    render through mini-Xception and SFace (the other loss terms) gives gradients too."""
    from sie3d.head.names import ICT_NAMES
    from sie3d.head.texture import render_layout
    from sie3d.previews import BACKGROUND, STUDIO_LIGHT, TexturedHead
    from sie3d.render import orbit_cameras, render_mesh
    from sie3d.render.camera import project

    head = models.head
    textured = TexturedHead.build(head, render_layout(head), happy.textures)
    faces_t, size = torch.from_numpy(head.topology.faces), 384
    identity = torch.from_numpy(happy.fit.identity)[None]
    skin = np.unique(head.topology.faces[head.topology.faces_of("M_Face")])
    with torch.no_grad():
        target = head(identity, torch.zeros(1, len(ICT_NAMES)))[0, skin].mean(0) + torch.tensor([0.0, 1.0, -3.0])
    cams = orbit_cameras([0.0], distance=1.2 * 33.0, target=target, focal_px=1.2 * size, width=size, height=size)
    reader = FaceMeshReader(landmark_net, blendshape_net)
    smile = [BLENDSHAPE_NAMES.index("mouthSmileLeft"), BLENDSHAPE_NAMES.index("mouthSmileRight")]

    def read(expression: torch.Tensor):
        out = render_mesh(head(identity, expression)[0], faces_t, cams, uv=torch.from_numpy(textured.layout.uvs),
                          uv_faces=torch.from_numpy(textured.layout.uv_faces), texture=textured.tiles,
                          face_mask=torch.from_numpy(textured.layout.visible_faces), light=STUDIO_LIGHT,
                          background=BACKGROUND)  # fmt: skip
        landmarks_px, _ = project(models.fitter.points(identity, expression)[0], cams)
        image = out.rgb.permute(0, 3, 1, 2)
        return reader(image, landmarks_px, color="linear"), landmarks_px, image

    expression = torch.from_numpy(happy.fit.expression.astype(np.float32))[None].requires_grad_(True)
    reading, projected, image = read(expression)
    score = reading.blendshapes[0, smile].sum()
    emotion = ExpressionReader(mini_xception)(image, projected, color="linear")
    sface = models.embedder.model
    same_person = (sface.embed(sface_input(image, projected, color="linear"))[0]
                   * torch.from_numpy(happy.observation.identity)).sum()  # fmt: skip
    for name, value in (("mini-Xception happy", emotion.logits[0, CLASSES.index("happy")]),
                        ("SFace cosine to the photo", same_person)):  # fmt: skip
        (other,) = torch.autograd.grad(value, expression, retain_graph=True)
        log.info("render: %s %.3f, |gradient on the coefficients| max %.3g", name, value.item(), other.abs().max())
        assert torch.isfinite(other).all() and other.abs().max() > 0, name
    assert emotion.probabilities[0].argmax() == CLASSES.index("happy") and same_person > 0.5
    (grad,) = torch.autograd.grad(score, expression)
    detected = reading.landmarks_px[0, :468, :2].detach()
    eye_distance = (projected[0, 263] - projected[0, 33]).norm().detach()
    error = ((detected - projected[0].detach()).norm(dim=1) / eye_distance).median().item()
    photo_smile = float(happy.observation.blendshapes[smile].sum())
    log.info("render of the smiling avatar: presence %.3f, landmarks vs projected model points median %.3f eye "
             "distances, MediaPipe smile %.2f (photo %.2f), |d smile / d coefficients| max %.3g",
             reading.presence.item(), error, score.item(), photo_smile, grad.abs().max().item())  # fmt: skip
    assert reading.presence.item() > 0.9 and error < 0.06 and score.item() > 0.6
    assert torch.isfinite(grad).all() and grad.abs().max() > 0
    with torch.no_grad():
        stepped = (expression - 0.1 * grad / grad.abs().max()).clamp(0, 1)
        lower = read(stepped)[0].blendshapes[0, smile].sum()
    assert lower < score, f"smile {score.item():.3f} -> {lower.item():.3f} against its gradient"


def test_unsupported_tflite_is_refused() -> None:
    with pytest.raises(TFLiteFormatError):
        TFLiteGraph(b"not a flatbuffer at all", "junk")


# -- held-out judges stay out ----------------------------------------------------------------------


def test_no_judge_is_importable_from_the_perception_package() -> None:
    """Importing every perception module (and the generation entry point) loads no held-out judge."""
    code = (
        "import sys, pkgutil, importlib, sie3d.perception as p\n"
        "for m in pkgutil.iter_modules(p.__path__): importlib.import_module('sie3d.perception.' + m.name)\n"
        "import sie3d.avatar\n"
        "leaks = sorted(m for m in sys.modules if m.startswith('sie3d.eval'))\n"
        "print(','.join(leaks))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "", f"held-out evaluation modules imported: {proc.stdout.strip()}"
