/**
 * The extension's one stateful object: starts `ghostpilot serve`, wires its
 * notifications to the status bar, and runs the user-facing commands.
 *
 * Everything the LSP already covers (inline completions, code actions, applying
 * edits, executing server commands such as `ghostpilot.accept`) is left to
 * vscode-languageclient; this file only holds activation, settings and UI.
 */
import { execFile } from 'child_process';
import * as fs from 'fs';
import * as readline from 'readline';
import * as vscode from 'vscode';
import {
  CloseAction,
  DidChangeConfigurationNotification,
  ErrorAction,
  ExecuteCommandRequest,
  LanguageClient,
  LanguageClientOptions,
  ResponseError,
  RevealOutputChannelOn,
  ServerOptions,
  State,
} from 'vscode-languageclient/node';
import { reportDocument } from './report';
import {
  LaunchProblem,
  ServerLaunch,
  chooseLaunch,
  findExecutable,
  isProblem,
  missingMessage,
  notInstalledMessage,
} from './serverCommand';
import { ModelPickItem, modelPickItems, parseListing, pickPlaceholder } from './models';
import { logLevelOf } from './serverLog';
import { keyEnvName, serverEnvironment, withKeyEnv } from './secrets';
import { ServerKey, languagesFrom, needsRestart, serverSettings } from './settings';
import { ProgressInfo, applyProgress, parseStatus } from './status';
import { StatusBar } from './statusBar';
import { CandidateCycle, CommandCandidate, pickRows } from './tested';

/** Commands this extension contributes. Server commands keep their own ids (see package.json). */
export const COMMANDS = {
  generateDocstring: 'ghostpilot.generateDocstringAtCursor',
  toggle: 'ghostpilot.toggleInlineSuggestions',
  relianceReport: 'ghostpilot.showRelianceReport',
  restart: 'ghostpilot.restartServer',
  showLog: 'ghostpilot.showLog',
  selectModel: 'ghostpilot.selectModel',
  suggestTested: 'ghostpilot.suggestTestedImplementation',
  nextCandidate: 'ghostpilot.nextTestedCandidate',
  previousCandidate: 'ghostpilot.previousTestedCandidate',
} as const;

/** Commands the server executes (workspace/executeCommand). */
export const SERVER_COMMANDS = {
  generateDocstring: 'ghostpilot.generateDocstring',
  relianceReport: 'ghostpilot.relianceReport',
  suggestTested: 'ghostpilot.suggestTested',
  accept: 'ghostpilot.accept',
} as const;

const STATUS_NOTIFICATION = 'ghostpilot/status';
/** The server's model catalogue (see src/models.ts). */
const MODELS_REQUEST = 'ghostpilot/models';
/** Read-only documents for reports: nothing to save, nothing dirty on close. */
const REPORT_SCHEME = 'ghostpilot-report';
const RESTARTS_ALLOWED = 3;
const RESTART_WINDOW_MS = 3 * 60 * 1000;
/** A request slower than this shows "generating" even when the server says nothing. */
const GENERATING_AFTER_MS = 250;

function settings(scope?: vscode.ConfigurationScope): vscode.WorkspaceConfiguration {
  return vscode.workspace.getConfiguration('ghostpilot', scope);
}

function currentServerSettings(scope?: vscode.ConfigurationScope): Record<ServerKey, unknown> {
  const config = settings(scope);
  return serverSettings((key) => config.inspect(key));
}

function isExecutable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

/** Run `python -c "import lsp_server"`; the error text when it fails. */
function importProblem(python: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    execFile(python, ['-c', 'import lsp_server'], { timeout: 30000 }, (error, _stdout, stderr) => {
      resolve(error ? stderr || error.message : undefined);
    });
  });
}

/** Write a setting where the user set it (folder, workspace), else in the user settings. */
function settingTarget(inspected: { workspaceFolderValue?: unknown; workspaceValue?: unknown } | undefined) {
  return inspected?.workspaceFolderValue !== undefined
    ? vscode.ConfigurationTarget.WorkspaceFolder
    : inspected?.workspaceValue !== undefined
      ? vscode.ConfigurationTarget.Workspace
      : vscode.ConfigurationTarget.Global;
}

