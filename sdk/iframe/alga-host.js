// Alga Edge iframe SDK: the host-page side of the bridge, speaking Alga PSA's envelope v1
// (see alga-iframe.js for the messages). The host page owns the tenant's credential; an
// extension UI in a sandboxed iframe asks it to call the extension's own routes
// (`apiproxy`) and never sees the credential: `bootstrap.session.token` is empty.
//
// Where replies go: an iframe using our SDK sends a MessagePort with `ready`; every reply
// then goes on that port, to that document only. An Alga iframe app sends no port; its
// sandboxed document has an opaque origin no `targetOrigin` can name, so replies go to the
// iframe's own window with `'*'` (as Alga's host does in that case) — they carry the
// extension's own answers and theme, never a credential.
//
// Refused and counted in `stats`: messages from another window or origin (`ignored`), a
// wrong envelope or version (`badEnvelope`), a route outside the extension (`denied`), an
// oversized body (`tooLarge`).

export const ENVELOPE_VERSION = '1';

const FORBIDDEN_HEADERS = new Set(['authorization', 'cookie', 'host', 'proxy-authorization']);
const METHODS = new Set(['GET', 'POST', 'PUT', 'PATCH', 'DELETE']);
const MIN_HEIGHT = 100;
const MAX_HEIGHT = 4000;

function envelope(type, payload, requestId) {
  const message = { alga: true, version: ENVELOPE_VERSION, type, payload };
  if (requestId !== undefined) message.request_id = requestId;
  return message;
}

