/**
 * The worker's file commands (GITHUB_ENV, GITHUB_PATH, GITHUB_OUTPUT, GITHUB_STATE,
 * GITHUB_STEP_SUMMARY): one set of empty files per step under `_temp/_runner_file_commands`,
 * read back after the step.
 */
import { randomUUID } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';

/** One step's file-command files and the env vars that point at them. */
export interface StepFiles {
  vars: Record<string, string>;
  envFile: string;
  pathFile: string;
}

/** What a step asked for: env vars to set and PATH entries to prepend (newest first). */
export interface FileCommandResult {
  env: Record<string, string>;
  prependPath: string[];
}

/** Creates the file-command files of one step in `dir`. */
export async function stepFiles(dir: string): Promise<StepFiles> {
  await mkdir(dir, { recursive: true });
  const id = randomUUID();
  const f = (kind: string): string => path.join(dir, `${kind}_${id}`);
  const vars = {
    GITHUB_ENV: f('set_env'),
    GITHUB_PATH: f('add_path'),
    GITHUB_OUTPUT: f('set_output'),
    GITHUB_STATE: f('save_state'),
    GITHUB_STEP_SUMMARY: f('step_summary'),
  };
  for (const file of Object.values(vars)) await writeFile(file, '');
  return { vars, envFile: vars.GITHUB_ENV, pathFile: vars.GITHUB_PATH };
}

/** Reads GITHUB_ENV (KEY=VALUE and KEY<<DELIM heredocs) and GITHUB_PATH after a step. */
export async function readFileCommands(files: StepFiles): Promise<FileCommandResult> {
  const env: Record<string, string> = {};
  const lines = (await readFile(files.envFile, 'utf8').catch(() => '')).split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] ?? '';
    const heredoc = /^([^=<]+)<<(.+)$/.exec(line);
    if (heredoc?.[1] && heredoc[2]) {
      const body: string[] = [];
      for (i++; i < lines.length && lines[i] !== heredoc[2]; i++) body.push(lines[i] ?? '');
      env[heredoc[1]] = body.join('\n');
      continue;
    }
    const eq = line.indexOf('=');
    if (eq > 0) env[line.slice(0, eq)] = line.slice(eq + 1);
  }
  const prependPath = (await readFile(files.pathFile, 'utf8').catch(() => ''))
    .split(/\r?\n/)
    .filter((l) => l !== '')
    .reverse();
  return { env, prependPath };
}
