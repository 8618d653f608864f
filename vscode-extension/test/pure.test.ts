/** Table-driven tests of the extension's pure modules (no VS Code needed): `npm test`. */
import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { reportDocument } from '../src/report';
import { chooseLaunch, findExecutable, isProblem, missingMessage } from '../src/serverCommand';
import { logLevelOf } from '../src/serverLog';
import { SERVER_KEYS, explicitValue, languagesFrom, needsRestart, serverSettings } from '../src/settings';
import { StatusSnapshot, applyProgress, applyStatus, parseStatus, statusView } from '../src/status';
import { CandidateCycle, candidateInfo, pickRows } from '../src/tested';

describe('chooseLaunch', () => {
  const cases: [string, unknown, unknown, unknown][] = [
    ['command wins', ['/v/bin/ghostpilot', 'serve'], '/usr/bin/python3', { command: '/v/bin/ghostpilot', args: ['serve'], source: 'server.command' }],
    ['python path', [], '/v/bin/python', { command: '/v/bin/python', args: ['-m', 'lsp_server', 'serve'], source: 'server.pythonPath' }],
    ['python path is trimmed', undefined, '  /v/bin/python ', { command: '/v/bin/python', args: ['-m', 'lsp_server', 'serve'], source: 'server.pythonPath' }],
    ['default is PATH', undefined, '', { command: 'ghostpilot', args: ['serve'], source: 'PATH' }],
  ];
  for (const [name, command, python, expected] of cases) {
    it(name, () => assert.deepEqual(chooseLaunch(command, python), expected));
  }
  for (const [name, command] of [
    ['non-string part', ['ghostpilot', 3]],
    ['empty executable', ['  ', 'serve']],
  ] as [string, unknown][]) {
    it(`rejects ${name}`, () => {
      const result = chooseLaunch(command, '');
      assert.ok(isProblem(result));
      assert.match(result.message, /ghostpilot\.server\.command/);
    });
  }
});

describe('findExecutable', () => {
  const files = new Set(['/usr/bin/ghostpilot', '/home/me/venv/bin/python']);
  const checks = (PATH: string) => ({
    isExecutable: (file: string) => files.has(file),
    env: { PATH, HOME: '/home/me' },
    platform: 'linux',
  });
  const cases: [string, string, string, string | undefined][] = [
    ['found on PATH', 'ghostpilot', '/opt/bin:/usr/bin', '/usr/bin/ghostpilot'],
    ['missing from PATH', 'ghostpilot', '/opt/bin', undefined],
    ['absolute path exists', '/home/me/venv/bin/python', '', '/home/me/venv/bin/python'],
    ['absolute path missing', '/nope/python', '/usr/bin', undefined],
    ['home expanded', '~/venv/bin/python', '', '/home/me/venv/bin/python'],
    ['empty PATH entries skipped', 'ghostpilot', '::/usr/bin', '/usr/bin/ghostpilot'],
  ];
  for (const [name, command, PATH, expected] of cases) {
    it(name, () => assert.equal(findExecutable(command, checks(PATH)), expected));
  }
});

describe('missingMessage', () => {
  const cases: [string, 'server.command' | 'server.pythonPath' | 'PATH', RegExp][] = [
    ['PATH says how to install', 'PATH', /pip install ghostpilot/],
    ['python path names the setting', 'server.pythonPath', /ghostpilot\.server\.pythonPath/],
    ['command names the setting', 'server.command', /ghostpilot\.server\.command/],
  ];
  for (const [name, source, pattern] of cases) {
    it(name, () => assert.match(missingMessage({ command: 'x', args: [], source }).message, pattern));
  }
});

