// Drive the sie3d web page in real headless Chromium (Debian's, through playwright-core) as a user would:
// upload a photo, type a prompt, generate, look at the viewer, move a slider, download the GLB, then drive the
// avatar with a fake camera that plays a .y4m clip. Screenshots of each step go to OUT; a JSON summary to stdout.
// Usage: node web_app.mjs '{"url": ..., "photo": ..., "prompt": ..., "out": ..., "y4m": ..., "chromium": ...,
//                           "cameraSeconds": 12, "timeoutMs": 300000}'
import fs from "node:fs";
import path from "node:path";
import { chromium } from "playwright-core";

const options = JSON.parse(process.argv[2]);
const out = options.out;
fs.mkdirSync(out, { recursive: true });
const summary = { consoleErrors: [], steps: {}, camera: null };
const started = Date.now();
const step = (name) => { summary.steps[name] = (Date.now() - started) / 1000; };
// MediaPipe logs this line as a console error although it is information (see docs/WEB.md of the project).
const harmless = /Created TensorFlow Lite XNNPACK delegate|favicon\.ico/;

const browser = await chromium.launch({
  executablePath: options.chromium,
  headless: true,
  args: ["--no-sandbox", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
    `--use-file-for-fake-video-capture=${options.y4m}`, "--autoplay-policy=no-user-gesture-required"],
});
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 1040 }, acceptDownloads: true });
  const page = await context.newPage();
  page.setDefaultTimeout(options.timeoutMs);
  page.on("console", (m) => { if (m.type() === "error" && !harmless.test(m.text())) summary.consoleErrors.push(m.text()); });
  page.on("pageerror", (e) => summary.consoleErrors.push(String(e)));
  page.on("response", (r) => { if (r.status() >= 400) summary.consoleErrors.push(`HTTP ${r.status()} ${r.url()}`); });
  const shot = (name) => page.screenshot({ path: path.join(out, name) });

  await page.goto(options.url);
  await shot("1-start.png");
  await page.setInputFiles("#photo", options.photo);
  await page.fill("#text", options.prompt);
  await shot("2-photo-and-text.png");
  step("filled");
  await page.click("#generate");
  // each wait ends early on the page's own error message (a failed job): never a silent wait
  const failed = async () => {
    if (await page.evaluate(() => !document.querySelector("#error").hidden)) {
      throw new Error(`the page shows an error: ${await page.textContent("#error")}`);
    }
  };
  await page.waitForFunction(() => /Running|Waiting/.test(document.querySelector("#status").textContent)
    || !document.querySelector("#error").hidden);
  await failed();
  await page.waitForFunction(() => document.querySelectorAll("#stages li").length >= 3
    || !document.querySelector("#error").hidden);
  await failed();
  await shot("3-progress.png");
  await page.waitForFunction(() => (window.sie3d.state.result && window.sie3d.viewer.meshes.length > 0
    && document.querySelectorAll("#sliders input").length === 52) || !document.querySelector("#error").hidden);
  await failed();
  step("generated");
  await page.waitForFunction(() => document.querySelector("#preview").complete && document.querySelector("#in-photo").complete);
  await page.waitForTimeout(500);
  await page.locator("#canvas").screenshot({ path: path.join(out, "canvas-text.png") });
  await shot("4-result.png");
  summary.names = await page.evaluate(() => window.sie3d.viewer.names());
  summary.sliders = await page.evaluate(() => Array.from(document.querySelectorAll("#sliders input")).map((e) => e.dataset.name));
  summary.result = await page.evaluate(() => window.sie3d.state.result);

  // move a slider: the jaw opens, the canvas changes
  await page.$eval('#sliders input[data-name="jawOpen"]', (e) => { e.value = 1; e.dispatchEvent(new Event("input")); });
  await page.waitForTimeout(500);
  summary.jawOpenAfterSlider = await page.evaluate(() => window.sie3d.viewer.get("jawOpen"));
  await page.locator("#canvas").screenshot({ path: path.join(out, "canvas-jaw.png") });
  await page.click('#presets button[data-preset="surprise"]');
  await page.waitForTimeout(300);
  await shot("5-slider-and-preset.png");
  step("slider");

  // turn the eyes: both gaze sliders toward the subject's left, from the text's own pose
  await page.evaluate(() => window.sie3d.viewer.reset());
  await page.waitForTimeout(300);
  await page.locator("#canvas").screenshot({ path: path.join(out, "canvas-gaze-ahead.png") });
  for (const name of ["eyeLookOutLeft", "eyeLookInRight"]) {
    await page.$eval(`#sliders input[data-name="${name}"]`, (e) => { e.value = 1; e.dispatchEvent(new Event("input")); });
  }
  await page.waitForTimeout(300);
  await page.locator("#canvas").screenshot({ path: path.join(out, "canvas-gaze-left.png") });
  await shot("7-gaze-sliders.png");
  step("gaze");

  const [download] = await Promise.all([page.waitForEvent("download"), page.click("#download-glb")]);
  await download.saveAs(path.join(out, "downloaded.glb"));
  step("downloaded");

  // webcam puppeteering with the fake camera
  await page.click("#reset");
  await page.click("#camera");
  await page.waitForFunction(() => window.sie3d.stats.frames > 5 || window.sie3d.stats.error);
  step("camera started");
  const samples = [];
  const until = Date.now() + options.cameraSeconds * 1000;
  let shown = false;
  while (Date.now() < until) {
    const sample = await page.evaluate(() => ({
      frames: window.sie3d.stats.frames, fps: window.sie3d.stats.fps,
      left: window.sie3d.viewer.get("mouthSmileLeft"), right: window.sie3d.viewer.get("mouthSmileRight"),
      jaw: window.sie3d.viewer.get("jawOpen"), scoreLeft: window.sie3d.stats.lastScores.mouthSmileLeft ?? null,
    }));
    samples.push(sample);
    if (!shown && sample.left > 0.5) {
      shown = true;
      await shot("6-camera-smile.png");
    }
    await page.waitForTimeout(150);
  }
  summary.camera = { samples, error: await page.evaluate(() => window.sie3d.stats.error) };
  await page.click("#camera"); // stop: the viewer gets its full resolution back
  summary.camera.canvasAfterStop = await page.evaluate(() => [document.querySelector("#canvas").width,
    window.sie3d.stats.running]);
  step("camera done");
} catch (error) {
  // what the page showed when it went wrong, for the test's failure message
  const pages = browser.contexts().flatMap((c) => c.pages());
  const state = pages.length ? await pages[0].evaluate(() => ({ status: document.querySelector("#status")?.textContent,
    error: document.querySelector("#error")?.hidden ? null : document.querySelector("#error")?.textContent,
    stages: Array.from(document.querySelectorAll("#stages li")).map((e) => e.textContent) })).catch(String) : null;
  process.stderr.write(`page: ${JSON.stringify(state)}\nconsole errors: ${JSON.stringify(summary.consoleErrors)}\n`);
  throw error;
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(summary));
