// Types of alga-iframe.js, the extension side of the Alga Edge host-page bridge.

/** The protocol version both sides speak. */
export declare const PROTOCOL: 'alga-ext/1';

/** Stable error codes of the bridge. */
export type BridgeErrorCode = 'handshake' | 'timeout' | 'route' | 'denied' | 'closed';

/** A bridge failure. */
export declare class BridgeError extends Error {
  readonly code: BridgeErrorCode | string;
  constructor(code: BridgeErrorCode | string, message: string);
}

/** What the host tells the extension about the session. */
export interface BridgeContext {
  tenantId: string;
  extensionId: string;
  userId?: string;
}

/** Theme tokens, applied as `--alga-<name>` CSS variables. */
export type ThemeTokens = Record<string, string>;

/** Options of `connect`. */
export interface ConnectOptions {
  /** The host page's origin (default: the `#alga-host=` fragment of the iframe URL). */
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
  json<T = unknown>(): T;
}

/** fetch-like options of `callRoute`. */
export interface RouteInit {
  method?: string;
  headers?: Record<string, string>;
  body?: string | null;
}

/** A connected bridge. */
export declare class Bridge {
  readonly hostOrigin: string;
  readonly session: string;
  readonly context: BridgeContext;
  theme: ThemeTokens;
  /** Messages ignored for their origin, window, protocol or session. */
  ignored: number;
  callRoute(path: string, init?: RouteInit): Promise<RouteResponse>;
  navigate(path: string): Promise<unknown>;
  onTheme(listener: (theme: ThemeTokens) => void): () => void;
  close(): void;
}

export declare function connect(options?: ConnectOptions): Promise<Bridge>;
export declare function hostOriginFromLocation(location?: Location): string;
export declare function setThemeVariables(theme: ThemeTokens, root?: HTMLElement): void;
