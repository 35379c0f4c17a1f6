// Parses spec/asyncapi.json with the official AsyncAPI parser and fails on any error-level
// diagnostic; also checks that every call event of schemas/index.json has a message.
import { readFileSync } from 'node:fs';
import { Parser } from '@asyncapi/parser';

const root = new URL('../../../', import.meta.url);
const text = readFileSync(new URL('spec/asyncapi.json', root), 'utf8');
const index = JSON.parse(readFileSync(new URL('schemas/index.json', root), 'utf8'));

const parser = new Parser();
const { document, diagnostics } = await parser.parse(text);
const errors = diagnostics.filter((d) => d.severity === 0);
for (const d of diagnostics) {
  const level = ['error', 'warning', 'info', 'hint'][d.severity] ?? d.severity;
  console.log(`${level}: ${d.code} ${d.message} at ${JSON.stringify(d.path)}`);
}
let failed = errors.length;
if (!document) {
  console.log('FAIL the parser produced no document');
  failed += 1;
} else {
  const names = new Set(document.allMessages().all().map((m) => m.name()));
  for (const e of index.events) {
    if (!names.has(e.event)) {
      console.log(`FAIL no message for ${e.event}`);
      failed += 1;
    }
  }
  console.log(`asyncapi ${document.version()}: ${document.channels().length} channels, ${document.allMessages().length} messages, ${document.operations().length} operations`);
}
const checks = 1 + index.events.length;
console.log(`asyncapi-validation: ${checks - Math.min(failed, checks)} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
