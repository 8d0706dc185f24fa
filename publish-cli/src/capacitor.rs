//! `publish-cli capacitor …` and `publish-cli apk publish`: Capacitor web bundles and APKs on the
//! same server, tokens and audit log as Expo apps. A bundle is checked here with the server's own
//! rules (`expo_ota::capacitor::zipcheck`) before anything is sent, uploaded only when the server
//! does not hold its bytes yet (content-addressed by SHA-256), then published through the app's
//! writer. `--dir` zips the built web directory the way `@capgo/cli bundle zip` does (entries
//! relative to the directory, explicit directory entries, deflate), but with fixed entry times and
//! sorted entries, so zipping an unchanged build gives the same bytes and uploads nothing.

use crate::cli::{parse_channel, parse_slug, ServerArgs};
use crate::printer::Printer;
use crate::upload::Client;
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use expo_ota::capacitor::{deploy::MAX_APK_BYTES, state, zipcheck};
use expo_ota::protocol::hash::Digests;
use futures_util::StreamExt;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::Method;
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Subcommand)]
pub enum CapacitorCommand {
    /// Upload a web bundle (a zip, or a built web directory) and make it the channel's version.
    Publish(PublishArgs),
    /// Channels, their settings and their version history.
    List(AppArgs),
    /// Serve the previous version again (or --to VERSION, or --to-builtin); prints its name.
    Rollback(RollbackArgs),
    /// Delete one version; when it is the current one, the previous version is served again.
    Delete(DeleteArgs),
    /// Channel settings: listed to devices (--public), devices may choose it (--allow-self-set).
    Channel(ChannelArgs),
}

#[derive(Debug, Subcommand)]
pub enum ApkCommand {
    /// Upload an APK (up to 100 MiB, streamed) and make it the latest of its channel.
    Publish(ApkPublishArgs),
}

#[derive(Debug, Args)]
pub struct AppArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// The app id from capacitor.config (reverse-DNS, e.g. com.example.app).
    #[arg(long, value_parser = parse_slug)]
    pub app_id: String,
}

fn parse_version(s: &str) -> Result<String, String> {
    state::version(s).map(str::to_string).map_err(|e| e.message)
}

#[derive(Debug, Args)]
pub struct PublishArgs {
    #[command(flatten)]
    pub app: AppArgs,
    /// Bundle version name (what devices report as version_name), e.g. 1.2.0.
    #[arg(long, value_parser = parse_version)]
    pub version: String,
    /// A bundle zip, e.g. the output of `npx @capgo/cli bundle zip`.
    #[arg(long, conflicts_with = "dir", required_unless_present = "dir")]
    pub zip: Option<PathBuf>,
    /// The built web directory (Capacitor's webDir, e.g. dist) with index.html at its root.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Channel (default: the app's default channel, production).
    #[arg(long, value_parser = parse_channel)]
    pub channel: Option<String>,
    /// Devices whose native version (version_build) is below this are not offered the bundle.
    #[arg(long, value_parser = parse_version)]
    pub min_native_version: Option<String>,
    /// Check and hash the bundle, send nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    #[command(flatten)]
    pub app: AppArgs,
    #[arg(long, value_parser = parse_channel)]
    pub channel: Option<String>,
    /// A version of the channel's history (default: the one before the current one).
    #[arg(long, value_parser = parse_version, conflicts_with = "to_builtin")]
    pub to: Option<String>,
    /// Send devices back to the bundle shipped in their binary.
    #[arg(long)]
    pub to_builtin: bool,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    #[command(flatten)]
    pub app: AppArgs,
    #[arg(long, value_parser = parse_version)]
    pub version: String,
    #[arg(long, value_parser = parse_channel)]
    pub channel: Option<String>,
}

#[derive(Debug, Args)]
pub struct ChannelArgs {
    #[command(flatten)]
    pub app: AppArgs,
    #[arg(long, value_parser = parse_channel)]
    pub channel: String,
    /// Listed to devices (GET channel_self) and usable as a device's defaultChannel.
    #[arg(long)]
    pub public: Option<bool>,
    /// Devices may move themselves onto it (setChannel).
    #[arg(long)]
    pub allow_self_set: Option<bool>,
    /// Make it the channel of devices that name none.
    #[arg(long)]
    pub make_default: bool,
}

