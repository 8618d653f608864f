/**
 * Tested suggestions (server: lsp_server/features/tested.py). Explicitly invoked inline
 * completion (Alt+\) in a function body with docstring examples or referencing tests
 * answers the ranked candidates, best first; each item's command carries its line
 * "candidate 1/5 · passes 3/3 examples, 2/2 tests" (title, and `arguments[1].title`).
 *
 * VS Code does not tell an extension which inline item is on screen, so the extension
 * follows it: the first item when the list arrives, then its own Alt+] / Alt+[ commands,
 * which run VS Code's showNext/showPrevious and move the index with them. The line
 * shows in a status bar item of its own while the candidates are on screen.
 */

/** What the server attached to one tested inline item. */
export interface CandidateInfo {
  title: string;
  candidate: number;
  of: number;
  summary: string;
}

/** The tested details of an inline item (`command.arguments[1]`), or undefined for a plain suggestion. */
export function candidateInfo(item: unknown): CandidateInfo | undefined {
  const command = (item as { command?: { arguments?: unknown[] } } | null | undefined)?.command;
  const details = command?.arguments?.[1] as Partial<CandidateInfo> | undefined;
  if (!details || typeof details.title !== 'string' || typeof details.candidate !== 'number' || typeof details.of !== 'number') {
    return undefined;
  }
  return { title: details.title, candidate: details.candidate, of: details.of, summary: String(details.summary ?? '') };
}

/** The candidates of the last inline answer, and which one is on screen. */
export class CandidateCycle {
  private infos: CandidateInfo[] = [];
  private index = 0;

  /** A new inline answer: tested candidates (the first is shown) or none. */
  set(items: readonly unknown[]): void {
    const infos = items.map(candidateInfo);
    this.infos = infos.every((info) => info !== undefined) ? (infos as CandidateInfo[]) : [];
    this.index = 0;
  }

  clear(): void {
    this.infos = [];
    this.index = 0;
  }

  /** VS Code showed the next (+1) or previous (-1) item; it wraps around, and so do we. */
  move(step: number): void {
    if (this.infos.length) {
      this.index = (this.index + step + this.infos.length) % this.infos.length;
    }
  }

  /** The status bar text for the candidate on screen, or undefined. */
  get text(): string | undefined {
    return this.infos.length ? `$(beaker) ${this.infos[this.index].title}` : undefined;
  }

  get tooltip(): string | undefined {
    return this.infos.length ? `Ghostpilot tested suggestion: ${this.infos[this.index].summary}. Alt+] / Alt+[ for the others.` : undefined;
  }
}

/** One candidate from the `ghostpilot.suggestTested` command's answer, for a quick pick. */
export interface CommandCandidate {
  id: string;
  title: string;
  text: string;
  range: { start: { line: number; character: number }; end: { line: number; character: number } };
}

/** Quick-pick rows: the pass-count line, and the candidate's first code line. */
export function pickRows(candidates: readonly CommandCandidate[]): { label: string; detail: string; index: number }[] {
  return candidates.map((candidate, index) => ({
    label: candidate.title,
    detail: candidate.text.split('\n').map((line) => line.trim()).filter((line) => line).slice(0, 2).join('  ⏎  '),
    index,
  }));
}
