#!/usr/bin/env node
// The built CLI (npm run build compiles src/ to dist/). From a checkout without a build, `npm run magpie -- …`
// runs the TypeScript sources directly.
import { existsSync } from 'node:fs';

const main = new URL('../dist/cli/main.js', import.meta.url);
if (!existsSync(main)) {
  process.stderr.write('magpie: dist/ is missing: run `npm run build` (or `npm run magpie -- <command>` to run the sources)\n');
  process.exit(1);
}
await import(main.href);