#[derive(Debug, Args)]
pub struct ApkPublishArgs {
    #[command(flatten)]
    pub app: AppArgs,
    #[arg(long, value_parser = parse_version)]
    pub version: String,
    #[arg(long)]
    pub file: PathBuf,
    /// APK channel (default: apk).
    #[arg(long, value_parser = parse_channel)]
    pub channel: Option<String>,
}

/// Zips `dir` like `@capgo/cli bundle zip`: entries relative to `dir`, directories as explicit
/// entries, files deflated; sorted, with fixed times, so the same files give the same bytes.
pub fn zip_dir(dir: &Path) -> Result<Vec<u8>> {
    if !dir.join("index.html").is_file() {
        bail!(
            "{} has no index.html at its root: pass the built web directory (Capacitor's webDir, e.g. dist)",
            dir.display()
        );
    }
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let file_opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .unix_permissions(0o644);
    let dir_opts = zip::write::SimpleFileOptions::default().unix_permissions(0o755);
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(dir.join(&rel))
            .with_context(|| format!("reading {}", dir.join(&rel).display()))?
            .collect::<std::io::Result<_>>()?;
        entries.sort_by_key(|e| e.file_name());
        let mut subdirs = Vec::new();
        for e in entries {
            let name = e.file_name().into_string().map_err(|n| anyhow::anyhow!("file name {n:?} is not UTF-8"))?;
            let path = rel.join(&name);
            let entry = path.to_str().expect("UTF-8 parts").replace(std::path::MAIN_SEPARATOR, "/");
            let kind = e.file_type()?;
            if kind.is_dir() {
                w.add_directory(entry.as_str(), dir_opts)?;
                subdirs.push(path);
            } else if kind.is_file() {
                w.start_file(entry.as_str(), file_opts)?;
                w.write_all(&std::fs::read(e.path()).with_context(|| format!("reading {}", e.path().display()))?)?;
            } else {
                bail!("{} is neither a file nor a directory (symlinks are not bundled)", e.path().display());
            }
        }
        // Depth-first in name order: push in reverse so the first name is zipped first.
        stack.extend(subdirs.into_iter().rev());
    }
    Ok(w.finish()?.into_inner())
}

async fn call(client: &Client, what: &str, method: Method, path: &str, body: Option<&Value>) -> Result<Value> {
    let resp = client
        .send(what, || async {
            let r = client.request(method.clone(), path);
            Ok(match body {
                Some(b) => r.json(b),
                None => r,
            })
        })
        .await?;
    Client::json(what, resp).await
}

fn client(app: &AppArgs) -> Result<Client> {
    let token = crate::auth::require(app.server.auth_token.as_deref())?;
    Client::new(&app.server.server, token)
}

fn seg(s: &str) -> String {
    crate::upload::encode_segment(s)
}

