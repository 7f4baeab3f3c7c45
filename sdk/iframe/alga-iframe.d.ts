// Types of alga-iframe.js, the extension side of the Alga Edge host-page bridge (Alga's
// iframe envelope v1).

/** The envelope version both sides speak. */
export declare const ENVELOPE_VERSION: '1';

/** Stable error codes of the bridge. */
export type BridgeErrorCode =
  | 'handshake' | 'timeout' | 'route' | 'denied' | 'too_large' | 'bad_request' | 'closed';

/** A bridge failure. */
export declare class BridgeError extends Error {
  readonly code: BridgeErrorCode | string;
  readonly status?: number;
  constructor(code: BridgeErrorCode | string, message: string, status?: number);
}

/** An Alga envelope. */
export interface Envelope<P = Record<string, unknown>> {
  alga: true;
  version: '1';
  type: string;
  request_id?: string;
  payload: P;
}

/** What an Alga Edge host tells the extension about the session. */
export interface BridgeContext {
  tenant_id?: string;
  extension_id?: string;
}

/** Theme tokens: `--alga-*` CSS variable names to values. */
export type ThemeTokens = Record<string, string>;

/** Options of `connect`. */
export interface ConnectOptions {
  /** The host page's origin (default: `?parentOrigin=` or `#alga-host=` of the iframe URL). */
  hostOrigin?: string;
  /** Handshake and per-call timeout in milliseconds (default 10000). */
  timeoutMs?: number;
  /** Apply theme tokens as CSS variables (default true). */
  applyTheme?: boolean;
}

/** The answer of a route called through the host. */
export interface RouteResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
  bytes: Uint8Array;
  json<T = unknown>(): T;
}

/** fetch-like options of `callRoute`. */
export interface RouteInit {
  /** Default GET. */
  method?: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE' | string;
  body?: string | Uint8Array | null;
  /** This call's timeout (default: the bridge's). */
  timeoutMs?: number;
}

/** A connected bridge. */
export declare class Bridge {
  readonly hostOrigin: string;
  /** The port the host answers on (null: an Alga host, answering on the window). */
  readonly port: MessagePort | null;
  readonly sessionToken: string;
  readonly context: BridgeContext;
  readonly path: string;
  theme: ThemeTokens;
  themeName: string | null;
  /** Messages ignored for their origin, window or envelope. */
  ignored: number;
  callRoute(path: string, init?: RouteInit): Promise<RouteResponse>;
  navigate(path: string): void;
  resize(height: number): void;
  onTheme(listener: (tokens: ThemeTokens, name: string | null) => void): () => void;
  close(): void;
}

export declare function connect(options?: ConnectOptions): Promise<Bridge>;
export declare function hostOriginFromLocation(location?: Location): string;
export declare function setThemeVariables(tokens: ThemeTokens, root?: HTMLElement): void;
export declare function envelope<P>(type: string, payload?: P, requestId?: string): Envelope<P>;
export declare function isEnvelope(data: unknown): data is Envelope;
export declare function toBase64(body: string | Uint8Array): string;
export declare function fromBase64(text: string): Uint8Array;
