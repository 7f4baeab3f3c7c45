// Browser test of extension UIs: Debian's Chromium driven by playwright-core opens the demo
// host page, which opens the hello sample's UI in a sandboxed iframe. Asserts what the
// extension rendered from its own route through the bridge, that the theme follows the host,
// that foreign messages are ignored on both sides, and saves a screenshot.
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

  // Foreign messages are ignored. Host side: a request that does not come from the iframe's
  // window makes no call.
  const before = await page.evaluate(() => ({ ...window.__alga.attached.stats }));
  await page.evaluate(() => window.postMessage({
    protocol: 'alga-ext/1', type: 'request', session: 'forged', id: 'x',
    method: 'callRoute', params: { path: '/greet' },
  }, '*'));
  await sleep(300);
  const after = await page.evaluate(() => ({ ...window.__alga.attached.stats }));
  assert.ok(after.ignored > before.ignored, 'the host page counted the foreign message');
  assert.equal(after.calls, before.calls, 'the foreign request made no call');
  // Iframe side: a theme change from an origin other than the host's (here the iframe's own
  // opaque origin, with the right session even) changes nothing.
  const ignoredBefore = await child.evaluate(() => window.algaBridge.ignored);
  await child.evaluate(() => window.postMessage({
    protocol: 'alga-ext/1', type: 'theme', session: window.algaBridge.session,
    theme: { name: 'evil', background: '#ff0000' },
  }, '*'));
  await sleep(300);
  assert.equal(await frame.locator('#theme').textContent(), 'dark');
  assert.ok(await child.evaluate(() => window.algaBridge.ignored) > ignoredBefore);
  console.log('foreign messages ignored on both sides');

  fs.mkdirSync(artifacts, { recursive: true });
  const shot = path.join(artifacts, 'host-page-hello-ui.png');
  await page.screenshot({ path: shot, fullPage: true });
  console.log(`screenshot: ${shot}`);
  assert.deepEqual(errors, [], 'no page errors');
  console.log('browser test passed');
} finally {
  await browser.close();
}
