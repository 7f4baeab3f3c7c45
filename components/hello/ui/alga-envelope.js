// The Alga envelope page's script (alga-envelope.html): Alga's iframe protocol by hand, the
// way an Alga PSA iframe app speaks it, without our SDK.
const parentOrigin = new URLSearchParams(location.search).get('parentOrigin');
const pending = new Map();
const seen = { bootstrap: null, foreign: 0 };
const send = (type, payload, request_id) =>
  window.parent.postMessage({ alga: true, version: '1', type, request_id, payload }, parentOrigin);
window.addEventListener('message', (event) => {
  const data = event.data;
  if (event.origin !== parentOrigin || event.source !== window.parent) { seen.foreign += 1; return; }
  if (!data || data.alga !== true || data.version !== '1') return;
  if (data.type === 'bootstrap') {
    seen.bootstrap = data.payload;
    for (const [name, value] of Object.entries(data.payload.theme_tokens ?? {})) {
      document.documentElement.style.setProperty(name, value);
    }
    run();
  } else if (data.type === 'apiproxy_response') {
    pending.get(data.request_id)?.(data.payload);
    pending.delete(data.request_id);
  }
});
// Alga's apiproxy: `route`, `method`, `body` as base64; the answer's `body` is base64.
function apiproxy(route, method, bodyText, version = '1') {
  const request_id = crypto.randomUUID();
  const payload = { route };
  if (method !== undefined) payload.method = method;
  if (bodyText !== undefined) payload.body = btoa(bodyText);
  return new Promise((resolve) => {
    pending.set(request_id, resolve);
    window.parent.postMessage({ alga: true, version, type: 'apiproxy', request_id, payload }, parentOrigin);
    setTimeout(() => resolve({ timeout: true }), 3000);
  });
}
let started = false;
async function run() {
  if (started) return;
  started = true;
  const answer = await apiproxy('/greet?from=alga-envelope', 'GET');
  if (answer.error) {
    document.getElementById('status').textContent = answer.error;
    document.body.dataset.state = 'failed';
    return;
  }
  const data = JSON.parse(atob(answer.body));
  document.getElementById('greeting').textContent = data.greeting;
  send('resize', { height: 321 });
  send('navigate', { path: '/from-alga-page' });
  document.body.dataset.state = 'ready';
}
window.algaEnvelope = { seen, apiproxy };
send('ready', {});
