// Types of alga-host.js, the host-page side of the Alga Edge iframe bridge.

import type { BridgeContext, ThemeTokens } from './alga-iframe';

export declare const PROTOCOL: 'alga-ext/1';

/** Options of `attachExtension`. */
export interface AttachOptions {
  iframe: HTMLIFrameElement;
  extensionId: string;
  /** The tenant credential added to every route call (never sent to the iframe). */
  getToken(): string | Promise<string>;
  /** Base URL of the gateway (default: this page's origin). */
  gatewayBase?: string;
  /** The UI's origin, only when the iframe is allowed same-origin. */
  uiOrigin?: string | null;
  context?: BridgeContext;
  theme?: ThemeTokens;
  onNavigate?(path: string): unknown;
}

/** A connected iframe. */
export interface AttachedExtension {
  readonly stats: { ignored: number; calls: number };
  setTheme(theme: ThemeTokens): void;
  detach(): void;
}

export declare function attachExtension(options: AttachOptions): AttachedExtension;
export declare function checkRoutePath(path: string): boolean;
