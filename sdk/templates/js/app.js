// {{name}}: an Alga Edge extension in JavaScript (scaffolded by `alga-edge ext new`).
// componentize-js builds it into a component exporting wasi:http/incoming-handler; KV storage
// and config come through the standard wasi:keyvalue and wasi:config interfaces.
import { get as configGet } from 'wasi:config/store@0.2.0-rc.1';
import { open } from 'wasi:keyvalue/store@0.2.0-draft';
import { increment } from 'wasi:keyvalue/atomics@0.2.0-draft';
import { get as contextGet } from 'alga:extension/context@0.1.0';

addEventListener('fetch', (event) => event.respondWith(handle(event.request)));

async function handle(request) {
  try {
    const url = new URL(request.url);
    const ctx = contextGet();
    if (url.pathname === '/visits' && request.method === 'POST') {
      const visits = increment(open('default'), 'visits', 1n);
      return Response.json({ visits: Number(visits) });
    }
    if (url.pathname === '/') {
      const greeting = configGet('greeting') ?? 'Hello';
      return Response.json({
        message: `${greeting}, ${ctx.tenantId}!`,
        extension: ctx.extensionId,
        lang: 'js',
      });
    }
    return Response.json({ error: 'not_found', path: url.pathname }, { status: 404 });
  } catch (error) {
    // A capability error (e.g. not granted) becomes a 500 with the host's message.
    return Response.json({ error: String(error?.payload?.val ?? error) }, { status: 500 });
  }
}
