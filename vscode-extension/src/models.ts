/**
 * "Ghostpilot: Select model": the server's catalogue (`ghostpilot/models`) turned into
 * quick pick items. Pure: the list, sizes and the recommendation come from the server;
 * this only words them. Selecting a model that is not installed sets `ghostpilot.model`,
 * and the server then offers to download it (the same offer every editor gets).
 */

/** One model as `ghostpilot/models` describes it (the fields the picker uses). */
export interface ModelRow {
  name: string;
  title: string;
  installed: boolean;
  downloadable: boolean;
  embedded: boolean;
  sizeBytes: number | null;
  sizeExact: boolean;
  license: string;
  needsLicenseAcceptance: boolean;
  fim: string;
  humaneval: number | null;
  recommended: boolean;
}

export interface ModelListing {
  current: string;
  recommended: string | null;
  recommendationReason: string | null;
  machine: string;
  models: ModelRow[];
}

/** What `vscode.window.showQuickPick` shows, plus the setting value to write. */
export interface ModelPickItem {
  label: string;
  description: string;
  detail: string;
  /** The `ghostpilot.model` value; undefined for separators. */
  model?: string;
  kind?: 'separator';
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function row(raw: unknown): ModelRow | undefined {
  if (!isObject(raw) || typeof raw.name !== 'string' || !raw.name) {
    return undefined;
  }
  const number = (value: unknown) => (typeof value === 'number' && Number.isFinite(value) ? value : null);
  return {
    name: raw.name,
    title: typeof raw.title === 'string' && raw.title ? raw.title : raw.name,
    installed: raw.installed === true,
    downloadable: raw.downloadable === true,
    embedded: raw.embedded === true,
    sizeBytes: number(raw.sizeBytes),
    sizeExact: raw.sizeExact === true,
    license: typeof raw.license === 'string' ? raw.license : '',
    needsLicenseAcceptance: raw.needsLicenseAcceptance === true,
    fim: typeof raw.fim === 'string' ? raw.fim : 'none',
    humaneval: number(raw.humaneval),
    recommended: raw.recommended === true,
  };
}

/** The server's answer, or undefined when it is not a catalogue (an older server). */
export function parseListing(raw: unknown): ModelListing | undefined {
  if (!isObject(raw) || !Array.isArray(raw.models)) {
    return undefined;
  }
  const text = (value: unknown) => (typeof value === 'string' ? value : '');
  return {
    current: text(raw.current),
    recommended: typeof raw.recommended === 'string' ? raw.recommended : null,
    recommendationReason: typeof raw.recommendationReason === 'string' ? raw.recommendationReason : null,
    machine: text(raw.machine),
    models: raw.models.map(row).filter((model): model is ModelRow => model !== undefined),
  };
}

/** 1.6 GB, 520.6 MB (decimal units, as the server and the Hub write them). */
export function formatBytes(count: number): string {
  const units = ['B', 'KB', 'MB', 'GB'];
  let value = count;
  let unit = 0;
  while (Math.abs(value) >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return unit === 0 ? `${Math.round(value)} B` : `${value.toFixed(1)} ${units[unit]}`;
}

function sizeText(model: ModelRow): string {
  if (model.sizeBytes === null) {
    return 'size unknown';
  }
  return `${model.sizeExact ? '' : '~'}${formatBytes(model.sizeBytes)}`;
}

function item(model: ModelRow, current: string): ModelPickItem {
  const marks = [model.recommended ? '$(star-full) recommended' : '', model.name === current ? '(current)' : '']
    .filter(Boolean)
    .join(' ');
  const state = model.embedded ? 'embedded' : model.installed ? 'installed' : 'download';
  const score = model.humaneval === null ? 'HumanEval not listed' : `HumanEval ${model.humaneval.toFixed(1)} %`;
  const licence = model.needsLicenseAcceptance ? `${model.license} (asks you to accept it)` : model.license;
  return {
    label: `${model.installed ? '$(check)' : '$(cloud-download)'} ${model.title}`,
    description: [sizeText(model), state, marks].filter(Boolean).join(' · '),
    detail: [score, `FIM: ${model.fim}`, licence].filter(Boolean).join(' · '),
    model: model.name,
  };
}

/** Installed models first, then those the server can download; the recommended one is starred. */
export function modelPickItems(listing: ModelListing): ModelPickItem[] {
  const installed = listing.models.filter((model) => model.installed);
  const downloadable = listing.models.filter((model) => !model.installed && model.downloadable);
  const items: ModelPickItem[] = [];
  const group = (label: string, models: ModelRow[]) => {
    if (models.length > 0) {
      items.push({ label, description: '', detail: '', kind: 'separator' });
      items.push(...models.map((model) => item(model, listing.current)));
    }
  };
  group('Installed', installed);
  group('Download', downloadable);
  return items;
}

/** The quick pick's placeholder: the model in use and the one for this machine. */
export function pickPlaceholder(listing: ModelListing): string {
  const recommended = listing.recommended ? ` Recommended for this machine: ${listing.recommended}.` : '';
  return `Current model: ${listing.current || 'default'}.${recommended}`;
}
