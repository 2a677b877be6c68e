// Play the first animation of one .glb in three.js (GLTFLoader + AnimationMixer, as a web page does) and print,
// as JSON, every mesh's morph target influences at the given times (seconds), plus the clip's duration.
// Node has no DOM: textures go through a stub createImageBitmap (see load_three.mjs).
// Usage: node play_animation.mjs FILE.glb T0 T1 ...
import fs from "node:fs";

globalThis.self = globalThis;
globalThis.createImageBitmap = async () => ({ width: 1, height: 1, close() {} });
const THREE = await import("three");
const { GLTFLoader } = await import("three/addons/loaders/GLTFLoader.js");

const data = fs.readFileSync(process.argv[2]);
const buffer = data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength);
const times = process.argv.slice(3).map(Number);
const warnings = [];
console.warn = (...args) => warnings.push(args.join(" "));

new GLTFLoader().parse(buffer, "", (gltf) => {
  const clip = gltf.animations[0];
  const mixer = new THREE.AnimationMixer(gltf.scene);
  mixer.clipAction(clip).setLoop(THREE.LoopOnce).play();
  const meshes = [];
  gltf.scene.traverse((object) => { if (object.isMesh && object.morphTargetInfluences) meshes.push(object); });
  const samples = [];
  let now = 0;
  for (const t of times) {
    mixer.update(t - now); // the clock of a render loop
    now = t;
    samples.push({ time: t, influences: meshes.map((mesh) => Array.from(mesh.morphTargetInfluences)) });
  }
  process.stdout.write(JSON.stringify({
    clips: gltf.animations.map((a) => ({ name: a.name, duration: a.duration, tracks: a.tracks.length })),
    names: meshes.map((mesh) => Object.keys(mesh.morphTargetDictionary)
      .sort((a, b) => mesh.morphTargetDictionary[a] - mesh.morphTargetDictionary[b])),
    samples, warnings,
  }));
}, (error) => { process.stderr.write(String(error && error.stack ? error.stack : error)); process.exit(1); });
