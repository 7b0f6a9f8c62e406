//! `import_users` and the legacy hashes it carries over: tarantool-authman's
//! `sha256(user_id .. password)` and bcrypt log in with the old password and are rehashed to
//! argon2id at that login (the legacy hash gone); argon2 hashes within the bound import as they
//! are; each entry says what became of it; only admin callers may import.

use crate::harness::{TestEnv, assert_code, leak};
use authq::ErrorCode;
use authq::types::{ImportStatus, ImportUser, ImportedHash, PasswordScheme, UserRef};
use sha2::{Digest, Sha256};

const OLD_PW: &str = "Old-authman-pass1";

/// A password hash exactly as tarantool-authman makes it (authman/model/password.lua `hash`
/// → authman/utils/utils.lua `salted_hash(password, user_id)` =
/// `digest.sha256(string.format('%s%s', user_id, password))`: the raw 32 bytes), written as
/// the 64 hex digits the export step produces (`string.hex(tuple[3])`).
fn authman_hash(user_id: &str, password: &str) -> String {
    let raw = Sha256::digest(format!("{user_id}{password}").as_bytes());
    raw.iter().map(|b| format!("{b:02x}")).collect()
}

fn entry(email: &str, user_id: Option<&str>, hash: Option<(PasswordScheme, String)>) -> ImportUser {
    ImportUser {
        email: email.into(),
        user_id: user_id.map(str::to_owned),
        state: None,
        profile: None,
        password_hash: hash.map(|(scheme, hash)| ImportedHash { scheme, hash }),
        password: None,
    }
}