export class Ghostpilot implements vscode.Disposable {
  private client: LanguageClient | undefined;
  private starting: Promise<void> | undefined;
  private restarting: Promise<void> = Promise.resolve();
  private readonly log: vscode.LogOutputChannel;
  private readonly status: StatusBar;
  private readonly disposables: vscode.Disposable[] = [];
  private crashTimes: number[] = [];
  private shownProblem: string | undefined;
  private inFlight = 0;
  private generatingTimer: NodeJS.Timeout | undefined;
  private clientMarkedGenerating = false;
  /** Active `$/progress` by token, newest last; the status bar shows the newest. */
  private readonly progress = new Map<string | number, ProgressInfo>();
  private readonly reports = new Map<string, string>();
  private readonly reportChanged = new vscode.EventEmitter<vscode.Uri>();
  /** The variable the stored API key is passed in (see secrets.ts); undefined without a key. */
  private keyEnv: string | undefined;
  /** The tested candidates on screen (src/tested.ts) and their status bar item. */
  private readonly candidates = new CandidateCycle();
  private readonly candidateItem = vscode.window.createStatusBarItem('ghostpilot.candidate', vscode.StatusBarAlignment.Right, 101);

  /** `apiKey` reads the remote engine's key from SecretStorage (src/secrets.ts). */
  constructor(private readonly apiKey?: () => Promise<string | undefined>) {
    this.log = vscode.window.createOutputChannel('Ghostpilot', { log: true });
    this.status = new StatusBar(COMMANDS.showLog, !this.suggestionsEnabled());
    this.disposables.push(
      this.log,
      this.status,
      vscode.commands.registerCommand(COMMANDS.generateDocstring, () => this.generateDocstring()),
      vscode.commands.registerCommand(COMMANDS.toggle, () => this.toggleSuggestions()),
      vscode.commands.registerCommand(COMMANDS.relianceReport, () => this.showRelianceReport()),
      vscode.commands.registerCommand(COMMANDS.restart, () => this.restart(true)),
      vscode.commands.registerCommand(COMMANDS.showLog, () => this.log.show(true)),
      vscode.commands.registerCommand(COMMANDS.selectModel, () => this.selectModel()),
      vscode.commands.registerCommand(COMMANDS.suggestTested, () => this.suggestTested()),
      vscode.commands.registerCommand(COMMANDS.nextCandidate, () => this.showCandidate(1)),
      vscode.commands.registerCommand(COMMANDS.previousCandidate, () => this.showCandidate(-1)),
      this.candidateItem,
      vscode.window.onDidChangeTextEditorSelection(() => this.hideCandidates()),
      vscode.workspace.onDidChangeConfiguration((event) => this.onConfigurationChanged(event)),
      this.reportChanged,
      vscode.workspace.registerTextDocumentContentProvider(REPORT_SCHEME, {
        onDidChange: this.reportChanged.event,
        provideTextDocumentContent: (uri) => this.reports.get(uri.toString()) ?? '',
      }),
    );
  }

  suggestionsEnabled(): boolean {
    return settings().get<boolean>('enable', true) !== false;
  }

  /** Start the server; on a launch problem show one actionable message and stay stopped. */
  start(): Promise<void> {
    if (!this.starting) {
      this.starting = this.startClient().finally(() => {
        this.starting = undefined;
      });
    }
    return this.starting;
  }

  async stop(): Promise<void> {
    await this.starting?.catch(() => undefined);
    const client = this.client;
    this.client = undefined;
    if (client) {
      try {
        if (client.needsStop()) {
          await client.stop(5000);
        }
      } catch (error) {
        this.log.warn(`Stopping the server failed: ${String(error)}`);
      }
      await client.dispose().catch(() => undefined);
    }
  }

  /** Restarts run one after another, so the last one always sees the newest settings. */
  restart(byUser: boolean): Promise<void> {
    const run = async () => {
      if (byUser) {
        this.shownProblem = undefined;
        this.crashTimes = [];
      }
      this.log.info(byUser ? 'Restarting the server (requested).' : 'Restarting the server (settings changed).');
      await this.stop();
      await this.start();
    };
    this.restarting = this.restarting.then(run, run);
    return this.restarting;
  }

