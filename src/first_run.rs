//! First run: with no API token configured the server generates an admin token, prints it once
//! with how to use it, and keeps it in `api.admin_token_file` (default `data/admin-token`, mode
//! 0600), so it still works after a restart. Configuring `api.tokens` or `TRIPLEGAIN_API_TOKEN`
//! replaces it.

use crate::settings::{ApiToken, Role, Secret, Settings};
use anyhow::Context as _;
use std::io::Write as _;
use std::path::Path;

/// The name the generated token has in logs and the audit log.
pub const FIRST_RUN_TOKEN_NAME: &str = "first-run-admin";

/// How the admin token was obtained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FirstRun {
    /// Tokens are configured: nothing done.
    Configured,
    /// Read back from the token file of an earlier first run.
    Loaded,
    /// Generated now (and printed).
    Generated,
}

fn generate() -> String {
    use rand::RngCore as _;
    let mut bytes = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("tg_admin_{hex}")
}

fn write_private(path: &Path, token: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("creating the first-run token file {}", path.display()))?;
    f.write_all(format!("{token}\n").as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Adds the first-run admin token to `settings.api.tokens` when none is configured, reading it
/// from `api.admin_token_file` or generating (and printing) it.
///
/// # Errors
/// When the token file cannot be read or written, or holds something that is not a token.
pub fn ensure_admin_token(settings: &mut Settings) -> anyhow::Result<FirstRun> {
    if !settings.api.tokens.is_empty() {
        return Ok(FirstRun::Configured);
    }
    let path = Path::new(&settings.api.admin_token_file).to_path_buf();
    if settings.api.admin_token_file.trim().is_empty() {
        anyhow::bail!("api.tokens is empty and api.admin_token_file is empty: no API token can be used");
    }
    let (token, outcome) = if path.exists() {
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let token = text.trim().to_owned();
        if token.len() < 16 {
            anyhow::bail!(
                "{}: the first-run token file holds no valid token (at least 16 characters); delete it to generate a new one",
                path.display()
            );
        }
        (token, FirstRun::Loaded)
    } else {
        let token = generate();
        write_private(&path, &token)?;
        (token, FirstRun::Generated)
    };
    settings.api.tokens.push(ApiToken {
        name: FIRST_RUN_TOKEN_NAME.into(),
        token: Secret::new(token.clone()),
        role: Role::Admin,
    });
    match outcome {
        FirstRun::Generated => {
            let bind = &settings.server.bind;
            let banner = format!(
                "\n\
                 ====================================================================================\n\
                 First run: no API token is configured, so TripleGain generated an admin token:\n\n\
                 \x20   {token}\n\n\
                 It is printed only this once and kept in {path} (readable only by you); the server\n\
                 uses it on every start until you configure api.tokens or TRIPLEGAIN_API_TOKEN.\n\
                 Sign in to the control panel at http://{bind}/ with it, or call the API:\n\
                 \x20   curl -H \"Authorization: Bearer {token}\" http://{bind}/api/v1/coordinator/status\n\
                 ====================================================================================\n",
                path = path.display(),
            );
            // Straight to the terminal (stderr), never through the log pipeline.
            eprintln!("{banner}");
            tracing::warn!(file = %path.display(), token_name = FIRST_RUN_TOKEN_NAME, "first run: admin token generated (printed once on stderr)");
        }
        FirstRun::Loaded => {
            tracing::info!(file = %path.display(), token_name = FIRST_RUN_TOKEN_NAME, "no API token configured; using the first-run admin token from its file");
        }
        FirstRun::Configured => {}
    }
    Ok(outcome)
}
