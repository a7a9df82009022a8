/**
 * The runner configuration files the fake hands out, per src/sim/PROTOCOL.md "JIT configuration":
 * `.runner`, `.credentials` and `.credentials_rsaparams`, as text (registration flow) or packed
 * into `encoded_jit_config` (JIT flow).
 */
import { randomBytes } from 'node:crypto';

/** The three config files by name, as file text. */
export interface RunnerFiles {
  '.runner': string;
  '.credentials': string;
  '.credentials_rsaparams': string;
}

/** What the files describe. */
export interface RunnerFileInput {
  agentId: number;
  agentName: string;
  poolId: number;
  poolName: string;
  /** Ends with `/_broker/`. */
  brokerUrl: string;
  workFolder: string;
  ephemeral: boolean;
  disableUpdate: boolean;
  clientId: string;
}

const b64 = (bytes: number): string => randomBytes(bytes).toString('base64');

/** Builds the file texts; the RSA parameters are random bytes (nothing ever verifies them). */
export function buildRunnerFiles(input: RunnerFileInput): RunnerFiles {
  const runner = {
    agentId: input.agentId,
    agentName: input.agentName,
    poolId: input.poolId,
    poolName: input.poolName,
    serverUrl: input.brokerUrl,
    gitHubUrl: '',
    workFolder: input.workFolder,
    ephemeral: input.ephemeral,
    disableUpdate: input.disableUpdate,
  };
  const credentials = {
    scheme: 'OAuth',
    data: {
      clientId: input.clientId,
      authorizationUrl: `${input.brokerUrl}oauth`,
      requireFipsCryptography: 'False',
    },
  };
  // Sizes of a 2048-bit key, so that the files look like the real ones.
  const rsa = {
    d: b64(256),
    dp: b64(128),
    dq: b64(128),
    exponent: 'AQAB',
    inverseQ: b64(128),
    modulus: b64(256),
    p: b64(128),
    q: b64(128),
  };
  return {
    '.runner': JSON.stringify(runner, null, 2),
    '.credentials': JSON.stringify(credentials, null, 2),
    '.credentials_rsaparams': JSON.stringify(rsa),
  };
}

/** base64(JSON { name: base64(text) }), the `encoded_jit_config` format. */
export function encodeJitConfig(files: RunnerFiles): string {
  const packed: Record<string, string> = {};
  for (const name of Object.keys(files) as (keyof RunnerFiles)[]) packed[name] = Buffer.from(files[name], 'utf8').toString('base64');
  return Buffer.from(JSON.stringify(packed), 'utf8').toString('base64');
}

/** The inverse of encodeJitConfig, for tests and for the simulator's own checks. */
export function decodeJitConfig(encoded: string): Record<string, string> {
  const packed = JSON.parse(Buffer.from(encoded, 'base64').toString('utf8')) as Record<string, string>;
  const files: Record<string, string> = {};
  for (const [name, content] of Object.entries(packed)) files[name] = Buffer.from(content, 'base64').toString('utf8');
  return files;
}
