// Alga Edge iframe SDK: the extension side of the host-page bridge.
//
// Plain ES module, no build step: copy it next to your UI (`ui/alga-iframe.js`) and
// `import { connect } from './alga-iframe.js'`. The iframe is sandboxed (opaque origin) and
// holds no credential: every call to the extension's own routes goes through the host page,
// which adds the tenant's credential.
//
// It speaks Alga PSA's iframe envelope v1, `{alga: true, version: '1', type, request_id?,
// payload}`, so it works in Alga's host page and Alga's iframe apps work in ours:
//
//   iframe → host  ready {}                         (to the exact parent origin)
//   host → iframe  bootstrap {session: {token, expires_at}, theme_tokens, navigation: {path}}
//   iframe → host  apiproxy {route, body?: base64, method?}          request_id
//   host → iframe  apiproxy_response {body?: base64, error?}         request_id
//   host → iframe  theme_tokens {theme_tokens}       (a theme change after bootstrap)
//   iframe → host  resize {height}, navigate {path}
//
// What Alga Edge adds is ignored by Alga's own SDK and host: `ready` carries a MessagePort,
// and a host that answers on it (ours does) talks to this document only, never through
// `postMessage(…, '*')`; `bootstrap` carries `context` and `theme_name`;
// `apiproxy_response` carries `status`, `headers` and an error `code`.
//
// The parent origin comes from the iframe URL: `?parentOrigin=<origin>` (Alga's) or
// `#alga-host=<origin>`. Messages from any other origin or window are ignored and counted.

export const ENVELOPE_VERSION = '1';

/** A bridge failure with a stable `code` (and the HTTP `status`, when the route answered). */
export class BridgeError extends Error {
  constructor(code, message, status) {
    super(message);
    this.name = 'BridgeError';
    this.code = code;
    if (status !== undefined) this.status = status;
  }
}

