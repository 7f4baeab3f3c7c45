// Calls this extension's own GET / through the host page (the iframe holds no credential).
import { connect } from './alga-iframe.js';

const message = document.getElementById('message');
try {
  const bridge = await connect();
  const answer = await bridge.callRoute('/');
  message.textContent = answer.json().message;
} catch (error) {
  message.textContent = `${error.code ?? 'error'}: ${error.message}`;
}