/// The stored password hash of user `id` (ids are UUIDs: safe to inline).
pub fn stored_hash(env: &TestEnv, id: &str) -> Option<String> {
    let sql = leak(format!("SELECT password_hash FROM users WHERE id = '{id}'"));
    env.db(|tx| tx.query_value::<Option<String>>(sql, &[]))
        .expect("the user's row")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_password_is_verified_as_typed_then_rehashed_in_its_normalised_form() {
    let env = TestEnv::start().await;
    // Fullwidth letters and a ligature: NFKC turns them into "Old-authman-pass1" and "fi".
    let typed = "\u{FF2F}ld-authman-pass1-\u{FB01}";
    let id = "7a2b3c4d-5e6f-4a1b-8c9d-0e1f2a3b4c5d";
    let reply = env
        .client
        .import_users(vec![entry(
            "fay@example.com",
            Some(id),
            Some((PasswordScheme::AuthmanSha256, authman_hash(id, typed))),
        )])
        .await
        .unwrap();
    assert_eq!(reply.results[0].status, ImportStatus::Imported, "{reply:?}");
    // authman hashed the bytes as typed, so only those match the imported hash.
    assert_code(
        env.client
            .login("fay@example.com", "Old-authman-pass1-fi")
            .await,
        ErrorCode::InvalidCredentials,
    );
    env.client.login("fay@example.com", typed).await.unwrap();
    let after = stored_hash(&env, id).unwrap();
    assert!(
        after.starts_with("$argon2id$"),
        "rehashed at login: {after}"
    );
    // From now on the password is authq's: compared in NFKC form, as typed or not.
    env.client.login("fay@example.com", typed).await.unwrap();
    env.client
        .login("fay@example.com", "Old-authman-pass1-fi")
        .await
        .unwrap();
    env.stop().await;
}

/// Imports one user with `hash`, checks a wrong password fails and leaves the hash, then that
/// the old password logs in and leaves argon2id in its place.
async fn logs_in_and_is_rehashed(
    env: &TestEnv,
    email: &str,
    id: &str,
    scheme: PasswordScheme,
    hash: String,
    legacy_prefix: &str,
) {
    let reply = env
        .client
        .import_users(vec![entry(email, Some(id), Some((scheme, hash)))])
        .await
        .unwrap();
    assert_eq!(reply.results[0].status, ImportStatus::Imported, "{reply:?}");
    assert_eq!(
        reply.results[0].user_id.as_deref(),
        Some(id),
        "the id is kept"
    );
    let before = stored_hash(env, id).unwrap();
    assert!(before.starts_with(legacy_prefix), "{before}");

    assert_code(
        env.client.login(email, "wrong password").await,
        ErrorCode::InvalidCredentials,
    );
    assert_eq!(
        stored_hash(env, id).unwrap(),
        before,
        "a wrong password changes nothing"
    );

    let login = env.client.login(email, OLD_PW).await.unwrap();
    assert_eq!(login.user.id, id);
    let after = stored_hash(env, id).unwrap();
    assert!(
        after.starts_with("$argon2id$v=19$"),
        "rehashed at login: {after}"
    );
    assert!(
        !after.contains(legacy_prefix.trim_matches('$')),
        "the legacy hash is gone"
    );
    let shown = env.client.get_user(UserRef::id(id)).await.unwrap();
    assert_eq!(shown.password_scheme.as_deref(), Some("argon2id"));

    // The old password goes on working, now through argon2id, and the new hash stays.
    env.client.login(email, OLD_PW).await.unwrap();
    assert_eq!(stored_hash(env, id).unwrap(), after);
    assert_code(
        env.client.login(email, "wrong password").await,
        ErrorCode::InvalidCredentials,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authman_hashed_users_log_in_with_the_old_password_and_are_rehashed() {
    let env = TestEnv::start().await;
    // authman's ids are uuid.str(): lowercase, hyphenated.
    let id = "6f1c2a9e-3b7d-4c5e-9f10-2a3b4c5d6e7f";
    let hash = authman_hash(id, OLD_PW);
    logs_in_and_is_rehashed(
        &env,
        "ann@example.com",
        id,
        PasswordScheme::AuthmanSha256,
        hash,
        "$authman-sha256$",
    )
    .await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bcrypt_hashed_users_log_in_with_the_old_password_and_are_rehashed() {
    let env = TestEnv::start().await;
    let id = "0a7d5c44-8e2b-4f61-b0c3-5d9e8f7a6b21";
    let hash = bcrypt::hash_with_salt(OLD_PW, 4, [42; 16])
        .unwrap()
        .format_for_version(bcrypt::Version::TwoY);
    logs_in_and_is_rehashed(
        &env,
        "bob@example.com",
        id,
        PasswordScheme::Bcrypt,
        hash,
        "$2y$",
    )
    .await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argon2_hashes_import_as_they_are_within_the_bound() {
    let env = TestEnv::start().await;
    let donor = env.active_user("donor@example.com", OLD_PW).await;
    let phc = stored_hash(&env, &donor).unwrap();
    // The same hash claiming 4 GiB: beyond the bound (the test workers' hashes use m=64).
    let beyond = phc.replacen("m=64,", "m=4194304,", 1);
    assert_ne!(beyond, phc);
    let reply = env
        .client
        .import_users(vec![
            entry(
                "carol@example.com",
                None,
                Some((PasswordScheme::Argon2, phc.clone())),
            ),
            entry(
                "dave@example.com",
                None,
                Some((PasswordScheme::Argon2, beyond)),
            ),
        ])
        .await
        .unwrap();
    let [carol, dave] = &reply.results[..] else {
        panic!("two results: {reply:?}")
    };
    assert_eq!(carol.status, ImportStatus::Imported);
    assert_eq!(dave.status, ImportStatus::Invalid, "{dave:?}");
    assert!(
        dave.reason.as_deref().unwrap().contains("bound"),
        "{dave:?}"
    );
    let carol_id = carol.user_id.clone().unwrap();
    assert_eq!(stored_hash(&env, &carol_id).unwrap(), phc);
    let login = env.client.login("carol@example.com", OLD_PW).await.unwrap();
    assert_eq!(login.user.id, carol_id);
    assert_eq!(
        stored_hash(&env, &carol_id).unwrap(),
        phc,
        "current parameters: no rehash"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_entry_is_imported_exists_or_invalid_with_its_reason() {
    let env = TestEnv::start().await;
    let existing = env.active_user("erin@example.com", OLD_PW).await;
    let id = "11111111-2222-4333-8444-555555555555";
    // Without a password, pending by default.
    let pending = entry("pat@example.com", None, None);
    let mut pending_with_pw = entry(
        "pw@example.com",
        None,
        Some((PasswordScheme::Bcrypt, "x".into())),
    );
    pending_with_pw.state = Some(authq::types::UserState::Pending);
    let mut frank_entry = entry("Frank@Example.com", Some(id), None);
    frank_entry.state = Some(authq::types::UserState::Active);
    let reply = env
        .client
        .import_users(vec![
            frank_entry.clone(),
            entry("ERIN@example.com", None, None),
            entry("other@example.com", Some(id), None),
            entry("not an email", None, None),
            entry(
                "noid@example.com",
                None,
                Some((PasswordScheme::AuthmanSha256, authman_hash("x", "y"))),
            ),
            entry("badid@example.com", Some("not-a-uuid"), None),
            entry(
                "badhash@example.com",
                None,
                Some((PasswordScheme::Bcrypt, "$2b$nope".into())),
            ),
            pending,
            pending_with_pw,
        ])
        .await
        .unwrap();
    let statuses: Vec<ImportStatus> = reply.results.iter().map(|r| r.status).collect();
    use ImportStatus::{Exists, Imported, Invalid};
    assert_eq!(
        statuses,
        [
            Imported, Exists, Exists, Invalid, Invalid, Invalid, Invalid, Imported, Invalid
        ],
        "{reply:?}"
    );
    assert_eq!(reply.results[1].user_id.as_deref(), Some(existing.as_str()));
    assert_eq!(
        reply.results[2].user_id.as_deref(),
        Some(id),
        "the id is taken"
    );
    assert!(
        reply.results[4]
            .reason
            .as_deref()
            .unwrap()
            .contains("user_id")
    );
    // Nothing was overwritten: Erin still logs in with her own password.
    env.client.login("erin@example.com", OLD_PW).await.unwrap();
    // A user imported active without a password has none: no password logs it in.
    let frank = env
        .client
        .get_user(UserRef::email("frank@example.com"))
        .await
        .unwrap();
    assert_eq!(frank.user.id, id);
    assert_eq!(frank.user.email, "Frank@Example.com");
    assert_eq!(frank.password_scheme, None);
    assert_code(
        env.client.login("frank@example.com", "").await,
        ErrorCode::InvalidCredentials,
    );
    // A pending import is registered as any pending user: `register` sends it a code.
    let pat = env
        .client
        .get_user(UserRef::email("pat@example.com"))
        .await
        .unwrap();
    assert_eq!(pat.user.state, authq::types::UserState::Pending);
    let reg = env.client.register("pat@example.com").await.unwrap();
    assert_eq!(reg.user_id, pat.user.id);
    // The same batch again: every entry now exists (or is still invalid); nothing doubles.
    let users = env.count("users");
    let again = env.client.import_users(vec![frank_entry]).await.unwrap();
    assert_eq!(again.results[0].status, Exists);
    assert_eq!(env.count("users"), users);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_administration_is_refused_to_callers_that_are_not_admins() {
    let env = TestEnv::start_with(|c| c.admin_callers = vec!["ops-team".into()]).await;
    let c = &env.client;
    assert_code(
        c.import_users(vec![entry("a@example.com", None, None)])
            .await,
        ErrorCode::Forbidden,
    );
    assert_code(c.list_users(Default::default()).await, ErrorCode::Forbidden);
    assert_code(
        c.get_user(UserRef::email("a@example.com")).await,
        ErrorCode::Forbidden,
    );
    assert_code(
        c.end_user_sessions(UserRef::email("a@example.com")).await,
        ErrorCode::Forbidden,
    );
    assert_eq!(env.count("users"), 0);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_delivered_twice_is_answered_as_the_first_delivery_was() {
    let env = TestEnv::start().await;
    // Entries without an id get a fresh one per run: only the recorded outcome keeps the
    // second delivery from importing them again under other ids.
    let body = serde_json::json!({"users": [
        {"email": "gail@example.com"},
        {"email": "hal@example.com", "password": OLD_PW},
    ]})
    .to_string();
    let timeout = std::time::Duration::from_secs(20);
    let first = env
        .client
        .call_raw_with_id("import_users", body.as_bytes(), timeout, "import-batch-1")
        .await
        .unwrap();
    let second = env
        .client
        .call_raw_with_id("import_users", body.as_bytes(), timeout, "import-batch-1")
        .await
        .unwrap();
    assert_eq!(first, second);
    let reply: serde_json::Value = serde_json::from_slice(&first).unwrap();
    assert_eq!(reply["data"]["results"][0]["status"], "imported", "{reply}");
    assert_eq!(reply["data"]["results"][1]["status"], "imported", "{reply}");
    assert_eq!(env.count("users"), 2);
    env.client.login("hal@example.com", OLD_PW).await.unwrap();
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_user_sessions_ends_every_session_and_says_so() {
    use crate::events::{next_event, subscribe};
    let env = TestEnv::start().await;
    let queue = format!("{}.test-admin-events", env.config.namespace);
    let mut events = subscribe(&env, &queue, &["session.ended"]).await;
    let ann = env.active_user("ann@example.com", OLD_PW).await;
    let one = env.login("ann@example.com", OLD_PW).await;
    let two = env.login("ann@example.com", OLD_PW).await;
    let reply = env
        .client
        .end_user_sessions(UserRef::email("Ann@Example.com"))
        .await
        .unwrap();
    assert_eq!((reply.user_id.as_str(), reply.ended), (ann.as_str(), 2));
    assert_code(env.client.check(&one).await, ErrorCode::SessionInvalid);
    assert_code(env.client.check(&two).await, ErrorCode::SessionInvalid);
    let (_, ended) = next_event(&mut events).await;
    assert_eq!(ended.data.user_id.as_deref(), Some(ann.as_str()));
    assert_eq!(ended.data.reason.as_deref(), Some("logout_all"));
    assert_eq!(ended.data.sessions_ended, Some(2));
    assert_code(
        env.client.end_user_sessions(UserRef::id("nobody")).await,
        ErrorCode::NotFound,
    );
    env.stop().await;
}