describe('settings', () => {
  it('explicit value prefers the most specific scope', () => {
    assert.equal(explicitValue({ globalValue: 1, workspaceValue: 2, workspaceFolderValue: 3 }), 3);
    assert.equal(explicitValue({ globalValue: 1 }), 1);
    assert.equal(explicitValue({}), undefined);
  });
  it('unset keys go to the server as null, set keys as set', () => {
    const result = serverSettings((key) => (key === 'nThreads' ? { globalValue: 4 } : {}));
    assert.equal(result.nThreads, 4);
    assert.equal(result.model, null);
    assert.deepEqual(Object.keys(result).sort(), [...SERVER_KEYS].sort());
  });
  it('client-only keys never reach the server', () => {
    const result = serverSettings(() => ({ globalValue: 'x' })) as Record<string, unknown>;
    assert.ok(!('server' in result) && !('trace' in result));
  });
  const restartCases: [string, string[], boolean][] = [
    ['server command', ['ghostpilot.server.command'], true],
    ['python path', ['ghostpilot.server.pythonPath'], true],
    ['languages', ['ghostpilot.enabledLanguages'], true],
    ['model is live', ['ghostpilot.model'], false],
    ['toggle is live', ['ghostpilot.enable'], false],
  ];
  for (const [name, changed, expected] of restartCases) {
    it(`restart on ${name}: ${expected}`, () => assert.equal(needsRestart((s) => changed.includes(s)), expected));
  }
  const languageCases: [string, unknown, string[]][] = [
    ['list', ['python', 'rust'], ['python', 'rust']],
    ['duplicates', ['python', 'python'], ['python']],
    ['empty list', [], ['python']],
    ['not a list', 'python', ['python']],
    ['junk entries', ['', 3, 'go'], ['go']],
  ];
  for (const [name, value, expected] of languageCases) {
    it(`languages: ${name}`, () => assert.deepEqual(languagesFrom(value), expected));
  }
});

describe('status', () => {
  const base: StatusSnapshot = { state: 'starting', suggestionsOff: false };
  const parseCases: [string, unknown, boolean][] = [
    ['ready', { state: 'ready', model: 'gemma3-270m' }, true],
    ['unknown state', { state: 'sleeping' }, false],
    ['not an object', 'ready', false],
    ['null', null, false],
  ];
  for (const [name, raw, ok] of parseCases) {
    it(`parse ${name}`, () => assert.equal(parseStatus(raw) !== undefined, ok));
  }
  it('drops a negative latency', () => assert.equal(parseStatus({ state: 'ready', latencyMs: -1 })?.latencyMs, undefined));

  const viewCases: [string, StatusSnapshot, RegExp][] = [
    ['loading', { ...base, state: 'loading', model: 'gemma3-270m', message: 'gemma3-270m' }, /loading~spin\) gemma3-270m: loading$/],
    ['loading shows progress', { ...base, state: 'loading', model: 'gemma3-270m', progress: { title: 'Ghostpilot', percentage: 40 } }, /loading~spin\) gemma3-270m: loading 40%/],
    ['other progress shows its title', { ...base, state: 'ready', model: 'm', progress: { title: 'Ghostpilot: docstring for f', percentage: 67 } }, /m: docstring for f 67%/],
    ['ready shows latency', { ...base, state: 'ready', model: 'm', serverLatencyMs: 412 }, /m: 412 ms/],
    ['round trip when server is silent', { ...base, state: 'ready', model: 'm', roundTripMs: 1234 }, /m: 1\.2 s/],
    ['generating', { ...base, state: 'generating', model: 'm' }, /sync~spin\) m: generating/],
    ['error', { ...base, state: 'error', model: 'm' }, /\$\(error\) m: error/],
    ['toggled off', { ...base, state: 'ready', model: 'm', suggestionsOff: true }, /circle-slash\) m: off/],
  ];
  for (const [name, snapshot, pattern] of viewCases) {
    it(`view: ${name}`, () => assert.match(statusView(snapshot).text, pattern));
  }
  it('error view is red, tooltip says how to open the log', () => {
    const view = statusView({ ...base, state: 'error' });
    assert.equal(view.kind, 'error');
    assert.match(view.tooltip, /log/);
  });
  it('a cached suggestion keeps the last generated latency', () => {
    let snapshot = applyStatus(base, { state: 'ready', model: 'm', latencyMs: 850 });
    snapshot = applyStatus(snapshot, parseStatus({ state: 'ready', latencyMs: 0, cached: true })!);
    assert.equal(snapshot.serverLatencyMs, 850);
  });
  it('model and latency persist across notifications', () => {
    let snapshot = applyStatus(base, { state: 'ready', model: 'm', latencyMs: 90 });
    snapshot = applyStatus(snapshot, { state: 'generating' });
    assert.equal(snapshot.model, 'm');
    assert.equal(snapshot.serverLatencyMs, 90);
  });
});

