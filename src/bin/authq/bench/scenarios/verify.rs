//! `verify`: what a gateway gains by verifying access tokens locally. The pool's `check`
//! through the broker (calls in flight), beside the same tokens' local verification against
//! the published keys (`authq::verify`, one thread, no broker call).

use super::env::{Env, PASSWORD, check_op};
use crate::bench::driver::{Outcome, drive};
use crate::bench::report::{ScenarioReport, Stream};
use anyhow::{Context as _, anyhow};
use authq::protocol::ops::{AccessClaims, JwksRequest};
use authq::verify::Verifier;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Runs the scenario on `env` into `report`.
pub(super) async fn verify(env: &Env<'_>, report: &mut ScenarioReport) -> anyhow::Result<()> {
    let users = env.users().await?;
    let mut tokens = Vec::with_capacity(users.len());
    for (email, _) in &users {
        let login = env
            .client
            .login(email, PASSWORD)
            .await
            .map_err(|e| anyhow!(e.report()))?;
        let token = login.access_token.ok_or_else(|| {
            anyhow!(
                "the pool issues no access tokens: start it with --access-tokens \
                 (a pool the bench spawns gets it for this scenario)"
            )
        })?;
        tokens.push(token.expose().to_owned());
    }
    let set = env
        .client
        .call(&JwksRequest {})
        .await
        .map_err(|e| anyhow!(e.report()))?;
    let claims = unverified_claims(&tokens[0])?;
    let verifier = Verifier::new(&set, &claims.iss, &claims.aud)
        .map_err(|e| anyhow!("the published keys: {e}"))?;

    let sessions: Arc<[String]> = users.into_iter().map(|(_, s)| s).collect();
    let count = env.args.requests.unwrap_or(20_000);
    let check = drive(
        "check",
        env.args.in_flight,
        env.stop(20_000),
        true,
        check_op(&env.client, sessions),
    )
    .await;
    let local = tokio::task::spawn_blocking(move || local(&verifier, &tokens, count))
        .await
        .context("the verification thread")??;
    report.streams.push(Stream::load("check (broker)", &check));
    report
        .streams
        .push(Stream::load("verify (local, 1 thread)", &local));
    report.figure(
        "verify_per_s_one_thread",
        local.throughput(),
        "(EdDSA signature, alg, iss, aud, exp; no broker call)",
    );
    report.figure(
        "verify_over_check",
        local.throughput() / check.throughput().max(1e-9),
        "(one thread verifying ÷ the whole pool's check throughput)",
    );
    Ok(())
}

/// Verifies the tokens round-robin `count` times, timing each.
fn local(verifier: &Verifier, tokens: &[String], count: u64) -> anyhow::Result<Outcome> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let now = i64::try_from(now).unwrap_or(i64::MAX);
    let mut out = Outcome::default();
    let mut latencies = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
    let start = Instant::now();
    for i in 0..count {
        let token = &tokens[usize::try_from(i).unwrap_or(0) % tokens.len()];
        let t = Instant::now();
        verifier
            .verify(token, now)
            .map_err(|e| anyhow!("a fresh token did not verify: {e}"))?;
        latencies.push(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX));
    }
    out.elapsed = start.elapsed().max(Duration::from_nanos(1));
    latencies.sort_unstable();
    out.latencies_us = latencies;
    out.requests = count;
    out.replies = count;
    out.ok = count;
    Ok(out)
}

/// The claims of a token, unverified (only to learn the deployment's `iss` and `aud`).
fn unverified_claims(token: &str) -> anyhow::Result<AccessClaims> {
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    validation.insecure_disable_signature_validation();
    validation.validate_aud = false;
    validation.validate_exp = false;
    let key = jsonwebtoken::DecodingKey::from_secret(&[]);
    Ok(jsonwebtoken::decode::<AccessClaims>(token, &key, &validation)?.claims)
}

/// `client-secret`: the two ways to store a service client's secret, on one thread each:
/// argon2id with the pool's parameters (what passwords get) against HMAC-SHA256 under a
/// server-derived key (what authq uses for 256-bit random client secrets).
pub(super) async fn client_secret(
    env: &Env<'_>,
    report: &mut ScenarioReport,
) -> anyhow::Result<()> {
    let runs = env.args.requests.unwrap_or(50).max(10);
    let argon2 = crate::bench::argon2::measure(env.args.hash_params(), 1, runs).await?;
    let count = runs.saturating_mul(1000);
    let hmac = tokio::task::spawn_blocking(move || {
        let key = authq_worker::keys::ServerKey::from_bytes([7; 32]);
        let tokens = authq_worker::tokens::Tokens::new(Default::default(), &key);
        let secret = "k3Jd9vX2mQ8pL5tR7wY1zA4bC6eF0gH2iJ8kL3mN5oP";
        let start = Instant::now();
        let mut last = [0u8; 32];
        for i in 0..count {
            last = tokens.client_secret_digest(if i % 2 == 0 { "svc_a" } else { "svc_b" }, secret);
        }
        (start.elapsed(), last[0])
    })
    .await
    .context("the HMAC thread")?;
    let hmac_rate = count as f64 / hmac.0.as_secs_f64().max(f64::MIN_POSITIVE);
    report.streams.push(super::env::ceiling_stream(&argon2, 1));
    report.figure(
        "argon2_per_s_one_thread",
        argon2.rate(),
        "(argon2id verifications, the pool's parameters)",
    );
    report.figure(
        "hmac_per_s_one_thread",
        hmac_rate,
        "(HMAC-SHA256 digests of a client id and secret, the stored form)",
    );
    report.figure(
        "hmac_over_argon2",
        hmac_rate / argon2.rate().max(1e-9),
        "(how much cheaper one service_token's secret check is)",
    );
    Ok(())
}
