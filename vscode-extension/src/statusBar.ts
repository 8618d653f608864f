/** The status bar item: shows `statusView` of the current snapshot; a click opens the log. */
import * as vscode from 'vscode';
import { StatusParams, StatusSnapshot, applyStatus, statusView } from './status';

export class StatusBar implements vscode.Disposable {
  private readonly item: vscode.StatusBarItem;
  private snapshot: StatusSnapshot;

  constructor(showLogCommand: string, suggestionsOff: boolean) {
    this.item = vscode.window.createStatusBarItem('ghostpilot.status', vscode.StatusBarAlignment.Right, 100);
    this.item.name = 'Ghostpilot';
    this.item.command = showLogCommand;
    this.snapshot = { state: 'starting', suggestionsOff };
    this.render();
    this.item.show();
  }

  get current(): StatusSnapshot {
    return this.snapshot;
  }

  /** A `ghostpilot/status` notification from the server. */
  applyServer(params: StatusParams): void {
    this.update(applyStatus(this.snapshot, params));
  }

  update(snapshot: StatusSnapshot): void {
    this.snapshot = snapshot;
    this.render();
  }

  patch(change: Partial<StatusSnapshot>): void {
    this.update({ ...this.snapshot, ...change });
  }

  private render(): void {
    const view = statusView(this.snapshot);
    this.item.text = view.text;
    this.item.tooltip = view.tooltip;
    this.item.backgroundColor =
      view.kind === 'error'
        ? new vscode.ThemeColor('statusBarItem.errorBackground')
        : view.kind === 'warning'
          ? new vscode.ThemeColor('statusBarItem.warningBackground')
          : undefined;
  }

  dispose(): void {
    this.item.dispose();
  }
}
