import { describeError } from '../lib/errors.js';
import { RECYCLE_DEFAULTS, gcpMigAction, type GcpMigRecycleConfig } from './config.js';
import { describeApiError, httpRequest } from './http.js';
import type { RecycleProvider, RecycleResult } from './port.js';
import { sendHttpThrottled, type ThrottleDeps } from './throttle.js';
import { CLOUD_API_RATES } from './cloud-slots.js';

/** Where this VM stands, as the metadata server (or the config) says. */
export interface GcpInstanceIdentity {
  project: string;
  zone: string;
  instanceName: string;
  /** `projects/P/zones/Z/instanceGroupManagers/N` or `projects/P/regions/R/instanceGroupManagers/N`. */
  instanceGroupManager: string;
}

/**
 * Reads one metadata value. The request carries `Metadata-Flavor: Google` and the answer must
 * carry it back, so that nothing but the metadata server (a proxy, a captive portal) is believed.
 */
async function readMetadata(base: string, p: string, timeoutMs: number, signal: AbortSignal): Promise<string> {
  const res = await httpRequest(`${base}/computeMetadata/v1/${p}`, {
    method: 'GET',
    headers: { 'metadata-flavor': 'Google' },
    timeoutMs,
    signal,
  });
  if (res.status !== 200) throw new Error(`metadata ${p}: HTTP ${res.status}`);
  if (res.headers['metadata-flavor'] !== 'Google') throw new Error(`metadata ${p}: the answer lacks Metadata-Flavor: Google`);
  return res.body.trim();
}

/**
 * The group path from the `created-by` attribute, which names the project by number; the API takes
 * either, and the project id is used so that the path matches what an operator sees.
 */
export function groupFromCreatedBy(createdBy: string, project: string): string | undefined {
  const m = /^projects\/[^/]+\/((?:zones|regions)\/[^/]+\/instanceGroupManagers\/[^/]+)$/.exec(createdBy);
  return m ? `projects/${project}/${m[1]}` : undefined;
}

/**
 * `gcp-mig`: from the VM itself, through the metadata server (identity and a token of the VM's
 * service account, which needs compute.instanceGroupManagers.update on the group), asks the managed
 * instance group to recreate this VM (the default: the size stays, a fresh VM from the template)
 * or, when a scaler owns the size, to delete it (the target size shrinks; the autoscaler adds VMs
 * back as the queue needs). The API answers with a queued operation; the group then stops the VM.
 */
export function gcpMigProvider(config: GcpMigRecycleConfig, deps: ThrottleDeps = {}): RecycleProvider {
  const d = RECYCLE_DEFAULTS.gcpMig;
  const metadataBase = (config.metadataEndpoint ?? d.metadataEndpoint).replace(/\/+$/, '');
  const computeBase = (config.computeEndpoint ?? d.computeEndpoint).replace(/\/+$/, '');
  const metadataTimeoutMs = (config.metadataTimeoutSeconds ?? d.metadataTimeoutSeconds) * 1000;
  const timeoutMs = (config.timeoutSeconds ?? d.timeoutSeconds) * 1000;
  const action = gcpMigAction(config);
  const fail = (detail: string): RecycleResult => ({ provider: 'gcp-mig', ok: false, detail });
  return {
    name: 'gcp-mig',
    async recycle(_event, signal) {
      const meta = (p: string): Promise<string> => readMetadata(metadataBase, p, metadataTimeoutMs, signal);
      let id: GcpInstanceIdentity;
      let token: string;
      try {
        const project = config.project ?? (await meta('project/project-id'));
        // instance/zone is `projects/NUMBER/zones/ZONE`.
        const zone = config.zone ?? (await meta('instance/zone')).split('/').pop() ?? '';
        const instanceName = config.instanceName ?? (await meta('instance/name'));
        let group = config.instanceGroupManager;
        if (group === undefined) {
          const createdBy = await meta('instance/attributes/created-by');
          group = groupFromCreatedBy(createdBy, project);
          if (group === undefined) return fail(`this VM was not created by a managed instance group (created-by: ${createdBy})`);
        }
        id = { project, zone, instanceName, instanceGroupManager: group };
        const t = JSON.parse(await meta('instance/service-accounts/default/token')) as { access_token?: string };
        if (!t.access_token) return fail('the metadata server gave no access token');
        token = t.access_token;
      } catch (err) {
        if (signal.aborted) throw signal.reason;
        return fail(`identity from the metadata server: ${describeError(err)}`);
      }
      const verb = action === 'recreate' ? 'recreateInstances' : 'deleteInstances';
      const instance = `projects/${id.project}/zones/${id.zone}/instances/${id.instanceName}`;
      const body =
        action === 'recreate'
          ? { instances: [instance] }
          : // The VM may already be leaving the group (a resize raced us): not an error worth a fallback.
            { instances: [instance], skipInstancesOnValidationError: true };
      const where = `${id.instanceName} in ${id.instanceGroupManager.split('/').pop() ?? id.instanceGroupManager}`;
      const { answer, throttled } = await sendHttpThrottled(
        () =>
          httpRequest(`${computeBase}/compute/v1/${id.instanceGroupManager}/${verb}`, {
            method: 'POST',
            headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
            body: JSON.stringify(body),
            timeoutMs,
            signal,
          }),
        signal,
        deps,
        CLOUD_API_RATES['gcp-mig'],
      );
      const after = throttled > 0 ? ` (throttled ${throttled}x first)` : '';
      if (answer.res === undefined) return fail(`${where}: ${verb}: ${describeError(answer.err)}${after}`);
      const res = answer.res;
      if (res.status !== 200) return fail(`${where}: ${verb}: ${describeApiError(res.status, res.body)}${after}`);
      let op: { name?: string } = {};
      try {
        op = JSON.parse(res.body) as { name?: string };
      } catch {
        // accepted all the same; the operation name is only for the log
      }
      return { provider: 'gcp-mig', ok: true, detail: `${where}: ${verb} accepted (operation ${op.name ?? '?'})${after}` };
    },
  };
}
