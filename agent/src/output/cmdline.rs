//! The command line as the agent writes it out (OCSF `actor.process.cmd_line`): what names
//! the program, never what a user typed into it.
//!
//! An AI CLI's arguments are often the prompt itself (`claude -p "…"`), an inline script
//! (`python3 -c "…"`) or a secret (`--api-key sk-…`, `https://…?key=…`). Evidence is names,
//! not payloads, so the written command line keeps:
//! - `argv[0]`;
//! - flag names (`-m`, `--model`), with any `=value` written as `=…`;
//! - paths (an argument starting with `/`, `./`, `../` or `~/`, without whitespace): the
//!   script or module a runtime runs, which names the tool;
//! - URLs as scheme, host, port and path: user info, query and fragment become `…`;
//!
//! and writes every other argument (values, prompts, inline code, subcommands) as `…`. The
//! full argv is used inside the agent only (naming AI tools: `inventory/hints.rs`).

/// What stands for a left-out argument or part.
const ELIDED: &str = "…";

/// `args` joined by spaces, each written as the module's doc says.
pub fn redacted(args: &[String]) -> String {
    let mut out = String::new();
    for (i, arg) in args.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        if i == 0 {
            out.push_str(arg);
        } else {
            push_arg(&mut out, arg);
        }
    }
    out
}

fn push_arg(out: &mut String, arg: &str) {
    if let Some(flag) = flag_name(arg) {
        out.push_str(flag);
        if flag.len() < arg.len() {
            out.push('=');
            out.push_str(ELIDED);
        }
    } else if is_path(arg) {
        out.push_str(arg);
    } else if let Some(url) = url_without_secrets(arg) {
        out.push_str(&url);
    } else {
        out.push_str(ELIDED);
    }
}

/// `-x` or `--name` of a flag argument (`--name=value` too), if `arg` is one.
fn flag_name(arg: &str) -> Option<&str> {
    let body = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-'))?;
    let name_len = body.find('=').unwrap_or(body.len());
    let name = &body[..name_len];
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    ok.then(|| &arg[..arg.len() - body.len() + name_len])
}

fn is_path(arg: &str) -> bool {
    ["/", "./", "../", "~/"].iter().any(|p| arg.starts_with(p))
        && !arg.chars().any(char::is_whitespace)
}

/// Scheme, host, port and path of a URL argument; user info, query and fragment elided.
fn url_without_secrets(arg: &str) -> Option<String> {
    let (scheme, rest) = arg.split_once("://")?;
    if scheme.is_empty()
        || !scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-' || b == b'.')
        || arg.chars().any(char::is_whitespace)
    {
        return None;
    }
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    let (before, tail) = rest.split_at(end);
    let (authority, path) = before.split_at(before.find('/').unwrap_or(before.len()));
    let mut out = format!("{scheme}://");
    match authority.rsplit_once('@') {
        Some((_, host)) => {
            out.push_str(ELIDED);
            out.push('@');
            out.push_str(host);
        }
        None => out.push_str(authority),
    }
    out.push_str(path);
    if let Some(sep) = tail.chars().next() {
        out.push(sep);
        out.push_str(ELIDED);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::redacted;

    fn r(args: &[&str]) -> String {
        redacted(&args.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
    }

    #[test]
    fn prompts_inline_code_and_values_are_left_out() {
        assert_eq!(
            r(&["claude", "-p", "summarise the layoff plan"]),
            "claude -p …"
        );
        assert_eq!(
            r(&["python3", "-c", "import os\nprint(os.environ)"]),
            "python3 -c …"
        );
        assert_eq!(r(&["aichat", "hello"]), "aichat …");
        assert_eq!(
            r(&["llm", "--key", "sk-abc123", "--model=gpt-4o", "hi"]),
            "llm --key … --model=… …"
        );
    }

    #[test]
    fn program_flags_paths_and_url_hosts_are_kept() {
        assert_eq!(
            r(&[
                "node",
                "/usr/lib/node_modules/@anthropic-ai/claude-code/cli.js",
                "--verbose"
            ]),
            "node /usr/lib/node_modules/@anthropic-ai/claude-code/cli.js --verbose"
        );
        assert_eq!(r(&["python3", "./agent.py", "-v"]), "python3 ./agent.py -v");
        assert_eq!(
            r(&["curl", "-s", "https://api.openai.com/v1/models"]),
            "curl -s https://api.openai.com/v1/models"
        );
    }

    #[test]
    fn url_secrets_are_left_out() {
        assert_eq!(
            r(&[
                "curl",
                "https://generativelanguage.googleapis.com/v1/models?key=AIzaSECRET"
            ]),
            "curl https://generativelanguage.googleapis.com/v1/models?…"
        );
        assert_eq!(
            r(&["curl", "https://user:pass@proxy.example:8443/x#frag"]),
            "curl https://…@proxy.example:8443/x#…"
        );
        // Not a URL (whitespace, or no scheme): left out whole.
        assert_eq!(r(&["x", "see https://a.b/ now"]), "x …");
        assert_eq!(r(&["x", "://a.b/"]), "x …");
    }

    #[test]
    fn odd_arguments_do_not_pass_as_flags_or_paths() {
        // A dash alone, a dash before text, a path with a space in it.
        assert_eq!(r(&["x", "-", "--", "-why not", "/tmp/a b"]), "x … … … …");
        // Empty argv and argv[0] alone.
        assert_eq!(r(&[]), "");
        assert_eq!(r(&["/usr/bin/curl"]), "/usr/bin/curl");
    }
}
