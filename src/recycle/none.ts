import type { RecycleProvider } from './port.js';

/**
 * `none`: no engine to tell. The agent stops and the host stays as it is, never reused, for an
 * operator or an outside controller to replace.
 */
export function noneProvider(): RecycleProvider {
  return {
    name: 'none',
    async recycle() {
      return { provider: 'none', ok: true, detail: 'no recycle provider configured; agent stops, host left as is' };
    },
  };
}
