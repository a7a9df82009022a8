import { describeError } from '../lib/errors.js';
import { RECYCLE_DEFAULTS, azureVmssAction, type AzureVmssRecycleConfig } from './config.js';
import { describeApiError, httpRequest } from './http.js';
import type { RecycleProvider, RecycleResult } from './port.js';
import { sendHttpThrottled, type ThrottleDeps } from './throttle.js';
import { CLOUD_API_RATES } from './cloud-slots.js';

/** IMDS API versions (documented, stable). */
const IMDS_INSTANCE_API = '2021-02-01';
const IMDS_TOKEN_API = '2018-02-01';

/** Where this VM stands in its scale set. */
export interface VmssIdentity {
  subscriptionId: string;
  resourceGroup: string;
  scaleSet: string;
  instanceId: string;
}

/**
 * Scale set and instance id from a Uniform scale-set VM's resource id
 * (`/subscriptions/S/resourceGroups/G/providers/Microsoft.Compute/virtualMachineScaleSets/N/virtualMachines/ID`).
 * A Flexible-orchestration or standalone VM has a plain virtualMachines id: undefined.
 */
export function vmssFromResourceId(resourceId: string): VmssIdentity | undefined {
  const m =
    /^\/subscriptions\/([^/]+)\/resourceGroups\/([^/]+)\/providers\/Microsoft\.Compute\/virtualMachineScaleSets\/([^/]+)\/virtualMachines\/(\d+)$/i.exec(
      resourceId,
    );
  return m ? { subscriptionId: m[1] ?? '', resourceGroup: m[2] ?? '', scaleSet: m[3] ?? '', instanceId: m[4] ?? '' } : undefined;
}

/**
 * `azure-vmss`: from the VM itself, through IMDS (its place in the scale set and a managed-identity
 * token; the identity needs Microsoft.Compute/virtualMachineScaleSets/delete/action, or
 * .../virtualMachines/reimage/action, on the scale set), asks the scale set to reimage this
 * instance (the default: same VM, fresh OS disk, capacity unchanged) or, when a scaler owns the
 * size, to delete it (capacity shrinks; autoscale adds VMs as the queue needs). Resource Manager answers 202 once the operation is queued.
 */
export function azureVmssProvider(config: AzureVmssRecycleConfig, deps: ThrottleDeps = {}): RecycleProvider {
  const d = RECYCLE_DEFAULTS.azureVmss;
  const imds = (config.imdsEndpoint ?? d.imdsEndpoint).replace(/\/+$/, '');
  const arm = (config.managementEndpoint ?? d.managementEndpoint).replace(/\/+$/, '');
  const imdsTimeoutMs = (config.imdsTimeoutSeconds ?? d.imdsTimeoutSeconds) * 1000;
  const timeoutMs = (config.timeoutSeconds ?? d.timeoutSeconds) * 1000;
  const action = azureVmssAction(config);
  const fail = (detail: string): RecycleResult => ({ provider: 'azure-vmss', ok: false, detail });
  return {
    name: 'azure-vmss',
    async recycle(_event, signal) {
      // IMDS refuses requests without `Metadata: true` (and any that went through a proxy).
      const imdsGet = async (p: string): Promise<unknown> => {
        const res = await httpRequest(`${imds}${p}`, { method: 'GET', headers: { metadata: 'true' }, timeoutMs: imdsTimeoutMs, signal });
        if (res.status !== 200) throw new Error(`IMDS ${p.split('?')[0]}: HTTP ${res.status}`);
        return JSON.parse(res.body) as unknown;
      };
      let id: VmssIdentity;
      let token: string;
      try {
        const given =
          config.subscriptionId !== undefined &&
          config.resourceGroup !== undefined &&
          config.scaleSet !== undefined &&
          config.instanceId !== undefined
            ? {
                subscriptionId: config.subscriptionId,
                resourceGroup: config.resourceGroup,
                scaleSet: config.scaleSet,
                instanceId: config.instanceId,
              }
            : undefined;
        if (given) id = given;
        else {
          const compute = (await imdsGet(`/metadata/instance/compute?api-version=${IMDS_INSTANCE_API}`)) as { resourceId?: string };
          const found = vmssFromResourceId(compute.resourceId ?? '');
          if (!found) return fail(`this VM is not an instance of a Uniform scale set (resourceId ${compute.resourceId ?? '?'})`);
          id = found;
        }
        const resource = encodeURIComponent(`${arm}/`);
        const clientId = config.identityClientId !== undefined ? `&client_id=${encodeURIComponent(config.identityClientId)}` : '';
        const t = (await imdsGet(`/metadata/identity/oauth2/token?api-version=${IMDS_TOKEN_API}&resource=${resource}${clientId}`)) as {
          access_token?: string;
        };
        if (!t.access_token) return fail('IMDS gave no managed-identity token');
        token = t.access_token;
      } catch (err) {
        if (signal.aborted) throw signal.reason;
        return fail(`identity from IMDS: ${describeError(err)}`);
      }
      const set = `${arm}/subscriptions/${id.subscriptionId}/resourceGroups/${id.resourceGroup}/providers/Microsoft.Compute/virtualMachineScaleSets/${id.scaleSet}`;
      const url =
        action === 'reimage'
          ? `${set}/virtualMachines/${id.instanceId}/reimage?api-version=${d.apiVersion}`
          : `${set}/delete?api-version=${d.apiVersion}`;
      const where = `instance ${id.instanceId} of ${id.scaleSet}`;
      const { answer, throttled } = await sendHttpThrottled(
        () =>
          httpRequest(url, {
            method: 'POST',
            headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
            body: JSON.stringify(action === 'reimage' ? {} : { instanceIds: [id.instanceId] }),
            timeoutMs,
            signal,
          }),
        signal,
        deps,
        CLOUD_API_RATES['azure-vmss'],
      );
      const after = throttled > 0 ? ` (throttled ${throttled}x first)` : '';
      if (answer.res === undefined) return fail(`${where}: ${action}: ${describeError(answer.err)}${after}`);
      const res = answer.res;
      if (res.status !== 200 && res.status !== 202) return fail(`${where}: ${action}: ${describeApiError(res.status, res.body)}${after}`);
      return { provider: 'azure-vmss', ok: true, detail: `${where}: ${action} accepted (HTTP ${res.status})${after}` };
    },
  };
}
