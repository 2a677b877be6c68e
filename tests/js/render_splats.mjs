// Draw one .ply with the three.js splat viewer @mkkellogg/gaussian-splats-3d in real headless Chromium
// (browser.mjs), from a camera in front of the head, and save the canvas as a PNG; print a JSON summary.
// Usage: node render_splats.mjs '{"ply": ..., "png": ..., "chromium": ..., "size": 384, "timeoutMs": 120000}'
import { inChromium } from "./browser.mjs";

const options = JSON.parse(process.argv[2]);
const size = options.size ?? 384;
const script = `
import * as GaussianSplats3D from "@mkkellogg/gaussian-splats-3d";
const viewer = new GaussianSplats3D.Viewer({
  rootElement: document.getElementById("view"), cameraUp: [0, 1, 0], initialCameraPosition: [0, 0.03, 0.62],
  initialCameraLookAt: [0, 0.03, 0], sharedMemoryForWorkers: false, gpuAcceleratedSort: false,
  useBuiltInControls: false, selfDrivenMode: true, sphericalHarmonicsDegree: 0,
});
viewer.renderer.setClearColor(0xf5f7fa, 1);
viewer.addSplatScene("/avatar.ply", { format: GaussianSplats3D.SceneFormat.Ply, showLoadingUI: false,
  splatAlphaRemovalThreshold: 1 })
  .then(() => { viewer.start(); window.result = { splats: viewer.getSplatMesh().getSplatCount() }; })
  .catch((e) => { window.failure = String(e); });`;
const summary = await inChromium({ chromium: options.chromium, files: { "/avatar.ply": options.ply }, size,
  body: `<div id="view" style="width:${size}px;height:${size}px"></div>`, script, timeoutMs: options.timeoutMs },
async (tab) => {
  await tab.waitForTimeout(3000); // the sort runs in a worker: let a few frames draw in the sorted order
  await tab.locator("#view canvas").screenshot({ path: options.png });
});
console.log(JSON.stringify({ consoleErrors: summary.consoleErrors, error: summary.failure,
  splats: summary.result ? summary.result.splats : 0 }));