pub async fn run(cmd: CapacitorCommand) -> Result<()> {
    match cmd {
        CapacitorCommand::Publish(a) => publish(a).await,
        CapacitorCommand::List(a) => {
            let out = Printer::new(a.server.json);
            let v =
                call(&client(&a)?, "list", Method::GET, &format!("/api/capacitor/{}/versions", seg(&a.app_id)), None)
                    .await?;
            if out.json() {
                out.emit(&v);
            } else {
                out.line(format!("{} (default channel {})", a.app_id, v["defaultChannel"].as_str().unwrap_or("")));
                for (name, c) in v["channels"].as_object().into_iter().flatten() {
                    let flags = [("public", c["public"].as_bool()), ("self-assignable", c["allowSelfSet"].as_bool())]
                        .iter()
                        .filter(|(_, on)| *on == Some(true))
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ");
                    out.line(format!("channel {name} {flags}"));
                    let current = c["current"].as_str();
                    if current == Some(state::BUILTIN) {
                        out.line("  * builtin (devices run the binary's bundle)");
                    }
                    for b in c["versions"].as_array().into_iter().flatten().rev() {
                        let v = b["version"].as_str().unwrap_or("");
                        out.line(format!(
                            "  {} {v:<16} {}  {}  {} bytes{}",
                            if current == Some(v) { "*" } else { " " },
                            b["publishedAt"].as_str().unwrap_or(""),
                            b["checksum"].as_str().unwrap_or(""),
                            b["size"],
                            b["minNativeVersion"].as_str().map(|m| format!("  native >= {m}")).unwrap_or_default(),
                        ));
                    }
                }
                for (name, list) in v["apk"].as_object().into_iter().flatten() {
                    for e in list.as_array().into_iter().flatten().rev() {
                        out.line(format!(
                            "apk {name} {} {}",
                            e["version"].as_str().unwrap_or(""),
                            e["sha256"].as_str().unwrap_or("")
                        ));
                    }
                }
            }
            Ok(())
        }
        CapacitorCommand::Rollback(a) => {
            let out = Printer::new(a.app.server.json);
            let body = json!({"channel": a.channel, "to": a.to, "toBuiltin": a.to_builtin});
            let path = format!("/api/capacitor/{}/rollback", seg(&a.app.app_id));
            let v = call(&client(&a.app)?, "rollback", Method::POST, &path, Some(&body)).await?;
            if out.json() {
                out.emit(&v);
            } else {
                out.line(format!(
                    "{} channel {}: {} -> {}",
                    a.app.app_id,
                    v["channel"].as_str().unwrap_or(""),
                    v["from"].as_str().unwrap_or("(none)"),
                    v["to"].as_str().unwrap_or("")
                ));
            }
            Ok(())
        }
        CapacitorCommand::Delete(a) => {
            let out = Printer::new(a.app.server.json);
            let mut path = format!("/api/capacitor/{}/versions/{}", seg(&a.app.app_id), seg(&a.version));
            if let Some(c) = &a.channel {
                path.push_str(&format!("?channel={c}"));
            }
            let v = call(&client(&a.app)?, "delete", Method::DELETE, &path, None).await?;
            if out.json() {
                out.emit(&v);
            } else {
                out.line(format!(
                    "deleted {} from {}; devices are offered {}",
                    a.version,
                    v["channel"].as_str().unwrap_or(""),
                    v["current"].as_str().unwrap_or("nothing new")
                ));
            }
            Ok(())
        }
        CapacitorCommand::Channel(a) => {
            let out = Printer::new(a.app.server.json);
            let body = json!({"public": a.public, "allowSelfSet": a.allow_self_set, "makeDefault": a.make_default});
            let path = format!("/api/capacitor/{}/channels/{}", seg(&a.app.app_id), a.channel);
            let v = call(&client(&a.app)?, "channel settings", Method::POST, &path, Some(&body)).await?;
            if out.json() {
                out.emit(&v);
            } else {
                out.line(format!(
                    "channel {} (id {}): public {}, allow self-set {}{}",
                    a.channel,
                    v["id"],
                    v["public"],
                    v["allowSelfSet"],
                    if v["isDefault"] == true { ", default" } else { "" }
                ));
            }
            Ok(())
        }
    }
}

async fn publish(a: PublishArgs) -> Result<()> {
    let out = Printer::new(a.app.server.json);
    let bytes = match (&a.zip, &a.dir) {
        (Some(z), _) => std::fs::read(z).with_context(|| format!("reading {}", z.display()))?,
        (None, Some(d)) => zip_dir(d)?,
        (None, None) => bail!("pass --zip FILE or --dir DIST"),
    };
    zipcheck::check(bytes.as_slice(), bytes.len() as u64).await.map_err(|e| anyhow::anyhow!(e.message))?;
    let checksum = Digests::of(&bytes).sha256_hex();
    if a.dry_run {
        let report = json!({"appId": a.app.app_id, "version": a.version, "checksum": checksum, "size": bytes.len(), "dryRun": true});
        if out.json() {
            out.emit(&report);
        } else {
            out.line(format!(
                "{} {}: {} bytes, checksum {checksum} (dry run: nothing sent)",
                a.app.app_id,
                a.version,
                bytes.len()
            ));
        }
        return Ok(());
    }
    let c = client(&a.app)?;
    let app = seg(&a.app.app_id);
    // Only new bytes are sent: the public download answers 200 when the server holds them.
    let head = c.request(Method::HEAD, &format!("/api/capacitor/{app}/bundles/{checksum}.zip")).send().await;
    let uploaded = !matches!(head, Ok(r) if r.status().is_success());
    if uploaded {
        let path = format!("/api/capacitor/{app}/bundles/{checksum}");
        let resp = c
            .send("upload bundle", || async {
                Ok(c.request(Method::PUT, &path)
                    .header(CONTENT_LENGTH, bytes.len())
                    .header(CONTENT_TYPE, "application/zip")
                    .body(bytes.clone()))
            })
            .await?;
        let _: Value = Client::json("upload bundle", resp).await?;
    }
    let body = json!({
        "version": a.version,
        "channel": a.channel,
        "checksum": checksum,
        "minNativeVersion": a.min_native_version,
    });
    let mut v = call(&c, "publish", Method::POST, &format!("/api/capacitor/{app}/publish"), Some(&body)).await?;
    v["uploaded"] = uploaded.into();
    if out.json() {
        out.emit(&v);
    } else {
        out.line(format!(
            "published {} {} on {} (checksum {checksum}, {}){}",
            a.app.app_id,
            a.version,
            v["channel"].as_str().unwrap_or(""),
            if uploaded { "uploaded" } else { "bytes already on the server" },
            v["previous"].as_str().map(|p| format!("; was {p}")).unwrap_or_default()
        ));
    }
    Ok(())
}

