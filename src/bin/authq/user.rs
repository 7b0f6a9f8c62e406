//! `authq user`: administering users over the protocol (`list_users`, `get_user`,
//! `import_users`, `suspend`, `unsuspend`, `delete_user`, `end_user_sessions`), as a caller
//! the workers list in `--admin-caller`. Tables by default, `--json` for scripts.
//!
//! Exit status: 0 when everything asked was done, 1 for an error reply (or an import with
//! invalid entries, a `create` of an existing user), 2 when no reply came or the input could not
//! be read.

use crate::broker_args::BrokerArgs;
use authq::types::{
    GetUserReply, ImportResult, ImportStatus, ImportUser, ListUsersReply, ListUsersRequest,
    UserRef, UserSummary,
};
use authq::{Client, ClientError, ClientOptions, Secret};
use clap::{Args, Subcommand};
use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

/// Exit status: an error reply.
const ERROR_REPLY: u8 = 1;
/// Exit status: no reply, or unreadable input.
const NO_REPLY: u8 = 2;

/// `authq user`.
#[derive(Debug, Args)]
pub struct UserArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: UserCommand,
}

/// The flags every `authq user` subcommand takes.
#[derive(Clone, Debug, Args)]
pub struct Common {
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// How long to wait for each reply, e.g. `5s`.
    #[arg(long, env = "AUTHQ_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Print the replies as JSON (one object per line) instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// A user named on the command line: an email if it holds `@`, else an id.
#[derive(Clone, Debug, Args)]
pub struct Target {
    #[command(flatten)]
    pub common: Common,
    /// The user: an email (holds `@`) or a user id.
    pub user: String,
}

impl Target {
    fn user_ref(&self) -> UserRef {
        if self.user.contains('@') {
            UserRef::email(self.user.clone())
        } else {
            UserRef::id(self.user.clone())
        }
    }
}

/// The `authq user` subcommands.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// List users in email order, a page at a time (`--all` follows every page).
    List(ListArgs),
    /// Show one user: state, times, password scheme, live sessions, providers, second factor,
    /// profile.
    Show(Target),
    /// Create a user (`import_users` of one entry): active with the password read from stdin
    /// (`--password-stdin`), else pending (`register` then sends the user a code).
    Create(CreateArgs),
    /// Suspend a user: every session ends and login is refused.
    Suspend(Target),
    /// Lift a suspension.
    Unsuspend(Target),
    /// Delete a user with every session and code.
    Delete(Target),
    /// End every session of a user.
    EndSessions(Target),
    /// Turn a user's TOTP second factor off (a user who lost the authenticator and the
    /// recovery codes; they log in with the password alone until they enrol again).
    MfaReset(Target),
    /// Import users from a file of JSON lines (or one JSON array) in `import_users`' entry
    /// form, in batches; prints what became of each entry that was not imported.
    Import(ImportArgs),
}

/// `authq user list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub common: Common,
    /// Only users whose email starts with this (case-insensitive).
    #[arg(long)]
    pub prefix: Option<String>,
    /// Users per page (at most 500).
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    /// Start after this cursor (printed under the previous page).
    #[arg(long)]
    pub cursor: Option<String>,
    /// Follow every page to the end.
    #[arg(long)]
    pub all: bool,
}

/// `authq user create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    #[command(flatten)]
    pub common: Common,
    /// The email.
    pub email: String,
    /// Read the password from the first line of stdin.
    #[arg(long)]
    pub password_stdin: bool,
    /// The user's id (a UUID); a new one by default.
    #[arg(long)]
    pub id: Option<String>,
    /// The profile, a JSON object.
    #[arg(long)]
    pub profile: Option<String>,
}

/// `authq user import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    #[command(flatten)]
    pub common: Common,
    /// The file: JSON lines, or one JSON array; `-` reads stdin.
    pub file: String,
    /// Entries per `import_users` request (at most 100; fewer when they would exceed 48 KiB).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub batch: u32,
}

