//! A gateway-side access token check with no call to authq: the worker's JWKS file
//! (`authq serve --access-tokens --jwks-file PATH`) and `authq::verify`.
//!
//! ```sh
//! cargo run --example verify --features verify -- /run/authq/jwks.json authq authq < token.txt
//! ```
//!
//! Prints the token's claims as JSON and exits 0, or prints why it was refused and exits 1. A
//! token naming a key the file does not hold makes it read the file once more (a new key may
//! have started signing since), as a long-running gateway would.

use authq::verify::{Verifier, VerifyError};
use std::io::Read as _;
use std::path::Path;
use std::process::ExitCode;

fn load(path: &Path, issuer: &str, audience: &str) -> Result<Verifier, String> {
    let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Verifier::from_jwks_json(&text, issuer, audience).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [jwks, issuer, audience] = &args[..] else {
        eprintln!("usage: verify JWKS_FILE ISSUER AUDIENCE < TOKEN");
        return ExitCode::from(2);
    };
    let mut token = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut token) {
        eprintln!("cannot read the token: {e}");
        return ExitCode::from(2);
    }
    let token = token.trim();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let path = Path::new(jwks);
    let mut verifier = match load(path, issuer, audience) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("cannot load the key set: {e}");
            return ExitCode::from(2);
        }
    };
    let mut result = verifier.verify(token, now);
    if matches!(result, Err(VerifyError::UnknownKey)) {
        // Once: the worker may have rotated its key since the file was read.
        match load(path, issuer, audience) {
            Ok(v) => verifier = v,
            Err(e) => {
                eprintln!("cannot reload the key set: {e}");
                return ExitCode::from(2);
            }
        }
        result = verifier.verify(token, now);
    }
    match result {
        Ok(claims) => {
            match serde_json::to_string_pretty(&claims) {
                Ok(text) => println!("{text}"),
                Err(e) => println!("{claims:?} ({e})"),
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("refused: {e}");
            ExitCode::from(1)
        }
    }
}
