//! The `@capgo/capacitor-updater` wire protocol, plugins 5 to 8 (reference §2-§9): the device
//! info every call sends, the update decision and its replies, `channel_self`, stats, and the
//! compatibility `/check` of hand-written setups. Pure: the adapter reads the app's state, calls
//! these, and sends the [`Reply`].
//!
//! Replies follow the plugin's parsers exactly: an offer carries only string values and never an
//! `error` or `kind` key (Android would read it as a failure); "nothing new" is HTTP 200 with
//! `error` + `message` + `kind: "up_to_date"` (what current and older plugins both read as no
//! update, never 204/404); policy refusals are `kind: "blocked"` (no failure is counted).

use super::state::{AppState, BUILTIN};
use crate::check::Reply;
use crate::error::ApiError;
use serde_json::{json, Map, Value};

/// Longest string kept from a device field (ids, versions, channel names are far shorter).
const MAX_FIELD: usize = 128;

/// The plugin's info object (`createInfoObject`), as far as the server uses it. Unknown fields
/// are ignored, any key order and `\/` escapes are accepted (plain JSON), and a number or boolean
/// where a string is expected is read as its text (Android's org.json coerces).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceInfo {
    pub platform: String,
    pub device_id: String,
    pub app_id: String,
    /// The native app version (`versionName` / `CFBundleShortVersionString`).
    pub version_build: String,
    /// The web bundle running now (`builtin` or the native version for the binary's bundle).
    pub version_name: String,
    pub plugin_version: String,
    /// The device's channel (config `defaultChannel`, or what `setChannel` stored); "" = none.
    pub default_channel: String,
    /// `channel_self` POST and the compatibility check: the channel asked for.
    pub channel: String,
}

fn text(m: &Map<String, Value>, k: &str) -> String {
    let s = match m.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        _ => String::new(),
    };
    s.chars().take(MAX_FIELD).collect()
}

impl DeviceInfo {
    pub fn from_map(m: &Map<String, Value>) -> Self {
        DeviceInfo {
            platform: text(m, "platform"),
            device_id: text(m, "device_id"),
            app_id: text(m, "app_id"),
            version_build: text(m, "version_build"),
            version_name: text(m, "version_name"),
            plugin_version: text(m, "plugin_version"),
            default_channel: text(m, "defaultChannel"),
            channel: text(m, "channel"),
        }
    }

    /// A JSON object body (the update check, `channel_self` POST/PUT/DELETE).
    pub fn parse_json(body: &[u8]) -> Result<Self, ApiError> {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(m)) => Ok(Self::from_map(&m)),
            Ok(_) => Err(ApiError::bad_request("expected a JSON object (the plugin's device info)")),
            Err(e) => Err(ApiError::bad_request(format!("invalid JSON body: {e}"))),
        }
    }

    /// The query string `GET channel_self` carries the info object in.
    pub fn parse_query(query: &str) -> Self {
        let mut m = Map::new();
        for k in
            ["platform", "device_id", "app_id", "version_build", "version_name", "plugin_version", "defaultChannel"]
        {
            if let Some(v) = crate::http::route::query_param(query, k) {
                m.insert(k.into(), Value::String(v));
            }
        }
        Self::from_map(&m)
    }
}

fn reply(status: u16, v: &Value) -> Reply {
    Reply {
        status,
        headers: vec![("content-type", "application/json".into())],
        body: serde_json::to_vec(v).expect("JSON serializes"),
    }
}

/// HTTP 200 `{error, message, kind}`: how the plugin is told "no update" or "not for you".
fn no_update(error: &str, message: &str, kind: &str) -> Reply {
    reply(200, &json!({"error": error, "message": message, "kind": kind}))
}

pub fn up_to_date() -> Reply {
    no_update("no_new_version_available", "No new version available", "up_to_date")
}

