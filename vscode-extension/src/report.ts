/** Turn the result of `ghostpilot.relianceReport` into a document to show. */

export interface ReportDocument {
  content: string;
  language: 'markdown' | 'plaintext' | 'json';
}

/** Accepts a markdown string, `{markdown}`, `{text}`, or any JSON value (shown as JSON). */
export function reportDocument(result: unknown): ReportDocument {
  if (typeof result === 'string') {
    return { content: result, language: 'markdown' };
  }
  if (typeof result === 'object' && result !== null) {
    const value = result as Record<string, unknown>;
    if (typeof value.markdown === 'string') {
      return { content: value.markdown, language: 'markdown' };
    }
    if (typeof value.text === 'string') {
      return { content: value.text, language: 'plaintext' };
    }
  }
  if (result === null || result === undefined) {
    return { content: 'The server returned no over-reliance report.', language: 'plaintext' };
  }
  return { content: JSON.stringify(result, null, 2), language: 'json' };
}
