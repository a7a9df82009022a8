/**
 * The listener's console split into lines, each bounded in size. A job runs as the same user as
 * the listener and can write into the listener's stdout and stderr (a copy of the descriptor
 * through pidfd_getfd, or ptrace): a line reader that keeps a whole line in memory lets it grow
 * the root agent's memory without end, and past V8's longest string (about 512 MiB) the reader
 * throws inside its data handler and the agent dies. Here the first `maxBytes` of a line are kept
 * and the rest is counted and dropped.
 */
import type { Readable } from 'node:stream';

/**
 * Longest console line kept, in bytes. The runner's own lines (a timestamp, "Running job: " and
 * the job's display name, an error message) are well under 1 KiB; 8 KiB keeps any real one whole
 * while bounding what a job can make the agent hold (two streams, one partial line each).
 */
export const MAX_CONSOLE_LINE_BYTES = 8 * 1024;

/** Calls `onLine` for each line of `stream` (LF or CRLF), the last one even without a newline. */
export function readConsoleLines(stream: Readable, onLine: (line: string) => void, maxBytes = MAX_CONSOLE_LINE_BYTES): void {
  let parts: Buffer[] = [];
  let kept = 0;
  let dropped = 0;
  const take = (b: Buffer): void => {
    const room = maxBytes - kept;
    const n = Math.min(room, b.length);
    // Copied: a slice would hold the whole chunk it came from.
    if (n > 0) parts.push(Buffer.from(b.subarray(0, n)));
    kept += n;
    dropped += b.length - n;
  };
  const emit = (): void => {
    let line = Buffer.concat(parts, kept).toString('utf8');
    if (line.endsWith('\r')) line = line.slice(0, -1);
    if (dropped > 0) line += ` [${dropped} more bytes dropped]`;
    parts = [];
    kept = 0;
    dropped = 0;
    onLine(line);
  };
  stream.on('data', (chunk: Buffer | string) => {
    const b = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    let start = 0;
    for (;;) {
      const nl = b.indexOf(0x0a, start);
      if (nl < 0) {
        take(b.subarray(start));
        return;
      }
      take(b.subarray(start, nl));
      emit();
      start = nl + 1;
    }
  });
  stream.on('end', () => {
    if (kept > 0 || dropped > 0) emit();
  });
}
