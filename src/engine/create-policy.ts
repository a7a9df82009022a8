/**
 * What a job may ask of an engine when it creates a container, checked against the policy's
 * `docker.allow` (everything denied by default). The same check serves the container hooks
 * (docker CLI arguments) and any API-level enforcement (a create request's HostConfig): both are
 * first reduced to a {@link CreateAsk}. A refusal names the policy key that would allow it.
 */
import { realpathSync } from 'node:fs';
import path from 'node:path';
import type { Policy } from '../policy/types.js';

/** The policy section this module reads. */
export type DockerAllow = Policy['docker']['allow'];

/** Everything security-relevant a container create asks for. */
export interface CreateAsk {
  privileged: boolean;
  /** Namespaces asked to be the host's: pid, network, ipc, uts, userns, cgroupns. */
  hostNamespaces: string[];
  /** Host paths of bind mounts. */
  bindSources: string[];
  devices: string[];
  capAdd: string[];
  /** security-opt values that switch a confinement off (seccomp/apparmor=unconfined...). */
  unconfined: string[];
}

/** One refusal: what was asked, and the key that would allow it. */
export interface CreateRefusal {
  asked: string;
  key: string;
}

/** An empty ask. */
export function emptyAsk(): CreateAsk {
  return { privileged: false, hostNamespaces: [], bindSources: [], devices: [], capAdd: [], unconfined: [] };
}

/** Flags of `docker create/run` that take a value (so their value is not read as the image). */
const NAMESPACE_FLAGS: Record<string, string> = {
  '--pid': 'pid',
  '--network': 'network',
  '--net': 'network',
  '--ipc': 'ipc',
  '--uts': 'uts',
  '--userns': 'userns',
  '--cgroupns': 'cgroupns',
};

/**
 * Reads the security-relevant options out of docker CLI create arguments (the `options:` of a
 * job or service container). Both `--flag value` and `--flag=value` forms are understood.
 */
export function askFromCliArgs(args: string[]): CreateAsk {
  const ask = emptyAsk();
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string;
    const eq = a.indexOf('=');
    const [flag, inline] = a.startsWith('--') && eq > 0 ? [a.slice(0, eq), a.slice(eq + 1)] : [a, undefined];
    const value = (): string => inline ?? args[++i] ?? '';
    if (flag === '--privileged') ask.privileged = inline === undefined || inline === 'true';
    else if (flag in NAMESPACE_FLAGS) {
      const v = value();
      if (v === 'host') ask.hostNamespaces.push(NAMESPACE_FLAGS[flag] as string);
    } else if (flag === '-v' || flag === '--volume') {
      const src = value().split(':')[0] ?? '';
      if (src.startsWith('/')) ask.bindSources.push(src);
    } else if (flag === '--mount') {
      const fields = Object.fromEntries(
        value()
          .split(',')
          .map((kv) => [kv.split('=')[0] ?? '', kv.split('=').slice(1).join('=')]),
      );
      const type = fields.type ?? 'volume';
      const src = fields.source ?? fields.src ?? '';
      if (type === 'bind' || src.startsWith('/')) ask.bindSources.push(src);
    } else if (flag === '--device') ask.devices.push(value().split(':')[0] ?? '');
    else if (flag === '--device-cgroup-rule') ask.devices.push(`cgroup rule ${value()}`);
    else if (flag === '--cap-add') ask.capAdd.push(...value().split(','));
    else if (flag === '--security-opt') {
      const v = value();
      if (/unconfined|no-new-privileges[=:]false|systempaths=unconfined/.test(v)) ask.unconfined.push(v);
    } else if (flag === '--volumes-from') ask.bindSources.push(`volumes of ${value()}`);
  }
  return ask;
}

