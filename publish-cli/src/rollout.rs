//! `rollout` and `explain`: thin clients of `POST /api/rollout/…` and `GET /api/explain`. The
//! server decides everything (the same core decision as a device's check); this module only
//! signs a resume when the publisher holds the key and prints the answers (`Printer::line`
//! escapes every server string for the terminal).

use crate::cli::{ExplainArgs, RolloutArgs};
use crate::printer::Printer;
use crate::upload::{label, Client};
use anyhow::Result;
use expo_ota::check::explain::Explanation;
use expo_ota::deploy::api::{CommitResponse, ToSign};
use expo_ota::deploy::rollout::{HaltOutcome, HaltResult, RolloutRequest, RolloutState};
use expo_ota::storage::layout::Target;

/// A halt reason, by the server's rule (at most 200 characters, no control characters), so a
/// bad one fails before any request.
pub fn parse_reason(s: &str) -> Result<String, String> {
    if s.chars().count() > 200 || s.chars().any(char::is_control) {
        return Err("must be at most 200 characters, without control characters".into());
    }
    Ok(s.to_string())
}

pub async fn rollout(args: RolloutArgs, out: &Printer) -> Result<()> {
    let token = crate::auth::require(args.server.auth_token.as_deref())?;
    let signer = crate::sign::from_args(&args.signing)?;
    let client = Client::new(&args.server.server, token)?;
    let target = Target::parse(&args.slug, args.platform.as_str(), &args.runtime_version)
        .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let req = RolloutRequest {
        channel: Some(args.channel.clone()),
        // --complete is 100 %: the server ends the rollout.
        percentage: if args.complete { Some(100) } else { args.percentage },
        revert: args.revert,
        halt: args.halt,
        resume: args.resume,
        reason: args.reason.clone(),
        ..Default::default()
    };
    if args.resume {
        let c = resume(&client, &target, req, signer.as_ref()).await?;
        out.line(format!(
            "{}: channel {} serves {} again as {} (created {}{})",
            label(&target),
            args.channel,
            c.republished_from.as_deref().unwrap_or_default(),
            &c.id,
            c.created_at,
            if c.signed { ", signed" } else { "" }
        ));
        if out.json() {
            out.emit(&c);
        }
        return Ok(());
    }
    if args.halt || args.revert {
        let h: HaltOutcome = client.rollout(&target, &req).await?;
        let what = match h.result {
            HaltResult::Halted => "halted",
            HaltResult::AlreadyHalted => "was already halted",
            HaltResult::NotServing => "is not served by this channel; nothing changed",
        };
        out.line(format!("{}: update {} {what}", label(&target), &h.update_id));
        if let Some(r) = &h.revert {
            out.line(format!(
                "  channel {} now serves {} ({}{}, created {})",
                args.channel,
                &r.id,
                match &r.republished_from {
                    Some(from) => format!("a republish of {from}"),
                    None => "roll back to the embedded update".into(),
                },
                if r.signed { ", signed" } else { "" },
                r.created_at
            ));
        }
        if out.json() {
            out.emit(&h);
        }
        return Ok(());
    }
    let state: RolloutState = client.rollout(&target, &req).await?;
    out.line(state_line(&target, &args.channel, &state));
    if out.json() {
        out.emit(&state);
    }
    Ok(())
}

/// A resume republishes the halted update; with the key, the body is fetched, signed and sent
/// back (the server accepts only the body it builds).
async fn resume(
    client: &Client,
    target: &Target,
    req: RolloutRequest,
    signer: Option<&crate::sign::Signer>,
) -> Result<CommitResponse> {
    let Some(signer) = signer else { return client.rollout(target, &req).await };
    let prepare = RolloutRequest { prepare_only: true, ..req.clone() };
    let to_sign: ToSign = client.rollout(target, &prepare).await?;
    let sig = signer.sign(to_sign.body.as_bytes());
    let signed = RolloutRequest {
        expected_current: to_sign.current.clone(),
        body: Some(to_sign.body),
        signature: Some(sig.sig),
        key_id: Some(sig.key_id),
        ..req
    };
    client.rollout(target, &signed).await
}

fn state_line(t: &Target, channel: &str, s: &RolloutState) -> String {
    if s.percentage >= 100 {
        return format!("{}: channel {channel} serves {} to every device (rollout complete)", label(t), s.update_id);
    }
    format!(
        "{}: channel {channel} rolls out {} to {} % (others get {})",
        label(t),
        s.update_id,
        s.percentage,
        s.control_update_id.as_deref().unwrap_or("no update")
    )
}

pub async fn explain(args: ExplainArgs, out: &Printer) -> Result<()> {
    let token = crate::auth::require(args.server.auth_token.as_deref())?;
    let client = Client::new(&args.server.server, token)?;
    let mut query = vec![
        ("slug", args.slug.clone()),
        ("platform", args.platform.as_str().to_string()),
        ("runtimeVersion", args.runtime_version.clone()),
        ("channel", args.channel.clone()),
    ];
    for (k, v) in [
        ("clientId", &args.client_id),
        ("currentUpdateId", &args.current_update_id),
        ("embeddedUpdateId", &args.embedded_update_id),
    ] {
        if let Some(v) = v {
            query.push((k, v.clone()));
        }
    }
    let e: Explanation = client.explain(&query).await?;
    for r in &e.reasons() {
        out.line(r);
    }
    if out.json() {
        out.emit(&e);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<Command, clap::Error> {
        let base = ["publish-cli", "--server", "https://ota.example.com"];
        Cli::try_parse_from(base.iter().take(1).chain(args).chain(&base[1..]).copied()).map(|c| c.command)
    }
    const RT: [&str; 6] = ["--slug", "demo-app", "--platform", "ios", "--runtime-version", "1.0.3"];

    #[test]
    fn rollout_needs_exactly_one_action_and_a_growing_percentage_in_range() {
        let with = |extra: &[&str]| parse(&[&["rollout"][..], &RT, extra].concat());
        let Command::Rollout(r) = with(&["--percentage", "50"]).unwrap() else { panic!("not rollout") };
        assert_eq!((r.percentage, r.channel.as_str(), r.complete), (Some(50), "production", false));
        assert!(
            matches!(with(&["--complete", "--channel", "beta"]).unwrap(), Command::Rollout(r) if r.complete && r.channel == "beta")
        );
        assert!(with(&[]).is_err(), "an action is required");
        assert!(with(&["--percentage", "50", "--revert"]).is_err(), "one action at a time");
        assert!(with(&["--percentage", "0"]).is_err() && with(&["--percentage", "101"]).is_err());
        assert!(with(&["--halt", "--reason", "crash\u{7}"]).is_err(), "reasons are checked like messages");
    }

    #[test]
    fn explain_takes_device_ids_and_publish_takes_a_rollout_percentage() {
        let Command::Explain(e) =
            parse(&[&["explain"][..], &RT, &["--current-update-id", "0F8D2A8E-0000-4000-8000-000000000001"]].concat())
                .unwrap()
        else {
            panic!("not explain")
        };
        assert_eq!(e.current_update_id.as_deref(), Some("0f8d2a8e-0000-4000-8000-000000000001"));
        assert!(parse(&[&["explain"][..], &RT, &["--embedded-update-id", "nope"]].concat()).is_err());
        let publish =
            |pct: &str| parse(&["publish", "--slug", "demo-app", "--export-dir", "dist", "--rollout-percentage", pct]);
        assert!(matches!(publish("10").unwrap(), Command::Publish(p) if p.rollout_percentage == Some(10)));
        assert!(publish("0").is_err() && publish("101").is_err());
    }
}