pub async fn run_apk(cmd: ApkCommand) -> Result<()> {
    let ApkCommand::Publish(a) = cmd;
    let out = Printer::new(a.app.server.json);
    let len = std::fs::metadata(&a.file).with_context(|| format!("reading {}", a.file.display()))?.len();
    if len > MAX_APK_BYTES {
        bail!("{} is {len} bytes; the limit is {MAX_APK_BYTES} (100 MiB)", a.file.display());
    }
    // Hashed in blocks, then streamed from disk: an APK is never held whole in memory.
    let sha = {
        let mut h = expo_ota::protocol::hash::FileHasher::new();
        let mut f = tokio::fs::File::open(&a.file).await?;
        let mut buf = vec![0u8; 256 << 10];
        loop {
            let n = tokio::io::AsyncReadExt::read(&mut f, &mut buf).await?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        h.finish().sha256_hex()
    };
    let c = client(&a.app)?;
    let app = seg(&a.app.app_id);
    let path = format!("/api/apk/{app}/files/{sha}");
    let resp = c
        .send("upload APK", || async {
            let file = tokio::fs::File::open(&a.file).await?;
            let stream = tokio_util::io::ReaderStream::with_capacity(file, 64 << 10).map(|c| c);
            Ok(c.request(Method::PUT, &path)
                .header(CONTENT_LENGTH, len)
                .header(CONTENT_TYPE, "application/vnd.android.package-archive")
                .body(reqwest::Body::wrap_stream(stream)))
        })
        .await?;
    let _: Value = Client::json("upload APK", resp).await?;
    let body = json!({"version": a.version, "channel": a.channel, "sha256": sha});
    let v = call(&c, "publish APK", Method::POST, &format!("/api/apk/{app}/publish"), Some(&body)).await?;
    if out.json() {
        out.emit(&v);
    } else {
        out.line(format!(
            "published APK {} {} ({len} bytes, sha256 {sha}): {}",
            a.app.app_id,
            a.version,
            v["url"].as_str().unwrap_or("")
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zip_dir_puts_index_at_the_root_and_is_reproducible() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("index.html"), "<html></html>").unwrap();
        std::fs::create_dir(d.path().join("assets")).unwrap();
        std::fs::write(d.path().join("assets/app.js"), "notifyAppReady()").unwrap();
        let a = zip_dir(d.path()).unwrap();
        let b = zip_dir(d.path()).unwrap();
        assert_eq!(a, b, "same files, same bytes");
        let s = pollster::block_on(zipcheck::check(a.as_slice(), a.len() as u64)).unwrap();
        assert_eq!((s.entries, s.top_folder), (3, None));
        let mut z = zip::ZipArchive::new(std::io::Cursor::new(a)).unwrap();
        let names: Vec<String> = z.file_names().map(str::to_string).collect();
        assert!(names.contains(&"assets/".to_string()) && names.contains(&"assets/app.js".to_string()), "{names:?}");
        let mut js = String::new();
        std::io::Read::read_to_string(&mut z.by_name("assets/app.js").unwrap(), &mut js).unwrap();
        assert_eq!(js, "notifyAppReady()");
    }

    #[test]
    fn zip_dir_without_index_is_refused_before_zipping() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("main.js"), "x").unwrap();
        assert!(zip_dir(d.path()).unwrap_err().to_string().contains("no index.html"));
    }
}
