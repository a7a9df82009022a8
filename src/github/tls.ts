/**
 * Trusting a private CA for GitHub Enterprise Server (host config `github.caFile`).
 *
 * Node's global fetch cannot take a CA per call without the `undici` package (its `Agent` with
 * `connect: { ca }` would be the dispatcher), which is not a dependency of this project; the
 * agent's own fetch over node:https (http-fetch.ts) takes one: it trusts the system roots plus
 * the bundle (as NODE_EXTRA_CA_CERTS would, but for the API calls only).
 */
import tls from 'node:tls';
import { readFile } from 'node:fs/promises';
import { ConfigError } from '../lib/errors.js';
import { createHttpFetch, type NodeFetch } from './http-fetch.js';

/** A fetch that trusts an extra CA bundle; `close()` drops its kept-alive connections. */
export type CaFetch = NodeFetch;

/** Options of createCaFetch; default: trust the system roots as well as the bundle. */
export interface CaFetchOptions {
  /** false: trust only the bundle (a GHES behind a private CA with no public certificate anywhere). */
  includeSystemRoots?: boolean;
}

/**
 * Reads the PEM bundle `github.caFile` names; throws ConfigError (exit 78) when it cannot be read
 * or holds no certificate. `configFile` is the host config, for the message.
 */
export async function readCaBundle(file: string, configFile: string): Promise<string> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`github.caFile ${file} cannot be read`, configFile, [
      `${configFile}: github.caFile: expected a readable PEM file, got "${file}" (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
    ]);
  }
  if (!/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.test(text)) {
    throw new ConfigError(`github.caFile ${file} holds no certificate`, configFile, [
      `${configFile}: github.caFile: expected PEM certificates (-----BEGIN CERTIFICATE-----), got none in "${file}"`,
    ]);
  }
  return text;
}

/**
 * A fetch whose HTTPS connections trust `caPem` (one or more PEM certificates); undefined: Node's
 * own trust (its bundled roots and NODE_EXTRA_CA_CERTS), as the global fetch has it. The agent
 * uses it with no bundle too: Node's global fetch loads its own HTTP client (undici, with its
 * parser compiled from WebAssembly), about 11 MiB of an idle agent's memory that node:https does
 * not need (docs/release.md).
 */
export function createCaFetch(caPem: string | undefined, opts: CaFetchOptions = {}): CaFetch {
  // tls.rootCertificates is read only with a bundle: it parses Node's whole root store.
  const ca = caPem === undefined ? undefined : opts.includeSystemRoots === false ? [caPem] : [...tls.rootCertificates, caPem];
  return createHttpFetch(ca ? { ca } : {});
}
