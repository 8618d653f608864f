/** Map server stderr lines onto output channel levels, so warnings stand out from info. */

export type LogLevelName = 'trace' | 'debug' | 'info' | 'warn' | 'error';

const PATTERNS: [RegExp, LogLevelName][] = [
  [/\b(CRITICAL|FATAL|ERROR)\b|^Traceback \(most recent call last\)/, 'error'],
  [/\bWARN(ING)?\b/, 'warn'],
  [/\bDEBUG\b/, 'debug'],
  [/\bTRACE\b/, 'trace'],
];

/** The level of one stderr line from its logging prefix; plain lines are info. */
export function logLevelOf(line: string): LogLevelName {
  const head = line.slice(0, 80);
  for (const [pattern, level] of PATTERNS) {
    if (pattern.test(head)) {
      return level;
    }
  }
  return 'info';
}
