// The sie3d page: upload + text -> job (POST /api/generate, poll GET /api/jobs/{id}) -> a three.js viewer of
// the GLB with the 52 ARKit blendshapes as sliders, emotion presets, and webcam puppeteering with MediaPipe's
// face landmarker (its 52 scores carry ARKit names, so they drive the morph targets by name).
import * as THREE from "three";
import { GLTFLoader } from "three/addons/loaders/GLTFLoader.js";
import { OrbitControls } from "three/addons/controls/OrbitControls.js";

const ARKIT_COUNT = 52; // the rig's first 52 targets are Apple's ARKit blendshapes; extras follow
const LIVE_RESOLUTION = 384; // the viewer's pixels while the camera drives it
const LID_KNOTS = [0.25, 0.5, 0.75]; // the blink weights of the in-between shapes (sie3d.head.eyelids.INBETWEENS)
const LID_TARGET = /^eyeBlink(Left|Right)_\d+$/; // their targets: driven by their blink, not set on their own
const $ = (id) => document.getElementById(id);
const state = { job: null, person: null, photoChanged: true, result: null };
const stats = { frames: 0, fps: 0, lastScores: {}, running: false, error: null };

// -- viewer ------------------------------------------------------------------------------------------------

class Viewer {
  constructor(canvas) {
    this.renderer = new THREE.WebGLRenderer({ canvas, antialias: true, preserveDrawingBuffer: true });
    this.renderer.setPixelRatio(1);
    this.size = canvas.width; // the drawing buffer's size when the camera is off
    this.renderer.setSize(canvas.width, canvas.height, false);
    this.renderer.outputColorSpace = THREE.SRGBColorSpace;
    this.scene = new THREE.Scene();
    this.scene.background = new THREE.Color(0xeeeeee);
    this.camera = new THREE.PerspectiveCamera(28, canvas.width / canvas.height, 0.01, 10);
    this.camera.position.set(0, 0, 0.9);
    this.scene.add(new THREE.HemisphereLight(0xffffff, 0x886655, 1.6));
    const key = new THREE.DirectionalLight(0xffffff, 1.8);
    key.position.set(0.4, 0.6, 1.0);
    const rim = new THREE.DirectionalLight(0xffffff, 0.6);
    rim.position.set(-0.6, 0.3, -0.8);
    this.scene.add(key, rim);
    this.controls = new OrbitControls(this.camera, canvas);
    this.controls.addEventListener("change", () => this.invalidate());
    this.head = new THREE.Group(); // rotated by the webcam's head pose
    this.scene.add(this.head);
    this.meshes = [];
    this.dictionary = {};
    this.turntable = false;
    this.dirty = true;
    this.frames = 0;
    const loop = () => {
      requestAnimationFrame(loop);
      if (this.turntable && this.model) {
        this.model.rotation.y += 0.01;
        this.dirty = true;
      }
      if (!this.dirty) return;
      this.dirty = false;
      this.controls.update();
      this.renderer.render(this.scene, this.camera);
      this.frames++;
    };
    loop();
  }
  invalidate() { this.dirty = true; }
  resolution(pixels) { // drawing-buffer size; the canvas keeps its size on the page
    this.renderer.setSize(pixels, pixels, false);
    this.invalidate();
  }
  async load(url) {
    const gltf = await new GLTFLoader().loadAsync(url);
    if (this.model) this.head.remove(this.model);
    this.model = gltf.scene;
    this.meshes = [];
    this.model.traverse((o) => { if (o.isMesh && o.morphTargetDictionary) this.meshes.push(o); });
    this.dictionary = this.meshes.length ? this.meshes[0].morphTargetDictionary : {};
    const box = new THREE.Box3().setFromObject(this.model);
    const center = box.getCenter(new THREE.Vector3());
    this.model.position.sub(center); // the head's centre at the origin, where the camera looks
    const size = box.getSize(new THREE.Vector3()).length();
    this.camera.position.set(0, 0, size * 1.9);
    this.controls.target.set(0, 0, 0);
    this.head.add(this.model);
    this.defaults = this.meshes.length ? Array.from(this.meshes[0].morphTargetInfluences) : [];
    this.invalidate();
  }
  names() { return Object.keys(this.dictionary).sort((a, b) => this.dictionary[a] - this.dictionary[b]); }
  get(name) { return this.meshes.length ? this.meshes[0].morphTargetInfluences[this.dictionary[name]] : 0; }
  set(name, value) {
    const k = this.dictionary[name];
    if (k === undefined) return;
    for (const m of this.meshes) m.morphTargetInfluences[k] = value;
    // The person's in-between blink shapes ("eyeBlinkLeft_25" ...) follow their blink by tent weights, as sie3d
    // renders them: a blend shape alone moves the lid on a straight line, through the round eyeball.
    for (const knot of LID_KNOTS) {
      const j = this.dictionary[`${name}_${Math.round(knot * 100)}`];
      if (j === undefined) continue;
      const tent = Math.max(0, 1 - Math.abs(value - knot) / LID_KNOTS[0]);
      for (const m of this.meshes) m.morphTargetInfluences[j] = tent;
    }
    this.invalidate();
  }
  setAll(weights) { // {name: value}; names not given go to 0 (the blinks' in-between shapes follow their blink)
    for (const name of this.names()) if (!LID_TARGET.test(name)) this.set(name, weights[name] || 0);
  }
  reset() {
    for (const m of this.meshes) m.morphTargetInfluences.splice(0, this.defaults.length, ...this.defaults);
    this.head.quaternion.identity();
    this.invalidate();
  }
}

