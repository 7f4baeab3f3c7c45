// The demo host page: lists the demo tenant's installed extensions that have a UI and opens
// one in a sandboxed iframe, connected through the SDK's host side. The tenant token comes
// from /demo/config, which only `alga-edge demo` serves.
import { attachExtension } from '/sdk/iframe/alga-host.js';

const THEMES = {
  light: { background: '#ffffff', text: '#1d2433', accent: '#2457d6', name: 'light' },
  dark: { background: '#1b2130', text: '#e6e9ef', accent: '#7aa2ff', name: 'dark' },
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
    context: { tenantId: config.tenant, extensionId: extension.id },
    theme: THEMES[themeName],
    onNavigate: (path) => {
      document.getElementById('navigation').textContent = `navigation requested: ${path}`;
      return { accepted: true };
    },
  });
  window.__alga.attached = attached;
  frame.src = `${extension.ui}#alga-host=${encodeURIComponent(window.location.origin)}`;
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
  attached?.setTheme(THEMES[themeName]);
});

window.__alga = { config, attached, open };
const wanted = new URLSearchParams(window.location.search).get('open');
const first = config.extensions.find((e) => e.id === wanted);
if (first) open(first);