/// Runs `authq user`.
pub async fn run(args: UserArgs) -> ExitCode {
    let common = match &args.command {
        UserCommand::List(a) => &a.common,
        UserCommand::Create(a) => &a.common,
        UserCommand::Import(a) => &a.common,
        UserCommand::Show(t)
        | UserCommand::Suspend(t)
        | UserCommand::Unsuspend(t)
        | UserCommand::Delete(t)
        | UserCommand::EndSessions(t)
        | UserCommand::MfaReset(t) => &t.common,
    };
    let options = ClientOptions::default()
        .namespace(common.broker.namespace.clone())
        .timeout(common.timeout)
        .connection_name("authq-user");
    let client = match Client::connect_with(&common.broker.amqp_url, options).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("authq user: {}", e.report());
            return ExitCode::from(NO_REPLY);
        }
    };
    let json = common.json;
    let outcome = dispatch(&client, args.command, json).await;
    let _ = client.close().await;
    outcome.unwrap_or_else(|code| code)
}

/// Runs one subcommand on a connected client.
async fn dispatch(client: &Client, command: UserCommand, json: bool) -> Outcome {
    match command {
        UserCommand::List(a) => list(client, a, json).await,
        UserCommand::Show(t) => show(client, &t, json).await,
        UserCommand::Create(a) => create(client, a, json).await,
        UserCommand::Suspend(t) => {
            let r = client.suspend(t.user_ref()).await.map_err(failed)?;
            print_state(
                &r.user.id,
                r.user.state.as_str(),
                r.sessions_ended,
                json,
                &r,
            )
        }
        UserCommand::Unsuspend(t) => {
            let r = client.unsuspend(t.user_ref()).await.map_err(failed)?;
            print_state(&r.user.id, r.user.state.as_str(), 0, json, &r)
        }
        UserCommand::Delete(t) => {
            let r = client.delete_user(t.user_ref()).await.map_err(failed)?;
            emit(json, &r, || format!("deleted {}", r.user_id))
        }
        UserCommand::EndSessions(t) => {
            let r = client
                .end_user_sessions(t.user_ref())
                .await
                .map_err(failed)?;
            emit(json, &r, || {
                format!("{}: {} sessions ended", r.user_id, r.ended)
            })
        }
        UserCommand::MfaReset(t) => {
            let r = client.reset_mfa(t.user_ref()).await.map_err(failed)?;
            emit(json, &r, || format!("{}: second factor off", r.user_id))
        }
        UserCommand::Import(a) => import(client, a, json).await,
    }
}

/// What a subcommand ends with: the exit status, either way.
type Outcome = Result<ExitCode, ExitCode>;

/// Reports a failed call on stderr and picks the exit status.
fn failed(e: ClientError) -> ExitCode {
    eprintln!("authq user: {}", e.report());
    if e.code().is_some() {
        ExitCode::from(ERROR_REPLY)
    } else {
        ExitCode::from(NO_REPLY)
    }
}

/// Prints `value` as one JSON line, or `text()` as a human line.
fn emit<T: serde::Serialize>(json: bool, value: &T, text: impl FnOnce() -> String) -> Outcome {
    let line = if json {
        serde_json::to_string(value).unwrap_or_default()
    } else {
        text()
    };
    println!("{line}");
    Ok(ExitCode::SUCCESS)
}

fn print_state<T: serde::Serialize>(
    id: &str,
    state: &str,
    ended: u64,
    json: bool,
    reply: &T,
) -> Outcome {
    emit(json, reply, || {
        format!("{id}: {state} ({ended} sessions ended)")
    })
}

async fn list(client: &Client, args: ListArgs, json: bool) -> Outcome {
    let mut cursor = args.cursor;
    let mut all = ListUsersReply {
        users: Vec::new(),
        next_cursor: None,
    };
    loop {
        let page = client
            .list_users(ListUsersRequest {
                email_prefix: args.prefix.clone(),
                cursor: cursor.clone(),
                limit: Some(args.limit),
            })
            .await
            .map_err(failed)?;
        all.users.extend(page.users);
        all.next_cursor = page.next_cursor;
        match &all.next_cursor {
            Some(next) if args.all => cursor = Some(next.clone()),
            _ => break,
        }
    }
    if json {
        return emit(true, &all, String::new);
    }
    let rows = all.users.iter().map(summary_row).collect();
    print!(
        "{}",
        table(&["ID", "EMAIL", "STATE", "CREATED", "UPDATED"], rows)
    );
    if let Some(next) = &all.next_cursor {
        println!("more: --cursor '{next}'");
    }
    Ok(ExitCode::SUCCESS)
}