const viewer = new Viewer($("canvas"));

// -- sliders and presets -----------------------------------------------------------------------------------

function buildSliders() {
  const box = $("sliders");
  box.replaceChildren();
  for (const name of viewer.names().slice(0, ARKIT_COUNT)) {
    const label = document.createElement("label");
    const input = document.createElement("input");
    const out = document.createElement("output");
    Object.assign(input, { type: "range", min: 0, max: 1, step: 0.01, value: viewer.get(name) });
    input.dataset.name = name;
    out.textContent = viewer.get(name).toFixed(2);
    input.addEventListener("input", () => { viewer.set(name, Number(input.value)); out.textContent = Number(input.value).toFixed(2); });
    label.append(Object.assign(document.createElement("span"), { textContent: name }), input, out);
    box.append(label);
  }
}

function syncSliders() {
  for (const input of $("sliders").querySelectorAll("input")) {
    const v = viewer.get(input.dataset.name);
    input.value = v;
    input.nextSibling.textContent = v.toFixed(2);
  }
}

function buildPresets(presets) {
  const box = $("presets");
  box.replaceChildren();
  for (const [name, weights] of Object.entries(presets)) {
    const button = Object.assign(document.createElement("button"), { type: "button", textContent: name });
    button.dataset.preset = name;
    button.addEventListener("click", () => { viewer.setAll(weights); syncSliders(); });
    box.append(button);
  }
}

// -- the form and the job ----------------------------------------------------------------------------------

const photoInput = $("photo");
const drop = $("drop");
function showThumb(file) {
  $("thumb").src = URL.createObjectURL(file);
  $("thumb").hidden = false;
  $("drop-text").textContent = file.name;
  state.photoChanged = true;
}
photoInput.addEventListener("change", () => photoInput.files[0] && showThumb(photoInput.files[0]));
for (const type of ["dragenter", "dragover"]) drop.addEventListener(type, (e) => { e.preventDefault(); drop.classList.add("over"); });
for (const type of ["dragleave", "drop"]) drop.addEventListener(type, () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  if (!e.dataTransfer.files.length) return;
  photoInput.files = e.dataTransfer.files;
  showThumb(photoInput.files[0]);
});
$("intensity").addEventListener("input", () => { $("intensity-value").textContent = Number($("intensity").value).toFixed(2); });

function showError(error) {
  $("error").hidden = false;
  $("error").textContent = error.fix ? `${error.error || error.message}\nFix: ${error.fix}` : (error.error || error.message);
}

$("form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("error").hidden = true;
  const form = new FormData();
  form.append("text", $("text").value);
  form.append("intensity", $("intensity").value);
  form.append("hair", $("hair").checked ? "true" : "false");
  form.append("gaze", $("gaze").checked ? "photo" : "ahead");
  form.append("light", $("light").checked ? "photo" : "studio");
  if (!state.photoChanged && state.person) form.append("person", state.person);
  else if (photoInput.files[0]) form.append("photo", photoInput.files[0]);
  else return showError({ error: "choose a photo first", fix: "drop a face photo on the box" });
  $("generate").disabled = true;
  try {
    const response = await fetch("/api/generate", { method: "POST", body: form });
    const body = await response.json();
    if (!response.ok) throw body;
    state.job = body.id;
    $("status").textContent = body.reused_person ? "Queued (reusing the saved person: no refit)" : "Queued";
    await poll(body.id);
  } catch (error) {
    showError(error.error || error.message ? error : { error: String(error) });
    $("status").textContent = "";
  } finally {
    $("generate").disabled = false;
  }
});

async function poll(id) {
  $("progress").hidden = false;
  for (;;) {
    const response = await fetch(`/api/jobs/${id}`);
    const job = await response.json();
    if (!response.ok) throw job;
    $("progress").value = job.progress;
    $("stages").replaceChildren(...job.stages.map((s) => Object.assign(document.createElement("li"), { textContent: s })));
    if (job.status === "queued") $("status").textContent = `Waiting: position ${job.position} in the queue (${job.queue.running} running)`;
    else if (job.status === "running") $("status").textContent = `Running: ${job.stage}`;
    else if (job.status === "failed") { $("progress").hidden = true; throw { error: job.error.message, fix: job.error.fix }; }
    else { await showResult(job); return; }
    await new Promise((r) => setTimeout(r, 400));
  }
}

