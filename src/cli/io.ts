/** Where a command writes; the CLI passes process.stdout/stderr, tests pass collectors. */
export interface CliIO {
  stdout: { write(s: string): unknown };
  stderr: { write(s: string): unknown };
}

/** Exit codes of runner-warden (user-facing: units and monitors rely on them). */
export const EXIT = {
  ok: 0,
  /** A bad command line. */
  usage: 64,
  /** EX_TEMPFAIL: try again later (e.g. the API is unreachable for a one-shot command). */
  tempfail: 75,
  /** EX_CONFIG: a config or policy file, or the runner installation, is wrong. */
  config: 78,
} as const;

/** Splits `--name value` / `--flag` options from positional args. */
export function parseOptions(
  args: string[],
  spec: { flags?: string[]; values?: string[] },
): { opts: Record<string, string | true>; positional: string[]; unknown: string[] } {
  const opts: Record<string, string | true> = {};
  const positional: string[] = [];
  const unknown: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string;
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const name = eq > 0 ? a.slice(2, eq) : a.slice(2);
      if (spec.values?.includes(name)) {
        const v = eq > 0 ? a.slice(eq + 1) : args[++i];
        if (v === undefined) unknown.push(`${a} (needs a value)`);
        else opts[name] = v;
      } else if (spec.flags?.includes(name)) opts[name] = true;
      else unknown.push(a);
    } else positional.push(a);
  }
  return { opts, positional, unknown };
}

/**
 * parseOptions for a command that takes options only, with `--help`: the options, or the exit code
 * once it has printed the usage (0 for --help, EXIT.usage for anything it does not know).
 */
export function commandOptions(
  args: readonly string[],
  spec: { flags?: string[]; values?: string[] },
  usage: string,
  io: CliIO,
): Record<string, string | true> | number {
  const { opts, positional, unknown } = parseOptions([...args], { ...spec, flags: [...(spec.flags ?? []), 'help'] });
  if (opts.help || positional.includes('-h')) {
    io.stdout.write(usage);
    return EXIT.ok;
  }
  if (unknown.length > 0 || positional.length > 0) {
    io.stderr.write(`unknown arguments: ${[...unknown, ...positional].join(' ')}\n${usage}`);
    return EXIT.usage;
  }
  return opts;
}