/** The same from an Engine API create body's HostConfig. */
export function askFromHostConfig(hc: Record<string, unknown> | undefined): CreateAsk {
  const ask = emptyAsk();
  if (!hc) return ask;
  ask.privileged = hc.Privileged === true;
  const modes: Array<[string, unknown]> = [
    ['pid', hc.PidMode],
    ['network', hc.NetworkMode],
    ['ipc', hc.IpcMode],
    ['uts', hc.UTSMode],
    ['userns', hc.UsernsMode],
    ['cgroupns', hc.CgroupnsMode],
  ];
  for (const [ns, v] of modes) if (v === 'host') ask.hostNamespaces.push(ns);
  for (const b of (hc.Binds as string[] | undefined) ?? []) {
    const src = b.split(':')[0] ?? '';
    if (src.startsWith('/')) ask.bindSources.push(src);
  }
  for (const m of (hc.Mounts as Array<{ Type?: string; Source?: string }> | undefined) ?? []) {
    if (m.Type === 'bind' && m.Source) ask.bindSources.push(m.Source);
  }
  for (const d of (hc.Devices as Array<{ PathOnHost?: string }> | undefined) ?? []) ask.devices.push(d.PathOnHost ?? '');
  for (const r of (hc.DeviceCgroupRules as string[] | undefined) ?? []) ask.devices.push(`cgroup rule ${r}`);
  ask.capAdd.push(...((hc.CapAdd as string[] | undefined) ?? []));
  for (const s of (hc.SecurityOpt as string[] | undefined) ?? []) if (/unconfined/.test(s)) ask.unconfined.push(s);
  if (((hc.VolumesFrom as string[] | undefined) ?? []).length > 0) ask.bindSources.push('volumes of another container');
  return ask;
}

/** A path with its symlinks resolved as far as it exists (a job cannot alias /etc through its workspace). */
function resolved(p: string): string {
  const parts: string[] = [];
  let cur = path.resolve(p);
  for (;;) {
    try {
      return path.join(realpathSync(cur), ...parts.reverse());
    } catch {
      const parent = path.dirname(cur);
      if (parent === cur) return path.resolve(p);
      parts.push(path.basename(cur));
      cur = parent;
    }
  }
}

/** True when `p` is `root` or below it. */
function under(root: string, p: string): boolean {
  const rel = path.relative(root, p);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

/**
 * Checks an ask against the policy. `workspaceRoots` are the job's own directories (its _work,
 * temp and tool cache, the runner's externals) that every container may mount.
 */
export function checkCreate(ask: CreateAsk, allow: DockerAllow, workspaceRoots: string[]): CreateRefusal[] {
  const out: CreateRefusal[] = [];
  if (ask.privileged && !allow.privileged) out.push({ asked: '--privileged', key: 'docker.allow.privileged: true' });
  for (const ns of ask.hostNamespaces) {
    if (!allow.hostNamespaces) out.push({ asked: `--${ns}=host`, key: 'docker.allow.hostNamespaces: true' });
  }
  for (const u of ask.unconfined) {
    if (!allow.privileged) out.push({ asked: `--security-opt ${u}`, key: 'docker.allow.privileged: true' });
  }
  const roots = [...workspaceRoots, ...allow.hostPaths].map(resolved);
  for (const src of ask.bindSources) {
    if (!src.startsWith('/')) {
      out.push({ asked: `mount of ${src}`, key: 'docker.allow.hostPaths (a directory holding it)' });
      continue;
    }
    const real = resolved(src);
    if (!roots.some((r) => under(r, real))) out.push({ asked: `bind mount of ${src}`, key: `docker.allow.hostPaths: [${real}]` });
  }
  for (const d of ask.devices) {
    if (!allow.devices.includes(d)) out.push({ asked: `--device ${d}`, key: `docker.allow.devices: [${d}]` });
  }
  for (const c of ask.capAdd) {
    const name = c.toUpperCase().replace(/^CAP_/, '');
    if (name === 'ALL' ? !allow.privileged : !allow.capabilities.includes(name)) {
      out.push({ asked: `--cap-add ${c}`, key: name === 'ALL' ? 'docker.allow.privileged: true' : `docker.allow.capabilities: [${name}]` });
    }
  }
  return out;
}

/** One line for the job's log: what was refused and what would allow it. */
export function describeRefusals(refusals: CreateRefusal[]): string {
  return refusals.map((r) => `${r.asked} is not allowed by the runner's policy (${r.key} would allow it)`).join('; ');
}