fn summary_row(u: &UserSummary) -> Vec<String> {
    vec![
        u.id.clone(),
        u.email.clone(),
        u.state.as_str().to_owned(),
        time(u.created_at),
        time(u.updated_at),
    ]
}

async fn show(client: &Client, target: &Target, json: bool) -> Outcome {
    let r: GetUserReply = client.get_user(target.user_ref()).await.map_err(failed)?;
    emit(json, &r, || {
        let rows = vec![
            vec!["id".into(), r.user.id.clone()],
            vec!["email".into(), r.user.email.clone()],
            vec!["state".into(), r.user.state.as_str().into()],
            vec!["created".into(), time(r.created_at)],
            vec!["updated".into(), time(r.updated_at)],
            vec![
                "password".into(),
                r.password_scheme.clone().unwrap_or_else(|| "none".into()),
            ],
            vec!["sessions".into(), r.sessions.to_string()],
            vec!["providers".into(), r.providers.join(", ")],
            vec!["mfa".into(), if r.mfa { "on" } else { "off" }.into()],
            vec!["profile".into(), r.user.profile.as_json().to_owned()],
        ];
        table(&["FIELD", "VALUE"], rows).trim_end().to_owned()
    })
}

async fn create(client: &Client, args: CreateArgs, json: bool) -> Outcome {
    let password = if args.password_stdin {
        let mut line = String::new();
        if let Err(e) = std::io::stdin().lock().read_line(&mut line) {
            eprintln!("authq user: cannot read the password from stdin: {e}");
            return Err(ExitCode::from(NO_REPLY));
        }
        Some(Secret::new(line.trim_end_matches(['\r', '\n']).to_owned()))
    } else {
        None
    };
    let profile = match args
        .profile
        .as_deref()
        .map(serde_json::from_str)
        .transpose()
    {
        Ok(p) => p,
        Err(e) => {
            eprintln!("authq user: --profile is not JSON: {e}");
            return Err(ExitCode::from(NO_REPLY));
        }
    };
    let entry = ImportUser {
        email: args.email,
        user_id: args.id,
        state: None,
        profile,
        password_hash: None,
        password,
    };
    let reply = client.import_users(vec![entry]).await.map_err(failed)?;
    let Some(result) = reply.results.into_iter().next() else {
        eprintln!("authq user: the reply holds no result");
        return Err(ExitCode::from(NO_REPLY));
    };
    emit(json, &result, || describe(&result))?;
    if result.status == ImportStatus::Imported {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(ExitCode::from(ERROR_REPLY))
    }
}

fn describe(r: &ImportResult) -> String {
    let id = r.user_id.as_deref().unwrap_or("-");
    match r.status {
        ImportStatus::Imported => format!("created {id} ({})", r.email),
        ImportStatus::Exists => format!("{}: exists as {id}", r.email),
        ImportStatus::Invalid => format!(
            "{}: invalid: {}",
            r.email,
            r.reason.as_deref().unwrap_or("")
        ),
    }
}

/// Reads an import file: a JSON array, or JSON lines (blank lines skipped).
fn read_entries(text: &str) -> Result<Vec<ImportUser>, String> {
    if text.trim_start().starts_with('[') {
        return serde_json::from_str(text).map_err(|e| format!("the JSON array: {e}"));
    }
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| format!("line {}: {e}", i + 1)))
        .collect()
}

