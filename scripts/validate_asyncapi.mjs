// Parse and validate docs/asyncapi.yaml with the AsyncAPI project's own parser (npm package
// @asyncapi/parser, which checks the document against the AsyncAPI JSON Schema and its
// rules). Usage: node scripts/validate_asyncapi.mjs <node_modules dir> <asyncapi.yaml>
// (the browser tox env installs the parser and runs this). Exits 1 on any error.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";

const [modules, document] = process.argv.slice(2);
const require = createRequire(join(modules, "noop.js"));
const { Parser, DiagnosticSeverity } = require("@asyncapi/parser");

const { document: parsed, diagnostics } = await new Parser().parse(readFileSync(document, "utf8"));
const errors = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error);
for (const d of diagnostics) {
  const where = d.path.join(".") || "(document)";
  console.log(`${DiagnosticSeverity[d.severity]} ${d.code} at ${where}: ${d.message}`);
}
if (!parsed || errors.length) {
  console.error(`${document}: ${errors.length} error(s)`);
  process.exit(1);
}
const channels = parsed.channels().all().map((channel) => channel.address());
const messages = parsed.allMessages().all().length;
console.log(`${document}: valid AsyncAPI ${parsed.version()}; channels ${channels.join(", ")}; ${messages} messages`);