  private async startClient(): Promise<void> {
    this.status.patch({ state: 'starting', message: undefined, serverLatencyMs: undefined, roundTripMs: undefined });
    const launch = await this.resolveLaunch();
    if (isProblem(launch)) {
      this.status.patch({ state: 'stopped', message: 'server not found' });
      this.log.error(launch.message);
      this.showProblem(launch);
      return;
    }
    this.log.info(`Starting ${[launch.command, ...launch.args].join(' ')} (from ${launch.source})`);
    const key = await this.apiKey?.();
    this.keyEnv = key ? keyEnvName(settings().get('apiKeyEnv')) : undefined;
    if (this.keyEnv) {
      this.log.info(`The remote API key from the keychain is passed in ${this.keyEnv}.`);
    }
    const client = new LanguageClient('ghostpilot', 'Ghostpilot', this.serverOptions(launch, key), this.clientOptions());
    this.client = client;
    client.onDidChangeState((event) => {
      if (this.client !== client) {
        return;
      }
      if (event.newState === State.Running && this.status.current.state === 'starting') {
        this.status.patch({ state: 'ready' });
      } else if (event.newState === State.Stopped) {
        this.progress.clear();
        this.status.patch({ state: 'stopped', progress: undefined });
      }
    });
    // Registered before start() so the first notifications (model loading) are not lost.
    client.onNotification(STATUS_NOTIFICATION, (raw: unknown) => {
      const params = parseStatus(raw);
      if (params) {
        this.status.applyServer(params);
      } else {
        this.log.warn(`Ignored a malformed ${STATUS_NOTIFICATION} notification: ${JSON.stringify(raw)}`);
      }
    });
    try {
      await client.start();
    } catch (error) {
      this.status.patch({ state: 'error', message: 'server failed to start' });
      this.log.error(`The server failed to start: ${error instanceof Error ? error.message : String(error)}`);
    }
  }

  private async resolveLaunch(): Promise<ServerLaunch | LaunchProblem> {
    const config = settings();
    const launch = chooseLaunch(config.get('server.command'), config.get('server.pythonPath'));
    if (isProblem(launch)) {
      return launch;
    }
    const executable = findExecutable(launch.command, {
      isExecutable,
      env: process.env,
      platform: process.platform,
    });
    if (!executable) {
      return missingMessage(launch);
    }
    if (launch.source === 'server.pythonPath') {
      const problem = await importProblem(executable);
      if (problem) {
        return notInstalledMessage(launch.command, problem);
      }
    }
    return { ...launch, command: executable };
  }

  private serverOptions(launch: ServerLaunch, key: string | undefined): ServerOptions {
    const folder = vscode.workspace.workspaceFolders?.[0];
    return {
      command: launch.command,
      args: launch.args,
      // No `transport`: stdio is the default, and TransportKind.stdio would append "--stdio".
      options: {
        cwd: folder?.uri.scheme === 'file' ? folder.uri.fsPath : undefined,
        env: serverEnvironment({ ...process.env, PYTHONUNBUFFERED: '1' }, key, this.keyEnv ?? ''),
      },
    };
  }

