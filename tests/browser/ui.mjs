// Browser test of extension UIs: Debian's Chromium driven by playwright-core opens the demo
// host page, which opens the hello sample's UI in a sandboxed iframe. Asserts what the
// extension rendered from its own route through the bridge (Alga's envelope v1), that the
// theme follows the host, that the iframe never holds the token, that foreign messages are
// ignored on both sides; that a page speaking only Alga's envelope works in our host page
// (refusals counted: routes outside the extension, oversized bodies, wrong versions) and our
// SDK in a host speaking only Alga's envelope; saves screenshots.
//
// usage: node ui.mjs BASE_URL ARTIFACTS_DIR   (env ALGA_PLAYWRIGHT_CORE: playwright-core dir,
// ALGA_CHROMIUM: the browser, default /usr/bin/chromium)
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const [base, artifacts] = process.argv.slice(2);
assert.ok(base && artifacts, 'usage: node ui.mjs BASE_URL ARTIFACTS_DIR');
const playwrightDir = process.env.ALGA_PLAYWRIGHT_CORE;
const playwright = await import(
  playwrightDir ? pathToFileURL(path.join(playwrightDir, 'index.mjs')).href : 'playwright-core'
);
const { chromium } = playwright.default ?? playwright;
const HELLO = 'com.alga.samples.hello';
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const browser = await chromium.launch({
  executablePath: process.env.ALGA_CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  // The machine has no network beyond loopback: keep Chromium from trying.
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  const page = await browser.newPage({ viewport: { width: 1100, height: 720 } });
  const errors = [];
  page.on('pageerror', (error) => errors.push(String(error)));
  page.on('console', (message) => console.log(`[console:${message.type()}] ${message.text()}`));

  await page.goto(`${base}/?open=${HELLO}`, { waitUntil: 'load' });
  const frame = page.frameLocator('#frame');
  const state = frame.locator('body');
  await frame.locator('body[data-state="ready"], body[data-state="failed"]').waitFor({ timeout: 20000 });
  assert.equal(await state.getAttribute('data-state'), 'ready',
    `the UI failed: ${await frame.locator('#status').textContent()}`);

  // What the extension rendered from its own route, called through the host page.
  const greeting = await frame.locator('#greeting').textContent();
  assert.equal(greeting, `Hello, demo-tenant! This is ${HELLO}.`);
  assert.equal(await frame.locator('#tenant').textContent(), 'demo-tenant');
  assert.match(await frame.locator('#route').textContent(), /^200 GET \/greet\?from=ui$/);
  console.log(`rendered through the bridge: "${greeting}"`);

  // The iframe is sandboxed: opaque origin, no credential anywhere it can read.
  const child = page.frames().find((f) => f !== page.mainFrame());
  assert.equal(await child.evaluate(() => window.origin), 'null');
  assert.equal(await child.evaluate(() => location.href.includes('token')), false);
  assert.equal(await page.locator('#frame').getAttribute('sandbox'), 'allow-scripts');

  // The theme follows the host page.
  assert.equal(await frame.locator('#theme').textContent(), 'light');
  await page.click('#theme-toggle');
  await frame.locator('#theme', { hasText: 'dark' }).waitFor({ timeout: 5000 });
  const background = await child.evaluate(() => getComputedStyle(document.body).backgroundColor);
  assert.equal(background, 'rgb(27, 33, 48)');

  // The iframe never holds the tenant's token: bootstrap's session token is empty, and the
  // token appears nowhere in its document.
  const token = await page.evaluate(() => window.__alga.config.token);
  assert.equal(await child.evaluate(() => window.algaBridge.sessionToken), '');
  assert.equal(await child.evaluate((t) => document.documentElement.outerHTML.includes(t), token), false);
  assert.equal(await child.evaluate(() => window.algaBridge.port !== null), true,
    'our SDK talks to our host on its MessagePort');

  // Foreign messages are ignored. Host side: an apiproxy that does not come from the iframe's
  // window makes no call.
  const before = await page.evaluate(() => ({ ...window.__alga.attached.stats }));
  await page.evaluate(() => window.postMessage({
    alga: true, version: '1', type: 'apiproxy', request_id: 'forged',
    payload: { route: '/greet', method: 'GET' },
  }, '*'));
  await sleep(300);
  const after = await page.evaluate(() => ({ ...window.__alga.attached.stats }));
  assert.ok(after.ignored > before.ignored, 'the host page counted the foreign message');
  assert.equal(after.calls, before.calls, 'the foreign request made no call');
  // Iframe side: a theme change from an origin other than the host's (the iframe's own
  // opaque origin) changes nothing.
  const ignoredBefore = await child.evaluate(() => window.algaBridge.ignored);
  await child.evaluate(() => window.postMessage({
    alga: true, version: '1', type: 'theme_tokens',
    payload: { theme_tokens: { '--alga-bg': '#ff0000' }, theme_name: 'evil' },
  }, '*'));
  await sleep(300);
  assert.equal(await frame.locator('#theme').textContent(), 'dark');
  assert.ok(await child.evaluate(() => window.algaBridge.ignored) > ignoredBefore);
  console.log('foreign messages ignored on both sides');

  // The UI kit sample (alga-rust): a DataTable of the handler's records, through the bridge.
  const RECORDS = 'com.alga.samples.alga-rust';
  const rec = await browser.newPage({ viewport: { width: 1100, height: 900 } });
  rec.on('pageerror', (error) => errors.push(String(error)));
  rec.on('console', (message) => console.log(`[records console:${message.type()}] ${message.text()}`));
  await rec.goto(`${base}/?open=${RECORDS}`, { waitUntil: 'load' });
  await rec.evaluate(() => { document.getElementById('frame').style.height = '760px'; });
  const rf = rec.frameLocator('#frame');
  await rf.locator('body[data-state="ready"], body[data-state="failed"]').waitFor({ timeout: 30000 });
  assert.equal(await rf.locator('body').getAttribute('data-state'), 'ready',
    `the records UI failed: ${await rf.locator('body').textContent()}`);
  const names = () => rf.locator('#records tbody tr td:first-child').allTextContents();
  const items = () => rf.locator('#records', { hasText: 'items' }).textContent();
  assert.deepEqual(await names(), ['Laptop', 'Monitor', 'Keyboard', 'Mouse', 'Docking station'],
    "page 1 shows the handler's first five records");
  assert.match(await items(), /1\u20135 of 7 items/);
  await rf.locator('#records th button', { hasText: 'Name' }).click();
  assert.deepEqual(await names(), ['Docking station', 'Headset', 'Keyboard', 'Laptop', 'Monitor'],
    'sorted by name');
  await rf.locator('#records button', { hasText: /^2$/ }).click();
  assert.deepEqual(await names(), ['Mouse', 'Webcam'], 'page 2 shows the next rows');
  await rf.locator('#record-name').fill('Zebra printer');
  await rf.locator('#record-quantity').fill('3');
  await rf.locator('#record-add').click();
  await rf.locator('#message', { hasText: 'added Zebra printer' }).waitFor({ timeout: 10000 });
  await rf.locator('#records', { hasText: 'of 8 items' }).waitFor({ timeout: 10000 });
  if (!(await names()).includes('Zebra printer')) {
    await rf.locator('#records button', { hasText: /^2$/ }).click();
  }
  assert.deepEqual(await names(), ['Mouse', 'Webcam', 'Zebra printer'], 'the added record shows, in order');
  await rf.locator('button[aria-label="Delete Webcam"]').click();
  await rf.locator('#message', { hasText: 'deleted Webcam' }).waitFor({ timeout: 10000 });
  await rf.locator('#records', { hasText: 'of 7 items' }).waitFor({ timeout: 10000 });
  assert.ok(!(await names()).includes('Webcam'), 'the deleted record is gone');
  const recChild = rec.frames().find((f) => f !== rec.mainFrame());
  const themed = () => recChild.evaluate(() => ({
    token: getComputedStyle(document.documentElement).getPropertyValue('--alga-bg').trim(),
    table: getComputedStyle(document.querySelector('#records > div')).backgroundColor,
  }));
  assert.deepEqual(await themed(), { token: '#ffffff', table: 'rgb(255, 255, 255)' });
  await rec.click('#theme-toggle');
  for (let i = 0; i < 50 && (await themed()).token !== '#1b2130'; i += 1) await sleep(100);
  assert.deepEqual(await themed(), { token: '#1b2130', table: 'rgb(27, 33, 48)' },
    "the table follows the host's dark theme");
  assert.equal(await recChild.evaluate((t) => document.documentElement.outerHTML.includes(t), token), false);
  fs.mkdirSync(artifacts, { recursive: true });
  await rec.screenshot({ path: path.join(artifacts, 'host-page-ui-kit-records.png'), fullPage: true });
  await rec.close();
  console.log('the UI kit DataTable sample sorts, pages, adds and follows the theme');

  // A page written against Alga's envelope alone (no SDK) inside our host page.
  const alga = await browser.newPage({ viewport: { width: 1100, height: 720 } });
  alga.on('pageerror', (error) => errors.push(String(error)));
  alga.on('console', (message) => console.log(`[alga console:${message.type()}] ${message.text()}`));
  await alga.goto(`${base}/?open=${HELLO}&page=alga-envelope.html`, { waitUntil: 'load' });
  const algaFrame = alga.frameLocator('#frame');
  await algaFrame.locator('body[data-state="ready"], body[data-state="failed"]').waitFor({ timeout: 20000 });
  assert.equal(await algaFrame.locator('body').getAttribute('data-state'), 'ready',
    `the Alga page failed: ${await algaFrame.locator('#status').textContent()}`);
  assert.equal(await algaFrame.locator('#greeting').textContent(), `Hello, demo-tenant! This is ${HELLO}.`);
  const algaChild = alga.frames().find((f) => f !== alga.mainFrame());
  const seen = await algaChild.evaluate(() => window.algaEnvelope.seen);
  assert.equal(seen.bootstrap.session.token, '', 'no credential in bootstrap');
  assert.equal(seen.bootstrap.navigation.path, '/');
  assert.equal(seen.bootstrap.theme_tokens['--alga-bg'], '#ffffff');
  assert.equal(await alga.locator('#frame').evaluate((f) => f.style.height), '321px', 'resize applied');
  assert.match(await alga.locator('#navigation').textContent(), /\/from-alga-page/);
  const proxy = (route, method, body, version) => algaChild.evaluate(
    ([r, m, b, v]) => window.algaEnvelope.apiproxy(r, m, b, v), [route, method, body, version]);
  // Alga's default method is POST; bodies travel as base64 both ways.
  const posted = await proxy('/greet', undefined, 'ping');
  assert.equal(JSON.parse(Buffer.from(posted.body, 'base64').toString()).method, 'POST');
  // Refused and counted: a route outside the extension, an oversized body, a wrong version.
  const stats0 = await alga.evaluate(() => ({ ...window.__alga.attached.stats }));
  for (const route of ['/../secret', '/%2e%2e/x', '//evil.example/x', './x']) {
    const answer = await proxy(route, 'GET');
    assert.equal(answer.code, 'denied', `${route}: ${JSON.stringify(answer)}`);
  }
  const big = await proxy('/greet', 'POST', 'x'.repeat(1100 * 1024));
  assert.equal(big.code, 'too_large', JSON.stringify(big).slice(0, 200));
  const wrongVersion = await proxy('/greet', 'GET', undefined, '2');
  assert.equal(wrongVersion.timeout, true, 'a version-2 envelope gets no answer');
  const stats1 = await alga.evaluate(() => ({ ...window.__alga.attached.stats }));
  assert.equal(stats1.denied - stats0.denied, 4);
  assert.equal(stats1.tooLarge - stats0.tooLarge, 1);
  assert.equal(stats1.badEnvelope - stats0.badEnvelope, 1);
  assert.equal(stats1.calls, stats0.calls, 'no refused message reached the gateway');
  // The resize clamp.
  await algaChild.evaluate((o) => window.parent.postMessage(
    { alga: true, version: '1', type: 'resize', payload: { height: 99999 } }, o), base);
  await alga.locator('#frame[style*="4000px"]').waitFor({ timeout: 5000 });
  fs.mkdirSync(artifacts, { recursive: true });
  await alga.screenshot({ path: path.join(artifacts, 'host-page-alga-envelope.png'), fullPage: true });
  await alga.close();
  console.log('an Alga-envelope page works in our host page');

  // Our SDK inside a minimal host that speaks only Alga's envelope (on the window, with '*'
  // towards the sandboxed iframe, as Alga's host does there).
  const minimal = await browser.newPage({ viewport: { width: 900, height: 600 } });
  minimal.on('pageerror', (error) => errors.push(String(error)));
  minimal.on('console', (message) => console.log(`[minimal console:${message.type()}] ${message.text()}`));
  const ui = await page.evaluate((id) => window.__alga.config.extensions.find((e) => e.id === id).ui, HELLO);
  await minimal.route(`${base}/alga-minimal-host.html`, (route) => route.fulfill({
    contentType: 'text/html',
    body: `<!doctype html><iframe id="frame" sandbox="allow-scripts"></iframe><script type="module">
      const config = await (await fetch('/demo/config')).json();
      const frame = document.getElementById('frame');
      const b64 = (bytes) => btoa(String.fromCharCode(...new Uint8Array(bytes)));
      const reply = (m) => frame.contentWindow.postMessage({ alga: true, version: '1', ...m }, '*');
      window.addEventListener('message', async (event) => {
        const d = event.data;
        if (event.source !== frame.contentWindow || !d || d.alga !== true || d.version !== '1') return;
        if (d.type === 'ready') reply({ type: 'bootstrap', payload: {
          session: { token: 'short-lived', expires_at: '2030-01-01T00:00:00Z' },
          theme_tokens: { '--alga-bg': '#102030' }, navigation: { path: '/' } } });
        if (d.type === 'apiproxy') {
          const res = await fetch('/api/ext/${HELLO}' + d.payload.route, {
            method: d.payload.method || 'POST', headers: { authorization: 'Bearer ' + config.token } });
          const body = await res.arrayBuffer();
          reply({ type: 'apiproxy_response', request_id: d.request_id,
            payload: res.ok ? { body: b64(body) } : { error: 'Proxy error ' + res.status } });
        }
      });
      frame.src = '${ui}?parentOrigin=' + encodeURIComponent(location.origin);
    </script>`,
  }));
  await minimal.goto(`${base}/alga-minimal-host.html`, { waitUntil: 'load' });
  const minimalFrame = minimal.frameLocator('#frame');
  await minimalFrame.locator('body[data-state="ready"], body[data-state="failed"]').waitFor({ timeout: 20000 });
  assert.equal(await minimalFrame.locator('body').getAttribute('data-state'), 'ready',
    `our SDK failed in Alga's host: ${await minimalFrame.locator('#status').textContent()}`);
  assert.equal(await minimalFrame.locator('#greeting').textContent(), `Hello, demo-tenant! This is ${HELLO}.`);
  const minimalChild = minimal.frames().find((f) => f !== minimal.mainFrame());
  assert.equal(await minimalChild.evaluate(() => getComputedStyle(document.body).backgroundColor),
    'rgb(16, 32, 48)', "the host's theme tokens apply");
  await minimal.close();
  console.log("our SDK works in a host that speaks only Alga's envelope");

  fs.mkdirSync(artifacts, { recursive: true });
  const shot = path.join(artifacts, 'host-page-hello-ui.png');
  await page.screenshot({ path: shot, fullPage: true });
  console.log(`screenshot: ${shot}`);
  assert.deepEqual(errors, [], 'no page errors');
  console.log('browser test passed');
} finally {
  await browser.close();
}
