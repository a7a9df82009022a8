/**
 * The docker CLI as the hooks call it, against the job's engine (DOCKER_HOST). Values of
 * environment variables travel in the CLI's environment (`-e NAME` on the command line), never in
 * argv, so secrets do not show in the process list.
 */
import { spawn } from 'node:child_process';
import { waitForChild } from '../lib/process.js';

/** A docker call failed; `stderr` is its message for the job log. */
export class DockerCliError extends Error {
  override readonly name = 'DockerCliError';
  constructor(
    readonly args: string[],
    readonly code: number | null,
    readonly stderr: string,
  ) {
    super(`docker ${args[0] ?? ''} failed (${code}): ${stderr.trim().split('\n').slice(-3).join(' | ')}`);
  }
}

/** How the hooks reach docker. */
export interface DockerCli {
  /** Runs docker and returns its stdout; throws DockerCliError on a non-zero exit. */
  capture(args: string[], opts?: { env?: Record<string, string>; input?: string }): Promise<string>;
  /** Runs docker with its output going to the job log; resolves with the exit code. */
  stream(args: string[], opts?: { env?: Record<string, string> }): Promise<number>;
}

/** A DockerCli over the `docker` binary with `baseEnv` (DOCKER_HOST, PATH, DOCKER_CONFIG...). */
export function dockerCli(baseEnv: Record<string, string>, binary = 'docker'): DockerCli {
  return {
    async capture(args, opts = {}) {
      const child = spawn(binary, args, { env: { ...baseEnv, ...(opts.env ?? {}) }, stdio: ['pipe', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (err += d.toString()));
      child.on('error', (e) => (err += String(e)));
      child.stdin.end(opts.input ?? '');
      const { code } = await waitForChild(child);
      if (code !== 0) throw new DockerCliError(args, code, err);
      return out.trim();
    },
    async stream(args, opts = {}) {
      const child = spawn(binary, args, { env: { ...baseEnv, ...(opts.env ?? {}) }, stdio: ['ignore', 'inherit', 'inherit'] });
      child.on('error', () => undefined);
      const { code } = await waitForChild(child);
      return code ?? 1;
    },
  };
}
