// {{name}}: an Alga PSA extension in TypeScript (world `runner`, scaffolded by `alga-edge ext
// new --abi alga`). `alga-edge ext build` bundles this file with esbuild (alga:extension/* left
// external) and turns the bundle into a component with componentize-js, as Alga's samples do.
import { jsonResponse } from '@alga-psa/extension-runtime';
import type { ContextData, ExecuteRequest, ExecuteResponse } from '@alga-psa/extension-runtime';

// @ts-ignore: provided by the component's world, not by a package
import { getContext } from 'alga:extension/context';
// @ts-ignore
import { logInfo } from 'alga:extension/logging';

const decoder = new TextDecoder();

// The world's export: handler(execute-request) -> execute-response.
export async function handler(request: ExecuteRequest): Promise<ExecuteResponse> {
  logInfo(`${request.http.method} ${request.http.url}`);
  const body = request.http.body;
  return jsonResponse({
    method: request.http.method,
    url: request.http.url,
    headers: (request.http.headers ?? []).map((h) => [h.name, h.value]),
    body: body ? decoder.decode(body) : null,
    context: contextJson(request.context),
    context_import: contextJson(getContext() as ContextData),
  });
}

function contextJson(c: ContextData) {
  return {
    request_id: c.requestId ?? null,
    tenant_id: c.tenantId,
    extension_id: c.extensionId,
    install_id: c.installId ?? null,
    version_id: c.versionId ?? null,
  };
}
