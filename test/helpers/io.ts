import type { CliIO } from '../../src/cli/io.js';

/** A command's stdout and stderr captured as strings, for the CLI tests. */
export function captureIo(): { io: CliIO; out: () => string; err: () => string } {
  let out = '';
  let err = '';
  return {
    io: { stdout: { write: (s: string) => (out += s) }, stderr: { write: (s: string) => (err += s) } },
    out: () => out,
    err: () => err,
  };
}