describe('applyProgress', () => {
  it('begin, report, end', () => {
    let progress = applyProgress(undefined, { kind: 'begin', title: 'Ghostpilot', message: 'loading', percentage: 0 });
    assert.deepEqual(progress, { title: 'Ghostpilot', message: 'loading', percentage: 0 });
    progress = applyProgress(progress, { kind: 'report', percentage: 140 });
    assert.equal(progress?.percentage, 100);
    assert.equal(progress?.title, 'Ghostpilot');
    assert.equal(applyProgress(progress, { kind: 'end' }), undefined);
  });
  it('ignores junk', () => assert.equal(applyProgress(undefined, 'x'), undefined));
});

describe('logLevelOf', () => {
  const cases: [string, string][] = [
    ['2024-01-01 INFO lsp_server: ready', 'info'],
    ['WARNING:pygls:bad thing', 'warn'],
    ['ERROR lsp_server: model failed', 'error'],
    ['Traceback (most recent call last):', 'error'],
    ['DEBUG prompt: 512 tokens', 'debug'],
    ['plain text', 'info'],
  ];
  for (const [line, level] of cases) {
    it(line, () => assert.equal(logLevelOf(line), level));
  }
});

describe('reportDocument', () => {
  const cases: [string, unknown, string, RegExp][] = [
    ['markdown string', '# Report', 'markdown', /# Report/],
    ['markdown field', { markdown: '## AI code' }, 'markdown', /AI code/],
    ['text field', { text: 'plain' }, 'plaintext', /plain/],
    ['other json', { items: [1] }, 'json', /"items"/],
    ['nothing', null, 'plaintext', /no over-reliance report/],
  ];
  for (const [name, result, language, pattern] of cases) {
    it(name, () => {
      const document = reportDocument(result);
      assert.equal(document.language, language);
      assert.match(document.content, pattern);
    });
  }
});

describe('statusView: local fallback', () => {
  it('says "local fallback" plainly, as a warning, while the local model stands in', () => {
    const base: StatusSnapshot = { state: 'ready', model: 'gemma3-270m', suggestionsOff: false };
    const message = 'local fallback: llama-server at http://gpu:8080 unreachable (connection refused)';
    const view = statusView({ ...base, message });
    assert.match(view.text, /gemma3-270m: local fallback/);
    assert.equal(view.kind, 'warning');
    assert.match(view.tooltip, /unreachable/);
    const normal = statusView({ ...base, message: 'llama-server at http://gpu:8080' });
    assert.doesNotMatch(normal.text, /fallback/);
    assert.equal(normal.kind, 'normal');
  });
});

describe('tested candidates', () => {
  const item = (candidate: number, of: number) => ({
    insertText: 'x',
    command: { title: 't', command: 'ghostpilot.accept', arguments: ['id', { title: `candidate ${candidate}/${of} · passes ${candidate}/3 examples`, candidate, of, summary: '1 of 2 pass' }] },
  });
  it('reads the details the server attaches', () => {
    assert.deepEqual(candidateInfo(item(1, 2)), { title: 'candidate 1/2 · passes 1/3 examples', candidate: 1, of: 2, summary: '1 of 2 pass' });
    assert.equal(candidateInfo({ insertText: 'x', command: { arguments: ['id'] } }), undefined);
  });
  it('follows the item on screen through next and previous, wrapping', () => {
    const cycle = new CandidateCycle();
    cycle.set([item(1, 2), item(2, 2)]);
    assert.equal(cycle.text, '$(beaker) candidate 1/2 · passes 1/3 examples');
    cycle.move(1);
    assert.equal(cycle.text, '$(beaker) candidate 2/2 · passes 2/3 examples');
    cycle.move(1);
    assert.equal(cycle.text, '$(beaker) candidate 1/2 · passes 1/3 examples');
    cycle.move(-1);
    assert.match(cycle.text ?? '', /candidate 2\/2/);
    cycle.set([{ insertText: 'plain' }]);
    assert.equal(cycle.text, undefined);
  });
  it('lists command candidates for a quick pick', () => {
    const rows = pickRows([{ id: 'a', title: 'candidate 1/1 · passes 3/3 examples', text: '    x = 1\n\n    return x\n', range: { start: { line: 1, character: 0 }, end: { line: 1, character: 0 } } }]);
    assert.deepEqual(rows, [{ label: 'candidate 1/1 · passes 3/3 examples', detail: 'x = 1  ⏎  return x', index: 0 }]);
  });
});
