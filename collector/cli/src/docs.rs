//! Man pages (one per subcommand) and bash/zsh/fish completions, generated from the clap
//! definition so they never drift from `--help`; `cargo xtask dist` runs the hidden
//! `shadowai generate-docs DIR`.

use std::path::Path;

use clap_complete::Shell;

/// Writes `DIR/man/shadowai[-<sub>…].1` and `DIR/completions/{shadowai.bash,_shadowai,shadowai.fish}`.
pub fn generate(mut cmd: clap::Command, dir: &Path) -> std::io::Result<()> {
    let (man, completions) = (dir.join("man"), dir.join("completions"));
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&completions)?;
    cmd = without_help_subcommand(cmd);
    cmd.build();
    clap_mangen::generate_to(cmd.clone(), &man)?;
    let name = cmd.get_name().to_string();
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut cmd, &name, &completions)?;
    }
    Ok(())
}

/// clap's implicit `help` subcommand would get a man page of its own at every level.
fn without_help_subcommand(cmd: clap::Command) -> clap::Command {
    cmd.disable_help_subcommand(true)
        .mut_subcommands(without_help_subcommand)
}
