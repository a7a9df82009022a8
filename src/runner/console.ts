/**
 * Parses the listener's console lines (docs/runner-contract.md §3) into events. These are hints: the job can
 * print anything only through the worker's log, not the listener's stdout, but the agent still
 * decides from the listener's exit, which nothing in the job can forge.
 */
export type ConsoleEvent =
  | { kind: 'connected' }
  | { kind: 'listening' }
  | { kind: 'job-started'; jobName: string }
  | { kind: 'job-completed'; jobName: string; result: string }
  | { kind: 'runner-gone' }
  | { kind: 'session-conflict' }
  | { kind: 'update' }
  /** The updater started `update.sh`, which goes on replacing bin/ after the listener exits. */
  | { kind: 'update-script' }
  | { kind: 'connect-error' }
  | { kind: 'reconnected' }
  /** The service refuses this runner version (RunnerVersionTooOld; exit 7 or, on older runners, 1). */
  | { kind: 'version-deprecated'; version: string };

const TS = String.raw`\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}Z: `;
const RULES: [RegExp, (m: RegExpMatchArray) => ConsoleEvent][] = [
  [/^√ Connected to GitHub/, () => ({ kind: 'connected' })],
  [new RegExp(`^${TS}Listening for Jobs`), () => ({ kind: 'listening' })],
  [new RegExp(`^${TS}Running job: (.*)$`), (m) => ({ kind: 'job-started', jobName: m[1] ?? '' })],
  [new RegExp(`^${TS}Job (.*) completed with result: (\\w+)`), (m) => ({ kind: 'job-completed', jobName: m[1] ?? '', result: m[2] ?? '' })],
  // 404 on the session or a poll: "The runner no longer exists on the server. ..." (then exit 1 or 0).
  [/The runner no longer exists on the server/, () => ({ kind: 'runner-gone' })],
  // 401 invalid_client on the session: the registration was deleted (then exit 1; docs/runner-contract.md §2).
  [/Failed to create a session\. The runner registration has been deleted from the server/, () => ({ kind: 'runner-gone' })],
  [/A session for this runner already exists/, () => ({ kind: 'session-conflict' })],
  [/Runner update in progress/, () => ({ kind: 'update' })],
  [/Generate and execute update script/, () => ({ kind: 'update-script' })],
  [new RegExp(`^${TS}Runner connect error:`), () => ({ kind: 'connect-error' })],
  [new RegExp(`^${TS}Runner reconnected`), () => ({ kind: 'reconnected' })],
  // "An error occured: Runner version v2.320.0 is deprecated and cannot receive messages." (some
  // versions spell it "occurred", some add "Error: Forbidden "): the version is what matters.
  [/Runner version v?(\S+) is deprecated and cannot receive messages/, (m) => ({ kind: 'version-deprecated', version: m[1] ?? 'unknown' })],
];

/** The event a console line announces, or undefined for any other line. */
export function parseConsoleLine(line: string): ConsoleEvent | undefined {
  const text = line.replace(/\r$/, '');
  for (const [re, make] of RULES) {
    const m = text.match(re);
    if (m) return make(m);
  }
  return undefined;
}
