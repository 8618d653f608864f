/**
 * What the status bar item says, as a pure function of the server's state.
 *
 * The server sends `ghostpilot/status` `{state, model, message?, latencyMs?}`; the
 * client adds its own states (starting, stopped, no server) and the round trip it
 * measured, so the item is honest even when the server is silent.
 */

export type ServerState = 'loading' | 'ready' | 'generating' | 'error' | 'disabled';
export type ClientState = ServerState | 'starting' | 'stopped';

/** Payload of the `ghostpilot/status` notification. */
export interface StatusParams {
  state: ServerState;
  model?: string;
  message?: string;
  latencyMs?: number;
  /** The suggestion came from the server's cache: its latency says nothing about the model. */
  cached?: boolean;
}

/** The newest active `$/progress` from the server (model loading, docstring writing). */
export interface ProgressInfo {
  title?: string;
  message?: string;
  percentage?: number;
}

export interface StatusSnapshot {
  state: ClientState;
  progress?: ProgressInfo;
  model?: string;
  message?: string;
  /** Latency of the last suggestion as the server measured it. */
  serverLatencyMs?: number;
  /** Round trip of the last non-empty inline completion request, measured here. */
  roundTripMs?: number;
  /** Inline suggestions switched off by `ghostpilot.enable`. */
  suggestionsOff: boolean;
}

export interface StatusView {
  text: string;
  tooltip: string;
  kind: 'normal' | 'warning' | 'error';
}

const ICONS: Record<ClientState, string> = {
  starting: '$(loading~spin)',
  loading: '$(loading~spin)',
  ready: '$(sparkle)',
  generating: '$(sync~spin)',
  error: '$(error)',
  disabled: '$(circle-slash)',
  stopped: '$(debug-disconnect)',
};

const KNOWN_STATES = new Set<string>(['loading', 'ready', 'generating', 'error', 'disabled']);

/** Validate a `ghostpilot/status` payload; undefined when it is not one. */
export function parseStatus(raw: unknown): StatusParams | undefined {
  if (typeof raw !== 'object' || raw === null) {
    return undefined;
  }
  const value = raw as Record<string, unknown>;
  if (typeof value.state !== 'string' || !KNOWN_STATES.has(value.state)) {
    return undefined;
  }
  const params: StatusParams = { state: value.state as ServerState };
  if (typeof value.model === 'string' && value.model) {
    params.model = value.model;
  }
  if (typeof value.message === 'string' && value.message) {
    params.message = value.message;
  }
  if (typeof value.latencyMs === 'number' && Number.isFinite(value.latencyMs) && value.latencyMs >= 0) {
    params.latencyMs = value.latencyMs;
  }
  if (value.cached === true) {
    params.cached = true;
  }
  return params;
}

/**
 * Fold one notification into the snapshot: model and latency persist until replaced;
 * a cached suggestion keeps the latency of the last one the model generated.
 */
export function applyStatus(snapshot: StatusSnapshot, params: StatusParams): StatusSnapshot {
  const latency = params.cached ? undefined : params.latencyMs;
  return {
    ...snapshot,
    state: params.state,
    model: params.model ?? snapshot.model,
    message: params.message,
    serverLatencyMs: latency ?? snapshot.serverLatencyMs,
  };
}

export function formatMs(ms: number): string {
  return ms >= 10000 ? `${(ms / 1000).toFixed(0)} s` : ms >= 1000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms)} ms`;
}

/** Fold a `$/progress` value (begin/report/end) into the active progress. */
export function applyProgress(current: ProgressInfo | undefined, value: unknown): ProgressInfo | undefined {
  if (typeof value !== 'object' || value === null) {
    return current;
  }
  const v = value as Record<string, unknown>;
  if (v.kind === 'end') {
    return undefined;
  }
  const next: ProgressInfo = v.kind === 'begin' ? {} : { ...current };
  if (typeof v.title === 'string') next.title = v.title;
  if (typeof v.message === 'string') next.message = v.message;
  if (typeof v.percentage === 'number' && Number.isFinite(v.percentage)) {
    next.percentage = Math.max(0, Math.min(100, Math.round(v.percentage)));
  }
  return next;
}

/** "loading 40%", "docstring for f 67%": what the item says while a progress runs. */
export function progressLabel(state: ClientState, progress: ProgressInfo): string {
  const title = (progress.title ?? '').replace(/^Ghostpilot:?\s*/, '').trim();
  const base = state === 'loading' ? 'loading' : title || progress.message || 'working';
  return progress.percentage !== undefined ? `${base} ${progress.percentage}%` : base;
}

/** The server's status message while its local model stands in for an unreachable remote engine. */
export const FALLBACK_PREFIX = 'local fallback';

export function statusView(snapshot: StatusSnapshot): StatusView {
  const state: ClientState = snapshot.suggestionsOff && snapshot.state !== 'error' ? 'disabled' : snapshot.state;
  const fallback = (state === 'ready' || state === 'generating') && !!snapshot.message?.startsWith(FALLBACK_PREFIX);
  const model = snapshot.model ?? 'Ghostpilot';
  const latency = snapshot.serverLatencyMs ?? snapshot.roundTripMs;
  const progress = snapshot.progress && state !== 'error' && state !== 'disabled' ? snapshot.progress : undefined;
  const words: Record<ClientState, string> = {
    starting: 'starting',
    loading: 'loading',
    ready: latency !== undefined ? formatMs(latency) : 'ready',
    generating: 'generating',
    error: 'error',
    disabled: 'off',
    stopped: 'stopped',
  };
  const text = progress
    ? `$(loading~spin) ${model}: ${progressLabel(state, progress)}`
    : fallback
      ? `$(warning) ${model}: ${FALLBACK_PREFIX}${state === 'generating' ? ' (generating)' : ''}`
      : `${ICONS[state]} ${model}: ${words[state]}`;

  const lines = [`Ghostpilot: ${state}${snapshot.message ? ` (${snapshot.message})` : ''}`];
  if (progress) {
    lines.push(`In progress: ${[progress.title, progress.message].filter(Boolean).join(': ')}`);
  }
  lines.push(`Model: ${snapshot.model ?? 'not reported yet'}`);
  if (snapshot.serverLatencyMs !== undefined) {
    lines.push(`Last suggestion: ${formatMs(snapshot.serverLatencyMs)} in the server`);
  }
  if (snapshot.roundTripMs !== undefined) {
    lines.push(`Last suggestion round trip: ${formatMs(snapshot.roundTripMs)}`);
  }
  if (snapshot.suggestionsOff) {
    lines.push('Inline suggestions are off (Ghostpilot: Toggle inline suggestions).');
  }
  lines.push('Click to open the server log and LSP trace.');
  const kind = state === 'error' ? 'error' : state === 'stopped' || fallback ? 'warning' : 'normal';
  return { text, tooltip: lines.join('\n'), kind };
}
