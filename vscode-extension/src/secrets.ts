/**
 * The remote engine's API key, kept in VS Code's SecretStorage (the OS keychain), never in
 * settings.json nor in any log.
 *
 * How it reaches the server: in the environment of the `ghostpilot serve` process, under
 * the variable that `ghostpilot.apiKeyEnv` names (GHOSTPILOT_API_KEY when unset), and the
 * server is told that name through the `apiKeyEnv` setting. The environment of a child
 * process is readable only by the same user (as the keychain is), it is not part of the LSP
 * traffic (so an LSP trace never shows it), and the server never logs it. Setting or clearing
 * the key restarts the server, since a process's environment is fixed when it starts.
 */
import type * as vscode from 'vscode';

/** The parts of the VS Code API the store uses (passed in, so this module loads without VS Code). */
export type KeyUi = {
  commands: Pick<typeof vscode.commands, 'registerCommand'>;
  window: Pick<typeof vscode.window, 'showInputBox' | 'showInformationMessage'>;
};

/** The SecretStorage key (per VS Code profile, shared by every workspace). */
export const API_KEY_SECRET = 'ghostpilot.remoteApiKey';
/** The variable the key travels in when `ghostpilot.apiKeyEnv` names none. */
export const DEFAULT_KEY_ENV = 'GHOSTPILOT_API_KEY';

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** The environment variable to put the key in: the user's `apiKeyEnv` when it is a valid name. */
export function keyEnvName(apiKeyEnv: unknown): string {
  return typeof apiKeyEnv === 'string' && ENV_NAME.test(apiKeyEnv.trim()) ? apiKeyEnv.trim() : DEFAULT_KEY_ENV;
}

/**
 * The server process's environment: `base` plus the stored key under `envName`. Without
 * a stored key, `base` as it is (a key the user exported in their shell still works).
 */
export function serverEnvironment(
  base: Record<string, string | undefined>,
  key: string | undefined,
  envName: string,
): Record<string, string | undefined> {
  return key ? { ...base, [envName]: key } : { ...base };
}

/**
 * The settings sent to the server, with `apiKeyEnv` pointing at the variable the key is
 * in when a key is stored and the user named none. The key itself is never in them.
 */
export function withKeyEnv<T extends Record<string, unknown>>(settings: T, envName: string | undefined): T {
  if (!envName || (typeof settings.apiKeyEnv === 'string' && settings.apiKeyEnv)) {
    return settings;
  }
  return { ...settings, apiKeyEnv: envName };
}

/** A key as typed or pasted: trimmed; undefined when empty or when it holds a line break. */
export function cleanKey(value: string | undefined): string | undefined {
  const key = value?.trim();
  return key && !/[\r\n]/.test(key) ? key : undefined;
}

export const KEY_COMMANDS = {
  set: 'ghostpilot.setRemoteApiKey',
  clear: 'ghostpilot.clearRemoteApiKey',
} as const;

/** The stored key, and the two commands that change it. */
export class ApiKeyStore implements vscode.Disposable {
  private readonly disposables: vscode.Disposable[] = [];

  /** `changed` is called after the key was set or cleared (the server restarts). */
  constructor(
    private readonly secrets: vscode.SecretStorage,
    private readonly changed: () => unknown,
    private readonly ui: KeyUi,
  ) {
    this.disposables.push(
      ui.commands.registerCommand(KEY_COMMANDS.set, () => this.askAndStore()),
      ui.commands.registerCommand(KEY_COMMANDS.clear, () => this.clear()),
      // Another window of the same profile changed it.
      secrets.onDidChange((event) => {
        if (event.key === API_KEY_SECRET) {
          void this.changed();
        }
      }),
    );
  }

  async get(): Promise<string | undefined> {
    try {
      return cleanKey(await this.secrets.get(API_KEY_SECRET));
    } catch {
      return undefined; // no keychain available: behave as if no key is stored
    }
  }

  private async askAndStore(): Promise<void> {
    const typed = await this.ui.window.showInputBox({
      title: 'Ghostpilot: remote API key',
      prompt:
        'The key of your remote engine (llama-server --api-key, vLLM --api-key, a proxy). ' +
        'It is kept in the OS keychain through VS Code, never in settings.json.',
      password: true,
      ignoreFocusOut: true,
      validateInput: (value) => (value.trim() === '' || cleanKey(value) ? undefined : 'One line, please.'),
    });
    const key = cleanKey(typed);
    if (!key) {
      return;
    }
    await this.secrets.store(API_KEY_SECRET, key);
    void this.ui.window.showInformationMessage('Ghostpilot: remote API key stored; the server restarts to use it.');
  }

  private async clear(): Promise<void> {
    await this.secrets.delete(API_KEY_SECRET);
    void this.ui.window.showInformationMessage('Ghostpilot: remote API key cleared.');
  }

  dispose(): void {
    for (const disposable of this.disposables) {
      disposable.dispose();
    }
  }
}
