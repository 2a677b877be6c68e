"""SFace port (sie3d.face.sface) and 5-point alignment (sie3d.face.align) on real photos.

Real models, no mocks: MediaPipe observes each shared photo once, the torch port is
compared with onnxruntime running the original int8 ONNX file, and identity separation is measured on
the 24 London people (neutral and happy photo each).
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from sie3d.assets.registry import asset_file
from sie3d.face.align import (
    TEMPLATE_112,
    align_face,
    align_matrix,
    five_points,
    similarity_transform,
    template,
    warp_crop,
)
from sie3d.face.observation import FaceObservation
from sie3d.face.sface import (
    IdentityEmbedder,
    SFace,
    cosine,
    crops_to_tensor,
    dequantize_linear,
    fold_batchnorm,
    layer_arrays,
    layers_from_arrays,
    load_sface,
)
from sie3d.photo import load_photo

from conftest import london_people

log = logging.getLogger(__name__)

LONDON = [f"{person}_{e}.jpg" for person in london_people() for e in ("neutral", "happy")]  # 24 x 2 photos
# Other people, sizes and sources: a 115 px photo, a 1536 px one, PNG and JPEG, several skin tones.
OTHERS = ["mpl_grace_hopper.jpg", "skimage_astronaut.png", "singnet_adele_2016.jpg", "max_Paul.jpeg",
          "zoom_60cm.jpg", "max_Bryan.png"]  # fmt: skip
BATCH = 8


# -- fixtures: every photo is observed and every crop embedded once ---------------------------------


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Torch and onnxruntime on one thread each for this module. The machine's 2 cores are shared with
    other jobs, and two spinning OpenMP threads on a busy machine made the file 2.5x slower (55 s vs
    21 s measured); results do not depend on the thread count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def observed(london_observations: dict, observer, faces: Path) -> dict[str, tuple[np.ndarray, FaceObservation]]:
    """photo name -> ((H, W, 3) uint8 RGB, observation of its largest face); the London photos come
    from the session-wide observations of conftest, the others are observed here, once."""
    result = {}
    for name in LONDON + OTHERS:
        photo = load_photo(faces / name)
        obs = london_observations.get(Path(name).stem) or observer.observe(photo)[0]
        result[name] = (photo.rgb, obs)
    return result


@pytest.fixture(scope="module")
def crops(observed: dict) -> dict[str, np.ndarray]:
    """photo name -> (112, 112, 3) uint8 aligned RGB crop."""
    return {name: align_face(rgb, obs) for name, (rgb, obs) in observed.items()}


@pytest.fixture(scope="module")
def model() -> SFace:
    return load_sface()


def _embed(model: SFace, crops_rgb: np.ndarray, normalise: bool = True) -> np.ndarray:
    """(N, 112, 112, 3) uint8 -> (N, 128) float32, in batches."""
    out = []
    with torch.no_grad():
        for start in range(0, len(crops_rgb), BATCH):
            x = crops_to_tensor(crops_rgb[start : start + BATCH])
            out.append((model.embed(x) if normalise else model(x)).numpy())
    return np.concatenate(out)


@pytest.fixture(scope="module")
def runtime():
    """onnxruntime session on the original ONNX file: (N, 3, 112, 112) float32 -> (N, 128) raw features."""
    ort = pytest.importorskip("onnxruntime")
    proto = onnx.load(str(asset_file("sface")))
    graph = proto.graph
    # The file lists 29 unused weight tensors (the pre-quantization names) and all initializers as graph
    # inputs, so onnxruntime demands them in the feed. Dropping graph inputs that no node consumes or
    # that are initializers only changes the signature; no node and no weight is touched.
    consumed = {name for node in graph.node for name in node.input}
    initializers = {t.name for t in graph.initializer}
    keep = [i for i in graph.input if i.name in consumed and i.name not in initializers]
    assert [i.name for i in keep] == ["data"]
    del graph.input[:]
    graph.input.extend(keep)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])

    def run(blob: np.ndarray) -> np.ndarray:
        # The graph's batch size is fixed to 1.
        return np.concatenate([session.run(None, {"data": blob[k : k + 1]})[0] for k in range(len(blob))])

    return run


@pytest.fixture(scope="module")
def port_and_runtime(model: SFace, crops: dict, runtime) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(names, (N, 128) port raw features, (N, 128) runtime raw features) for every observed photo."""
    names = list(crops)
    stack = np.stack([crops[n] for n in names])
    return names, _embed(model, stack, normalise=False), runtime(crops_to_tensor(stack).numpy())


def _unit(features: np.ndarray) -> np.ndarray:
    return features / np.linalg.norm(features, axis=1, keepdims=True)


