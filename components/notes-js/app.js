// notes-js: a JavaScript sample extension (built with `alga-edge ext build`, componentize-js).
// POST /notes (body: the note) stores a note in KV storage (wasi:keyvalue) under a counter
// (wasi:keyvalue/atomics); GET /notes lists them with the install's `title` config (wasi:config).
import { get as configGet } from 'wasi:config/store@0.2.0-rc.1';
import { open } from 'wasi:keyvalue/store@0.2.0-draft';
import { increment } from 'wasi:keyvalue/atomics@0.2.0-draft';

addEventListener('fetch', (event) => event.respondWith(handle(event.request)));

const decoder = new TextDecoder();
const encoder = new TextEncoder();

async function handle(request) {
  try {
    const url = new URL(request.url);
    if (url.pathname !== '/notes') {
      return Response.json({ error: 'not_found', path: url.pathname }, { status: 404 });
    }
    const bucket = open('notes');
    if (request.method === 'POST') {
      const text = await request.text();
      const id = Number(increment(bucket, 'next', 1n));
      bucket.set(`note:${String(id).padStart(8, '0')}`, encoder.encode(text));
      return Response.json({ id, text });
    }
    if (request.method === 'GET') {
      const keys = bucket.listKeys(undefined).keys.filter((k) => k.startsWith('note:')).sort();
      const notes = keys.map((k) => decoder.decode(bucket.get(k)));
      return Response.json({ title: configGet('title') ?? 'Notes', notes, lang: 'js' });
    }
    return Response.json({ error: 'method_not_allowed' }, { status: 405 });
  } catch (error) {
    return Response.json({ error: String(error?.payload?.val ?? error) }, { status: 500 });
  }
}