function randomId() {
  if (typeof crypto.randomUUID === 'function') return crypto.randomUUID();
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** An Alga envelope. */
export function envelope(type, payload = {}, requestId) {
  const message = { alga: true, version: ENVELOPE_VERSION, type, payload };
  if (requestId !== undefined) message.request_id = requestId;
  return message;
}

/** Whether `data` is an Alga envelope of version 1. */
export function isEnvelope(data) {
  return !!data && typeof data === 'object' && data.alga === true
    && data.version === ENVELOPE_VERSION && typeof data.type === 'string'
    && typeof data.payload === 'object' && data.payload !== null;
}

/** Bytes (or a string, as UTF-8) as base64. */
export function toBase64(body) {
  const bytes = typeof body === 'string' ? new TextEncoder().encode(body) : body;
  let binary = '';
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

/** Base64 as bytes. */
export function fromBase64(text) {
  const binary = atob(text ?? '');
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i += 1) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/** The host origin the page was opened for: `?parentOrigin=` or `#alga-host=`. */
export function hostOriginFromLocation(location = window.location) {
  const origin = new URLSearchParams(location.search).get('parentOrigin')
    ?? new URLSearchParams(location.hash.replace(/^#/, '')).get('alga-host');
  if (!origin) {
    throw new BridgeError('handshake',
      'the iframe URL names no parent origin (?parentOrigin=<origin> or #alga-host=<origin>)');
  }
  let parsed;
  try {
    parsed = new URL(origin);
  } catch {
    throw new BridgeError('handshake', `'${origin}' is not an origin`);
  }
  if (parsed.origin !== origin) throw new BridgeError('handshake', `'${origin}' is not an origin`);
  return origin;
}

/**
 * Connects to the host page: `ready`, then the host's `bootstrap`. Options: `hostOrigin`
 * (default: from the URL), `timeoutMs` (handshake and each call, default 10000),
 * `applyTheme` (set the theme tokens as CSS variables, default true).
 */
export function connect(options = {}) {
  const hostOrigin = options.hostOrigin ?? hostOriginFromLocation();
  const timeoutMs = options.timeoutMs ?? 10000;
  const applyTheme = options.applyTheme ?? true;
  const parent = window.parent;
  if (!parent || parent === window) {
    return Promise.reject(new BridgeError('handshake', 'not inside a host page'));
  }
  return new Promise((resolve, reject) => {
    const ports = [];
    let retry;
    const finish = (kept) => {
      clearTimeout(timer);
      clearInterval(retry);
      window.removeEventListener('message', onWindow);
      for (const port of ports) {
        port.onmessage = null;
        if (port !== kept) port.close();
      }
    };
    const timer = setTimeout(() => {
      finish(null);
      reject(new BridgeError('timeout', `no bootstrap from ${hostOrigin} within ${timeoutMs} ms`));
    }, timeoutMs);
    const bootstrapped = (data, port) => {
      finish(port);
      resolve(new Bridge({ hostOrigin, port, bootstrap: data.payload, timeoutMs, applyTheme }));
    };
    // A host of ours answers on the port `ready` carries; Alga's answers on the window.
    function onWindow(event) {
      if (event.origin !== hostOrigin || event.source !== parent) return;
      if (isEnvelope(event.data) && event.data.type === 'bootstrap') bootstrapped(event.data, null);
    }
    function ready() {
      const channel = new MessageChannel();
      channel.port1.onmessage = (event) => {
        if (isEnvelope(event.data) && event.data.type === 'bootstrap') {
          bootstrapped(event.data, channel.port1);
        }
      };
      ports.push(channel.port1);
      parent.postMessage(envelope('ready', {}), hostOrigin, [channel.port2]);
    }
    window.addEventListener('message', onWindow);
    ready();
    // A host that attaches after this page loaded missed the first `ready`: say it again
    // (each time with a new port) until bootstrap arrives.
    retry = setInterval(ready, 1000);
  });
}

/** A connected bridge (made by `connect`). */
export class Bridge {
  constructor({ hostOrigin, port, bootstrap, timeoutMs, applyTheme }) {
    this.hostOrigin = hostOrigin;
    this.port = port;
    /** The short-lived session token from bootstrap (empty from an Alga Edge host). */
    this.sessionToken = bootstrap?.session?.token ?? '';
    /** `{tenant_id, extension_id}` when the host says (Alga Edge hosts do). */
    this.context = bootstrap?.context ?? {};
    /** The path the host asked the UI to show. */
    this.path = bootstrap?.navigation?.path ?? '/';
    /** Theme tokens, `{'--alga-bg': '#ffffff', …}`, and the theme's name if the host says. */
    this.theme = bootstrap?.theme_tokens ?? {};
    this.themeName = bootstrap?.theme_name ?? null;
    this.timeoutMs = timeoutMs;
    this.applyTheme = applyTheme;
    this.pending = new Map();
    this.themeListeners = new Set();
    /** Messages ignored because of their origin, window or envelope. */
    this.ignored = 0;
    if (port) port.onmessage = (event) => this.receive(event.data);
    // On the window, only the host page may speak, and only when it does not use the port:
    // anything else arriving there is foreign, and counted.
    this.onWindow = (event) => {
      if (port || event.origin !== hostOrigin || event.source !== window.parent) {
        this.ignored += 1;
        return;
      }
      this.receive(event.data);
    };
    window.addEventListener('message', this.onWindow);
    if (applyTheme) setThemeVariables(this.theme);
  }

  receive(data) {
    if (!isEnvelope(data)) {
      this.ignored += 1;
      return;
    }
    if (data.type === 'apiproxy_response') {
      const call = this.pending.get(data.request_id);
      if (!call) return;
      this.pending.delete(data.request_id);
      clearTimeout(call.timer);
      call.settle(data.payload);
    } else if (data.type === 'theme_tokens' || data.type === 'bootstrap') {
      this.theme = data.payload.theme_tokens ?? {};
      this.themeName = data.payload.theme_name ?? null;
      if (this.applyTheme) setThemeVariables(this.theme);
      for (const listener of this.themeListeners) listener(this.theme, this.themeName);
    } else {
      this.ignored += 1;
    }
  }

  send(message) {
    if (this.port) this.port.postMessage(message);
    else window.parent.postMessage(message, this.hostOrigin);
  }

  /**
   * Calls one of the extension's own routes through the host page: `path` below
   * `/api/ext/{extensionId}` (e.g. `/greet?x=1`); `init` like fetch's (`method`, default GET;
   * `body`, a string or bytes). Resolves to `{status, headers, body, bytes, json()}` for any
   * HTTP status; rejects with a `BridgeError` when the host refused or could not call.
   */
  callRoute(path, init = {}) {
    if (typeof path !== 'string' || !path.startsWith('/')) {
      return Promise.reject(new BridgeError('route', 'the path must start with /'));
    }
    const method = String(init.method ?? 'GET').toUpperCase();
    const payload = { route: path, method };
    if (init.body !== undefined && init.body !== null) payload.body = toBase64(init.body);
    const requestId = randomId();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(requestId);
        reject(new BridgeError('timeout', `${method} ${path} got no answer within ${this.timeoutMs} ms`));
      }, init.timeoutMs ?? this.timeoutMs);
      this.pending.set(requestId, {
        timer,
        settle: (answer) => {
          // Alga's hosts answer a non-2xx status as an error; ours add the status and body.
          if (answer.error !== undefined && answer.status === undefined) {
            reject(new BridgeError(answer.code ?? 'route', String(answer.error)));
            return;
          }
          const bytes = fromBase64(answer.body ?? '');
          const body = new TextDecoder().decode(bytes);
          resolve({
            status: answer.status ?? 200,
            headers: answer.headers ?? {},
            body,
            bytes,
            json: () => JSON.parse(body),
          });
        },
      });
      this.send(envelope('apiproxy', payload, requestId));
    });
  }

  /** Asks the host page to navigate to `path` (the host decides what that means). */
  navigate(path) {
    this.send(envelope('navigate', { path: String(path) }));
  }

  /** Asks the host page to make the iframe `height` pixels tall (it clamps to 100–4000). */
  resize(height) {
    this.send(envelope('resize', { height: Number(height) }));
  }

  /** Calls `listener(tokens, name)` on every theme change; returns a function that unsubscribes. */
  onTheme(listener) {
    this.themeListeners.add(listener);
    return () => this.themeListeners.delete(listener);
  }

  /** Stops listening; pending calls fail with `closed`. */
  close() {
    window.removeEventListener('message', this.onWindow);
    this.port?.close();
    for (const call of this.pending.values()) {
      clearTimeout(call.timer);
      call.settle({ error: 'the bridge was closed', code: 'closed' });
    }
    this.pending.clear();
  }
}

/** Sets each `--alga-*` theme token as a CSS variable on the document root. */
export function setThemeVariables(tokens, root = document.documentElement) {
  for (const [name, value] of Object.entries(tokens ?? {})) {
    if (/^--alga-[a-z0-9-]+$/.test(name) && typeof value === 'string' && !/[;{}]/.test(value)) {
      root.style.setProperty(name, value);
    }
  }
}
