/**
 * The simulated runner's files in its root (docs/runner-contract.md §7, §1): `.runner`,
 * `.credentials`, `.credentials_rsaparams` (mode 600), their `_migrated` twins, `.env`, and the
 * JIT configuration that writes the first three.
 */
import { existsSync, readFileSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import path from 'node:path';

/** The config files in the order the runner deletes them (ConfigurationManager.DeleteLocalRunnerConfig). */
export const CONFIG_FILES = ['.credentials', '.credentials_migrated', '.credentials_rsaparams', '.runner', '.runner_migrated'] as const;

/** The fields of `.runner` the simulator uses. */
export interface RunnerSettings {
  agentId: number;
  agentName: string;
  poolId?: number;
  poolName?: string;
  serverUrl: string;
  gitHubUrl?: string;
  workFolder?: string;
  ephemeral?: boolean;
  disableUpdate?: boolean;
}

/** The fields of `.credentials` the simulator uses. */
export interface Credentials {
  scheme: string;
  data: { clientId: string; authorizationUrl?: string };
}

/** True when `.runner` or `.runner_migrated` exists (ConfigurationManager.IsConfigured). */
export function isConfigured(root: string): boolean {
  return existsSync(path.join(root, '.runner')) || existsSync(path.join(root, '.runner_migrated'));
}

function readPreferMigrated(root: string, name: string): string {
  const migrated = path.join(root, `${name}_migrated`);
  return readFileSync(existsSync(migrated) ? migrated : path.join(root, name), 'utf8');
}

/** Reads `.runner` (the `_migrated` twin first). Throws when missing or not JSON. */
export function readRunnerSettings(root: string): RunnerSettings {
  return JSON.parse(readPreferMigrated(root, '.runner')) as RunnerSettings;
}

/** Reads `.credentials` (the `_migrated` twin first). Throws when missing or not JSON. */
export function readCredentials(root: string): Credentials {
  return JSON.parse(readPreferMigrated(root, '.credentials')) as Credentials;
}

/**
 * Writes one config file like File.WriteAllBytes (overwrites, umask mode), except
 * `.credentials_rsaparams`, which gets mode 600 (RSAFileKeyManager).
 */
export function writeConfigFile(root: string, name: string, content: string | Buffer): void {
  const file = path.join(root, name);
  const secret = name === '.credentials_rsaparams';
  writeFileSync(file, content, { mode: secret ? 0o600 : 0o644 });
  if (secret) chmodSync(file, 0o600);
}

/** .NET's Convert.FromBase64String message, which the runner prints for a bad jitconfig. */
export const BAD_BASE64_MESSAGE =
  'The input is not a valid Base-64 string as it contains a non-base 64 character, more than two padding characters, or an illegal character among the padding characters.';

/** Strict base64 decoding (white space ignored, as .NET does); throws with .NET's message. */
export function decodeBase64Strict(text: string): Buffer {
  const compact = text.replace(/[\s]/g, '');
  if (compact.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(compact)) {
    throw new Error(BAD_BASE64_MESSAGE);
  }
  return Buffer.from(compact, 'base64');
}

/**
 * Applies a `--jitconfig` value: base64 of a JSON object mapping file name to base64 content.
 * Each file is written into the root, overwriting what is there. Returns the names written.
 * Throws (with a message the runner would print) on bad base64 or JSON.
 */
export function applyJitConfig(root: string, encoded: string): string[] {
  const json = decodeBase64Strict(encoded).toString('utf8');
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch {
    const ch = json.trimStart().charAt(0) || 'end of input';
    throw new Error(`Unexpected character encountered while parsing value: ${ch}. Path '', line 1, position 1.`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new Error('Cannot deserialize the JIT configuration: expected a JSON object of file names.');
  }
  const entries = Object.entries(parsed as Record<string, unknown>);
  const decoded: Array<[string, Buffer]> = [];
  for (const [name, value] of entries) {
    if (typeof value !== 'string') {
      throw new Error(`Error converting value to type 'System.String'. Path '${name}'.`);
    }
    // the real runner combines root and key without checks; the simulator refuses to leave the root
    if (name === '' || name.includes('/') || name === '.' || name === '..') {
      throw new Error(`Invalid file name in the JIT configuration: '${name}'.`);
    }
    decoded.push([name, decodeBase64Strict(value)]);
  }
  for (const [name, content] of decoded) writeConfigFile(root, name, content);
  return decoded.map(([n]) => n);
}

/**
 * Deletes the local config files, printing what the real runner prints for `.credentials` and
 * `.runner` (the other three go silently).
 */
export function deleteLocalConfig(root: string, print: (line: string, success: boolean) => void): void {
  for (const name of CONFIG_FILES) {
    const file = path.join(root, name);
    const existed = existsSync(file);
    rmSync(file, { force: true });
    if (name === '.credentials' || name === '.runner') {
      if (existed) print(`Removed ${name}`, true);
      else print(`Does not exist. Skipping Removing ${name}`, false);
    }
  }
}

/**
 * Parses `.env` text like Program.LoadAndSetEnv: one KEY=VALUE per line, split at the first `=`,
 * key non-empty, no trimming, no quotes, no comments (`#x=1` sets `#x`), an empty value unsets.
 * Returns the assignments in order; `undefined` means unset.
 */
export function parseDotEnv(text: string): Array<[string, string | undefined]> {
  const out: Array<[string, string | undefined]> = [];
  for (const line of text.split(/\r\n|\r|\n/)) {
    if (line === '') continue;
    const idx = line.indexOf('=');
    if (idx <= 0) continue;
    const value = line.slice(idx + 1);
    out.push([line.slice(0, idx), value === '' ? undefined : value]);
  }
  return out;
}

/** Loads `<root>/.env` into `env` (the composition root passes process.env). */
export function loadDotEnv(root: string, env: NodeJS.ProcessEnv): void {
  let text: string;
  try {
    text = readFileSync(path.join(root, '.env'), 'utf8');
  } catch {
    return;
  }
  for (const [k, v] of parseDotEnv(text)) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
}
