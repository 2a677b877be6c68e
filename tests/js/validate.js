// Validate one .glb/.gltf with the official Khronos glTF validator and print its report as JSON.
// Usage: node validate.js FILE   (exit code 0 when the report has no errors, 1 otherwise)
"use strict";
const fs = require("fs");
const path = require("path");
const validator = require("gltf-validator");

async function main() {
  const file = process.argv[2];
  if (!file) {
    console.error("usage: node validate.js FILE.glb");
    process.exit(2);
  }
  const data = new Uint8Array(fs.readFileSync(file));
  const report = await validator.validateBytes(data, {
    uri: path.basename(file),
    maxIssues: 0, // report every issue
    // a GLB is self-contained: any external resource request is itself a defect
    externalResourceFunction: (uri) => Promise.reject(new Error(`external resource requested: ${uri}`)),
  });
  process.stdout.write(JSON.stringify(report, null, 1));
  process.exit(report.issues.numErrors === 0 ? 0 : 1);
}

main().catch((error) => {
  console.error(error && error.stack ? error.stack : String(error));
  process.exit(2);
});