  private clientOptions(): LanguageClientOptions {
    const languages = languagesFrom(settings().get('enabledLanguages'));
    const toLog = (input: NodeJS.ReadableStream, channel: vscode.LogOutputChannel) => {
      readline
        .createInterface({ input, crlfDelay: Infinity, terminal: false })
        .on('line', (line) => channel[logLevelOf(line)](line));
    };
    return {
      documentSelector: languages.flatMap((language) => [
        { scheme: 'file', language },
        { scheme: 'untitled', language },
      ]),
      outputChannel: this.log,
      revealOutputChannelOn: RevealOutputChannelOn.Never,
      stdioOptions: { stdout: toLog, stderr: toLog },
      initializationOptions: () => withKeyEnv(currentServerSettings(), this.keyEnv),
      initializationFailedHandler: (error) => {
        this.status.patch({ state: 'error', message: 'initialization failed' });
        this.showProblem({
          message: `Ghostpilot: the server failed to initialize (${error instanceof Error ? error.message : String(error)}). See the log.`,
          setting: 'ghostpilot.server',
        });
        return false;
      },
      errorHandler: {
        error: (_error, _message, count) => ({
          action: count !== undefined && count <= 3 ? ErrorAction.Continue : ErrorAction.Shutdown,
          handled: true,
        }),
        closed: () => this.onServerClosed(),
      },
      middleware: {
        // VS Code shows the progress itself (window location); this mirrors it in our item.
        handleWorkDoneProgress: (token, params, next) => {
          this.onProgress(token, params);
          next(token, params);
        },
        provideInlineCompletionItems: async (document, position, context, token, next) => {
          if (!this.suggestionsEnabled()) {
            return null;
          }
          const started = Date.now();
          this.requestStarted();
          try {
            const result = await next(document, position, context, token);
            const items = !result ? [] : Array.isArray(result) ? result : result.items;
            const count = items.length;
            if (!token.isCancellationRequested) {
              this.candidates.set(items);
              this.renderCandidate();
            }
            if (count > 0 && !token.isCancellationRequested) {
              this.status.patch({ roundTripMs: Date.now() - started });
            }
            return result;
          } finally {
            this.requestEnded();
          }
        },
        workspace: {
          configuration: async (params, token, next) => {
            const defaults = await next(params, token);
            if (defaults instanceof ResponseError || !Array.isArray(defaults)) {
              return defaults;
            }
            return params.items.map((item, index) =>
              item.section === 'ghostpilot'
                ? withKeyEnv(currentServerSettings(item.scopeUri ? vscode.Uri.parse(item.scopeUri) : undefined), this.keyEnv)
                : defaults[index],
            );
          },
        },
      },
    };
  }

  private onServerClosed(): { action: CloseAction; handled: boolean } {
    const now = Date.now();
    this.crashTimes = this.crashTimes.filter((time) => now - time < RESTART_WINDOW_MS);
    this.crashTimes.push(now);
    if (this.crashTimes.length <= RESTARTS_ALLOWED) {
      this.log.warn(`The server exited; restarting it (${this.crashTimes.length}/${RESTARTS_ALLOWED}).`);
      return { action: CloseAction.Restart, handled: true };
    }
    this.status.patch({ state: 'error', message: 'server keeps exiting' });
    this.showProblem({
      message: `Ghostpilot: the server exited ${this.crashTimes.length} times in 3 minutes, so it was not restarted again. The log says why; after fixing it run "Ghostpilot: Restart server".`,
      setting: 'ghostpilot.server',
    });
    return { action: CloseAction.DoNotRestart, handled: true };
  }

  private onProgress(token: string | number, value: unknown): void {
    const updated = applyProgress(this.progress.get(token), value);
    this.progress.delete(token);
    if (updated) {
      this.progress.set(token, updated);
    }
    this.status.patch({ progress: [...this.progress.values()].pop() });
  }

  private requestStarted(): void {
    this.inFlight += 1;
    if (!this.generatingTimer) {
      this.generatingTimer = setTimeout(() => {
        this.generatingTimer = undefined;
        if (this.inFlight > 0 && this.status.current.state === 'ready') {
          this.clientMarkedGenerating = true;
          this.status.patch({ state: 'generating' });
        }
      }, GENERATING_AFTER_MS);
    }
  }

  private requestEnded(): void {
    this.inFlight = Math.max(0, this.inFlight - 1);
    if (this.inFlight > 0) {
      return;
    }
    if (this.generatingTimer) {
      clearTimeout(this.generatingTimer);
      this.generatingTimer = undefined;
    }
    if (this.clientMarkedGenerating && this.status.current.state === 'generating') {
      this.status.patch({ state: 'ready' });
    }
    this.clientMarkedGenerating = false;
  }

  /** Show a launch/crash problem once; the same text again stays in the log only. */
  private showProblem(problem: LaunchProblem): void {
    if (this.shownProblem === problem.message) {
      return;
    }
    this.shownProblem = problem.message;
    const openSettings = 'Open Settings';
    const showLog = 'Show Log';
    void vscode.window.showErrorMessage(problem.message, openSettings, showLog).then((choice) => {
      if (choice === openSettings) {
        void vscode.commands.executeCommand('workbench.action.openSettings', problem.setting);
      } else if (choice === showLog) {
        this.log.show(true);
      }
    });
  }

