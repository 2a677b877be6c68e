// Play the first animation of one .glb in real headless Chromium (browser.mjs): GLTFLoader, AnimationMixer
// driven by a requestAnimationFrame render loop and THREE.Clock, as a web page plays it, drawing every frame
// with WebGL. Prints JSON: the clip's duration, the morph target names and, for every drawn frame, the action's
// time and the first mesh's morph target influences.
// Usage: node play_animation_in_chromium.mjs '{"glb": ..., "chromium": ..., "timeoutMs": 120000}'
import { inChromium } from "./browser.mjs";

const options = JSON.parse(process.argv[2]);
const script = `
import * as THREE from "three";
import { GLTFLoader } from "three/addons/loaders/GLTFLoader.js";
const renderer = new THREE.WebGLRenderer({ canvas: document.getElementById("view") });
renderer.setSize(256, 256, false);
const scene = new THREE.Scene();
scene.add(new THREE.AmbientLight(0xffffff, 1.5));
const camera = new THREE.PerspectiveCamera(30, 1, 0.01, 10);
camera.position.set(0, 0.03, 0.7);
new GLTFLoader().load("/avatar.glb", (gltf) => {
  scene.add(gltf.scene);
  const clip = gltf.animations[0];
  const mixer = new THREE.AnimationMixer(gltf.scene);
  const action = mixer.clipAction(clip).setLoop(THREE.LoopOnce);
  action.clampWhenFinished = true;
  action.play();
  let mesh = null;
  gltf.scene.traverse((o) => { if (!mesh && o.isMesh && o.morphTargetInfluences) mesh = o; });
  const names = Object.keys(mesh.morphTargetDictionary).sort((a, b) =>
    mesh.morphTargetDictionary[a] - mesh.morphTargetDictionary[b]);
  const samples = [];
  const clock = new THREE.Clock();
  const frame = () => {
    mixer.update(clock.getDelta());
    renderer.render(scene, camera);
    samples.push({ time: action.time, influences: Array.from(mesh.morphTargetInfluences) });
    if (action.time < clip.duration) requestAnimationFrame(frame);
    else window.result = { duration: clip.duration, names, samples };
  };
  requestAnimationFrame(frame);
}, undefined, (e) => { window.failure = String(e); });`;
const summary = await inChromium({ chromium: options.chromium, files: { "/avatar.glb": options.glb },
  body: '<canvas id="view" width="256" height="256"></canvas>', script, timeoutMs: options.timeoutMs });
console.log(JSON.stringify({ consoleErrors: summary.consoleErrors, error: summary.failure, ...summary.result }));