async fn import(client: &Client, args: ImportArgs, json: bool) -> Outcome {
    let text = if args.file == "-" {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(&args.file)
    };
    let entries = match text
        .map_err(|e| e.to_string())
        .and_then(|t| read_entries(&t))
    {
        Ok(entries) => entries,
        Err(e) => {
            eprintln!("authq user import: cannot read {}: {e}", args.file);
            return Err(ExitCode::from(NO_REPLY));
        }
    };
    let batch = usize::try_from(args.batch).unwrap_or(100);
    let mut results = Vec::with_capacity(entries.len());
    for chunk in batches(&entries, batch, MAX_BATCH_BYTES) {
        let reply = client.import_users(chunk.to_vec()).await;
        match reply {
            Ok(reply) => results.extend(reply.results),
            Err(e) => {
                eprintln!(
                    "authq user import: stopped after {} of {} entries",
                    results.len(),
                    entries.len()
                );
                return Err(failed(e));
            }
        }
    }
    let count = |s| results.iter().filter(|r| r.status == s).count();
    let (imported, exists, invalid) = (
        count(ImportStatus::Imported),
        count(ImportStatus::Exists),
        count(ImportStatus::Invalid),
    );
    let mut out = std::io::stdout().lock();
    if json {
        for r in &results {
            let _ = writeln!(out, "{}", serde_json::to_string(r).unwrap_or_default());
        }
    } else {
        let rows: Vec<Vec<String>> = results
            .iter()
            .filter(|r| r.status != ImportStatus::Imported)
            .map(|r| {
                vec![
                    r.email.clone(),
                    status_name(r.status).to_owned(),
                    r.user_id.clone().unwrap_or_default(),
                    r.reason.clone().unwrap_or_default(),
                ]
            })
            .collect();
        if !rows.is_empty() {
            let _ = write!(out, "{}", table(&["EMAIL", "STATUS", "ID", "REASON"], rows));
        }
        let _ = writeln!(
            out,
            "imported {imported}, already there {exists}, invalid {invalid}"
        );
    }
    if invalid == 0 {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(ExitCode::from(ERROR_REPLY))
    }
}

/// The most bytes of entries one `import_users` request carries: under the workers' default
/// request body limit (64 KiB), with room for the envelope.
const MAX_BATCH_BYTES: usize = 48 * 1024;

/// Consecutive runs of at most `count` entries and (but for a single larger entry) at most
/// `bytes` bytes of JSON.
fn batches(entries: &[ImportUser], count: usize, bytes: usize) -> Vec<&[ImportUser]> {
    let mut out = Vec::new();
    let (mut start, mut size) = (0, 0);
    for (i, entry) in entries.iter().enumerate() {
        let len = serde_json::to_string(entry).map_or(0, |t| t.len() + 1);
        if i > start && (i - start >= count || size + len > bytes) {
            out.push(&entries[start..i]);
            (start, size) = (i, 0);
        }
        size += len;
    }
    if start < entries.len() {
        out.push(&entries[start..]);
    }
    out
}

fn status_name(s: ImportStatus) -> &'static str {
    match s {
        ImportStatus::Imported => "imported",
        ImportStatus::Exists => "exists",
        ImportStatus::Invalid => "invalid",
    }
}

/// Unix ms as RFC 3339 (UTC, seconds).
fn time(ms: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_seconds(at).to_string()
}

/// Left-aligned columns, two spaces apart, under a header row.
fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let header: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let t = table(
            &["ID", "EMAIL"],
            vec![vec!["1".into(), "ann@example.com".into()]],
        );
        assert_eq!(t, "ID  EMAIL\n1   ann@example.com\n");
    }

    #[test]
    fn batches_hold_a_bounded_count_and_size() {
        let entries: Vec<ImportUser> = (0..5)
            .map(|i| serde_json::from_str(&format!("{{\"email\":\"u{i}@example.com\"}}")).unwrap())
            .collect();
        let sizes = |b: Vec<&[ImportUser]>| b.iter().map(|c| c.len()).collect::<Vec<_>>();
        assert_eq!(sizes(batches(&entries, 2, 1 << 20)), [2, 2, 1]);
        // Each entry is 26 bytes of JSON with its separator: two fit in 60.
        assert_eq!(sizes(batches(&entries, 100, 60)), [2, 2, 1]);
        assert_eq!(sizes(batches(&entries, 100, 1)), [1, 1, 1, 1, 1]);
    }

    #[test]
    fn import_files_are_json_lines_or_an_array() {
        let lines = "{\"email\":\"a@b.c\"}\n\n{\"email\":\"d@e.f\"}\n";
        assert_eq!(read_entries(lines).unwrap().len(), 2);
        let array = "[{\"email\":\"a@b.c\"}]";
        assert_eq!(read_entries(array).unwrap().len(), 1);
        assert!(read_entries("{nope").unwrap_err().starts_with("line 1"));
    }
}
