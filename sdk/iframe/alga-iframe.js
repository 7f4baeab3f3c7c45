// Alga Edge iframe SDK: the extension side of the host-page bridge.
//
// Plain ES module, no build step: copy it next to your UI (`ui/alga-iframe.js`) and
// `import { connect } from './alga-iframe.js'`. The iframe is sandboxed (opaque origin) and
// holds no credentials: every call to the extension's own routes goes through the host page,
// which adds the tenant's credential. Protocol `alga-ext/1`:
//
//   iframe → host  {protocol, type: 'hello', nonce}                      (targetOrigin: host)
//   host → iframe  {protocol, type: 'welcome', nonce, session, context, theme}
//   iframe → host  {protocol, type: 'request', session, id, method, params}
//   host → iframe  {protocol, type: 'response', session, id, ok, result | error}
//   host → iframe  {protocol, type: 'theme', session, theme}
//
// The host origin comes from the iframe URL's fragment (`#alga-host=<origin>`); messages
// from any other origin or window, or with another nonce/session, are ignored.

export const PROTOCOL = 'alga-ext/1';

/** A bridge failure with a stable `code`. */
export class BridgeError extends Error {
  constructor(code, message) {
    super(message);
    this.name = 'BridgeError';
    this.code = code;
  }
}

function randomId() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** The host origin the page was opened for, from `#alga-host=<origin>`. */
export function hostOriginFromLocation(location = window.location) {
  const params = new URLSearchParams(location.hash.replace(/^#/, ''));
  const origin = params.get('alga-host');
  if (!origin) {
    throw new BridgeError('handshake', 'the iframe URL has no #alga-host=<origin> fragment');
  }
  let parsed;
  try {
    parsed = new URL(origin);
  } catch {
    throw new BridgeError('handshake', `'${origin}' is not an origin`);
  }
  if (parsed.origin !== origin) {
    throw new BridgeError('handshake', `'${origin}' is not an origin`);
  }
  return origin;
}

/**
 * Connects to the host page: handshake, then a bridge for calls, navigation and theme.
 * Options: `hostOrigin` (default: from the URL fragment), `timeoutMs` (handshake and each
 * call, default 10000), `applyTheme` (set theme tokens as `--alga-*` CSS variables, default
 * true).
 */
export function connect(options = {}) {
  const hostOrigin = options.hostOrigin ?? hostOriginFromLocation();
  const timeoutMs = options.timeoutMs ?? 10000;
  const applyTheme = options.applyTheme ?? true;
  const parent = window.parent;
  if (!parent || parent === window) {
    return Promise.reject(new BridgeError('handshake', 'not inside a host page'));
  }
  const nonce = randomId();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      window.removeEventListener('message', onWelcome);
      reject(new BridgeError('timeout', `no answer from ${hostOrigin} within ${timeoutMs} ms`));
    }, timeoutMs);
    function onWelcome(event) {
      const data = event.data;
      if (event.origin !== hostOrigin || event.source !== parent) return;
      if (!data || data.protocol !== PROTOCOL || data.type !== 'welcome' || data.nonce !== nonce) return;
      clearTimeout(timer);
      window.removeEventListener('message', onWelcome);
      resolve(new Bridge(hostOrigin, data, timeoutMs, applyTheme));
    }
    window.addEventListener('message', onWelcome);
    parent.postMessage({ protocol: PROTOCOL, type: 'hello', nonce }, hostOrigin);
  });
}

/** A connected bridge (made by `connect`). */
export class Bridge {
  constructor(hostOrigin, welcome, timeoutMs, applyTheme) {
    this.hostOrigin = hostOrigin;
    this.session = welcome.session;
    /** `{tenantId, extensionId, userId?}` from the host. */
    this.context = welcome.context ?? {};
    /** Current theme tokens (`{background: '#fff', …}`). */
    this.theme = welcome.theme ?? {};
    this.timeoutMs = timeoutMs;
    this.applyTheme = applyTheme;
    this.pending = new Map();
    this.themeListeners = new Set();
    /** Messages ignored because of their origin, window, protocol or session. */
    this.ignored = 0;
    this.onMessage = (event) => this.receive(event);
    window.addEventListener('message', this.onMessage);
    if (applyTheme) setThemeVariables(this.theme);
  }

  receive(event) {
    const data = event.data;
    if (event.origin !== this.hostOrigin || event.source !== window.parent
        || !data || data.protocol !== PROTOCOL || data.session !== this.session) {
      this.ignored += 1;
      return;
    }
    if (data.type === 'response') {
      const call = this.pending.get(data.id);
      if (!call) return;
      this.pending.delete(data.id);
      clearTimeout(call.timer);
      if (data.ok) call.resolve(data.result);
      else call.reject(new BridgeError(data.error?.code ?? 'route', data.error?.message ?? 'failed'));
    } else if (data.type === 'theme') {
      this.theme = data.theme ?? {};
      if (this.applyTheme) setThemeVariables(this.theme);
      for (const listener of this.themeListeners) listener(this.theme);
    }
  }

  request(method, params) {
    const id = randomId();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new BridgeError('timeout', `${method} got no answer within ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      window.parent.postMessage(
        { protocol: PROTOCOL, type: 'request', session: this.session, id, method, params },
        this.hostOrigin,
      );
    });
  }

  /**
   * Calls one of the extension's own routes through the host page: `path` below
   * `/api/ext/{extensionId}` (e.g. `/greet?x=1`), `init` like fetch's (method, headers, body
   * as a string). Resolves to `{status, headers, body, json()}`.
   */
  async callRoute(path, init = {}) {
    if (typeof path !== 'string' || !path.startsWith('/')) {
      throw new BridgeError('route', 'the path must start with /');
    }
    const result = await this.request('callRoute', {
      path,
      init: { method: init.method ?? 'GET', headers: init.headers ?? {}, body: init.body ?? null },
    });
    return { ...result, json: () => JSON.parse(result.body) };
  }

  /** Asks the host page to navigate to `path` (the host decides what that means). */
  navigate(path) {
    return this.request('navigate', { path });
  }

  /** Calls `listener(theme)` on every theme change; returns a function that unsubscribes. */
  onTheme(listener) {
    this.themeListeners.add(listener);
    return () => this.themeListeners.delete(listener);
  }

  /** Stops listening; pending calls fail with `closed`. */
  close() {
    window.removeEventListener('message', this.onMessage);
    for (const call of this.pending.values()) {
      clearTimeout(call.timer);
      call.reject(new BridgeError('closed', 'the bridge was closed'));
    }
    this.pending.clear();
  }
}

/** Sets each theme token as a `--alga-<name>` CSS variable on the document root. */
export function setThemeVariables(theme, root = document.documentElement) {
  for (const [name, value] of Object.entries(theme ?? {})) {
    if (/^[a-z][a-z0-9-]*$/.test(name) && typeof value === 'string') {
      root.style.setProperty(`--alga-${name}`, value);
    }
  }
}