/// The channel a device's update check reads, or the refusal to send it.
pub fn channel_for<'a>(state: &'a AppState, requested: &'a str) -> Result<&'a str, Reply> {
    // The default channel is every device's, published to yet or not.
    if requested.is_empty() || requested == state.default_channel() {
        return Ok(state.default_channel());
    }
    match state.channels.get(requested) {
        None => Err(no_update("no_channel", &format!("Channel {requested} does not exist on this server"), "blocked")),
        Some(_) if state.usable(requested).is_none() => Err(no_update(
            "cannot_update_via_private_channel",
            &format!("Channel {requested} is private and does not allow devices to choose it"),
            "blocked",
        )),
        Some(_) => Ok(requested),
    }
}

/// A dotted version's numeric parts (`1.2.3-beta` → [1, 2, 3]); `None` when it has none.
fn numeric(v: &str) -> Option<Vec<u64>> {
    let core = v.split(['-', '+']).next().unwrap_or("");
    let parts: Option<Vec<u64>> = core.split('.').map(|p| p.parse().ok()).collect();
    parts.filter(|p| !p.is_empty())
}

/// `version_build` is at least `min` (missing parts count as 0); unparseable builds are not.
pub fn native_at_least(build: &str, min: &str) -> bool {
    match (numeric(build), numeric(min)) {
        (Some(b), Some(m)) => {
            let n = b.len().max(m.len());
            let pad = |v: &[u64]| (0..n).map(|i| v.get(i).copied().unwrap_or(0)).collect::<Vec<_>>();
            pad(&b) >= pad(&m)
        }
        _ => false,
    }
}

/// `POST /api/capacitor/<appId>/updates`.
pub fn decide_update(state: &AppState, device: &DeviceInfo, origin: &str, slug: &str) -> Reply {
    let channel = match channel_for(state, &device.default_channel) {
        Ok(c) => c,
        Err(refused) => return refused,
    };
    let Some(current) = state.channels.get(channel).and_then(|c| c.current.as_deref()) else {
        return up_to_date();
    };
    if current == BUILTIN {
        // Since plugin 8.44 (x.45 on older majors) the binary's bundle reports the native version.
        let on_builtin = device.version_name == BUILTIN || device.version_name == device.version_build;
        return if on_builtin { up_to_date() } else { reply(200, &json!({"version": BUILTIN})) };
    }
    if device.version_name == current {
        return up_to_date();
    }
    let Some(bundle) = state.channels[channel].versions.iter().find(|b| b.version == current) else {
        return up_to_date();
    };
    if let Some(min) = &bundle.min_native_version {
        if !native_at_least(&device.version_build, min) {
            return no_update(
                "disable_auto_update_under_native",
                &format!("Bundle {current} needs native version {min} or later; update the app from the store"),
                "blocked",
            );
        }
    }
    reply(
        200,
        &json!({
            "version": current,
            "url": super::state::bundle_url(origin, slug, &bundle.checksum),
            "checksum": bundle.checksum,
            "session_key": "",
        }),
    )
}

/// `POST /api/capacitor/<appId>/check` for apps whose own JS polls a check route:
/// `{version_build | version_name, channel}` → `{version, url, checksum}` or `{}`.
pub fn decide_compat(state: &AppState, device: &DeviceInfo, origin: &str, slug: &str) -> Reply {
    let empty = || reply(200, &json!({}));
    let Ok(channel) = channel_for(state, &device.channel) else { return empty() };
    let Some(c) = state.channels.get(channel) else { return empty() };
    let Some(bundle) = c.current.as_deref().and_then(|v| c.versions.iter().find(|b| b.version == v)) else {
        return empty();
    };
    let running = if device.version_name.is_empty() { &device.version_build } else { &device.version_name };
    let too_old = bundle.min_native_version.as_deref().is_some_and(|m| !native_at_least(&device.version_build, m));
    if *running == bundle.version || too_old {
        return empty();
    }
    reply(
        200,
        &json!({
            "version": bundle.version,
            "url": super::state::bundle_url(origin, slug, &bundle.checksum),
            "checksum": bundle.checksum,
        }),
    )
}

fn channel_error(error: &str, message: String) -> Reply {
    reply(400, &json!({"error": error, "message": message}))
}

