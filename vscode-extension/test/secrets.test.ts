/** The remote API key's way from SecretStorage to the server (src/secrets.ts): `npm test`. */
import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import {
  API_KEY_SECRET,
  ApiKeyStore,
  DEFAULT_KEY_ENV,
  KEY_COMMANDS,
  KeyUi,
  cleanKey,
  keyEnvName,
  serverEnvironment,
  withKeyEnv,
} from '../src/secrets';

describe('keyEnvName', () => {
  const cases: [unknown, string][] = [
    [undefined, DEFAULT_KEY_ENV],
    ['', DEFAULT_KEY_ENV],
    ['  TEAM_LLM_KEY ', 'TEAM_LLM_KEY'],
    ['not a name', DEFAULT_KEY_ENV],
    ['1ABC', DEFAULT_KEY_ENV],
    [42, DEFAULT_KEY_ENV],
  ];
  for (const [value, expected] of cases) {
    it(`${JSON.stringify(value)} -> ${expected}`, () => assert.equal(keyEnvName(value), expected));
  }
});

describe('serverEnvironment and withKeyEnv', () => {
  it('puts the key only in the environment, and only its variable name in the settings', () => {
    const env = serverEnvironment({ PATH: '/bin' }, 's3cret', 'GHOSTPILOT_API_KEY');
    assert.deepEqual(env, { PATH: '/bin', GHOSTPILOT_API_KEY: 's3cret' });
    const sent = withKeyEnv({ backend: 'llama-server', apiKeyEnv: null }, 'GHOSTPILOT_API_KEY');
    assert.deepEqual(sent, { backend: 'llama-server', apiKeyEnv: 'GHOSTPILOT_API_KEY' });
    assert.ok(!JSON.stringify(sent).includes('s3cret'));
  });
  it('keeps the user\'s own apiKeyEnv, and changes nothing without a stored key', () => {
    assert.deepEqual(withKeyEnv({ apiKeyEnv: 'MINE' }, 'GHOSTPILOT_API_KEY'), { apiKeyEnv: 'MINE' });
    assert.deepEqual(withKeyEnv({ apiKeyEnv: null }, undefined), { apiKeyEnv: null });
    assert.deepEqual(serverEnvironment({ PATH: '/bin', MINE: 'exported' }, undefined, ''), { PATH: '/bin', MINE: 'exported' });
  });
  it('cleans what was typed', () => {
    assert.equal(cleanKey('  abc  '), 'abc');
    assert.equal(cleanKey('   '), undefined);
    assert.equal(cleanKey('a\nb'), undefined);
    assert.equal(cleanKey(undefined), undefined);
  });
});

describe('ApiKeyStore', () => {
  function rig(typed: string | undefined) {
    const stored = new Map<string, string>();
    const listeners: ((event: { key: string }) => void)[] = [];
    const secrets = {
      get: async (key: string) => stored.get(key),
      store: async (key: string, value: string) => {
        stored.set(key, value);
        listeners.forEach((fire) => fire({ key }));
      },
      delete: async (key: string) => {
        stored.delete(key);
        listeners.forEach((fire) => fire({ key }));
      },
      onDidChange: (listener: (event: { key: string }) => void) => {
        listeners.push(listener);
        return { dispose: () => undefined };
      },
    };
    const commands = new Map<string, () => Promise<void>>();
    const shown: string[] = [];
    const ui = {
      commands: {
        registerCommand: (name: string, run: () => Promise<void>) => {
          commands.set(name, run);
          return { dispose: () => commands.delete(name) };
        },
      },
      window: {
        showInputBox: async (options: { password?: boolean }) => {
          assert.equal(options.password, true); // never echoed on screen
          return typed;
        },
        showInformationMessage: async (message: string) => {
          shown.push(message);
          return undefined;
        },
      },
    } as unknown as KeyUi;
    let restarts = 0;
    const store = new ApiKeyStore(secrets as never, () => restarts++, ui);
    return { store, stored, commands, shown, restarts: () => restarts };
  }

  it('stores a typed key in SecretStorage, restarts the server, and clears it', async () => {
    const { store, stored, commands, shown, restarts } = rig('  team-key ');
    await commands.get(KEY_COMMANDS.set)!();
    assert.equal(stored.get(API_KEY_SECRET), 'team-key');
    assert.equal(await store.get(), 'team-key');
    assert.equal(restarts(), 1);
    assert.ok(shown.every((message) => !message.includes('team-key')));
    await commands.get(KEY_COMMANDS.clear)!();
    assert.equal(await store.get(), undefined);
    assert.equal(restarts(), 2);
    store.dispose();
    assert.equal(commands.size, 0);
  });

  it('an empty or cancelled input stores nothing', async () => {
    const { store, commands, restarts } = rig(undefined);
    await commands.get(KEY_COMMANDS.set)!();
    assert.equal(await store.get(), undefined);
    assert.equal(restarts(), 0);
  });
});
