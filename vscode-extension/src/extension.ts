/** Entry point: VS Code calls `activate` on the first Python file or Ghostpilot command. */
import * as vscode from 'vscode';
import { Ghostpilot } from './ghostpilot';
import { ApiKeyStore } from './secrets';

let ghostpilot: Ghostpilot | undefined;

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  // The remote engine's API key lives in SecretStorage; a new or cleared key restarts the server.
  const keys = new ApiKeyStore(context.secrets, () => ghostpilot?.restart(true), vscode);
  ghostpilot = new Ghostpilot(() => keys.get());
  context.subscriptions.push(keys, ghostpilot);
  // Not awaited: the status bar reports progress; activation should not wait for the model.
  void ghostpilot.start();
}

export async function deactivate(): Promise<void> {
  await ghostpilot?.stop();
  ghostpilot = undefined;
}
