/** Tests of the "Select model" quick pick's pure logic (src/models.ts): `npm test`. */
import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { formatBytes, modelPickItems, parseListing, pickPlaceholder } from '../src/models';

/** A `ghostpilot/models` answer as the server sends it (trimmed to three models). */
const ANSWER = {
  current: 'gemma3-270m',
  modelsDir: '/home/me/.local/share/ghostpilot/models',
  machine: '25 GB RAM, 2 cores, no GPU offload (CPU only)',
  recommended: 'qwen2.5-coder-1.5b',
  recommendationReason: 'the best published HumanEval pass@1 (43.9 %) among models that fit',
  downloading: false,
  models: [
    { name: 'gemma3-270m', title: 'Gemma 3 270M', installed: true, downloadable: false, embedded: true,
      sizeBytes: 253113024, sizeExact: true, license: 'Gemma Terms of Use', needsLicenseAcceptance: false,
      fim: 'none', humaneval: null, recommended: false },
    { name: 'qwen2.5-coder-1.5b', title: 'Qwen2.5-Coder 1.5B', installed: false, downloadable: true, embedded: false,
      sizeBytes: 1636250000, sizeExact: false, license: 'Apache-2.0', needsLicenseAcceptance: false,
      fim: 'qwen', humaneval: 43.9, recommended: true },
    { name: 'deepseek-coder-1.3b', title: 'DeepSeek-Coder 1.3B', installed: true, downloadable: true, embedded: false,
      sizeBytes: 1431112640, sizeExact: true, license: 'DeepSeek License', needsLicenseAcceptance: true,
      fim: 'deepseek', humaneval: 34.8, recommended: false },
    { name: 'local-only', title: 'Hand-placed', installed: false, downloadable: false, embedded: false,
      sizeBytes: null, sizeExact: false, license: 'MIT', needsLicenseAcceptance: false, fim: 'none',
      humaneval: null, recommended: false },
  ],
};

describe('modelPickItems', () => {
  const listing = parseListing(ANSWER);
  assert.ok(listing);
  const items = modelPickItems(listing);

  it('groups installed models first, then downloadable ones; nothing else', () => {
    assert.deepEqual(
      items.map((item) => item.kind ?? item.model),
      ['separator', 'gemma3-270m', 'deepseek-coder-1.3b', 'separator', 'qwen2.5-coder-1.5b'],
    );
    assert.deepEqual(items.filter((item) => item.kind).map((item) => item.label), ['Installed', 'Download']);
  });

  const cases: [string, string, string, string][] = [
    ['embedded, current', 'gemma3-270m', '253.1 MB · embedded · (current)', 'HumanEval not listed · FIM: none · Gemma Terms of Use'],
    ['recommended download, estimated size', 'qwen2.5-coder-1.5b', '~1.6 GB · download · $(star-full) recommended', 'HumanEval 43.9 % · FIM: qwen · Apache-2.0'],
    ['installed, licence to accept', 'deepseek-coder-1.3b', '1.4 GB · installed', 'HumanEval 34.8 % · FIM: deepseek · DeepSeek License (asks you to accept it)'],
  ];
  for (const [name, model, description, detail] of cases) {
    it(name, () => {
      const item = items.find((candidate) => candidate.model === model);
      assert.ok(item);
      assert.deepEqual([item.description, item.detail], [description, detail]);
    });
  }

  it('marks installed and downloadable models with their icons', () => {
    assert.match(items.find((i) => i.model === 'deepseek-coder-1.3b')?.label ?? '', /^\$\(check\) DeepSeek-Coder 1\.3B$/);
    assert.match(items.find((i) => i.model === 'qwen2.5-coder-1.5b')?.label ?? '', /^\$\(cloud-download\) Qwen2\.5-Coder 1\.5B$/);
  });

  it('places the current model and the recommendation in the placeholder', () => {
    assert.equal(
      pickPlaceholder(listing),
      'Current model: gemma3-270m. Recommended for this machine: qwen2.5-coder-1.5b.',
    );
  });
});

describe('parseListing', () => {
  const cases: [string, unknown][] = [
    ['null (older server: no such request)', null],
    ['no models array', { current: 'x' }],
    ['a list instead of an object', []],
  ];
  for (const [name, raw] of cases) {
    it(`rejects ${name}`, () => assert.equal(parseListing(raw), undefined));
  }

  it('drops malformed rows and fills defaults', () => {
    const listing = parseListing({ current: 5, models: [{ name: '' }, 'x', { name: 'm', sizeBytes: 'big', humaneval: NaN }] });
    assert.ok(listing);
    assert.equal(listing.current, '');
    assert.deepEqual(listing.models.map((m) => [m.name, m.title, m.sizeBytes, m.humaneval, m.installed]), [['m', 'm', null, null, false]]);
  });
});

describe('formatBytes', () => {
  const cases: [number, string][] = [[0, '0 B'], [999, '999 B'], [1500, '1.5 KB'], [253113024, '253.1 MB'], [1636250000, '1.6 GB'], [8.1e9, '8.1 GB']];
  for (const [count, text] of cases) {
    it(`${count} -> ${text}`, () => assert.equal(formatBytes(count), text));
  }
});
