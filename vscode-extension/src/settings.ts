/**
 * Which `ghostpilot.*` settings belong to the server, and how to send them.
 *
 * The server rejects unknown keys with a message, so client-only keys
 * (`server.*`, `trace.*`) never leave the extension. A key the user has not set
 * is sent as `null`, which the server reads as "use your default": that way a
 * removed setting really reverts, and the server's own defaults (threads = all
 * cores, for example) are never overridden by a copy in package.json.
 */

/** Settings the server understands (camelCase, as in docs/ARCHITECTURE.md). */
export const SERVER_KEYS = [
  'enable',
  'model',
  'nCtx',
  'nThreads',
  'adaptiveThreads',
  'nGpuLayers',
  'flashAttention',
  'maxTokens',
  'maxLineTokens',
  'maxPromptTokens',
  'kvCacheMb',
  'maxFileSizeKb',
  'temperature',
  'topP',
  'timeBudgetMs',
  'startEarly',
  'enabledLanguages',
  'excludeGlobs',
  'neverReadGlobs',
  'respectGitignore',
  'completionFallback',
  'docstringStyle',
  'reliance',
  // Tested suggestions (README "Tested suggestions").
  'testedCandidates',
  'testedTemperature',
  'testedMaxTokens',
  'testedTimeoutS',
  // Remote engines (README "Remote engines"); the API key itself is never a setting.
  'backend',
  'endpoint',
  'remoteModel',
  'remoteTokenizer',
  'requestTimeoutMs',
  'tlsVerify',
  'tlsCaBundle',
  'tlsClientCert',
  'tlsClientKey',
  'apiKeyEnv',
  'fallback',
] as const;

export type ServerKey = (typeof SERVER_KEYS)[number];

/**
 * Settings that change how the server process is started: a change needs a restart.
 * `apiKeyEnv` names the variable the stored API key is passed in (see secrets.ts).
 */
export const RESTART_KEYS = ['server.command', 'server.pythonPath', 'enabledLanguages', 'apiKeyEnv'] as const;

/** What `WorkspaceConfiguration.inspect` tells about one key (the fields we use). */
export interface Inspected<T = unknown> {
  globalValue?: T;
  workspaceValue?: T;
  workspaceFolderValue?: T;
  globalLanguageValue?: T;
  workspaceLanguageValue?: T;
  workspaceFolderLanguageValue?: T;
}

/** The value the user set at the most specific scope, or undefined when unset. */
export function explicitValue<T>(inspected: Inspected<T> | undefined): T | undefined {
  if (!inspected) {
    return undefined;
  }
  const scopes: (T | undefined)[] = [
    inspected.workspaceFolderLanguageValue,
    inspected.workspaceLanguageValue,
    inspected.globalLanguageValue,
    inspected.workspaceFolderValue,
    inspected.workspaceValue,
    inspected.globalValue,
  ];
  return scopes.find((value) => value !== undefined);
}

/** The object sent to the server: every server key, `null` where the user set nothing. */
export function serverSettings(
  inspect: (key: ServerKey) => Inspected | undefined,
): Record<ServerKey, unknown> {
  const result = {} as Record<ServerKey, unknown>;
  for (const key of SERVER_KEYS) {
    const value = explicitValue(inspect(key));
    result[key] = value === undefined ? null : value;
  }
  return result;
}

/** Whether a configuration change touching `affects(section)` needs a server restart. */
export function needsRestart(affects: (section: string) => boolean): boolean {
  return RESTART_KEYS.some((key) => affects(`ghostpilot.${key}`));
}

/** Language ids the client syncs to the server; python when the setting is empty or invalid. */
export function languagesFrom(value: unknown): string[] {
  if (!Array.isArray(value)) {
    return ['python'];
  }
  const languages = value.filter((item): item is string => typeof item === 'string' && item.length > 0);
  return languages.length > 0 ? [...new Set(languages)] : ['python'];
}
