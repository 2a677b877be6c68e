// One page in real headless Chromium (Debian's, through playwright-core; software WebGL2) with the npm packages of
// tests/js and some files served from 127.0.0.1, for the Node-side checks that need a browser.
// `inChromium({chromium, files, body, script, size, timeoutMs})`: serves `files` ({"/name": path}) and the page
// (`body` HTML, then `script` as a module with "three", "three/addons/" and the splat viewer mapped), waits
// until the script sets `window.result` (or `window.failure`), and returns {result, consoleErrors, tab}
// to `then(tab, summary)` before the browser closes.
import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = path.dirname(fileURLToPath(import.meta.url));
const IMPORTS = {
  "three": "/node_modules/three/build/three.module.js",
  "three/addons/": "/node_modules/three/examples/jsm/",
  "@mkkellogg/gaussian-splats-3d": "/node_modules/@mkkellogg/gaussian-splats-3d/build/gaussian-splats-3d.module.js",
};
const TYPES = { ".js": "text/javascript", ".mjs": "text/javascript", ".html": "text/html" };

export async function inChromium({ chromium: executable, files = {}, body = "", script, size = 384, timeoutMs = 120000 },
  then = async () => {}) {
  const page = `<!doctype html><html><head><style>html,body{margin:0;background:#f5f7fa}</style>
<script type="importmap">${JSON.stringify({ imports: IMPORTS })}</script></head>
<body>${body}<script type="module">${script}</script></body></html>`;
  const server = http.createServer((request, response) => {
    const url = decodeURIComponent(new URL(request.url, "http://127.0.0.1").pathname);
    if (url === "/") {
      response.writeHead(200, { "Content-Type": "text/html" });
      response.end(page);
      return;
    }
    let file = files[url] ?? null;
    if (!file && url.startsWith("/node_modules/") && !url.includes("..")) file = path.join(here, url);
    if (!file || !fs.existsSync(file)) {
      response.writeHead(404);
      response.end();
      return;
    }
    response.writeHead(200, { "Content-Type": TYPES[path.extname(file)] ?? "application/octet-stream" });
    fs.createReadStream(file).pipe(response);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const summary = { consoleErrors: [] };
  const browser = await chromium.launch({ executablePath: executable, headless: true,
    args: ["--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"] });
  try {
    const context = await browser.newContext({ viewport: { width: size, height: size } });
    const tab = await context.newPage();
    tab.setDefaultTimeout(timeoutMs);
    tab.on("pageerror", (e) => summary.consoleErrors.push(String(e)));
    // the page asks for /favicon.ico, which is not served
    tab.on("console", (m) => { if (m.type() === "error" && !/404/.test(m.text())) summary.consoleErrors.push(m.text()); });
    await tab.goto(`http://127.0.0.1:${server.address().port}/`);
    await tab.waitForFunction(() => window.result !== undefined || window.failure !== undefined);
    summary.failure = await tab.evaluate(() => window.failure ?? null);
    summary.result = await tab.evaluate(() => window.result ?? null);
    await then(tab, summary);
  } finally {
    await browser.close();
    server.close();
  }
  return summary;
}
