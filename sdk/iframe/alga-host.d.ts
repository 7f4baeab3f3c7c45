// Types of alga-host.js, the host-page side of the Alga Edge iframe bridge (Alga's iframe
// envelope v1).

import type { BridgeContext, ThemeTokens } from './alga-iframe';

export declare const ENVELOPE_VERSION: '1';

/** Options of `attachExtension`. */
export interface AttachOptions {
  iframe: HTMLIFrameElement;
  extensionId: string;
  /** The tenant credential added to every route call (never sent to the iframe). */
  getToken(): string | Promise<string>;
  /** Base URL of the gateway (default: this page's origin). */
  gatewayBase?: string;
  /** The UI's origin, only when the iframe is not sandboxed to an opaque origin. */
  uiOrigin?: string | null;
  /** Told to the iframe in `bootstrap.context`. */
  context?: BridgeContext;
  /** `--alga-*` tokens and the theme's name at bootstrap. */
  themeTokens?: ThemeTokens;
  themeName?: string | null;
  /** `bootstrap.navigation.path` (default `/`). */
  initialPath?: string;
  onNavigate?(path: string): unknown;
  /** Largest `apiproxy` body (default 1 MiB). */
  maxBodyBytes?: number;
}

/** What the host counted. */
export interface AttachStats {
  ignored: number;
  badEnvelope: number;
  denied: number;
  tooLarge: number;
  calls: number;
  resized: number;
}

/** A connected iframe. */
export interface AttachedExtension {
  readonly stats: AttachStats;
  setTheme(tokens: ThemeTokens, name?: string | null): void;
  detach(): void;
}

export declare function attachExtension(options: AttachOptions): AttachedExtension;
export declare function checkRoutePath(path: string): boolean;
