// Load one .glb with three.js's GLTFLoader and print a JSON summary of what a three.js app gets:
// meshes, materials, morph targets (names, default influences, jawOpen deltas), textures.
// Node has no DOM: images go through three's ImageBitmapLoader (fetch of a blob: URL) and a stub
// createImageBitmap that reads the PNG header instead of decoding pixels.
// Usage: node load_three.mjs FILE.glb
import fs from "node:fs";

globalThis.self = globalThis;
globalThis.createImageBitmap = async (blob) => {
  const head = new DataView(await blob.slice(0, 24).arrayBuffer());
  if (head.getUint32(0) !== 0x89504e47) throw new Error("texture is not a PNG");
  return { width: head.getUint32(16), height: head.getUint32(20), close() {} };
};
const { GLTFLoader } = await import("three/addons/loaders/GLTFLoader.js");

const file = process.argv[2];
const data = fs.readFileSync(file);
const buffer = data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength);
const warnings = [];
console.warn = (...args) => warnings.push(args.join(" "));
console.error = (...args) => warnings.push(args.join(" "));

new GLTFLoader().parse(
  buffer,
  "",
  (gltf) => {
    const meshes = [];
    gltf.scene.traverse((object) => {
      if (!object.isMesh) return;
      const geometry = object.geometry;
      const morph = geometry.morphAttributes.position || [];
      meshes.push({
        name: object.name,
        material: object.material.name,
        alphaTest: object.material.alphaTest,
        transparent: object.material.transparent,
        texture: object.material.map ? [object.material.map.image.width, object.material.map.image.height] : null,
        vertexCount: geometry.attributes.position.count,
        triangleCount: geometry.index ? geometry.index.count / 3 : 0,
        hasNormal: "normal" in geometry.attributes,
        hasUv: "uv" in geometry.attributes,
        morphTargetCount: morph.length,
        morphTargetDictionary: object.morphTargetDictionary,
        morphTargetInfluences: object.morphTargetInfluences,
        morphRelative: geometry.morphTargetsRelative,
        // the jawOpen delta of every vertex, to compare with the exporter's input
        jawOpen: object.morphTargetDictionary && "jawOpen" in object.morphTargetDictionary
          ? Array.from(morph[object.morphTargetDictionary.jawOpen].array) : null,
        position: Array.from(geometry.attributes.position.array),
      });
    });
    process.stdout.write(JSON.stringify({ meshes, warnings }));
  },
  (error) => {
    process.stderr.write(String(error && error.stack ? error.stack : error));
    process.exit(1);
  },
);
