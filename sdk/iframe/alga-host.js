// Alga Edge iframe SDK: the host-page side of the bridge (see alga-iframe.js for the
// protocol). The host page owns the tenant's credential; an extension UI in a sandboxed
// iframe asks it to call the extension's own routes and never sees the credential.

export const PROTOCOL = 'alga-ext/1';

const FORBIDDEN_HEADERS = new Set(['authorization', 'cookie', 'host', 'proxy-authorization']);
const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE']);

function randomId() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
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

/**
 * Connects `iframe` (showing extension `extensionId`) to this page. Options:
 * - `getToken()`: the tenant credential (string or promise), added to each route call;
 * - `gatewayBase`: where `/api/ext/…` lives (default: this page's origin);
 * - `uiOrigin`: the UI's origin when the iframe is allowed same-origin (default: none; a
 *   sandboxed iframe's messages come from the opaque origin `null`);
 * - `context`: `{tenantId, extensionId, userId?}` told to the iframe;
 * - `theme`: initial theme tokens; `onNavigate(path)`: navigation requests.
 * Returns `{setTheme(theme), detach(), stats}`; `stats.ignored` counts foreign messages.
 */
export function attachExtension(options) {
  const { iframe, extensionId, getToken } = options;
  const gatewayBase = options.gatewayBase ?? window.location.origin;
  const uiOrigin = options.uiOrigin ?? null;
  const context = options.context ?? { extensionId };
  let theme = options.theme ?? {};
  const session = randomId();
  const stats = { ignored: 0, calls: 0 };

  function post(message) {
    // A sandboxed iframe has an opaque origin, so no origin can be named: the message goes to
    // this iframe's window only, and carries nothing but this extension's own data.
    iframe.contentWindow?.postMessage({ protocol: PROTOCOL, session, ...message }, '*');
  }

  async function callRoute(params) {
    const path = params?.path;
    if (!checkRoutePath(path)) {
      throw Object.assign(new Error(`refused path ${JSON.stringify(path)}`), { code: 'denied' });
    }
    const init = params.init ?? {};
    const method = String(init.method ?? 'GET').toUpperCase();
    if (!METHODS.has(method)) {
      throw Object.assign(new Error(`refused method ${method}`), { code: 'denied' });
    }
    const headers = {};
    for (const [name, value] of Object.entries(init.headers ?? {})) {
      if (!FORBIDDEN_HEADERS.has(name.toLowerCase())) headers[name] = String(value);
    }
    headers.authorization = `Bearer ${await getToken()}`;
    stats.calls += 1;
    const response = await fetch(
      `${gatewayBase}/api/ext/${encodeURIComponent(extensionId)}${path}`,
      { method, headers, body: init.body ?? undefined, credentials: 'omit' },
    );
    return {
      status: response.status,
      headers: Object.fromEntries(response.headers.entries()),
      body: await response.text(),
    };
  }

  async function handleRequest(data) {
    try {
      let result = null;
      if (data.method === 'callRoute') {
        result = await callRoute(data.params);
      } else if (data.method === 'navigate') {
        result = (await options.onNavigate?.(String(data.params?.path ?? '/'))) ?? null;
      } else {
        throw Object.assign(new Error(`unknown method ${data.method}`), { code: 'route' });
      }
      post({ type: 'response', id: data.id, ok: true, result });
    } catch (error) {
      post({
        type: 'response', id: data.id, ok: false,
        error: { code: error.code ?? 'route', message: String(error.message ?? error) },
      });
    }
  }

  function onMessage(event) {
    const data = event.data;
    const fromFrame = event.source === iframe.contentWindow
      && (event.origin === 'null' || (uiOrigin !== null && event.origin === uiOrigin));
    if (!fromFrame || !data || data.protocol !== PROTOCOL) {
      stats.ignored += 1;
      return;
    }
    if (data.type === 'hello' && typeof data.nonce === 'string') {
      post({ type: 'welcome', nonce: data.nonce, context, theme });
    } else if (data.type === 'request' && data.session === session) {
      handleRequest(data);
    } else {
      stats.ignored += 1;
    }
  }

  window.addEventListener('message', onMessage);
  return {
    stats,
    setTheme(next) {
      theme = next ?? {};
      post({ type: 'theme', theme });
    },
    detach() {
      window.removeEventListener('message', onMessage);
    },
  };
}
