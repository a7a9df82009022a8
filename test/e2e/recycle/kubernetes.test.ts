import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { KubernetesRecycleConfig } from '../../../src/recycle/config.js';
import { kubernetesApiUrl, kubernetesProvider } from '../../../src/recycle/kubernetes.js';
import { startFakeK8s } from '../../../src/sim/k8s/fake-k8s.js';
import { never, sampleEvent, tempRoot } from './fixtures.js';

const TOKEN = 'eyJhbGciOiJSUzI1NiJ9.fake-service-account-token';

/** A service-account directory like the kubelet mounts, inside the test's own root. */
async function serviceAccount(
  root: string,
  token = TOKEN,
): Promise<Pick<KubernetesRecycleConfig, 'tokenFile' | 'namespaceFile' | 'caFile'>> {
  await writeFile(path.join(root, 'token'), `${token}\n`);
  await writeFile(path.join(root, 'namespace'), 'ci-runners');
  return { tokenFile: path.join(root, 'token'), namespaceFile: path.join(root, 'namespace'), caFile: path.join(root, 'ca.crt') };
}

test('the agent deletes its own pod with the service-account token', async () => {
  const { root, dispose } = await tempRoot();
  const fake = await startFakeK8s({ token: TOKEN, pods: ['ci-runners/runner-abc'] });
  try {
    const sa = await serviceAccount(root);
    const out = await kubernetesProvider({
      provider: 'kubernetes',
      apiUrl: fake.url,
      podName: 'runner-abc',
      gracePeriodSeconds: 5,
      ...sa,
    }).recycle(sampleEvent(), never);
    assert.equal(out.ok, true, out.detail);
    assert.deepEqual(fake.deleted, ['ci-runners/runner-abc'], 'the namespace must come from the namespace file');
    assert.deepEqual(fake.calls[0]?.body, { kind: 'DeleteOptions', apiVersion: 'v1', gracePeriodSeconds: 5 });
    assert.match(out.detail, /pod ci-runners\/runner-abc deletion accepted \(HTTP 200\)/);
    assert.doesNotMatch(out.detail, /fake-service-account-token/, 'the token must never appear in a detail');
  } finally {
    await fake.close();
    await dispose();
  }
});

test('a token the API server refuses is a failure with the 401 in the detail', async () => {
  const { root, dispose } = await tempRoot();
  const fake = await startFakeK8s({ token: TOKEN, pods: ['ci-runners/runner-abc'] });
  try {
    const sa = await serviceAccount(root, 'stale-token');
    const out = await kubernetesProvider({ provider: 'kubernetes', apiUrl: fake.url, podName: 'runner-abc', ...sa }).recycle(
      sampleEvent(),
      never,
    );
    assert.equal(out.ok, false);
    assert.match(out.detail, /HTTP 401: Unauthorized/);
    assert.deepEqual(fake.deleted, []);
    assert.equal(fake.calls[0]?.tokenValid, false);
  } finally {
    await fake.close();
    await dispose();
  }
});

test('a pod that does not exist is a failure so that a fallback runs', async () => {
  const { root, dispose } = await tempRoot();
  const fake = await startFakeK8s({ token: TOKEN, pods: ['ci-runners/runner-abc'] });
  try {
    const sa = await serviceAccount(root);
    const out = await kubernetesProvider({
      provider: 'kubernetes',
      apiUrl: fake.url,
      podName: 'runner-xyz',
      namespace: 'other',
      ...sa,
    }).recycle(sampleEvent(), never);
    assert.equal(out.ok, false, 'a 404 means the downward API values are wrong, not that the pod is gone');
    assert.match(out.detail, /pod other\/runner-xyz: HTTP 404: pods "runner-xyz" not found/);
  } finally {
    await fake.close();
    await dispose();
  }
});

test('RBAC refusing the delete is a failure', async () => {
  const { root, dispose } = await tempRoot();
  const fake = await startFakeK8s({ token: TOKEN, pods: ['ci-runners/runner-abc'] });
  try {
    fake.failNext(403);
    const sa = await serviceAccount(root);
    const out = await kubernetesProvider({ provider: 'kubernetes', apiUrl: fake.url, podName: 'runner-abc', ...sa }).recycle(
      sampleEvent(),
      never,
    );
    assert.equal(out.ok, false);
    assert.match(out.detail, /HTTP 403/);
  } finally {
    await fake.close();
    await dispose();
  }
});

test('a missing token file is a failure that names the file problem', async () => {
  const { root, dispose } = await tempRoot();
  try {
    const out = await kubernetesProvider({
      provider: 'kubernetes',
      apiUrl: 'http://127.0.0.1:9',
      podName: 'p',
      namespace: 'n',
      tokenFile: path.join(root, 'absent'),
    }).recycle(sampleEvent(), never);
    assert.equal(out.ok, false);
    assert.match(out.detail, /^service account files: Error: ENOENT/);
  } finally {
    await dispose();
  }
});

test('the in-cluster URL is built from the service host and port, with IPv6 hosts bracketed', () => {
  assert.equal(kubernetesApiUrl({ provider: 'kubernetes', serviceHost: '10.96.0.1', servicePort: '443' }), 'https://10.96.0.1:443');
  assert.equal(kubernetesApiUrl({ provider: 'kubernetes', serviceHost: 'fd00::1', servicePort: 6443 }), 'https://[fd00::1]:6443');
  assert.equal(
    kubernetesApiUrl({ provider: 'kubernetes', apiUrl: 'http://127.0.0.1:8080/', serviceHost: 'ignored' }),
    'http://127.0.0.1:8080',
  );
  assert.equal(kubernetesApiUrl({ provider: 'kubernetes' }), undefined);
});

test('over HTTPS the API server is trusted through the service-account CA file only', async () => {
  const { root, dispose } = await tempRoot();
  try {
    // A throwaway CA-less self-signed cert for 127.0.0.1 (EC keys: fast to make).
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:prime256v1',
        '-nodes',
        '-keyout',
        path.join(root, 'key.pem'),
        '-out',
        path.join(root, 'ca.crt'),
        '-days',
        '1',
        '-subj',
        '/CN=127.0.0.1',
        '-addext',
        'subjectAltName=IP:127.0.0.1',
      ],
      { stdio: 'ignore' },
    );
    const tls = { key: await readFile(path.join(root, 'key.pem'), 'utf8'), cert: await readFile(path.join(root, 'ca.crt'), 'utf8') };
    const fake = await startFakeK8s({ token: TOKEN, pods: ['ci-runners/runner-abc'], tls });
    try {
      const sa = await serviceAccount(root);
      const port = new URL(fake.url).port;
      const config: KubernetesRecycleConfig = {
        provider: 'kubernetes',
        serviceHost: '127.0.0.1',
        servicePort: port,
        podName: 'runner-abc',
        ...sa,
      };
      const untrusted = await kubernetesProvider({ ...config, caFile: '/dev/null' }).recycle(sampleEvent(), never);
      assert.equal(untrusted.ok, false, 'a server the CA file does not vouch for must be refused');
      assert.deepEqual(fake.deleted, []);
      const out = await kubernetesProvider(config).recycle(sampleEvent(), never);
      assert.equal(out.ok, true, out.detail);
      assert.deepEqual(fake.deleted, ['ci-runners/runner-abc']);
    } finally {
      await fake.close();
    }
  } finally {
    await dispose();
  }
});