def _separation(embeddings: np.ndarray, names: list[str]) -> dict[str, float]:
    """Same-person vs different-person cosine statistics over all pairs of London photos."""
    person = [n.split("_")[1] for n in names]
    sims = embeddings @ embeddings.T
    same, different = [], []
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            (same if person[i] == person[j] else different).append(sims[i, j])
    same, different = np.array(same), np.array(different)
    return {"n_same": len(same), "n_different": len(different), "same_mean": same.mean(), "same_min": same.min(),
            "different_mean": different.mean(), "different_max": different.max(),
            "margin": same.min() - different.max()}  # fmt: skip


def _fmt(stats: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:.4f}" if isinstance(v, float | np.floating) else f"{k}={v}" for k, v in stats.items())


# -- port vs original runtime ----------------------------------------------------------------------


def test_port_matches_onnxruntime_on_real_photos(port_and_runtime) -> None:
    names, port, reference = port_and_runtime
    cosines = (_unit(port) * _unit(reference)).sum(1)
    worst = int(np.argmin(cosines))
    relative = np.abs(port - reference).max() / np.abs(reference).max()
    log.info("port vs onnxruntime: min cosine %.7f (%s), max relative feature error %.2e over %d photos",
             cosines[worst], names[worst], relative, len(names))  # fmt: skip
    assert len(names) == len(LONDON) + len(OTHERS)
    assert cosines.min() >= 0.9999, f"min cosine {cosines[worst]:.6f} on {names[worst]}"
    assert relative < 1e-4, f"raw features differ by {relative:.2e} of their range"


def test_unfolded_port_matches_onnxruntime(crops: dict, runtime) -> None:
    """The one-layer-per-ONNX-node network (no BatchNorm folding) agrees too."""
    faithful = load_sface(fold_bn=False)
    names = LONDON[:BATCH]
    blob = crops_to_tensor(np.stack([crops[n] for n in names]))
    with torch.no_grad():
        port = faithful(blob).numpy()
    reference = runtime(blob.numpy())
    cosines = (_unit(port) * _unit(reference)).sum(1)
    assert cosines.min() >= 0.9999, f"unfolded port: min cosine {cosines.min():.6f}"
    assert np.abs(port - reference).max() < 1e-4 * np.abs(reference).max()


def test_the_cached_network_is_the_converted_one_and_loads_without_onnx(model: SFace) -> None:
    """`load_sface` reads the conversion from the cache folder: the same layers and float32 tensors as
    converting the ONNX file again, and a process that finds it there never imports onnx."""
    fresh = SFace(layers_from_arrays(layer_arrays(SFace.from_onnx(asset_file("sface")).layers)))
    for cached, converted in ((model, load_sface()), (fresh, SFace.from_onnx(asset_file("sface")))):
        assert str(cached) == str(converted)
        ours, theirs = cached.state_dict(), converted.state_dict()
        assert list(ours) == list(theirs)
        assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    folded = SFace(fold_batchnorm(SFace.from_onnx(asset_file("sface")).layers)).state_dict()
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), folded.values(), strict=True))
    probe = "import sys; from sie3d.face.sface import load_sface; load_sface(); print('onnx' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_an_unusable_cached_network_is_converted_again(model: SFace, tmp_path: Path, monkeypatch) -> None:
    """A cache file that opens but holds no usable network (an empty chain, a missing tensor) is replaced by a
    fresh conversion, with a warning, not used or raised."""
    from sie3d.assets import registry

    real = registry.cache_dir() / "sface"
    name = next(real.glob("sface_*.npz")).name  # written by the `model` fixture's load
    monkeypatch.setenv("SIE3D_CACHE", str(tmp_path))
    broken = tmp_path / "sface" / name
    broken.parent.mkdir()
    arrays = layer_arrays(model.layers)
    assert "2.weight" in arrays  # the first convolution's
    for bad in ({"spec": np.array("[]")}, {k: v for k, v in arrays.items() if k != "2.weight"}):
        np.savez(broken, **bad)
        again = load_sface()
        assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), model.state_dict().values(),
                                                      strict=True))  # fmt: skip
        assert len(np.load(broken).files) == len(arrays)  # replaced by the conversion


