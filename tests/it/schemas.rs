//! The JSON Schemas checked in under `protocol/schema/`: they match the protocol types (drift
//! test; `AUTHQ_REGENERATE_SCHEMAS=1 cargo test --test it schemas` rewrites them), and a request
//! they reject is one the worker refuses with `bad_request`.

use crate::harness::TestEnv;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `protocol/schema/` in this checkout.
pub fn schema_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("protocol/schema")
}

/// Every `.json` file below `dir`, keyed by its path relative to `dir` (with `/`).
fn files_below(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "json") {
                let rel = path.strip_prefix(dir).unwrap().to_string_lossy();
                let rel = rel.replace(std::path::MAIN_SEPARATOR, "/");
                out.insert(rel, std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    out
}

#[test]
fn the_checked_in_schemas_match_the_protocol_types() {
    let dir = schema_dir();
    let generated: BTreeMap<String, String> = authq_protocol::schema::all()
        .iter()
        .map(|(path, schema)| (path.clone(), authq_protocol::schema::to_file_text(schema)))
        .collect();
    if std::env::var_os("AUTHQ_REGENERATE_SCHEMAS").is_some() {
        let _ = std::fs::remove_dir_all(&dir);
        for (path, text) in &generated {
            let file = dir.join(path);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(&file, text).unwrap();
        }
    }
    let checked_in = files_below(&dir);
    let stale: Vec<&String> = checked_in
        .keys()
        .filter(|k| !generated.contains_key(*k))
        .collect();
    let drifted: Vec<&String> = generated
        .iter()
        .filter(|(k, v)| checked_in.get(*k) != Some(*v))
        .map(|(k, _)| k)
        .collect();
    assert!(
        stale.is_empty() && drifted.is_empty(),
        "protocol/schema/ does not match the protocol types (stale: {stale:?}, missing or \
         different: {drifted:?}): regenerate with \
         `AUTHQ_REGENERATE_SCHEMAS=1 cargo test --test it schemas` and review the diff"
    );
}

/// Compiled validators for the checked-in schemas.
pub struct Schemas {
    validators: BTreeMap<String, jsonschema::Validator>,
}

impl Schemas {
    /// Loads and compiles every checked-in schema.
    pub fn load() -> Self {
        let validators = files_below(&schema_dir())
            .into_iter()
            .map(|(path, text)| {
                let schema: Value = serde_json::from_str(&text).unwrap();
                let validator = jsonschema::validator_for(&schema)
                    .unwrap_or_else(|e| panic!("{path} is not a valid schema: {e}"));
                (path, validator)
            })
            .collect();
        Self { validators }
    }

    fn get(&self, path: &str) -> &jsonschema::Validator {
        self.validators
            .get(path)
            .unwrap_or_else(|| panic!("no schema {path}"))
    }

    /// Why `instance` breaks the schema at `path`, if it does.
    pub fn errors(&self, path: &str, instance: &Value) -> Option<String> {
        let errors: Vec<String> = self
            .get(path)
            .iter_errors(instance)
            .map(|e| e.to_string())
            .collect();
        (!errors.is_empty()).then(|| errors.join("; "))
    }

    /// Panics unless a reply body to `operation` validates: its `data` against the
    /// operation's reply schema, or the whole body against the error envelope.
    #[track_caller]
    pub fn check_reply(&self, operation: &str, reply: &Value) {
        let (path, instance) = match reply["status"].as_str() {
            Some("ok") => (format!("replies/{operation}.json"), &reply["data"]),
            _ => ("error.json".to_owned(), reply),
        };
        if let Some(errors) = self.errors(&path, instance) {
            panic!("the reply to {operation} breaks {path}: {errors}\nreply: {reply}");
        }
    }
}

/// A request body each operation's schema accepts, with every optional field present.
fn valid_bodies() -> Vec<(&'static str, Value)> {
    vec![
        ("ping", json!({})),
        (
            "register",
            json!({"email": "s@example.com", "profile": {"n": 1}}),
        ),
        (
            "confirm_registration",
            json!({"email": "s@example.com", "code": "12345678", "password": "correct horse battery"}),
        ),
        (
            "login",
            json!({"email": "s@example.com", "password": "correct horse battery", "client_ip": "192.0.2.1", "user_agent": "Firefox/140"}),
        ),
        ("check", json!({"session": "s"})),
        ("logout", json!({"session": "s"})),
        ("logout_all", json!({"session": "s"})),
        ("list_sessions", json!({"session": "s"})),
        ("end_session", json!({"session": "s", "session_id": "0123"})),
        ("start_reset", json!({"email": "s@example.com"})),
        (
            "complete_reset",
            json!({"email": "s@example.com", "token": "t", "password": "correct horse battery"}),
        ),
        (
            "change_password",
            json!({"session": "s", "old_password": "correct horse battery", "new_password": "another long secret"}),
        ),
        ("get_profile", json!({"session": "s"})),
        (
            "set_profile",
            json!({"session": "s", "profile": {}, "mode": "merge"}),
        ),
        ("delete_user", json!({"user_id": "u"})),
        ("suspend", json!({"email": "s@example.com"})),
        ("unsuspend", json!({"user_id": "u"})),
        (
            "social_url",
            json!({"provider": "p", "redirect_uri": "https://app.example.com/cb"}),
        ),
        (
            "social_login",
            json!({"provider": "p", "code": "c", "state": "s"}),
        ),
        (
            "link_social",
            json!({"session": "s", "provider": "p", "code": "c", "state": "s"}),
        ),
        (
            "deletion_done",
            json!({"user_id": "u", "service": "billing"}),
        ),
        ("deletion_status", json!({"user_id": "u"})),
        ("list_users", json!({"email_prefix": "a", "limit": 10})),
        ("get_user", json!({"user_id": "u"})),
        (
            "import_users",
            json!({"users": [{"email": "a@example.com"}]}),
        ),
        ("end_user_sessions", json!({"user_id": "u"})),
        ("mfa_enroll", json!({"session": "s"})),
        ("mfa_confirm", json!({"session": "s", "code": "123456"})),
        ("mfa_verify", json!({"handle": "h", "code": "123456"})),
        ("mfa_disable", json!({"session": "s", "password": "pw"})),
        ("reset_mfa", json!({"user_id": "u"})),
        ("jwks", json!({})),
        ("refresh", json!({"refresh_token": "r"})),
        (
            "create_service_client",
            json!({"name": "billing", "scopes": ["invoices:read"]}),
        ),
        ("revoke_service_client", json!({"client_id": "svc_x"})),
        (
            "service_token",
            json!({"client_id": "svc_x", "client_secret": "s"}),
        ),
        ("list_service_clients", json!({})),
        (
            "rotate_service_client_secret",
            json!({"client_id": "svc_x"}),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_the_schema_rejects_is_refused_with_bad_request() {
    let env = TestEnv::start().await;
    let schemas = Schemas::load();
    let bodies = valid_bodies();
    assert_eq!(
        bodies.len(),
        authq_protocol::Operation::ALL.len(),
        "a valid body for every operation"
    );
    let mut checked = 0;
    for (op, valid) in bodies {
        let path = format!("requests/{op}.json");
        assert_eq!(schemas.errors(&path, &valid), None, "{op}: {valid}");
        let schema: Value =
            serde_json::from_str(&std::fs::read_to_string(schema_dir().join(&path)).unwrap())
                .unwrap();
        // Variants the schema must reject: not an object, each field of the wrong type, each
        // required field missing.
        let mut invalid = vec![json!([valid.clone()])];
        for field in valid.as_object().unwrap().keys() {
            let mut body = valid.clone();
            body[field] = json!([1]);
            invalid.push(body);
        }
        for field in schema["required"].as_array().into_iter().flatten() {
            let mut body = valid.clone();
            body.as_object_mut()
                .unwrap()
                .remove(field.as_str().unwrap());
            invalid.push(body);
        }
        for body in invalid {
            assert!(
                schemas.errors(&path, &body).is_some(),
                "{path} accepts {body}"
            );
            let reply = env
                .client
                .call_raw(op, body.to_string().as_bytes(), Duration::from_secs(20))
                .await
                .unwrap();
            let reply: Value = serde_json::from_slice(&reply).unwrap();
            assert_eq!(
                reply["error"]["code"], "bad_request",
                "{op} {body}: {reply}"
            );
            schemas.check_reply(op, &reply);
            checked += 1;
        }
    }
    assert!(checked > 60, "{checked}");
    env.stop().await;
}