  private async onConfigurationChanged(event: vscode.ConfigurationChangeEvent): Promise<void> {
    if (!event.affectsConfiguration('ghostpilot')) {
      return;
    }
    this.status.patch({ suggestionsOff: !this.suggestionsEnabled() });
    if (needsRestart((section) => event.affectsConfiguration(section))) {
      this.shownProblem = undefined;
      await this.restart(false);
      return;
    }
    const client = this.client;
    if (client?.isRunning()) {
      await client.sendNotification(DidChangeConfigurationNotification.type, {
        settings: { ghostpilot: withKeyEnv(currentServerSettings(), this.keyEnv) },
      });
    }
  }

  /** The running client, or undefined after telling the user why there is none. */
  private async runningClient(): Promise<LanguageClient | undefined> {
    await this.starting;
    if (this.client?.isRunning()) {
      return this.client;
    }
    const restart = 'Restart Server';
    const choice = await vscode.window.showWarningMessage(
      'Ghostpilot: the language server is not running.',
      restart,
      'Show Log',
    );
    if (choice === restart) {
      await this.restart(true);
    } else if (choice) {
      this.log.show(true);
    }
    return undefined;
  }

  /** Execute a server command, or explain that this server does not offer it. */
  private async executeOnServer(command: string, args: unknown[], feature: string): Promise<unknown> {
    const client = await this.runningClient();
    if (!client) {
      return undefined;
    }
    const offered = client.initializeResult?.capabilities.executeCommandProvider?.commands ?? [];
    if (!offered.includes(command)) {
      void vscode.window.showWarningMessage(
        `Ghostpilot: this server version does not offer ${feature} (command "${command}"). Update the Ghostpilot server.`,
      );
      return undefined;
    }
    try {
      return await client.sendRequest(ExecuteCommandRequest.type, { command, arguments: args });
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      this.log.error(`${command} failed: ${message}`);
      void vscode.window.showErrorMessage(`Ghostpilot: ${feature} failed: ${message}`);
      return undefined;
    }
  }