def test_dequantized_weights_equal_onnxruntime_bit_for_bit() -> None:
    """All 29 DequantizeLinear nodes of the file, run alone in onnxruntime, give exactly our weights."""
    ort = pytest.importorskip("onnxruntime")
    proto = onnx.load(str(asset_file("sface")))
    initializers = {t.name: t for t in proto.graph.initializer}
    nodes = [n for n in proto.graph.node if n.op_type == "DequantizeLinear"]
    needed = sorted({name for n in nodes for name in n.input})
    graph = onnx.helper.make_graph(
        nodes, "dequantize_only", [],
        [onnx.helper.make_tensor_value_info(n.output[0], onnx.TensorProto.FLOAT, None) for n in nodes],
        [initializers[name] for name in needed],
    )  # fmt: skip
    small = onnx.helper.make_model(graph, opset_imports=proto.opset_import)
    small.ir_version = proto.ir_version
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(small.SerializeToString(), options, providers=["CPUExecutionProvider"])
    arrays = {name: onnx.numpy_helper.to_array(initializers[name]) for name in needed}
    for node, expected in zip(nodes, session.run(None, {}), strict=True):
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        ours = dequantize_linear(*(arrays[name] for name in node.input), axis=attrs.get("axis", 1),
                                 block_size=attrs.get("block_size", 0))  # fmt: skip
        assert ours.shape == expected.shape and ours.dtype == np.float32
        np.testing.assert_array_equal(ours, expected, err_msg=node.output[0])
    assert len(nodes) == 29


def test_dequantize_linear_blocked_and_per_axis() -> None:
    q = np.array([[1, 2, 3, 4, 5], [-1, -2, -3, -4, -5]], np.int8)  # (2, 5), blocks of 2 along axis 1
    scale = np.array([[1.0, 10.0, 100.0], [0.5, 0.25, 2.0]], np.float32)  # (2, ceil(5 / 2))
    zero = np.array([[1, 0, 5], [0, -2, 0]], np.int8)
    expected = np.array([[0, 1, 30, 40, 0], [-0.5, -1.0, -0.25, -0.5, -10.0]], np.float32)
    np.testing.assert_array_equal(dequantize_linear(q, scale, zero, axis=1, block_size=2), expected)
    per_axis = dequantize_linear(q, np.array([2.0, 3.0], np.float32), np.array([1, 0], np.int8), axis=0)
    np.testing.assert_array_equal(per_axis, (q.astype(np.float32) - [[1], [0]]) * [[2.0], [3.0]])
    with pytest.raises(ValueError, match="blocked"):
        dequantize_linear(q, scale[:, :2], zero[:, :2], axis=1, block_size=2)


# -- identity separation ---------------------------------------------------------------------------


def test_same_person_beats_every_different_person(port_and_runtime) -> None:
    names, port, _ = port_and_runtime
    london = [k for k, n in enumerate(names) if n in LONDON]
    stats = _separation(_unit(port[london]), [names[k] for k in london])
    log.info("SFace port, London set: %s", _fmt(stats))
    assert len(london) == 48 and stats["n_same"] == 24 and stats["n_different"] == 48 * 47 // 2 - 24
    assert stats["margin"] > 0, f"a different-person pair scores above a same-person pair: {_fmt(stats)}"


def test_rgb_input_order_separates_better_than_bgr(model: SFace, crops: dict, port_and_runtime) -> None:
    """The forward contract says RGB (what OpenCV feeds after swapRB=True); the swapped order is worse."""
    names, port, _ = port_and_runtime
    rgb = _separation(_unit(port[[names.index(n) for n in LONDON]]), LONDON)
    swapped = np.ascontiguousarray(np.stack([crops[n] for n in LONDON])[..., ::-1])
    bgr = _separation(_embed(model, swapped), LONDON)
    assert rgb["margin"] > bgr["margin"], f"RGB: {_fmt(rgb)}\nBGR: {_fmt(bgr)}"


# -- alignment -------------------------------------------------------------------------------------


def _rotation_scale(angle_deg: float, scale: float) -> np.ndarray:
    a = np.radians(angle_deg)
    return scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])


def test_similarity_transform_recovers_known_transform() -> None:
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 500, (7, 2))
    linear, shift = _rotation_scale(23.0, 0.37), np.array([-41.5, 12.25])
    matrix = similarity_transform(src, src @ linear.T + shift)
    np.testing.assert_allclose(matrix[:, :2], linear, atol=1e-10)
    np.testing.assert_allclose(matrix[:, 2], shift, atol=1e-8)
    # A mirrored target is not followed: the fit stays a rotation (positive determinant).
    mirrored = similarity_transform(src, src * [-1.0, 1.0])
    assert np.linalg.det(mirrored[:, :2]) > 0
    with pytest.raises(ValueError):
        similarity_transform(src, src[:5])


