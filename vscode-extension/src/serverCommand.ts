/**
 * How to start `ghostpilot serve`, and a friendly answer when it cannot be started.
 *
 * Order: `ghostpilot.server.command` (a full command line), then
 * `ghostpilot.server.pythonPath` (`python -m lsp_server serve`), then `ghostpilot`
 * on PATH. Pure apart from the file-system checks passed in, so it is unit-tested.
 */
import * as path from 'path';

export interface ServerLaunch {
  command: string;
  args: string[];
  /** Where the choice came from, for messages. */
  source: 'server.command' | 'server.pythonPath' | 'PATH';
}

export interface LaunchProblem {
  /** One actionable sentence for the user. */
  message: string;
  /** The setting that fixes it. */
  setting: string;
}

export interface FileChecks {
  isExecutable(file: string): boolean;
  env: Record<string, string | undefined>;
  platform: string;
}

/** Resolve the launch from the two settings; a problem when the settings are malformed. */
export function chooseLaunch(command: unknown, pythonPath: unknown): ServerLaunch | LaunchProblem {
  if (Array.isArray(command) && command.length > 0) {
    if (!command.every((part) => typeof part === 'string') || (command[0] as string).trim() === '') {
      return {
        message:
          'Ghostpilot: "ghostpilot.server.command" must be a list of strings such as ["/path/to/ghostpilot", "serve"].',
        setting: 'ghostpilot.server.command',
      };
    }
    const parts = command as string[];
    return { command: parts[0], args: parts.slice(1), source: 'server.command' };
  }
  if (typeof pythonPath === 'string' && pythonPath.trim() !== '') {
    return { command: pythonPath.trim(), args: ['-m', 'lsp_server', 'serve'], source: 'server.pythonPath' };
  }
  return { command: 'ghostpilot', args: ['serve'], source: 'PATH' };
}

export function isProblem(value: ServerLaunch | LaunchProblem): value is LaunchProblem {
  return (value as LaunchProblem).message !== undefined;
}

/** The absolute path `command` runs, or undefined when it does not exist or is not executable. */
export function findExecutable(command: string, checks: FileChecks): string | undefined {
  const expanded = expandHome(command, checks.env);
  if (expanded.includes('/') || expanded.includes('\\')) {
    return checks.isExecutable(expanded) ? expanded : undefined;
  }
  const separator = checks.platform === 'win32' ? ';' : ':';
  const extensions =
    checks.platform === 'win32' ? (checks.env.PATHEXT ?? '.EXE;.CMD;.BAT').split(';').concat(['']) : [''];
  for (const dir of (checks.env.PATH ?? '').split(separator)) {
    if (!dir) {
      continue;
    }
    for (const extension of extensions) {
      const candidate = path.join(dir, expanded + extension);
      if (checks.isExecutable(candidate)) {
        return candidate;
      }
    }
  }
  return undefined;
}

export function expandHome(file: string, env: Record<string, string | undefined>): string {
  const home = env.HOME ?? env.USERPROFILE;
  if (home && (file === '~' || file.startsWith('~/'))) {
    return path.join(home, file.slice(1));
  }
  return file;
}

/** The one message shown when the chosen executable is missing. */
export function missingMessage(launch: ServerLaunch): LaunchProblem {
  switch (launch.source) {
    case 'server.command':
      return {
        message: `Ghostpilot: the server command "${launch.command}" (ghostpilot.server.command) was not found or is not executable. Fix the path, or clear the setting to use "ghostpilot" on PATH.`,
        setting: 'ghostpilot.server.command',
      };
    case 'server.pythonPath':
      return {
        message: `Ghostpilot: the Python interpreter "${launch.command}" (ghostpilot.server.pythonPath) was not found. Point the setting at the python of the environment where Ghostpilot is installed.`,
        setting: 'ghostpilot.server.pythonPath',
      };
    default:
      return {
        message:
          'Ghostpilot: the language server "ghostpilot" is not on PATH. Install it with "pip install ghostpilot" (from the Ghostpilot repository: "pip install ."), or set ghostpilot.server.pythonPath to the python of the environment that has it.',
        setting: 'ghostpilot.server.pythonPath',
      };
  }
}

/** The message when the interpreter exists but cannot import the server package. */
export function notInstalledMessage(pythonPath: string, detail: string): LaunchProblem {
  const reason = detail.trim().split('\n').pop() ?? '';
  return {
    message: `Ghostpilot: "${pythonPath}" cannot import the Ghostpilot server (${reason || 'import failed'}). Install it into that environment with "${pythonPath} -m pip install ghostpilot", or change ghostpilot.server.pythonPath.`,
    setting: 'ghostpilot.server.pythonPath',
  };
}