  private async generateDocstring(): Promise<void> {
    const editor = vscode.window.activeTextEditor;
    if (!editor) {
      void vscode.window.showInformationMessage('Ghostpilot: put the cursor inside a function first.');
      return;
    }
    const languages = languagesFrom(settings().get('enabledLanguages'));
    if (!languages.includes(editor.document.languageId)) {
      void vscode.window.showInformationMessage(
        `Ghostpilot is not enabled for ${editor.document.languageId} (setting ghostpilot.enabledLanguages).`,
      );
      return;
    }
    const client = await this.runningClient();
    if (!client) {
      return;
    }
    const uri = client.code2ProtocolConverter.asUri(editor.document.uri);
    const position = client.code2ProtocolConverter.asPosition(editor.selection.active);
    const result = await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Window, title: 'Ghostpilot: writing a docstring' },
      () => this.executeOnServer(SERVER_COMMANDS.generateDocstring, [uri, position], 'docstring generation'),
    );
    const message = (result as { message?: unknown } | null | undefined)?.message;
    if (typeof message === 'string' && message) {
      void vscode.window.showInformationMessage(`Ghostpilot: ${message}`);
    }
  }

  /** VS Code's next/previous inline item, with the candidate line following it. */
  private async showCandidate(step: number): Promise<void> {
    await vscode.commands.executeCommand(step > 0 ? 'editor.action.inlineSuggest.showNext' : 'editor.action.inlineSuggest.showPrevious');
    this.candidates.move(step);
    this.renderCandidate();
  }

  private hideCandidates(): void {
    if (this.candidates.text !== undefined) {
      this.candidates.clear();
      this.renderCandidate();
    }
  }

  private renderCandidate(): void {
    const text = this.candidates.text;
    if (text === undefined) {
      this.candidateItem.hide();
      return;
    }
    this.candidateItem.text = text;
    this.candidateItem.tooltip = this.candidates.tooltip;
    this.candidateItem.show();
  }

  /**
   * Ghostpilot: Suggest tested implementation. The server draws k bodies for the function
   * at the cursor, runs its examples and tests on each in the sandbox and ranks them;
   * the candidates come back in a quick pick with their pass counts, best first.
   */
  private async suggestTested(): Promise<void> {
    const editor = vscode.window.activeTextEditor;
    const client = editor ? await this.runningClient() : undefined;
    if (!editor || !client) {
      return;
    }
    const uri = client.code2ProtocolConverter.asUri(editor.document.uri);
    const position = client.code2ProtocolConverter.asPosition(editor.selection.active);
    const answer = (await this.executeOnServer(SERVER_COMMANDS.suggestTested, [uri, position], 'tested suggestions')) as
      | { summary?: string; candidates?: CommandCandidate[]; cancelled?: boolean }
      | undefined;
    const candidates = answer?.candidates ?? [];
    if (!answer || answer.cancelled || !candidates.length) {
      return;
    }
    const picked = await vscode.window.showQuickPick(pickRows(candidates), {
      title: `Ghostpilot: ${answer.summary ?? ''}`,
      placeHolder: 'Insert which candidate?',
    });
    if (!picked) {
      return;
    }
    const chosen = candidates[picked.index];
    const range = client.protocol2CodeConverter.asRange(chosen.range);
    const applied = await editor.edit((edit) => edit.replace(range, chosen.text));
    if (applied) {
      await this.executeOnServer(SERVER_COMMANDS.accept, [chosen.id], 'accepting the candidate');
    }
  }

  private async showRelianceReport(): Promise<void> {
    const result = await this.executeOnServer(SERVER_COMMANDS.relianceReport, [], 'the over-reliance report');
    if (result === undefined) {
      return;
    }
    const report = reportDocument(result);
    const extension = { markdown: 'md', plaintext: 'txt', json: 'json' }[report.language];
    const uri = vscode.Uri.from({ scheme: REPORT_SCHEME, path: `/Ghostpilot over-reliance report.${extension}` });
    this.reports.set(uri.toString(), report.content);
    this.reportChanged.fire(uri);
    const document = await vscode.workspace.openTextDocument(uri);
    await vscode.window.showTextDocument(document, { preview: false });
  }

  /**
   * Installed and downloadable models from the server, with size and recommendation.
   * Selecting one sets `ghostpilot.model`; for a model that is not installed the server
   * then offers to download it (a notification with the size and, where needed, the licence).
   */
  private async selectModel(): Promise<void> {
    const client = await this.runningClient();
    if (!client) {
      return;
    }
    let listing;
    try {
      listing = parseListing(await client.sendRequest(MODELS_REQUEST, {}));
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      this.log.error(`${MODELS_REQUEST} failed: ${message}`);
      void vscode.window.showErrorMessage(`Ghostpilot: could not list the models: ${message}`);
      return;
    }
    if (!listing) {
      void vscode.window.showWarningMessage(
        'Ghostpilot: this server version cannot list models. Update the Ghostpilot server, or set ghostpilot.model by hand.',
      );
      return;
    }
    const items = modelPickItems(listing).map((pick) =>
      pick.kind === 'separator' ? { ...pick, kind: vscode.QuickPickItemKind.Separator } : pick,
    ) as (vscode.QuickPickItem & Partial<ModelPickItem>)[];
    const chosen = await vscode.window.showQuickPick(items, {
      title: 'Ghostpilot: Select model',
      placeHolder: pickPlaceholder(listing),
      matchOnDescription: true,
      matchOnDetail: true,
    });
    if (!chosen?.model || chosen.model === listing.current) {
      return;
    }
    const config = settings(vscode.window.activeTextEditor?.document.uri);
    await config.update('model', chosen.model, settingTarget(config.inspect<string>('model')));
    this.log.info(`Model set to ${chosen.model} (Ghostpilot: Select model).`);
  }

  private async toggleSuggestions(): Promise<void> {
    const config = settings(vscode.window.activeTextEditor?.document.uri);
    const enable = !this.suggestionsEnabled();
    await config.update('enable', enable, settingTarget(config.inspect<boolean>('enable')));
    if (!enable) {
      await vscode.commands.executeCommand('editor.action.inlineSuggest.hide');
    }
    vscode.window.setStatusBarMessage(`Ghostpilot inline suggestions ${enable ? 'on' : 'off'}`, 3000);
  }

  dispose(): void {
    if (this.generatingTimer) {
      clearTimeout(this.generatingTimer);
    }
    for (const disposable of this.disposables) {
      disposable.dispose();
    }
  }
}
