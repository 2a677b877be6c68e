// Draw one .ply with the three.js splat viewer @mkkellogg/gaussian-splats-3d in real headless Chromium (Debian's,
// through playwright-core; WebGL2 in software), from a camera in front of the head, and save the canvas as a PNG.
// The page, the viewer's modules (from tests/js/node_modules) and the PLY are served from 127.0.0.1 by this script.
// Usage: node render_splats.mjs '{"ply": ..., "png": ..., "chromium": ..., "size": 384, "timeoutMs": 120000}'
import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const options = JSON.parse(process.argv[2]);
const here = path.dirname(fileURLToPath(import.meta.url));
const size = options.size ?? 384;
const page = `<!doctype html><html><head><style>html,body{margin:0;background:#f5f7fa}#view{width:${size}px;height:${size}px}</style>
<script type="importmap">{"imports": {"three": "/node_modules/three/build/three.module.js",
  "@mkkellogg/gaussian-splats-3d": "/node_modules/@mkkellogg/gaussian-splats-3d/build/gaussian-splats-3d.module.js"}}</script>
</head><body><div id="view"></div><script type="module">
import * as GaussianSplats3D from "@mkkellogg/gaussian-splats-3d";
const viewer = new GaussianSplats3D.Viewer({
  rootElement: document.getElementById("view"), cameraUp: [0, 1, 0], initialCameraPosition: [0, 0.03, 0.62],
  initialCameraLookAt: [0, 0.03, 0], sharedMemoryForWorkers: false, gpuAcceleratedSort: false,
  useBuiltInControls: false, selfDrivenMode: true, sphericalHarmonicsDegree: 0,
});
viewer.renderer.setClearColor(0xf5f7fa, 1);
viewer.addSplatScene("/avatar.ply", { format: GaussianSplats3D.SceneFormat.Ply, showLoadingUI: false,
  splatAlphaRemovalThreshold: 1 })
  .then(() => { viewer.start(); window.splatsLoaded = viewer.getSplatMesh().getSplatCount(); })
  .catch((e) => { window.splatsError = String(e); });
</script></body></html>`;

const types = { ".js": "text/javascript", ".html": "text/html", ".ply": "application/octet-stream" };
const server = http.createServer((request, response) => {
  const url = decodeURIComponent(new URL(request.url, "http://127.0.0.1").pathname);
  let file = null;
  if (url === "/") {
    response.writeHead(200, { "Content-Type": "text/html" });
    response.end(page);
    return;
  }
  if (url === "/avatar.ply") file = options.ply;
  else if (url.startsWith("/node_modules/") && !url.includes("..")) file = path.join(here, url);
  if (!file || !fs.existsSync(file)) {
    response.writeHead(404);
    response.end();
    return;
  }
  response.writeHead(200, { "Content-Type": types[path.extname(file)] ?? "application/octet-stream" });
  fs.createReadStream(file).pipe(response);
});
await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
const summary = { consoleErrors: [] };
const browser = await chromium.launch({ executablePath: options.chromium, headless: true,
  args: ["--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"] });
try {
  const context = await browser.newContext({ viewport: { width: size, height: size } });
  const tab = await context.newPage();
  tab.setDefaultTimeout(options.timeoutMs ?? 120000);
  tab.on("pageerror", (e) => summary.consoleErrors.push(String(e)));
  tab.on("console", (m) => { if (m.type() === "error" && !/favicon|404/.test(m.text())) summary.consoleErrors.push(m.text()); });
  await tab.goto(`http://127.0.0.1:${server.address().port}/`);
  await tab.waitForFunction(() => window.splatsLoaded || window.splatsError);
  summary.error = await tab.evaluate(() => window.splatsError ?? null);
  summary.splats = await tab.evaluate(() => window.splatsLoaded ?? 0);
  await tab.waitForTimeout(3000); // the sort runs in a worker: let a few frames draw with the sorted order
  await tab.locator("#view canvas").screenshot({ path: options.png });
} finally {
  await browser.close();
  server.close();
}
console.log(JSON.stringify(summary));
