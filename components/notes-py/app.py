"""notes-py: a Python sample extension (built with `alga-edge ext build`, componentize-py).

POST /notes (body: the note) stores a note in KV storage (wasi:keyvalue) under a counter
(wasi:keyvalue/atomics); GET /notes lists them with the install's `title` config (wasi:config).
"""

import json

from componentize_py_types import Ok
from wit_world import exports
from wit_world.imports import atomics
from wit_world.imports import wasi_config_store as config
from wit_world.imports import wasi_keyvalue_store as kv
from wit_world.imports.types import (
    Fields,
    IncomingRequest,
    Method_Get,
    Method_Post,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)


def read_body(request):
    body = request.consume()
    stream = body.stream()
    data = b""
    while True:
        try:
            chunk = stream.blocking_read(65536)
        except Exception:  # the stream reports its end as an error (closed)
            break
        if not chunk:
            break
        data += chunk
    stream.__exit__(None, None, None)
    return data


def route(request):
    path = (request.path_with_query() or "/").split("?")[0]
    method = request.method()
    if path != "/notes":
        return 404, {"error": "not_found", "path": path}
    bucket = kv.open("notes")
    if isinstance(method, Method_Post):
        text = read_body(request).decode("utf-8", "replace")
        number = atomics.increment(bucket, "next", 1)
        bucket.set(f"note:{number:08d}", text.encode())
        return 200, {"id": number, "text": text}
    if isinstance(method, Method_Get):
        keys = [k for k in bucket.list_keys(None).keys if k.startswith("note:")]
        notes = [bucket.get(k).decode() for k in sorted(keys)]
        return 200, {"title": config.get("title") or "Notes", "notes": notes, "lang": "python"}
    return 405, {"error": "method_not_allowed"}


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        try:
            status, body = route(request)
        except Exception as error:  # e.g. a capability not granted
            status, body = 500, {"error": repr(error)}
        data = json.dumps(body).encode()
        response = OutgoingResponse(Fields.from_list([("content-type", b"application/json")]))
        response.set_status_code(status)
        out = response.body()
        ResponseOutparam.set(response_out, Ok(response))
        with out.write() as stream:
            stream.blocking_write_and_flush(data)
        OutgoingBody.finish(out, None)