/// `POST channel_self` (`setChannel`): only a channel that allows self-assignment (or the app's
/// default) may be chosen. Nothing is stored: plugins since 5.34/6.34/7.34/8.2 keep the channel
/// on the device and send it as `defaultChannel`.
pub fn channel_set(state: &AppState, device: &DeviceInfo) -> Reply {
    let name = device.channel.as_str();
    if name.is_empty() {
        return channel_error("missing_channel", "Send the channel to join in \"channel\"".into());
    }
    match state.channels.get(name) {
        _ if name == state.default_channel() => reply(200, &json!({"status": "ok", "allowSet": true})),
        None => channel_error("channel_not_found", format!("Channel {name} does not exist")),
        Some(c) if !c.allow_self_set => {
            channel_error("channel_self_set_not_allowed", format!("Channel {name} does not allow devices to choose it"))
        }
        Some(_) => reply(200, &json!({"status": "ok", "allowSet": true})),
    }
}

/// `PUT channel_self` (`getChannel`): the device's channel when it names a usable one
/// (`override`), else the app's default (`default`).
pub fn channel_get(state: &AppState, device: &DeviceInfo) -> Reply {
    let own = device.default_channel.as_str();
    if !own.is_empty() && own != state.default_channel() {
        if let Some(c) = state.usable(own) {
            return reply(200, &json!({"channel": own, "status": "override", "allowSet": c.allow_self_set}));
        }
    }
    reply(200, &json!({"channel": state.default_channel(), "status": "default", "allowSet": true}))
}

/// `GET channel_self` (`listChannels`): public and self-assignable channels, integer ids.
pub fn channel_list(state: &AppState) -> Reply {
    let list: Vec<Value> = state
        .channels
        .iter()
        .filter(|(_, c)| c.public || c.allow_self_set)
        .map(|(name, c)| json!({"id": c.id, "name": name, "public": c.public, "allow_self_set": c.allow_self_set}))
        .collect();
    reply(200, &Value::Array(list))
}

/// `DELETE channel_self` (plugins before local channel storage): nothing is stored server-side.
pub fn channel_unset() -> Reply {
    reply(200, &json!({"status": "ok"}))
}

/// One stats event, reduced to what health counting needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatEvent {
    pub device_id: String,
    /// The bundle the event is about.
    pub version_name: String,
    pub action: String,
    /// `ios` / `android` (the info object every event carries).
    pub platform: String,
    /// The device's channel (`defaultChannel`), "" when it has none.
    pub default_channel: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatKind {
    /// The bundle became the running one (`set`).
    Launched,
    /// The bundle failed on the device (download, checksum, install or run).
    Failed,
    /// Progress and lifecycle events: not counted.
    Other,
}

impl StatEvent {
    pub fn kind(&self) -> StatKind {
        match self.action.as_str() {
            "set" => StatKind::Launched,
            "set_fail"
            | "update_fail"
            | "download_fail"
            | "checksum_fail"
            | "checksum_required"
            | "decrypt_fail"
            | "unzip_fail"
            | "finish_download_fail"
            | "app_crash"
            | "app_crash_native"
            | "windows_path_fail"
            | "canonical_path_fail"
            | "directory_path_fail"
            | "session_key_required"
            | "download_manifest_file_fail"
            | "download_manifest_checksum_fail" => StatKind::Failed,
            _ => StatKind::Other,
        }
    }
}

/// Most events one stats POST is read for (the plugin batches at most 200).
pub const MAX_STATS_EVENTS: usize = 200;

/// `POST stats`: a JSON array of events (plugins since x.42) or one object. Unknown actions and
/// non-object items are skipped, never refused (a 4xx makes the plugin drop the whole batch).
pub fn parse_stats(body: &[u8]) -> Result<Vec<StatEvent>, ApiError> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    let items = match v {
        Value::Array(a) => a,
        o @ Value::Object(_) => vec![o],
        _ => return Err(ApiError::bad_request("expected a JSON array of stats events or one event object")),
    };
    Ok(items
        .iter()
        .filter_map(Value::as_object)
        .take(MAX_STATS_EVENTS)
        .map(|m| StatEvent {
            device_id: text(m, "device_id"),
            version_name: text(m, "version_name"),
            action: text(m, "action"),
            platform: text(m, "platform"),
            default_channel: text(m, "defaultChannel"),
        })
        .filter(|e| !e.action.is_empty())
        .collect())
}

