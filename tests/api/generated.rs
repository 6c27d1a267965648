//! Generated-input test driven by the OpenAPI document: for every operation that reads a JSON
//! body, bodies are generated from its request schema (valid-looking values, wrong types, money
//! strings that must be refused, unknown fields, non-objects) with a fixed seed and a bounded
//! number of examples, sent over real HTTP with a token of the highest role, and every response
//! is checked against the document: no 500, the status is one the operation documents, and the
//! body is the documented `ErrorEnvelope` for an error or JSON for a success.

use crate::execution::{body, ready};
use crate::helpers::{spawn_app, ADMIN};
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};

const SEED: u64 = 17;
const EXAMPLES_PER_OPERATION: usize = 40;

fn sample(rng: &mut impl Rng, name: &str, schema: &Value) -> Value {
    let wrong = [
        json!(null),
        json!(true),
        json!(12.5),
        json!(-1),
        json!([1, 2]),
        json!({"a": 1}),
        json!(""),
        json!("1e-20"),
        json!("0.0000000000000000000000000000000000000001"),
        json!("99999999999999999999999999999999999"),
        json!("ETH/USDT"),
        json!("\u{0000}\u{202e}é"),
    ];
    if rng.gen_bool(0.4) {
        return wrong[rng.gen_range(0..wrong.len())].clone();
    }
    let ty = schema["type"].clone();
    let is = |t: &str| ty == t || ty.as_array().is_some_and(|a| a.iter().any(|x| x == t));
    if is("boolean") {
        return json!(rng.gen_bool(0.5));
    }
    if is("integer") {
        return json!(rng.gen_range(-2..8));
    }
    match name {
        "symbol" => json!(["BTC/USDT", "XRP/USDT", "BTC-USDT"][rng.gen_range(0..3)]),
        "side" => json!(["buy", "sell", "hold"][rng.gen_range(0..3)]),
        "order_type" => json!(["limit", "market", "stop"][rng.gen_range(0..3)]),
        "scope" => json!(["cooldown", "drawdown", "all", "everything"][rng.gen_range(0..4)]),
        "fraction" => json!(["0.5", "1", "0", "2", "0.1"][rng.gen_range(0..5)]),
        _ if schema["format"] == "decimal" => {
            json!(["50000", "49000", "52000", "0.01", "1000", "-5", "50000.05"][rng.gen_range(0..7)])
        }
        _ => json!(["by hand", "x", ""][rng.gen_range(0..3)]),
    }
}

fn generate(rng: &mut impl Rng, schema: &Value) -> Value {
    match rng.gen_range(0..20) {
        0 => return json!(["all"]),
        1 => return json!("text"),
        2 => return json!(42),
        _ => {}
    }
    let mut obj = Map::new();
    if let Some(props) = schema["properties"].as_object() {
        for (name, prop) in props {
            if rng.gen_bool(0.7) {
                obj.insert(name.clone(), sample(rng, name, prop));
            }
        }
    }
    if rng.gen_bool(0.1) {
        obj.insert("unknown_field".into(), json!(1));
    }
    Value::Object(obj)
}

/// The component a `$ref` names.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"]
        .as_str()
        .and_then(|r| r.strip_prefix("#/components/schemas/"))
    {
        Some(name) => &doc["components"]["schemas"][name],
        None => schema,
    }
}

#[actix_web::test]
async fn generated_bodies_from_the_openapi_document_get_documented_responses() {
    let app = spawn_app().await;
    ready(&app).await;
    let (_, doc) = body(app.get("/api/v1/openapi.json", None).await).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(SEED);
    let mut sent = 0;
    let mut problems = Vec::new();
    let paths = doc["paths"].as_object().unwrap().clone();
    for (path, item) in &paths {
        // Fault injection crashes actors on purpose; it has no body to generate.
        if path.contains("/crash") {
            continue;
        }
        for method in ["post", "patch"] {
            let Some(op) = item.get(method) else { continue };
            let Some(schema) = op["requestBody"]["content"]["application/json"]["schema"].as_object() else {
                continue;
            };
            let schema = resolve(&doc, &Value::Object(schema.clone())).clone();
            let schema = match schema.get("oneOf").and_then(|o| o.as_array()) {
                Some(alts) => alts
                    .iter()
                    .map(|a| resolve(&doc, a).clone())
                    .find(|a| a.get("properties").is_some())
                    .unwrap_or(schema.clone()),
                None => schema,
            };
            let documented: Vec<String> = op["responses"].as_object().unwrap().keys().cloned().collect();
            for _ in 0..EXAMPLES_PER_OPERATION {
                let concrete = path
                    .replace("{id}", &uuid::Uuid::new_v4().to_string())
                    .replace("{task}", "ta_analysis")
                    .replace("{command}", "run");
                let b = generate(&mut rng, &schema);
                let req = match method {
                    "post" => app.client.post(app.url(&concrete)),
                    _ => app.client.patch(app.url(&concrete)),
                };
                let r = req.bearer_auth(ADMIN).json(&b).send().await.unwrap();
                sent += 1;
                let status = r.status().as_u16();
                let ct = r
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let v: Value = r.json().await.unwrap_or(Value::Null);
                let mut bad = |why: &str| problems.push(format!("{method} {path} {b} -> {status} {v}: {why}"));
                if status == 500 {
                    bad("500");
                }
                if !documented.iter().any(|c| c == &status.to_string()) {
                    bad("status not documented");
                }
                if !ct.starts_with("application/json") {
                    bad("not JSON");
                }
                if status >= 400 {
                    let e = &v["error"];
                    let ok = e["code"].is_string()
                        && e["message"].is_string()
                        && (e.get("field").is_none() || e["field"].is_string())
                        && v.as_object().is_some_and(|o| o.len() == 1);
                    if !ok {
                        bad("not an ErrorEnvelope");
                    }
                } else if !v.is_object() {
                    bad("success is not a JSON object");
                }
            }
        }
    }
    assert!(sent >= 300, "{sent} requests");
    assert!(
        problems.is_empty(),
        "{} of {sent}:\n{}",
        problems.len(),
        problems.join("\n")
    );
    app.shutdown().await;
}
