/**
 * runner-warden's composition root: the only module that reads argv and the environment, installs
 * signal handlers and calls process.exit (docs/decisions.md, "Only the composition root touches the process"). One file per command beside this one.
 */
import { EXIT, type CliIO } from './io.js';
import { COMMAND_USAGE, wantsHelp } from './usage.js';

const USAGE = `usage: runner-warden <command> [options]

commands:
  run       [--config FILE]            the agent daemon (default config /etc/runner-warden/config.yaml)
  validate  FILE... | --print-effective FILE
                                       check host config and team policy files (exit 0 valid, 1 not)
  cleanup   [--config FILE] [--dry-run] one cleanup pass by hand; --dry-run prints the plan only
  baseline  [--config FILE]            record the runner user's home as the baseline (image build)
  status    [--url URL] [--token-file F] show a running agent's /status for a person
  journal   [--config FILE] [--json] [-n N]  show the last jobs
  drain     [--config FILE | --url URL] ask a running agent to drain (finish or cancel, then stop)
  unquarantine --reason TEXT [--config FILE]  end the host's quarantine (journaled; cleaned before serving)
  demo      [--jobs N] [--keep]         the whole lifecycle on this machine with the bundled simulator
  version                              print the version

\`runner-warden <command> --help\` prints a command's options and does nothing else.
`;

/**
 * Runs one command and resolves with its exit code; never rejects: a command that throws gets one
 * message and an exit code from startup-errors.ts, whichever entry point (this module, the
 * installed launcher, the bundle) awaits it.
 */
export async function main(argv: string[], io: CliIO, env: NodeJS.ProcessEnv): Promise<number> {
  try {
    return await dispatch(argv, io, env);
  } catch (err) {
    const { reportStartupError } = await import('./startup-errors.js');
    return reportStartupError(err, io);
  }
}

async function dispatch(argv: string[], io: CliIO, env: NodeJS.ProcessEnv): Promise<number> {
  const [cmd, ...args] = argv;
  const usage = cmd !== undefined ? COMMAND_USAGE[cmd] : undefined;
  if (usage !== undefined && wantsHelp(args)) {
    // Before the command's module runs: help never reads a config, drains or starts anything.
    io.stdout.write(usage);
    return EXIT.ok;
  }
  switch (cmd) {
    case 'run': {
      const { runCommand } = await import('./run.js');
      return runCommand(args, io, env);
    }
    case 'validate': {
      const { validateCommand } = await import('./validate.js');
      return validateCommand(args, io);
    }
    case 'cleanup': {
      const { cleanupCli } = await import('./cleanup-cli.js');
      return cleanupCli(args, io, env);
    }
    case 'baseline': {
      const { baselineCli } = await import('./cleanup-cli.js');
      return baselineCli(args, io, env);
    }
    case 'status': {
      const { statusCli } = await import('./status-cli.js');
      return statusCli(args, io, env);
    }
    case 'journal': {
      const { journalCli } = await import('./status-cli.js');
      return journalCli(args, io, env);
    }
    case 'unquarantine':
      return (await import('./unquarantine.js')).unquarantineCli(args, io, env);
    case 'drain': {
      const { drainCli } = await import('./drain.js');
      return drainCli(args, io, env);
    }
    case 'demo': {
      const { demoCommand } = await import('./demo.js');
      return demoCommand(args, io, env);
    }
    case 'version':
    case '--version': {
      const { VERSION } = await import('./version.js');
      io.stdout.write(`${VERSION}\n`);
      return EXIT.ok;
    }
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      io.stdout.write(USAGE);
      return cmd === undefined ? EXIT.usage : EXIT.ok;
    default:
      io.stderr.write(`runner-warden: unknown command "${cmd}"\n\n${USAGE}`);
      return EXIT.usage;
  }
}

const isEntry = process.argv[1] !== undefined && import.meta.url === new URL(`file://${process.argv[1]}`).href;
if (isEntry) {
  main(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr }, process.env).then(
    (code) => {
      // Exit explicitly once the command is done: a library's idle keep-alive socket or timer must
      // not hold a stopped agent for another minute (systemd would count that as a hang).
      process.stdout.write('', () => process.exit(code));
    },
    (err: unknown) => {
      // A command threw instead of returning a code: one message, then exit for good (a timer or a
      // socket the command left open must not keep a process alive that does nothing).
      void import('./startup-errors.js').then(
        ({ reportStartupError }) => {
          const code = reportStartupError(err, { stdout: process.stdout, stderr: process.stderr });
          process.stderr.write('', () => process.exit(code));
        },
        () => process.exit(70),
      );
    },
  );
}
