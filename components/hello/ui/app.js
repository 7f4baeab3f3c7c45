// The hello sample's UI: connects to the host page, shows the tenant, calls the extension's
// own /greet route through the bridge (the iframe never holds a credential) and follows the
// host's theme (the SDK sets the UI kit's --alga-* CSS variables; style.css uses them).
import { connect } from './alga-iframe.js';

const show = (id, text) => { document.getElementById(id).textContent = text; };

try {
  const bridge = await connect({ timeoutMs: 5000 });
  show('tenant', bridge.context.tenant_id ?? '?');
  show('theme', bridge.themeName ?? 'custom');
  bridge.onTheme((_tokens, name) => show('theme', name ?? 'custom'));
  const answer = await bridge.callRoute('/greet?from=ui');
  const data = answer.json();
  show('greeting', data.greeting);
  show('route', `${answer.status} ${data.method} ${data.path}?${data.raw_query}`);
  document.body.dataset.state = 'ready';
  window.algaBridge = bridge;
} catch (error) {
  show('status', `${error.code ?? 'error'}: ${error.message}`);
  document.body.dataset.state = 'failed';
}
