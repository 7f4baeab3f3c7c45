//! `platform-http`: a wasi:http extension (wstd, `wasi:http/incoming-handler`) that imports two
//! of Alga's platform interfaces from the unversioned `alga:extension` package, to show a WASI
//! extension can use the platform broker as an Alga `runner` component does.
//!
//! | route | what it does |
//! |---|---|
//! | `GET /clients` | `clients.list-clients` (first page): `{"names": [...], "total": n}` |
//! | `POST /invoice` | `invoicing.create-manual-invoice` for client `c-1`, one item of service `s-1` |
//!
//! An interface's error is answered as `{"error": "<case>"}`, never as a trap.

use serde_json::json;
use wstd::http::{Body, Error, Method, Request, Response};

wit_bindgen::generate!({
    inline: "package sample:platform-http;
        world imports {
            import alga:extension/clients;
            import alga:extension/invoicing;
        }",
    path: "../../wit/runner",
    world: "sample:platform-http/imports",
    generate_all,
});

use alga::extension::types::{ClientsListInput, CreateManualInvoiceInput, ManualInvoiceItemInput};
use alga::extension::{clients, invoicing};

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    let answer = match (request.method().clone(), request.uri().path()) {
        (Method::GET, "/clients") => match clients::list_clients(&ClientsListInput {
            search: None,
            include_inactive: None,
            page: None,
            page_size: None,
        }) {
            Ok(page) => json!({
                "names": page.items.iter().map(|c| c.client_name.clone()).collect::<Vec<_>>(),
                "total": page.total_count,
            }),
            Err(e) => json!({"error": e.name()}),
        },
        (Method::POST, "/invoice") => {
            let result = invoicing::create_manual_invoice(&CreateManualInvoiceInput {
                client_id: "c-1".into(),
                items: vec![ManualInvoiceItemInput {
                    service_id: "s-1".into(),
                    quantity: 3.0,
                    description: "platform-http sample item".into(),
                    rate: 10.0,
                    is_discount: None,
                    discount_type: None,
                    applies_to_item_id: None,
                    applies_to_service_id: None,
                }],
                invoice_date: None,
                due_date: None,
                po_number: None,
            });
            json!({"success": result.success, "invoice_id": result.invoice_id,
                "total": result.total, "error": result.error})
        }
        (_, path) => json!({"error": format!("no route {path}")}),
    };
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::from(answer.to_string()))
        .map_err(Error::from)
}
