"""{{name}}: an Alga Edge extension in Python (scaffolded by `alga-edge ext new`).

componentize-py turns this module into a component exporting wasi:http/incoming-handler.
KV storage and config come through the standard wasi:keyvalue and wasi:config interfaces;
`alga:extension/context` says which tenant the request runs for.
"""

import json

from componentize_py_types import Ok
from wit_world import exports
from wit_world.imports import atomics, context
from wit_world.imports import wasi_config_store as config
from wit_world.imports import wasi_keyvalue_store as kv
from wit_world.imports.types import (
    Fields,
    IncomingRequest,
    Method_Post,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)


def route(method, path):
    """(status, JSON body) for one request."""
    ctx = context.get()
    if path.startswith("/visits") and isinstance(method, Method_Post):
        bucket = kv.open("default")
        return 200, {"visits": atomics.increment(bucket, "visits", 1)}
    if path in ("", "/") or path.startswith("/?"):
        greeting = config.get("greeting") or "Hello"
        return 200, {
            "message": f"{greeting}, {ctx.tenant_id}!",
            "extension": ctx.extension_id,
            "lang": "python",
        }
    return 404, {"error": "not_found", "path": path}


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        try:
            status, body = route(request.method(), request.path_with_query() or "/")
        except Exception as error:  # a capability error (e.g. not granted) becomes a 500
            status, body = 500, {"error": repr(error)}
        data = json.dumps(body).encode()
        response = OutgoingResponse(Fields.from_list([("content-type", b"application/json")]))
        response.set_status_code(status)
        out = response.body()
        ResponseOutparam.set(response_out, Ok(response))
        with out.write() as stream:
            stream.blocking_write_and_flush(data)
        OutgoingBody.finish(out, None)
