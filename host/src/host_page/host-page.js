// The demo host page: lists the demo tenant's installed extensions that have a UI and opens
// one in a sandboxed iframe, connected through the SDK's host side. The tenant token comes
// from /demo/config, which only `alga-edge demo` serves.
import { attachExtension } from '/sdk/iframe/alga-host.js';

// The UI kit's (`@alga-psa/ui-kit`) theme tokens, in this page's own light and dark palettes.
const THEMES = {
  light: {
    '--alga-bg': '#ffffff', '--alga-fg': '#1d2433', '--alga-muted': '#f4f6fa',
    '--alga-muted-fg': '#5d6b82', '--alga-primary': '#2457d6', '--alga-primary-foreground': '#ffffff',
    '--alga-border': '#dde3ec', '--alga-border-light': '#eef1f6', '--alga-card-bg': '#ffffff',
    '--alga-row-even': '#f7f9fc', '--alga-row-odd': '#ffffff', '--alga-row-hover': '#e9f0ff',
    '--alga-danger': '#d93636', '--alga-success': '#1f9d55', '--alga-warning': '#d98b06',
    '--alga-radius': '8px',
  },
  dark: {
    '--alga-bg': '#1b2130', '--alga-fg': '#e6e9ef', '--alga-muted': '#232b3d',
    '--alga-muted-fg': '#9aa6bb', '--alga-primary': '#7aa2ff', '--alga-primary-foreground': '#0f1422',
    '--alga-border': '#333d52', '--alga-border-light': '#283044', '--alga-card-bg': '#20283a',
    '--alga-row-even': '#1f2636', '--alga-row-odd': '#1b2130', '--alga-row-hover': '#2c3753',
    '--alga-danger': '#ff6b6b', '--alga-success': '#4cd38a', '--alga-warning': '#f5b642',
    '--alga-radius': '8px',
  },
};

const frame = document.getElementById('frame');
const list = document.getElementById('extensions');
const status = document.getElementById('status');
let themeName = 'light';
let attached = null;

const config = await (await fetch('/demo/config', { cache: 'no-store' })).json();
document.getElementById('tenant').textContent = config.tenant;

function open(extension) {
  attached?.detach();
  for (const button of list.querySelectorAll('button')) {
    button.setAttribute('aria-current', String(button.dataset.id === extension.id));
  }
  attached = attachExtension({
    iframe: frame,
    extensionId: extension.id,
    getToken: () => config.token,
    context: { tenant_id: config.tenant, extension_id: extension.id },
    themeTokens: THEMES[themeName],
    themeName,
    onNavigate: (path) => {
      document.getElementById('navigation').textContent = `navigation requested: ${path}`;
    },
  });
  window.__alga.attached = attached;
  // `?page=` opens another file of the UI (tests); `parentOrigin` is how Alga's iframe SDK
  // (and ours) learns which origin to trust.
  const page = new URLSearchParams(window.location.search).get('page');
  const src = page ? extension.ui.replace(/[^/]*$/, encodeURIComponent(page)) : extension.ui;
  frame.src = `${src}?parentOrigin=${encodeURIComponent(window.location.origin)}`;
}

for (const extension of config.extensions) {
  const item = document.createElement('li');
  const button = document.createElement('button');
  button.type = 'button';
  button.dataset.id = extension.id;
  button.textContent = `${extension.id} ${extension.version}`;
  button.addEventListener('click', () => open(extension));
  item.append(button);
  list.append(item);
}
status.textContent = config.extensions.length
  ? `${config.extensions.length} extension(s) with a UI`
  : 'no installed extension has a UI';

document.getElementById('theme-toggle').addEventListener('click', () => {
  themeName = themeName === 'light' ? 'dark' : 'light';
  document.body.classList.toggle('dark', themeName === 'dark');
  attached?.setTheme(THEMES[themeName], themeName);
});

window.__alga = { config, attached, open };
const wanted = new URLSearchParams(window.location.search).get('open');
const first = config.extensions.find((e) => e.id === wanted);
if (first) open(first);