async function showResult(job) {
  const r = job.result;
  state.result = r;
  state.person = job.id;
  state.photoChanged = false;
  $("status").textContent = `Done in ${r.seconds} s`;
  $("progress").value = 1;
  await viewer.load(r.urls.glb);
  buildSliders();
  buildPresets(r.presets);
  $("reset").disabled = false;
  $("camera").disabled = false;
  $("report").hidden = false;
  $("reading").textContent = `"${r.text}" reads as ${r.top_emotion} (confidence ${r.confidence.toFixed(2)})`;
  $("emotions").replaceChildren(...Object.entries(r.emotions).sort((a, b) => b[1] - a[1]).map(([k, v]) => {
    const row = document.createElement("div");
    row.className = "bar";
    const bar = document.createElement("i");
    bar.style.width = `${Math.round(v * 180)}px`;
    row.append(Object.assign(document.createElement("span"), { textContent: k }), bar,
      Object.assign(document.createElement("span"), { textContent: v.toFixed(2) }));
    return row;
  }));
  $("fit").textContent = `Landmark error ${r.fit_error_percent_of_eye_distance}% of the eye distance; ` +
    `${r.texture_from_photo_percent}% of the face texture from the photo; ${r.faces_found} face(s) found` +
    (r.hair_note ? `; ${r.hair_note}.` : ".");
  $("warnings").replaceChildren(...r.warnings.map((w) => Object.assign(document.createElement("li"), { textContent: w })));
  const link = (url, text) => Object.assign(document.createElement("a"), { href: url, textContent: text, download: "" });
  $("downloads").replaceChildren(link(r.urls.glb, "avatar.glb"), " · ", link(r.urls.obj_zip, "OBJ (zip)"), " · ",
    link(r.urls.report, "report.json"));
  $("downloads").firstChild.id = "download-glb";
  $("preview").src = r.urls.preview;
  $("in-photo").src = r.urls.in_photo;
}

$("turntable").addEventListener("change", () => { viewer.turntable = $("turntable").checked; viewer.invalidate(); });
$("reset").addEventListener("click", () => { viewer.reset(); if (viewer.model) viewer.model.rotation.y = 0; syncSliders(); });

// -- webcam puppeteering -----------------------------------------------------------------------------------

let landmarker = null;
let stream = null;

async function startCamera() {
  const { FaceLandmarker, FilesetResolver } = await import("@mediapipe/tasks-vision");
  if (!landmarker) {
    const fileset = await FilesetResolver.forVisionTasks("/vendor/mediapipe/wasm");
    landmarker = await FaceLandmarker.createFromOptions(fileset, {
      baseOptions: { modelAssetPath: "/models/face_landmarker.task", delegate: "CPU" },
      runningMode: "VIDEO", numFaces: 1, outputFaceBlendshapes: true, outputFacialTransformationMatrixes: true,
    });
  }
  stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
  const video = $("video");
  video.srcObject = stream;
  video.hidden = false;
  await video.play();
  stats.running = true;
  viewer.resolution(LIVE_RESOLUTION); // landmarker + renderer share the CPU on machines without a GPU
  let windowStart = performance.now();
  let windowFrames = 0;
  const rotation = new THREE.Matrix4();
  const onFrame = (now) => {
    if (!stats.running) return;
    const result = landmarker.detectForVideo(video, now);
    if (result.faceBlendshapes && result.faceBlendshapes.length) {
      const scores = {};
      for (const c of result.faceBlendshapes[0].categories) {
        if (c.categoryName !== "_neutral") scores[c.categoryName] = c.score;
      }
      viewer.setAll(scores); // ARKit names on both sides: no mapping; extras (ICT halves) to 0
      stats.lastScores = scores;
      if (stats.frames % 8 === 0) syncSliders(); // the sliders show what the camera does, a few times a second
      const matrix = result.facialTransformationMatrixes && result.facialTransformationMatrixes[0];
      if (matrix) {
        rotation.fromArray(matrix.data);
        viewer.head.quaternion.setFromRotationMatrix(rotation);
      }
    }
    stats.frames++;
    windowFrames++;
    if (now - windowStart >= 1000) {
      stats.fps = (1000 * windowFrames) / (now - windowStart);
      windowStart = now;
      windowFrames = 0;
      $("fps").textContent = `${stats.fps.toFixed(1)} fps`;
    }
    video.requestVideoFrameCallback(onFrame);
  };
  video.requestVideoFrameCallback(onFrame);
}

function stopCamera() {
  stats.running = false;
  viewer.resolution(viewer.size);
  if (stream) for (const track of stream.getTracks()) track.stop();
  stream = null;
  $("video").hidden = true;
  $("fps").textContent = "";
}

$("camera").addEventListener("click", async () => {
  if (stats.running) { stopCamera(); $("camera").textContent = "Drive with my camera"; syncSliders(); return; }
  $("camera").textContent = "Stop the camera";
  try { await startCamera(); } catch (error) {
    stats.error = String(error);
    showError({ error: `the camera cannot start: ${error}`, fix: "allow the camera for this page" });
    $("camera").textContent = "Drive with my camera";
  }
});

window.sie3d = { viewer, stats, state };
