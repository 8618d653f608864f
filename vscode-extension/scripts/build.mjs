// Bundle the extension into dist/extension.js (vscode stays external: the editor provides it).
import { build } from 'esbuild';

await build({
  entryPoints: ['src/extension.ts'],
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  external: ['vscode'],
  outfile: 'dist/extension.js',
  sourcemap: true,
  minify: true,
  keepNames: true,
  logLevel: 'info',
});