def test_align_face_moves_image_content_onto_the_template() -> None:
    """Five bright dots at known photo positions end up at the template pixels of the crop."""
    size = 224  # a 2x template, so the dots are well resolved
    target = template(size)
    photo_points = (target - size / 2) @ _rotation_scale(-17.0, 2.3).T + [300.0, 260.0]
    rgb = np.zeros((520, 640, 3), np.uint8)
    yy, xx = np.mgrid[0:520, 0:640]
    for x, y in photo_points:
        rgb[(xx - x) ** 2 + (yy - y) ** 2 <= 16] = 255
    landmarks = np.zeros((478, 3), np.float32)
    eye_offset = np.array([4.0, 1.0])  # corners on either side of each eye centre
    for ids, centre in (((33, 133), photo_points[0]), ((263, 362), photo_points[1])):
        landmarks[ids[0], :2], landmarks[ids[1], :2] = centre - eye_offset, centre + eye_offset
    for idx, point in zip((1, 61, 291), photo_points[2:], strict=True):
        landmarks[idx, :2] = point
    obs = FaceObservation(landmarks, np.zeros(52, np.float32), np.eye(4, dtype=np.float32),
                          (0.0, 0.0, 640.0, 520.0), 1.0, (640, 520))  # fmt: skip
    np.testing.assert_allclose(five_points(obs), photo_points, atol=1e-4)
    crop = align_face(rgb, obs, size)[..., 0].astype(np.float64)
    for x, y in target:
        window = crop[int(y) - 12 : int(y) + 13, int(x) - 12 : int(x) + 13]
        wy, wx = np.mgrid[int(y) - 12 : int(y) + 13, int(x) - 12 : int(x) + 13]
        centroid = np.array([(wx * window).sum(), (wy * window).sum()]) / window.sum()
        assert np.linalg.norm(centroid - [x, y]) < 0.5, f"dot for template point {(x, y)} landed at {centroid}"


def test_alignment_of_real_faces_lands_near_the_template(observed: dict) -> None:
    """The least-squares fit leaves only the person's own deviation from the template geometry."""
    residuals = []
    for name in LONDON:
        _, obs = observed[name]
        matrix = align_matrix(obs)
        mapped = five_points(obs) @ matrix[:, :2].T + matrix[:, 2]
        residuals.append(np.linalg.norm(mapped - TEMPLATE_112, axis=1))
    residuals = np.array(residuals)  # (48, 5) pixels of the 112 crop
    per_point = residuals.mean(0)
    log.info("alignment residual per template point (px): %s, max %.2f", np.round(per_point, 2), residuals.max())
    assert per_point.max() < 3.5, f"mean residual per point {np.round(per_point, 2)} px"
    assert residuals.max() < 9.0, f"worst residual {residuals.max():.2f} px"


# -- gradients, convenience API, speed -------------------------------------------------------------


def test_gradient_reaches_the_input_crop(model: SFace, crops: dict) -> None:
    """An identity loss can be optimised through the port: the gradient is finite, non-zero and a
    small step along it lowers the loss."""
    x = crops_to_tensor(np.stack([crops["london_001_happy.jpg"], crops["london_002_happy.jpg"]]))
    x.requires_grad_(True)
    with torch.no_grad():
        target = model.embed(crops_to_tensor(crops["london_001_neutral.jpg"]))

    def loss_of(images: torch.Tensor) -> torch.Tensor:
        return (1 - (model.embed(images) * target).sum(1)).sum()

    loss = loss_of(x)
    (grad,) = torch.autograd.grad(loss, x)
    assert torch.isfinite(grad).all() and grad.abs().sum(dim=(1, 2, 3)).min() > 0
    with torch.no_grad():
        stepped = loss_of(x - 2.0 * grad / grad.abs().max())
    assert stepped < loss, f"loss {loss.item():.5f} did not drop along the gradient ({stepped.item():.5f})"
    assert not any(p.requires_grad for p in model.parameters())


def test_identity_embedder_matches_the_port(model: SFace, observed: dict, port_and_runtime) -> None:
    names, port, _ = port_and_runtime
    embedder = IdentityEmbedder(model)
    rgb, obs = observed["london_003_neutral.jpg"]
    embedding = embedder(rgb, obs)
    assert embedding.shape == (128,) and embedding.dtype == np.float32
    assert abs(np.linalg.norm(embedding) - 1) < 1e-5
    reference = _unit(port)[names.index("london_003_neutral.jpg")]
    assert embedder.cosine(embedding, reference) > 0.99999
    assert cosine(embedding, -embedding) == pytest.approx(-1.0)


def test_wrong_crop_shape_raises(model: SFace) -> None:
    with pytest.raises(ValueError, match=r"\(B, 3, 112, 112\)"):
        model(torch.zeros(2, 112, 112, 3))
    with pytest.raises(ValueError):
        crops_to_tensor(np.zeros((2, 64, 64, 3), np.uint8))
    with pytest.raises(ValueError):
        warp_crop(np.zeros((10, 10), np.uint8), np.eye(2, 3))
