import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import test from 'node:test';
import { startFakeGitHub } from '../../../src/sim/github/server.js';

/** One GET over HTTPS trusting only `ca`; resolves with the status, rejects on a TLS failure. */
function get(url: string, ca: string | undefined, token: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = https.get(url, { ...(ca ? { ca } : {}), headers: { authorization: `Bearer ${token}` } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
  });
}

test('the fake GitHub answers over HTTPS with the key and certificate it is given, to a client trusting their CA only', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'rw-fake-tls-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const f = (n: string): string => path.join(dir, n);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  execFileSync('openssl', ['req', '-x509', ...ec, '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '1', '-subj', '/CN=test CA'], {
    stdio: 'ignore',
  });
  execFileSync('openssl', ['req', ...ec, '-keyout', f('api.key'), '-out', f('api.csr'), '-subj', '/CN=127.0.0.1'], { stdio: 'ignore' });
  await writeFile(f('api.ext'), 'subjectAltName=IP:127.0.0.1\n');
  execFileSync(
    'openssl',
    ['x509', '-req', '-in', f('api.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial'].concat([
      '-days',
      '1',
      '-extfile',
      f('api.ext'),
      '-out',
      f('api.pem'),
    ]),
    { stdio: 'ignore' },
  );
  const fake = await startFakeGitHub({ tls: { key: await readFile(f('api.key'), 'utf8'), cert: await readFile(f('api.pem'), 'utf8') } });
  t.after(() => fake.close());
  assert.match(fake.url, /^https:\/\/127\.0\.0\.1:\d+$/, 'the URL handed to clients should say https');
  const ca = await readFile(f('ca.pem'), 'utf8');
  assert.equal(await get(`${fake.url}/orgs/octo/actions/runners`, ca, fake.defaultToken), 200);
  await assert.rejects(
    get(`${fake.url}/orgs/octo/actions/runners`, undefined, fake.defaultToken),
    /self[- ]signed|unable to (get|verify)/i,
    'a client without the CA must refuse the certificate',
  );
});
