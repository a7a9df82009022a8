/**
 * `runner-warden validate FILE...` and `runner-warden validate --print-effective FILE`: checks host
 * configs and team policies in an image pipeline. Exit 0 when every file is valid, 1 otherwise
 * (bad usage included). Problems go to stderr, one per line, as
 * `file:line:col: json.path: expected ..., got ...`.
 */
import { ConfigError, PolicyError, describeError } from '../lib/errors.js';
import type { CliIO } from './io.js';
import { VALIDATE_USAGE as USAGE } from './usage.js';
import { checkRunnerUser } from './runner-user.js';
import { assertRootOnlyDir } from './root-only-dirs.js';
import { engineFitness } from './engine-fitness.js';
import { mirrorCapFitness } from './validate-mirror.js';
import { parseRecycleConfig } from '../recycle/config.js';
import { detectKind, effectiveWithSources, loadHostConfig, loadPolicy, type ConfigKind } from '../policy/load.js';

interface Args {
  files: string[];
  kind?: ConfigKind;
  policyDir?: string;
  printEffective: boolean;
  quiet: boolean;
  help: boolean;
}

function parseArgs(args: string[]): Args | string {
  const out: Args = { files: [], printEffective: false, quiet: false, help: false };
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string;
    if (a === '--') {
      out.files.push(...args.slice(i + 1));
      break;
    } else if (a === '-h' || a === '--help') out.help = true;
    else if (a === '--print-effective') out.printEffective = true;
    else if (a === '--quiet' || a === '-q') out.quiet = true;
    else if (a === '--kind' || a.startsWith('--kind=')) {
      const v = a.includes('=') ? a.slice(7) : args[++i];
      if (v === 'host' || v === 'host-config') out.kind = 'host-config';
      else if (v === 'policy') out.kind = 'policy';
      else return `--kind expects host or policy, got ${JSON.stringify(v ?? '')}`;
    } else if (a === '--policy-dir' || a.startsWith('--policy-dir=')) {
      const v = a.includes('=') ? a.slice(13) : args[++i];
      if (!v) return '--policy-dir expects a directory';
      out.policyDir = v;
    } else if (a.startsWith('-') && a !== '-') return `unknown option ${a}`;
    else out.files.push(a);
  }
  return out;
}

function problemsOf(err: unknown): string[] {
  if (err instanceof ConfigError && err.problems.length > 0) {
    // Every line names its file, also those of checks that only know the field (the recycle section).
    return err.problems.map((p) => (p.startsWith(err.file) ? p : `${err.file}: ${p}`));
  }
  if (err instanceof PolicyError || err instanceof ConfigError) return err.problems.length > 0 ? err.problems : [err.message];
  return [describeError(err)];
}

/** Runs the validate command; resolves to the exit code. Never throws for bad input. */
export async function validateCommand(args: string[], io: CliIO): Promise<number> {
  const parsed = parseArgs(args);
  if (typeof parsed === 'string') {
    io.stderr.write(`runner-warden validate: ${parsed}\n${USAGE}`);
    return 1;
  }
  if (parsed.help) {
    io.stdout.write(USAGE);
    return 0;
  }
  if (parsed.files.length === 0 || (parsed.printEffective && parsed.files.length !== 1)) {
    io.stderr.write(
      `runner-warden validate: ${parsed.printEffective ? '--print-effective takes exactly one FILE' : 'no FILE given'}\n${USAGE}`,
    );
    return 1;
  }
  const policyOpts = parsed.policyDir !== undefined ? { policyDir: parsed.policyDir } : {};

  if (parsed.printEffective) {
    const file = parsed.files[0] as string;
    try {
      const kind = parsed.kind ?? (await detectKind(file));
      if (kind === 'host-config') {
        // The file alone: environment overrides are the running agent's business.
        io.stdout.write(`${JSON.stringify(await loadHostConfig(file, {}), null, 2)}\n`);
      } else {
        io.stdout.write(await effectiveWithSources(file, policyOpts));
      }
      return 0;
    } catch (err) {
      for (const line of problemsOf(err)) io.stderr.write(`${line}\n`);
      return 1;
    }
  }

  let invalid = 0;
  for (const file of parsed.files) {
    let kind: ConfigKind = parsed.kind ?? 'policy';
    try {
      kind = parsed.kind ?? (await detectKind(file));
      if (kind === 'host-config') {
        const config = await loadHostConfig(file, {});
        // The provider-specific options (the host schema only knows the provider names).
        if (config.recycle) parseRecycleConfig(config.recycle, file);
        // A runner user that can act as root (when this host has that user) defeats every cleanup.
        await checkRunnerUser(config, file);
        // The directories the agent writes as root, as `run` checks them: none another user could replace.
        await assertRootOnlyDir('stateDir', config.stateDir, file);
        if (config.runner.jobRoot) await assertRootOnlyDir('runner.jobRoot', config.runner.jobRoot, file);
        if (config.runner.trashDir) await assertRootOnlyDir('runner.trashDir', config.runner.trashDir, file);
        // Whether this host can give the team's docker.mode to that user, with the fix for each gap.
        const engine = await engineFitness(config, file);
        for (const n of engine.notes) io.stdout.write(`note: ${n}\n`);
        // Whether the image cache's cap fits the disk that holds it (and the runner's _work).
        const cap = await mirrorCapFitness(config);
        for (const w of cap.warnings) io.stdout.write(`warning: ${file}: ${w}\n`);
        const errors = [...engine.errors, ...cap.errors];
        if (errors.length > 0) throw new ConfigError("the host cannot give the policy's docker settings", file, errors);
      } else await loadPolicy(file, policyOpts);
      if (!parsed.quiet) io.stdout.write(`${file}: ok (${kind === 'host-config' ? 'host config' : 'policy'})\n`);
    } catch (err) {
      invalid++;
      for (const line of problemsOf(err)) io.stderr.write(`${line}\n`);
    }
  }
  if (invalid > 0) {
    io.stderr.write(`${invalid} of ${parsed.files.length} file(s) invalid\n`);
    return 1;
  }
  return 0;
}
