// The routes of alga-js (the same contract as the alga-rust sample for these two):
// - /storage/{namespace}/{key}: GET -> {value, revision}; PUT/POST {"value", "revision"} ->
//   {revision}; DELETE -> {ok: true}; an interface error -> {error: "<case>"}.
// - anything else: echo the request, its context and context.get-context() as JSON, with the
//   response headers x-ext-echo: 1 and set-cookie: leak=1 (which the host must drop).
import { jsonResponse } from '@alga-psa/extension-runtime';
import type { ContextData, ExecuteRequest, ExecuteResponse, HttpHeader, LoggingHost } from '@alga-psa/extension-runtime';

/** A storage entry as the runner world's storage interface carries it. */
export interface StorageEntry {
  namespace: string;
  key: string;
  value: Uint8Array;
  revision?: bigint | number | null;
}

/** The host calls this extension uses. */
export interface Host {
  context: { get(): Promise<ContextData> };
  storage: {
    get(namespace: string, key: string): Promise<StorageEntry>;
    put(entry: StorageEntry): Promise<StorageEntry>;
    delete(namespace: string, key: string): Promise<void>;
  };
  logging: LoggingHost;
}

const decoder = new TextDecoder();
const encoder = new TextEncoder();
const JSON_HEADER: HttpHeader = { name: 'content-type', value: 'application/json' };

export async function handler(request: ExecuteRequest, host: Host): Promise<ExecuteResponse> {
  const url = request.http.url || '/';
  const path = url.split('?')[0];
  const segments = path.split('/').filter((s) => s.length > 0).map(decodeSegment);
  if (segments.length === 3 && segments[0] === 'storage') {
    return jsonResponse(await storageRoute(request, host, segments[1], segments[2]));
  }
  return echo(request, host);
}

async function echo(request: ExecuteRequest, host: Host): Promise<ExecuteResponse> {
  const imported = await host.context.get();
  const body = request.http.body;
  return jsonResponse(
    {
      method: request.http.method,
      url: request.http.url,
      headers: (request.http.headers ?? []).map((h) => [h.name, h.value]),
      body: body ? decoder.decode(body) : null,
      context: contextJson(request.context),
      context_import: contextJson(imported),
    },
    {
      headers: [
        JSON_HEADER,
        { name: 'x-ext-echo', value: '1' },
        { name: 'set-cookie', value: 'leak=1' },
      ],
    },
  );
}

async function storageRoute(request: ExecuteRequest, host: Host, namespace: string, key: string) {
  try {
    switch (request.http.method.toUpperCase()) {
      case 'GET': {
        const entry = await host.storage.get(namespace, key);
        return { value: decoder.decode(entry.value), revision: revision(entry.revision) };
      }
      case 'PUT':
      case 'POST': {
        const input = JSON.parse(request.http.body ? decoder.decode(request.http.body) : '{}');
        if (typeof input?.value !== 'string') {
          return { error: 'bad-request', message: 'body must be {"value": "<text>", "revision": n|null}' };
        }
        const stored = await host.storage.put({
          namespace,
          key,
          value: encoder.encode(input.value),
          revision: typeof input.revision === 'number' ? BigInt(input.revision) : undefined,
        });
        return { revision: revision(stored.revision) };
      }
      case 'DELETE':
        await host.storage.delete(namespace, key);
        return { ok: true };
      default:
        return { error: 'method-not-allowed' };
    }
  } catch (error) {
    return { error: caseName(error) };
  }
}

/** The WIT case name of an interface error (componentize-js throws it as the error's payload). */
function caseName(error: unknown): string {
  const payload = (error as { payload?: unknown })?.payload;
  if (typeof payload === 'string') return payload;
  if (payload && typeof payload === 'object' && 'tag' in payload) return String((payload as { tag: unknown }).tag);
  return String(error);
}

function revision(value: bigint | number | null | undefined): number | null {
  return value === undefined || value === null ? null : Number(value);
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

function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}
