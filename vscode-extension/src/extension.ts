/** Entry point: VS Code calls `activate` on the first Python file or Ghostpilot command. */
import * as vscode from 'vscode';
import { Ghostpilot } from './ghostpilot';

let ghostpilot: Ghostpilot | undefined;

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  ghostpilot = new Ghostpilot();
  context.subscriptions.push(ghostpilot);
  // Not awaited: the status bar reports progress; activation should not wait for the model.
  void ghostpilot.start();
}

export async function deactivate(): Promise<void> {
  await ghostpilot?.stop();
  ghostpilot = undefined;
}
