//! Service clients (issue 17, point 4): created and revoked by administrators, authenticated by
//! id and secret, issued access tokens with `client_type: service` and their scopes, and never
//! able to call a user operation.

use crate::events::{next_event, subscribe};
use crate::harness::{TestEnv, assert_code};
use authq::ErrorCode;
use authq::protocol::ops::{
    CreateServiceClientRequest, JwksRequest, ListServiceClientsRequest, ProfileMode,
    RevokeServiceClientRequest, RotateServiceClientSecretRequest, ServiceClientCreated,
    ServiceTokenRequest,
};
use authq::verify::Verifier;
use authq::{Client, Secret};
use std::time::Duration;

async fn create(client: &Client, name: &str, scopes: &[&str]) -> ServiceClientCreated {
    client
        .call(&CreateServiceClientRequest {
            name: name.into(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        })
        .await
        .expect("create_service_client")
}

fn token_request(id: &str, secret: &str) -> ServiceTokenRequest {
    ServiceTokenRequest {
        client_id: id.into(),
        client_secret: Secret::from(secret),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_client_gets_scoped_service_tokens_until_revoked() {
    let env = TestEnv::start_with(|c| c.tokens.enabled = true).await;
    let queue = format!("{}.test-service-client-events", env.config.namespace);
    let mut events = subscribe(
        &env,
        &queue,
        &["service_client.created", "service_client.revoked"],
    )
    .await;
    let c = &env.client;
    let billing = create(c, "billing", &["invoices:write", "invoices:read"]).await;
    let (key, created) = next_event(&mut events).await;
    assert_eq!(key, "service_client.created");
    assert_eq!(
        created.data.client_id.as_deref(),
        Some(billing.client_id.as_str())
    );
    assert!(billing.client_id.starts_with("svc_"));
    assert_eq!(billing.scopes, ["invoices:read", "invoices:write"]);
    // Only a keyed digest is stored.
    let stored: Vec<Vec<u8>> = env.db(|tx| {
        tx.query_all("SELECT secret_digest FROM service_clients", &[], |r| {
            r.get(0)
        })
    });
    assert_eq!(stored.len(), 1);
    assert_ne!(
        stored[0].as_slice(),
        billing.client_secret.expose().as_bytes()
    );

    let secret = billing.client_secret.expose();
    let reply = c
        .call(&token_request(&billing.client_id, secret))
        .await
        .unwrap();
    let set = c.call(&JwksRequest {}).await.unwrap();
    let claims = Verifier::new(&set, "authq", "authq")
        .unwrap()
        .verify(reply.access_token.expose(), env.clock_now() / 1000)
        .unwrap();
    assert_eq!(claims.client_type, "service");
    assert_eq!(claims.sub, billing.client_id);
    assert_eq!(
        claims.scope.as_deref(),
        Some("invoices:read invoices:write")
    );
    assert_eq!((claims.sid, claims.session_epoch), (None, None));
    assert_eq!(claims.exp * 1000, reply.access_expires_at);

    // Bad input is refused before anything is stored.
    for (name, scopes) in [("", vec![]), ("ok", vec!["has space".to_owned()])] {
        assert_code(
            c.call(&CreateServiceClientRequest {
                name: name.into(),
                scopes,
            })
            .await,
            ErrorCode::BadRequest,
        );
    }
    assert_eq!(env.count("service_clients"), 1);

    // Wrong secret, unknown client: the same refusal.
    assert_code(
        c.call(&token_request(&billing.client_id, "wrong")).await,
        ErrorCode::InvalidCredentials,
    );
    assert_code(
        c.call(&token_request("svc_nobody", secret)).await,
        ErrorCode::InvalidCredentials,
    );
    // Another client's secret does not open this one.
    let other = create(c, "mailer", &[]).await;
    assert_code(
        c.call(&token_request(
            &billing.client_id,
            other.client_secret.expose(),
        ))
        .await,
        ErrorCode::InvalidCredentials,
    );

    // Revoked: no token any more; revoking again is not_found.
    c.call(&RevokeServiceClientRequest {
        client_id: billing.client_id.clone(),
    })
    .await
    .unwrap();
    assert_code(
        c.call(&token_request(&billing.client_id, secret)).await,
        ErrorCode::InvalidCredentials,
    );
    // `mailer`'s creation, then the revocation.
    let (key, _) = next_event(&mut events).await;
    assert_eq!(key, "service_client.created");
    let (key, revoked) = next_event(&mut events).await;
    assert_eq!(key, "service_client.revoked");
    assert_eq!(
        revoked.data.client_id.as_deref(),
        Some(billing.client_id.as_str())
    );
    assert_code(
        c.call(&RevokeServiceClientRequest {
            client_id: billing.client_id.clone(),
        })
        .await,
        ErrorCode::NotFound,
    );
    c.call(&token_request(
        &other.client_id,
        other.client_secret.expose(),
    ))
    .await
    .unwrap();
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_token_opens_no_user_operation() {
    let env = TestEnv::start_with(|c| c.tokens.enabled = true).await;
    let c = &env.client;
    env.active_user("ann@example.com", "correct horse battery")
        .await;
    let svc = create(c, "billing", &["profile:write"]).await;
    let token = c
        .call(&token_request(&svc.client_id, svc.client_secret.expose()))
        .await
        .unwrap()
        .access_token;
    let t = token.expose();
    assert_code(
        c.change_password(t, "correct horse battery", "another long secret")
            .await,
        ErrorCode::SessionInvalid,
    );
    assert_code(
        c.set_profile(t, serde_json::Map::new(), ProfileMode::Merge)
            .await,
        ErrorCode::SessionInvalid,
    );
    assert_code(c.check(t).await, ErrorCode::SessionInvalid);
    assert_code(c.get_profile(t).await, ErrorCode::SessionInvalid);
    assert_code(c.logout_all(t).await, ErrorCode::SessionInvalid);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_administrators_manage_service_clients() {
    let env = TestEnv::start_with(|c| {
        c.tokens.enabled = true;
        c.admin_callers = vec!["someone-else".into()];
    })
    .await;
    assert_code(
        env.client
            .call(&CreateServiceClientRequest {
                name: "x".into(),
                scopes: vec![],
            })
            .await,
        ErrorCode::Forbidden,
    );
    assert_code(
        env.client
            .call(&RevokeServiceClientRequest {
                client_id: "svc_x".into(),
            })
            .await,
        ErrorCode::Forbidden,
    );
    assert_code(
        env.client.call(&ListServiceClientsRequest {}).await,
        ErrorCode::Forbidden,
    );
    assert_code(
        env.client
            .call(&RotateServiceClientSecretRequest {
                client_id: "svc_x".into(),
            })
            .await,
        ErrorCode::Forbidden,
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn administrators_list_service_clients_and_rotate_their_secrets() {
    let env = TestEnv::start_with(|c| c.tokens.enabled = true).await;
    let c = &env.client;
    let a = create(c, "billing", &["invoices:read"]).await;
    env.clock.advance(Duration::from_millis(5));
    let b = create(c, "mailer", &[]).await;

    // Rotation: the new secret works, the old one no more.
    let rotated = c
        .call(&RotateServiceClientSecretRequest {
            client_id: a.client_id.clone(),
        })
        .await
        .unwrap();
    assert_eq!(rotated.client_id, a.client_id);
    assert_eq!(rotated.scopes, ["invoices:read"]);
    assert_ne!(rotated.client_secret, a.client_secret);
    assert_code(
        c.call(&token_request(&a.client_id, a.client_secret.expose()))
            .await,
        ErrorCode::InvalidCredentials,
    );
    c.call(&token_request(&a.client_id, rotated.client_secret.expose()))
        .await
        .unwrap();

    c.call(&RevokeServiceClientRequest {
        client_id: b.client_id.clone(),
    })
    .await
    .unwrap();
    assert_code(
        c.call(&RotateServiceClientSecretRequest {
            client_id: b.client_id.clone(),
        })
        .await,
        ErrorCode::NotFound,
    );

    let list = c.call(&ListServiceClientsRequest {}).await.unwrap();
    let shown: Vec<(&str, &str, bool)> = list
        .clients
        .iter()
        .map(|s| {
            (
                s.client_id.as_str(),
                s.name.as_str(),
                s.revoked_at.is_some(),
            )
        })
        .collect();
    assert_eq!(
        shown,
        [
            (a.client_id.as_str(), "billing", false),
            (b.client_id.as_str(), "mailer", true)
        ]
    );
    assert_eq!(list.clients[0].scopes, ["invoices:read"]);
    let text = format!("{list:?}");
    assert!(!text.contains(rotated.client_secret.expose()));
    env.stop().await;
}