function toBase64(bytes) {
  let binary = '';
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

function fromBase64(text) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i += 1) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/** Refuses paths that could leave `/api/ext/{extensionId}`. */
export function checkRoutePath(path) {
  if (typeof path !== 'string' || !path.startsWith('/') || path.startsWith('//')
      || path.includes('\\') || path.length > 2048) {
    return false;
  }
  const pathname = path.split(/[?#]/)[0];
  return !pathname.split('/').some((segment) => {
    const decoded = (() => { try { return decodeURIComponent(segment); } catch { return '..'; } })();
    return decoded === '..' || decoded === '.' || decoded.includes('/');
  });
}

/** A refusal with a code, answered as an `apiproxy_response` error. */
function refusal(code, message) {
  return Object.assign(new Error(message), { code });
}

/**
 * Connects `iframe` (showing extension `extensionId`) to this page. Options:
 * - `getToken()`: the tenant credential (string or promise), added to each route call;
 * - `gatewayBase`: where `/api/ext/…` lives (default: this page's origin);
 * - `uiOrigin`: the UI's origin when the iframe is not sandboxed to an opaque origin;
 * - `context`: `{tenant_id, extension_id}` told to the iframe in `bootstrap`;
 * - `themeTokens` (`{'--alga-bg': …}`) and `themeName`: the theme at bootstrap;
 * - `initialPath`: `bootstrap.navigation.path`; `onNavigate(path)`; `maxBodyBytes` (1 MiB).
 * Returns `{setTheme(tokens, name), detach(), stats}`.
 */
export function attachExtension(options) {
  const { iframe, extensionId, getToken } = options;
  const gatewayBase = options.gatewayBase ?? window.location.origin;
  const uiOrigin = options.uiOrigin ?? null;
  const maxBodyBytes = options.maxBodyBytes ?? (1 << 20);
  let themeTokens = options.themeTokens ?? {};
  let themeName = options.themeName ?? null;
  const stats = { ignored: 0, badEnvelope: 0, denied: 0, tooLarge: 0, calls: 0, resized: 0 };
  let port = null;

  function post(message) {
    if (port) port.postMessage(message);
    else iframe.contentWindow?.postMessage(message, uiOrigin ?? '*');
  }

  function bootstrap() {
    post(envelope('bootstrap', {
      session: { token: '', expires_at: '' },
      theme_tokens: themeTokens,
      navigation: { path: options.initialPath ?? '/' },
      context: options.context ?? { extension_id: extensionId },
      theme_name: themeName,
    }));
  }

  async function apiproxy(payload) {
    // Alga's hosts take a route without its leading slash as relative to the extension.
    const raw = payload?.route;
    const route = typeof raw === 'string' && !raw.startsWith('/') ? `/${raw}` : raw;
    if (!checkRoutePath(route)) {
      stats.denied += 1;
      throw refusal('denied', `refused route ${JSON.stringify(route)}: it must stay below the extension`);
    }
    // Alga's hosts default a missing method to POST.
    const method = String(payload.method || 'POST').toUpperCase();
    if (!METHODS.has(method)) {
      stats.denied += 1;
      throw refusal('denied', `refused method ${method}`);
    }
    let body;
    if (payload.body !== undefined && payload.body !== null && payload.body !== '') {
      if (typeof payload.body !== 'string' || payload.body.length > Math.ceil(maxBodyBytes / 3) * 4 + 4) {
        stats.tooLarge += 1;
        throw refusal('too_large', `the body is larger than ${maxBodyBytes} bytes`);
      }
      try {
        body = fromBase64(payload.body);
      } catch {
        throw refusal('bad_request', 'the body is not base64');
      }
      if (body.length > maxBodyBytes) {
        stats.tooLarge += 1;
        throw refusal('too_large', `the body is larger than ${maxBodyBytes} bytes`);
      }
      if (method === 'GET') throw refusal('bad_request', 'a GET carries no body');
    }
    const headers = { authorization: `Bearer ${await getToken()}` };
    if (body) headers['content-type'] = 'application/octet-stream';
    stats.calls += 1;
    const response = await fetch(
      `${gatewayBase}/api/ext/${encodeURIComponent(extensionId)}${route}`,
      { method, headers, body, credentials: 'omit' },
    );
    const bytes = new Uint8Array(await response.arrayBuffer());
    const answer = {
      status: response.status,
      headers: Object.fromEntries([...response.headers.entries()]
        .filter(([name]) => !FORBIDDEN_HEADERS.has(name))),
      body: toBase64(bytes),
    };
    // Alga's SDK reads a non-2xx answer as an error; ours also gets the status and body.
    if (!response.ok) {
      answer.error = `Proxy error ${response.status}: ${new TextDecoder().decode(bytes)}`;
    }
    return answer;
  }

  async function handle(data) {
    switch (data.type) {
      case 'ready':
        bootstrap();
        break;
      case 'resize': {
        const height = Number(data.payload.height);
        if (Number.isFinite(height)) {
          iframe.style.height = `${Math.max(MIN_HEIGHT, Math.min(MAX_HEIGHT, Math.floor(height)))}px`;
          stats.resized += 1;
        }
        break;
      }
      case 'navigate':
        await options.onNavigate?.(String(data.payload.path ?? '/'));
        break;
      case 'apiproxy': {
        const id = data.request_id;
        if (typeof id !== 'string' || !id || id.length > 128) {
          stats.badEnvelope += 1;
          return;
        }
        let payload;
        try {
          payload = await apiproxy(data.payload);
        } catch (error) {
          payload = { error: String(error.message ?? error), code: error.code ?? 'route' };
        }
        post(envelope('apiproxy_response', payload, id));
        break;
      }
      default:
        stats.ignored += 1;
    }
  }

  function accept(data) {
    if (!data || typeof data !== 'object' || data.alga !== true || data.version !== ENVELOPE_VERSION
        || typeof data.type !== 'string' || typeof data.payload !== 'object' || data.payload === null) {
      stats.badEnvelope += 1;
      return;
    }
    handle(data);
  }

  function onMessage(event) {
    const fromFrame = event.source === iframe.contentWindow
      && (event.origin === 'null' || (uiOrigin !== null && event.origin === uiOrigin));
    if (!fromFrame) {
      stats.ignored += 1;
      return;
    }
    if (event.data?.type === 'ready') {
      // The document that sent `ready` is the one we talk to from now on: on its port, or
      // (an Alga app, no port) on the iframe's window.
      const [offered] = event.ports ?? [];
      port?.close();
      port = offered ?? null;
      if (port) port.onmessage = (message) => accept(message.data);
    }
    accept(event.data);
  }

  window.addEventListener('message', onMessage);
  return {
    stats,
    setTheme(tokens, name) {
      themeTokens = tokens ?? {};
      themeName = name ?? null;
      post(envelope('theme_tokens', { theme_tokens: themeTokens, theme_name: themeName }));
    },
    detach() {
      window.removeEventListener('message', onMessage);
      port?.close();
      port = null;
    },
  };
}
