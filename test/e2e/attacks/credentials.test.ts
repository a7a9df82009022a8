/**
 * docs/hostile-jobs.md 1-7: credentials left by real tools, in the per-job HOME and in the runner user's
 * REAL home (tools that ignore $HOME, or a job that goes around it). The second job looks for
 * every token; secretlint scans the real home from outside. Each test is one reused host (two
 * jobs through the real agent): 3-8 s each, run concurrently.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { attack, assertNoTrace, token } from './helpers.js';
import { startFakeRegistry, type FakeRegistry } from '../../helpers/fake-registry.js';

/** Runs `cmds` once with the per-job HOME and once with HOME set to the real home. */
function bothHomes(cmds: string): string {
  return `for H in "$HOME" "$REAL_HOME"; do\n${cmds}\ndone\n`;
}

describe('credentials left by tools are gone before the next job', { concurrency: 3 }, () => {
  test('1. docker login and skopeo/podman auth files (docker, containers, XDG_RUNTIME_DIR) are removed', async (t) => {
    const pass = token(24);
    let registry: FakeRegistry | undefined;
    const r = await attack(t, {
      setup: async () => {
        registry = await startFakeRegistry('ciuser', pass);
        t.after(() => registry?.close());
      },
      hostile: (c) => [
        {
          name: 'log in with docker and skopeo',
          run:
            `REG=${registry?.host}\n` +
            // The docker CLI logs in from the client side; no daemon is needed.
            `DOCKER_HOST=unix:///nonexistent docker login -u ciuser --password-stdin "$REG" <<< '${pass}'\n` +
            'test -s "$DOCKER_CONFIG/config.json"\n' +
            bothHomes(
              [
                `  HOME=$H DOCKER_CONFIG=$H/.docker DOCKER_HOST=unix:///nonexistent docker login -u ciuser --password-stdin "$REG" <<< '${pass}'`,
                '  mkdir -p "$H/.config/containers"',
                `  HOME=$H skopeo login --tls-verify=false --authfile "$H/.config/containers/auth.json" -u ciuser -p '${pass}' "$REG"`,
                '  test -s "$H/.docker/config.json" && test -s "$H/.config/containers/auth.json"',
              ].join('\n'),
            ) +
            // skopeo's default without DOCKER_CONFIG (which it prefers when set): $XDG_RUNTIME_DIR/containers/auth.json,
            // here in a temp dir stand-in.
            'export XDG_RUNTIME_DIR=$SYS_SHM/xdg-$(id -u); mkdir -m 700 -p "$XDG_RUNTIME_DIR"\n' +
            `env -u DOCKER_CONFIG skopeo login --tls-verify=false -u ciuser -p '${pass}' "$REG"\n` +
            'test -s "$XDG_RUNTIME_DIR/containers/auth.json"\n' +
            `echo "${c.marker}" > /dev/null\n`,
        },
      ],
      needles: [pass, Buffer.from(`ciuser:${pass}`).toString('base64')],
    });
    assert.ok(
      registry?.seen.some((h) => h === `Basic ${Buffer.from(`ciuser:${pass}`).toString('base64')}`),
      'no tool authenticated to the fake registry',
    );
    await assertNoTrace(r);
  });

  test('4. aws configure set credentials and config are removed', async (t) => {
    const keyId = `AKIA${token(16, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567')}`;
    const secret = token(40);
    const session = token(64);
    const r = await attack(t, {
      hostile: () => [
        {
          name: 'aws configure',
          run: bothHomes(
            [
              `  HOME=$H aws configure set aws_access_key_id ${keyId}`,
              `  HOME=$H aws configure set aws_secret_access_key ${secret}`,
              `  HOME=$H aws configure set aws_session_token ${session} --profile ci`,
              `  grep -q ${secret} "$H/.aws/credentials"`,
            ].join('\n'),
          ),
        },
      ],
      needles: [keyId, secret, session],
    });
    await assertNoTrace(r);
  });

  // Attacks 2, 3 and 5-7 share one reused host (the aws CLI, the slowest tool, has its own above):
  // each tool writes its own files (one step each, named by its number, so a tool that fails names
  // itself), the same cleanup steps remove them all, and the second job searches for every tool's
  // tokens at once; a finding names the file and the token.
  test('2, 3, 5-7. npm, git, kubectl, gh and .netrc, and ssh credentials are removed from both homes, gitconfig restored', async (t) => {
    const npmToken = `npm_${token(36)}`;
    const ghs = `ghs_${token(36)}`;
    const kube = `eyJhbGciOiJSUzI1NiJ9.${token(80)}`;
    const gho = `gho_${token(36)}`;
    const ghp = `ghp_${token(36)}`;
    const r = await attack(t, {
      hostile: (c) => [
        {
          name: '2. npm config set',
          run: bothHomes(
            `  HOME=$H npm config set //registry.example.test/:_authToken=${npmToken}\n  HOME=$H npm config set //registry.example.test/:always-auth=true || true\n  grep -q ${npmToken} "$H/.npmrc"`,
          ),
        },
        {
          name: '3. git credentials',
          run: bothHomes(
            [
              '  HOME=$H git config --global credential.helper store',
              `  printf 'protocol=https\\nhost=github.com\\nusername=x-access-token\\npassword=${ghs}\\n\\n' | HOME=$H git credential approve`,
              `  HOME=$H git config --global url."https://x-access-token:${ghs}@github.com/".insteadOf "https://github.com/"`,
              `  grep -q ${ghs} "$H/.git-credentials"`,
            ].join('\n'),
          ),
        },
        {
          name: '5. kubectl config',
          run: bothHomes(
            [
              `  HOME=$H kubectl config set-credentials ci --token=${kube}`,
              '  HOME=$H kubectl config set-cluster c1 --server=https://127.0.0.1:6443',
              '  HOME=$H kubectl config set-context ci --cluster=c1 --user=ci',
              '  HOME=$H kubectl config use-context ci',
              `  grep -q ${kube} "$H/.kube/config"`,
            ].join('\n'),
          ),
        },
        {
          name: '6. gh and netrc',
          // gh is not installed here and cannot log in offline without a fake: written by hand.
          run: bothHomes(
            [
              '  mkdir -p "$H/.config/gh"',
              `  printf 'github.com:\\n    oauth_token: ${gho}\\n    user: ci-bot\\n    git_protocol: https\\n' > "$H/.config/gh/hosts.yml"`,
              '  chmod 600 "$H/.config/gh/hosts.yml"',
              `  printf 'machine github.com login ci-bot password ${ghp}\\n' > "$H/.netrc"`,
              '  chmod 600 "$H/.netrc"',
            ].join('\n'),
          ),
        },
        {
          name: '7. ssh keys',
          run: bothHomes(
            [
              '  mkdir -p -m 700 "$H/.ssh"',
              `  ssh-keygen -q -t ed25519 -N '' -C "${c.marker}" -f "$H/.ssh/id_ed25519"`,
              '  cat "$H/.ssh/id_ed25519.pub" >> "$H/.ssh/authorized_keys"',
              `  printf 'Host *\\n  IdentityFile ~/.ssh/id_ed25519\\n  # ${c.marker}\\n' > "$H/.ssh/config"`,
            ].join('\n'),
          ),
        },
      ],
      needles: [npmToken, ghs, kube, gho, ghp, 'BEGIN OPENSSH PRIVATE KEY'],
      probeExtra: () => 'HOME=$REAL_HOME git config --global --list | grep -E "credential|insteadof" | sed "s/^/gitconfig: /"',
    });
    await assertNoTrace(r);
  });
});