/// The stats answer: 200 with a JSON body (iOS re-sends a batch answered with an empty 200).
pub fn stats_reply(events: &[StatEvent]) -> Reply {
    reply(200, &json!({"status": "ok", "received": events.len()}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capacitor::state::{Bundle, ChannelState};

    const ORIGIN: &str = "https://ota.example.com";
    const SHA: &str = "61e095092b0a2831f1f9ec89860d450087f0fdacb18374b66c5d564b52776813";

    /// Android 8.51.23 (org.json: this key order, `/` escaped as `\/`).
    const BODY_V8_ANDROID: &str = r#"{"platform":"android","device_id":"8f3c6a52-1f4e-4a51-9c3e-2b7f0d6a9e11","app_id":"com.example.capota","custom_id":"","version_build":"1.0","version_code":"10001","version_os":"14","version_name":"1.0.0","plugin_version":"8.51.23","is_emulator":false,"is_prod":true,"install_source":"google_play","defaultChannel":"","key_id":"MIIBIjANBgkqhkiG9w0B","extra":{"a":[1,2]},"url_seen":"https:\/\/x.example\/a"}"#;
    /// iOS 7.x (dictionary order, no install_source, no key_id).
    const BODY_V7_IOS: &str = r#"{"version_os":"17.5","is_prod":true,"defaultChannel":"","app_id":"com.example.capota","version_name":"1.0.0","device_id":"8f3c6a52-1f4e-4a51-9c3e-2b7f0d6a9e11","platform":"ios","plugin_version":"7.51.21","version_code":"7","is_emulator":false,"custom_id":"","version_build":"1.0"}"#;
    /// 6.x before the native-version builtin report.
    const BODY_V6: &str = r#"{"platform":"android","device_id":"8f3c6a52-1f4e-4a51-9c3e-2b7f0d6a9e11","app_id":"com.example.capota","custom_id":"","version_build":"1.0","version_code":"3","version_os":"13","version_name":"builtin","plugin_version":"6.39.0","is_emulator":true,"is_prod":false,"install_source":"","defaultChannel":"beta"}"#;
    /// 5.x: numbers where strings belong are read as text.
    const BODY_V5: &str = r#"{"platform":"android","device_id":"8f3c6a52-1f4e-4a51-9c3e-2b7f0d6a9e11","app_id":"com.example.capota","custom_id":"","version_build":"1.0","version_code":3,"version_os":"12","version_name":"1.0.0","plugin_version":"5.43.3","is_emulator":false,"is_prod":true,"defaultChannel":""}"#;

    fn state() -> AppState {
        let b = |v: &str, sha: &str, min: Option<&str>| Bundle {
            version: v.into(),
            checksum: sha.into(),
            size: 1,
            min_native_version: min.map(str::to_string),
            published_at: "2026-01-01T00:00:00.000Z".into(),
        };
        let mut s = AppState::default();
        s.channels.insert(
            "production".into(),
            ChannelState {
                id: 1,
                current: Some("1.0.1".into()),
                versions: vec![b("1.0.0", "aa", None), b("1.0.1", SHA, None)],
                ..Default::default()
            },
        );
        s.channels.insert(
            "beta".into(),
            ChannelState {
                id: 2,
                allow_self_set: true,
                current: Some("2.0.0".into()),
                versions: vec![b("2.0.0", "bb", Some("2.0"))],
                ..Default::default()
            },
        );
        s.channels.insert("internal".into(), ChannelState { id: 3, ..Default::default() });
        s
    }

    fn body(r: &Reply) -> Value {
        serde_json::from_slice(&r.body).unwrap()
    }

    #[test]
    fn parse_each_plugin_major_reads_the_same_fields() {
        for (raw, name, channel, plugin) in [
            (BODY_V8_ANDROID, "1.0.0", "", "8.51.23"),
            (BODY_V7_IOS, "1.0.0", "", "7.51.21"),
            (BODY_V6, "builtin", "beta", "6.39.0"),
            (BODY_V5, "1.0.0", "", "5.43.3"),
        ] {
            let d = DeviceInfo::parse_json(raw.as_bytes()).unwrap();
            assert_eq!(
                (d.version_name.as_str(), d.default_channel.as_str(), d.plugin_version.as_str()),
                (name, channel, plugin),
                "{raw}"
            );
            assert_eq!((d.app_id.as_str(), d.version_build.as_str()), ("com.example.capota", "1.0"));
        }
        assert_eq!(DeviceInfo::parse_json(BODY_V5.as_bytes()).unwrap().device_id.len(), 36);
    }

    #[test]
    fn parse_escaped_slashes_and_unicode_escapes_decode() {
        let d = DeviceInfo::parse_json(br#"{"version_name":"1.0.0\/x","defaultChannel":"\u0062eta"}"#).unwrap();
        assert_eq!((d.version_name.as_str(), d.default_channel.as_str()), ("1.0.0/x", "beta"));
    }

    #[test]
    fn parse_non_object_body_is_a_400() {
        assert_eq!(DeviceInfo::parse_json(b"[1]").unwrap_err().status, 400);
        assert_eq!(DeviceInfo::parse_json(b"{").unwrap_err().status, 400);
    }

    #[test]
    fn update_device_on_previous_version_is_offered_current_with_exact_keys() {
        let d = DeviceInfo::parse_json(BODY_V8_ANDROID.as_bytes()).unwrap();
        let r = decide_update(&state(), &d, ORIGIN, "com.example.capota");
        assert_eq!(r.status, 200);
        assert_eq!(
            body(&r),
            json!({
                "version": "1.0.1",
                "url": format!("{ORIGIN}/api/capacitor/com.example.capota/bundles/{SHA}.zip"),
                "checksum": SHA,
                "session_key": "",
            })
        );
    }

    #[test]
    fn update_device_on_current_version_gets_up_to_date_200() {
        let mut d = DeviceInfo::parse_json(BODY_V7_IOS.as_bytes()).unwrap();
        d.version_name = "1.0.1".into();
        let r = decide_update(&state(), &d, ORIGIN, "a");
        assert_eq!(r.status, 200);
        assert_eq!(
            body(&r),
            json!({"error": "no_new_version_available", "message": "No new version available", "kind": "up_to_date"})
        );
    }

    #[test]
    fn update_downgrade_is_offered_after_rollback() {
        let mut s = state();
        s.channels.get_mut("production").unwrap().current = Some("1.0.0".into());
        let mut d = DeviceInfo::parse_json(BODY_V8_ANDROID.as_bytes()).unwrap();
        d.version_name = "1.0.1".into();
        assert_eq!(body(&decide_update(&s, &d, ORIGIN, "a"))["version"], "1.0.0");
    }

    #[test]
    fn update_builtin_sends_devices_back_once() {
        let mut s = state();
        s.channels.get_mut("production").unwrap().current = Some(BUILTIN.into());
        let d = DeviceInfo::parse_json(BODY_V8_ANDROID.as_bytes()).unwrap();
        assert_eq!(body(&decide_update(&s, &d, ORIGIN, "a")), json!({"version": "builtin"}));
        for on_builtin in ["builtin", "1.0"] {
            let d = DeviceInfo { version_name: on_builtin.into(), ..d.clone() };
            assert_eq!(body(&decide_update(&s, &d, ORIGIN, "a"))["kind"], "up_to_date");
        }
    }

    #[test]
    fn update_below_min_native_version_is_blocked_not_failed() {
        let d = DeviceInfo::parse_json(BODY_V6.as_bytes()).unwrap();
        let r = decide_update(&state(), &d, ORIGIN, "a");
        assert_eq!((r.status, body(&r)["kind"].as_str()), (200, Some("blocked")));
        let d = DeviceInfo { version_build: "2.1".into(), ..d };
        assert_eq!(body(&decide_update(&state(), &d, ORIGIN, "a"))["version"], "2.0.0");
    }

    #[test]
    fn update_private_or_unknown_channel_is_blocked() {
        for ch in ["internal", "nope"] {
            let d = DeviceInfo { default_channel: ch.into(), version_name: "1.0.0".into(), ..Default::default() };
            let r = decide_update(&state(), &d, ORIGIN, "a");
            assert_eq!(body(&r)["kind"], "blocked", "{ch}");
            assert!(body(&r).get("url").is_none());
        }
    }

    #[test]
    fn update_empty_channel_answers_up_to_date() {
        for channel in ["", "production"] {
            let d = DeviceInfo { version_name: "1.0.0".into(), default_channel: channel.into(), ..Default::default() };
            assert_eq!(
                body(&decide_update(&AppState::default(), &d, ORIGIN, "a"))["kind"],
                "up_to_date",
                "{channel:?}"
            );
        }
    }

    #[test]
    fn native_version_comparison_is_numeric() {
        assert!(native_at_least("1.10", "1.9"));
        assert!(native_at_least("2", "2.0.0"));
        assert!(!native_at_least("1.9.9", "2.0"));
        assert!(!native_at_least("abc", "1.0"));
        assert!(native_at_least("2.0.0-rc.1", "2.0"));
    }

    #[test]
    fn compat_check_answers_version_url_checksum_or_empty() {
        let d = DeviceInfo { version_build: "1.0.0".into(), ..Default::default() };
        let v = body(&decide_compat(&state(), &d, ORIGIN, "a"));
        assert_eq!(v.as_object().unwrap().keys().collect::<Vec<_>>(), ["checksum", "url", "version"]);
        let d = DeviceInfo { version_name: "1.0.1".into(), ..Default::default() };
        assert_eq!(body(&decide_compat(&state(), &d, ORIGIN, "a")), json!({}));
    }

    #[test]
    fn channel_self_verbs() {
        let s = state();
        let set = |c: &str| channel_set(&s, &DeviceInfo { channel: c.into(), ..Default::default() });
        assert_eq!((set("beta").status, body(&set("beta"))["status"].as_str()), (200, Some("ok")));
        assert_eq!(body(&set("internal"))["error"], "channel_self_set_not_allowed");
        assert_eq!(set("internal").status, 400);
        assert_eq!(body(&set("nope"))["error"], "channel_not_found");
        let get = |c: &str| body(&channel_get(&s, &DeviceInfo { default_channel: c.into(), ..Default::default() }));
        assert_eq!(get("beta"), json!({"channel": "beta", "status": "override", "allowSet": true}));
        assert_eq!(get(""), json!({"channel": "production", "status": "default", "allowSet": true}));
        assert_eq!(get("internal")["status"], "default");
        assert_eq!(
            body(&channel_list(&s)),
            json!([{"id": 2, "name": "beta", "public": false, "allow_self_set": true}])
        );
        assert_eq!(body(&channel_unset()), json!({"status": "ok"}));
    }

    #[test]
    fn stats_array_and_object_are_accepted_and_unknown_actions_kept_as_other() {
        let one = br#"{"device_id":"d","version_name":"1.0.1","action":"set","timestamp":1}"#;
        let events = parse_stats(one).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind(), StatKind::Launched);
        let batch = br#"[{"action":"update_fail","version_name":"1.0.1"},{"action":"brand_new_action"},7,{"action":"app_crash"}]"#;
        let kinds: Vec<StatKind> = parse_stats(batch).unwrap().iter().map(StatEvent::kind).collect();
        assert_eq!(kinds, [StatKind::Failed, StatKind::Other, StatKind::Failed]);
        assert_eq!(parse_stats(b"\"x\"").unwrap_err().status, 400);
        let r = stats_reply(&events);
        assert_eq!((r.status, body(&r)["status"].as_str()), (200, Some("ok")));
    }
}
