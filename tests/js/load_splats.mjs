// Load one .ply the way the three.js splat viewer @mkkellogg/gaussian-splats-3d does (its PlyParser, then the
// SplatBuffer its Viewer and DropInViewer render from) and print a JSON summary: the format it detected,
// the splat count kept, the centres' bounds and the decoded centre, scale, rotation, colour of some splats.
// Node has no WebGL: this is the viewer's loading path, not its drawing.
// Usage: node load_splats.mjs FILE.ply INDEX...
import fs from "node:fs";

globalThis.self = globalThis;
const warnings = [];
console.warn = (...args) => warnings.push(args.join(" "));
process.removeAllListeners("warning");
process.on("warning", (warning) => warnings.push(String(warning)));
const splats = await import("@mkkellogg/gaussian-splats-3d");
const THREE = await import("three");

const data = fs.readFileSync(process.argv[2]);
const buffer = data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength);
const header = new TextDecoder().decode(data.subarray(0, 4096));
const array = splats.PlyParser.parseToUncompressedSplatArray(buffer, 0);
const samples = process.argv.slice(3).map(Number).map((i) => {
  const row = array.splats[i];
  const o = array.constructor.OFFSET;
  return {
    index: i,
    centre: [row[o.X], row[o.Y], row[o.Z]],
    scale: [row[o.SCALE0], row[o.SCALE1], row[o.SCALE2]],
    rotation: [row[o.ROTATION0], row[o.ROTATION1], row[o.ROTATION2], row[o.ROTATION3]],
    colour: [row[o.FDC0], row[o.FDC1], row[o.FDC2]],
    opacity: row[o.OPACITY],
  };
});
// as the viewer builds its buffer (alpha removal threshold 1, no compression); it reorders `array`
const generator = splats.SplatBufferGenerator.getStandardGenerator(1, 0);
const splatBuffer = generator.generateFromUncompressedSplatArray(array);
const count = splatBuffer.getSplatCount();
const low = [Infinity, Infinity, Infinity];
const high = [-Infinity, -Infinity, -Infinity];
const centre = new THREE.Vector3();
for (let i = 0; i < count; i++) {
  splatBuffer.getSplatCenter(i, centre);
  centre.toArray().forEach((v, k) => { low[k] = Math.min(low[k], v); high[k] = Math.max(high[k], v); });
}
process.stdout.write(JSON.stringify({
  format: header.includes("f_dc_0") ? "INRIA" : "other",
  parsed: array.splatCount, kept: count, low, high, samples, warnings: warnings.filter((w) => !w.includes("three")),
}));
