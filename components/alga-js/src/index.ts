// alga-js: an Alga PSA extension (world `runner` of the unversioned alga:extension package) in
// TypeScript, built the way Alga PSA's component samples are: this entry wires the world's raw
// imports into the `HostBindings` shape of @alga-psa/extension-runtime, esbuild bundles it
// (alga:extension/* left external), and componentize-js turns the bundle into a component
// exporting `handler`.
import type { ContextData, ExecuteRequest, ExecuteResponse } from '@alga-psa/extension-runtime';
import { handler as routes, type Host } from './handler';

// @ts-ignore: provided by the component's world, not by a package
import { getContext } from 'alga:extension/context';
// @ts-ignore
import { get as storageGet, put as storagePut, delete as storageDelete } from 'alga:extension/storage';
// @ts-ignore
import { logInfo, logWarn, logError } from 'alga:extension/logging';

const host: Host = {
  context: { get: async () => getContext() as ContextData },
  storage: {
    get: async (namespace, key) => storageGet(namespace, key),
    put: async (entry) => storagePut(entry),
    delete: async (namespace, key) => storageDelete(namespace, key),
  },
  logging: {
    info: async (message) => logInfo(message),
    warn: async (message) => logWarn(message),
    error: async (message) => logError(message),
  },
};

// The world's export: handler(execute-request) -> execute-response.
export async function handler(request: ExecuteRequest): Promise<ExecuteResponse> {
  return routes(request, host);
}
