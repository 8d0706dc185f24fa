//! `publish-cli`: publishes `npx expo export` output to an expo-ota server. The protocol
//! (hashing, manifest rendering, metadata parsing) lives in the `expo_ota` core crate.

mod account;
mod auth;
mod capacitor;
mod cli;
mod commit;
mod export;
mod health;
mod manage;
mod patches;
mod printer;
mod publish;
mod rollback;
mod rollout;
mod sign;
mod tokens;
mod upload;
mod verify;

#[cfg(test)]
mod testserver;

use clap::Parser;
use cli::{Cli, Command};
use printer::Printer;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    account::fill_tokens(&mut cli.command);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => return fail(&anyhow::anyhow!("starting the async runtime: {e}")),
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Publish(a) => {
                let out = Printer::new(a.server.json);
                publish::run(a, &out).await
            }
            Command::List(a) => {
                let out = Printer::new(a.server.json);
                manage::list(a, &out).await
            }
            Command::Delete(a) => {
                let out = Printer::new(a.server.json);
                manage::delete(a, &out).await
            }
            Command::Rollback(a) => {
                let out = Printer::new(a.server.json);
                rollback::rollback(a, &out).await
            }
            Command::Promote(a) => {
                let out = Printer::new(a.server.json);
                rollback::promote(a, &out).await
            }
            Command::Token(t) => tokens::run(t).await,
            Command::Capacitor(c) => capacitor::run(c).await,
            Command::Apk(a) => capacitor::run_apk(a).await,
            Command::Audit(a) => {
                let out = Printer::new(a.server.json);
                tokens::audit(a, &out).await
            }
            Command::Rollout(a) => {
                let out = Printer::new(a.server.json);
                rollout::rollout(a, &out).await
            }
            Command::Explain(a) => {
                let out = Printer::new(a.server.json);
                rollout::explain(a, &out).await
            }
            Command::Health(a) => {
                let out = Printer::new(a.server.json);
                health::run(a, &out).await
            }
            Command::Login(a) => account::login(a).await,
            Command::Logout(a) => account::logout(a).await,
            Command::User(cli::UserCommand::Create(a)) => account::user_create(a).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

/// One line on stderr: the whole context chain, e.g. `error: commit demo-app/ios/1.0.3: HTTP 409: …`.
fn fail(e: &anyhow::Error) -> ExitCode {
    let msg = format!("{e:#}").split_whitespace().collect::<Vec<_>>().join(" ");
    eprintln!("error: {}", printer::escape_for_terminal(&msg));
    ExitCode::FAILURE
}
