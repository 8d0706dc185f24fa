use super::*;
use crate::check::{self, decide, ManifestRequest, Outcome};
use crate::deploy::testing;
use crate::deploy::writer::{apply, WriteOp, WriteOutcome};
use crate::storage::store::MemoryStore;

const V1: [(&[u8], &str); 2] = [(b"bundle-1", "bundle"), (b"shared", "png")];
const V2: [(&[u8], &str); 2] = [(b"bundle-2", "bundle"), (b"shared", "png")];

fn run(store: &MemoryStore, op: WriteOp, now: u64) -> Result<WriteOutcome, ApiError> {
    pollster::block_on(apply(store, op, &testing::ctx(now)))
}

fn commit(store: &MemoryStore, t: &Target, files: &[(&[u8], &str)], created: u64, pct: Option<u8>) -> CommitResponse {
    let mut request = testing::commit_request(testing::manifest(t, files, created, "production"), "production");
    request.rollout_percentage = pct;
    match run(store, WriteOp::Commit { target: t.clone(), request }, created) {
        Ok(WriteOutcome::Committed(c)) => c,
        other => panic!("{other:?}"),
    }
}

fn change(store: &MemoryStore, t: &Target, request: RolloutRequest, now: u64) -> Result<RolloutOutcome, ApiError> {
    match run(store, WriteOp::Rollout { target: t.clone(), request }, now)? {
        WriteOutcome::RolledOut(o) => Ok(*o),
        other => panic!("{other:?}"),
    }
}

fn halt_op(store: &MemoryStore, t: &Target, update_id: &str, now: u64) -> HaltOutcome {
    let op = WriteOp::Halt {
        target: t.clone(),
        channel: "production".into(),
        update_id: update_id.into(),
        reason: "crash rate".into(),
    };
    match run(store, op, now) {
        Ok(WriteOutcome::Halted(h)) => *h,
        other => panic!("{other:?}"),
    }
}

fn pointer(store: &MemoryStore, t: &Target) -> UpdateRecord {
    pollster::block_on(service::current(store, t, "production")).unwrap().unwrap()
}

fn device(t: &Target, client: Option<&str>, current: Option<&str>) -> ManifestRequest {
    let mut h = vec![
        ("expo-platform".to_string(), t.platform.to_string()),
        ("expo-runtime-version".to_string(), t.runtime_version.to_string()),
        ("expo-protocol-version".to_string(), "1".to_string()),
    ];
    if let Some(c) = client {
        h.push(("eas-client-id".into(), c.into()));
    }
    if let Some(c) = current {
        h.push(("expo-current-update-id".into(), c.into()));
    }
    check::parse_request(&format!("slug={}", t.slug), &|n| h.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()))
        .unwrap()
}

fn client(i: u32) -> String {
    id::uuid_v4(hash::sha256(&i.to_be_bytes())[..16].try_into().unwrap())
}

fn served_id(o: &Outcome<'_>) -> Option<String> {
    match o {
        Outcome::Serve(r) => Some(r.id.clone()),
        _ => None,
    }
}

fn setup() -> (MemoryStore, Target) {
    let store = MemoryStore::new();
    let t = testing::target("demo-app");
    testing::upload(&store, &t, &V1);
    testing::upload(&store, &t, &V2);
    (store, t)
}

#[test]
fn rollout_devices_split_by_bucket_and_growth_keeps_devices() {
    let (store, t) = setup();
    let v1 = commit(&store, &t, &V1, 1_000, None);
    let v2 = commit(&store, &t, &V2, 2_000, Some(10));
    let p = pointer(&store, &t);
    assert_eq!(p.id, v2.id);
    let r = p.rollout.as_deref().expect("rollout in the pointer");
    assert_eq!((r.percentage, r.control.as_ref().map(|c| c.id.as_str())), (10, Some(v1.id.as_str())));
    assert!(pollster::block_on(get_record(&store, &t, &v2.id)).unwrap().rollout.is_none(), "record stays plain");

    let at10: Vec<bool> = (0..2_000)
        .map(|i| {
            let d = device(&t, Some(&client(i)), None);
            let got = served_id(&decide(&d, Some(&p))).unwrap();
            assert!(got == v1.id || got == v2.id);
            got == v2.id
        })
        .collect();
    let frac = at10.iter().filter(|b| **b).count() as f64 / 2_000.0;
    assert!((frac - 0.10).abs() < 0.03, "{frac}");
    // Outside and already on the control: no update. No client id: the control.
    let outside = (0..2_000).find(|i| !at10[*i as usize]).unwrap();
    assert_eq!(decide(&device(&t, Some(&client(outside)), Some(&v1.id)), Some(&p)), Outcome::NoUpdate);
    assert_eq!(served_id(&decide(&device(&t, None, None), Some(&p))), Some(v1.id.clone()));
    // Uppercase ids (iOS) bucket as their lowercase form.
    for i in 0..200 {
        let (lower, upper) = (client(i), client(i).to_uppercase());
        assert_eq!(
            decide(&device(&t, Some(&lower), None), Some(&p)),
            decide(&device(&t, Some(&upper), None), Some(&p))
        );
    }

    let moved = change(&store, &t, RolloutRequest { percentage: Some(50), ..Default::default() }, 3_000).unwrap();
    assert!(matches!(moved, RolloutOutcome::Moved(RolloutState { percentage: 50, .. })));
    let p = pointer(&store, &t);
    let mut at50 = 0;
    for i in 0..2_000 {
        let got = served_id(&decide(&device(&t, Some(&client(i)), None), Some(&p))).unwrap();
        assert!(!at10[i as usize] || got == v2.id, "device {i} lost the update when the rollout grew");
        at50 += usize::from(got == v2.id);
    }
    assert!((at50 as f64 / 2_000.0 - 0.5).abs() < 0.04, "{at50}");

    let shrink = change(&store, &t, RolloutRequest { percentage: Some(20), ..Default::default() }, 4_000);
    assert_eq!(shrink.unwrap_err().status, 422);
    assert_eq!(pointer(&store, &t).rollout.unwrap().percentage, 50, "refused change wrote nothing");
    let done = change(&store, &t, RolloutRequest { percentage: Some(100), ..Default::default() }, 5_000).unwrap();
    assert!(matches!(done, RolloutOutcome::Moved(RolloutState { percentage: 100, .. })));
    let p = pointer(&store, &t);
    assert!(p.rollout.is_none());
    assert_eq!(served_id(&decide(&device(&t, None, None), Some(&p))), Some(v2.id));
    let again = change(&store, &t, RolloutRequest { percentage: Some(60), ..Default::default() }, 6_000);
    assert_eq!(again.unwrap_err().status, 422, "no rollout left to move");
}

#[test]
fn rollout_percentage_out_of_range_refused() {
    let (store, t) = setup();
    let mut request = testing::commit_request(testing::manifest(&t, &V1, 1_000, "production"), "production");
    request.rollout_percentage = Some(0);
    assert_eq!(run(&store, WriteOp::Commit { target: t.clone(), request }, 1_000).unwrap_err().status, 400);
    assert!(pollster::block_on(service::current(&store, &t, "production")).unwrap().is_none());
    commit(&store, &t, &V1, 1_000, Some(100));
    assert!(pointer(&store, &t).rollout.is_none(), "100 % is a plain publish");
    let both = RolloutRequest { percentage: Some(50), halt: true, ..Default::default() };
    assert_eq!(change(&store, &t, both, 2_000).unwrap_err().status, 400);
}

#[test]
fn halt_rollout_serves_a_newer_republish_of_the_control_and_is_idempotent() {
    let (store, t) = setup();
    let v1 = commit(&store, &t, &V1, 1_000, None);
    let v2 = commit(&store, &t, &V2, 2_000, Some(10));
    let h = halt_op(&store, &t, &v2.id, 3_000);
    assert_eq!(h.result, HaltResult::Halted);
    let revert = h.revert.clone().unwrap();
    assert_eq!(revert.republished_from.as_deref(), Some(v1.id.as_str()));
    assert!(revert.created_at.millis() > v2.created_at.millis());
    let p = pointer(&store, &t);
    assert_eq!(p.id, revert.id);
    assert!(p.rollout.is_none());
    let halted = p.halted.as_deref().unwrap();
    assert_eq!(
        (halted.update_id.as_str(), halted.control_update_id.as_deref()),
        (v2.id.as_str(), Some(v1.id.as_str()))
    );
    // Devices on the bad update get the revert; devices on the control stay; fresh devices get it.
    assert_eq!(served_id(&decide(&device(&t, Some(&client(1)), Some(&v2.id)), Some(&p))), Some(revert.id.clone()));
    assert_eq!(decide(&device(&t, Some(&client(1)), Some(&v1.id)), Some(&p)), Outcome::NoUpdate);
    assert_eq!(served_id(&decide(&device(&t, None, None), Some(&p))), Some(revert.id.clone()));
    let m: crate::protocol::manifest::Manifest = serde_json::from_str(&p.body).unwrap();
    let m1: crate::protocol::manifest::Manifest =
        serde_json::from_str(&pollster::block_on(get_record(&store, &t, &v1.id)).unwrap().body).unwrap();
    assert_eq!((m.launch_asset.hash, m.assets.len()), (m1.launch_asset.hash, m1.assets.len()), "same content as v1");

    let keys = store.keys();
    assert_eq!(halt_op(&store, &t, &v2.id, 4_000).result, HaltResult::AlreadyHalted);
    assert_eq!(halt_op(&store, &t, &v1.id, 4_000).result, HaltResult::NotServing);
    assert_eq!(store.keys(), keys, "no-op halts write nothing");
    let state = pollster::block_on(channel_state(&store, &t, "production")).unwrap();
    assert_eq!(state.serving.as_deref(), Some(revert.id.as_str()));
    assert_eq!(state.halted.unwrap().reason, "crash rate");
}

#[test]
fn halt_first_update_rolls_back_to_embedded_and_resume_serves_it_again() {
    let (store, t) = setup();
    let v1 = commit(&store, &t, &V1, 1_000, None);
    let h = halt_op(&store, &t, &v1.id, 2_000);
    assert_eq!(h.revert.as_ref().unwrap().kind, RecordKind::RollBackToEmbedded);
    let p = pointer(&store, &t);
    assert!(p.body.contains("rollBackToEmbedded") && p.body.contains("1970-01-01T00:00:02.000Z"));
    let revert = change(&store, &t, RolloutRequest { revert: true, ..Default::default() }, 3_000);
    assert_eq!(revert.unwrap_err().status, 422, "revert needs a rollout");
    let resumed = change(&store, &t, RolloutRequest { resume: true, ..Default::default() }, 3_000).unwrap();
    let RolloutOutcome::Resumed(ReleaseResponse::Installed(c)) = resumed else { panic!("{resumed:?}") };
    assert_eq!(c.republished_from.as_deref(), Some(v1.id.as_str()));
    let p = pointer(&store, &t);
    assert!(p.halted.is_none() && p.kind == RecordKind::Update);
    let again = change(&store, &t, RolloutRequest { resume: true, ..Default::default() }, 4_000);
    assert_eq!(again.unwrap_err().status, 422, "nothing halted any more");
}

#[test]
fn halt_stale_expectation_on_a_newer_publish_changes_nothing() {
    let (store, t) = setup();
    let v1 = commit(&store, &t, &V1, 1_000, None);
    let v2 = commit(&store, &t, &V2, 2_000, None);
    let keys = store.keys();
    // The rule decided on v1 from a listing; v2 landed since: the writer re-checks.
    assert_eq!(halt_op(&store, &t, &v1.id, 3_000).result, HaltResult::NotServing);
    assert_eq!(store.keys(), keys);
    // Halting the plain latest update goes back to what was served before it.
    let h = halt_op(&store, &t, &v2.id, 3_000);
    assert_eq!(h.revert.unwrap().republished_from.as_deref(), Some(v1.id.as_str()));
}

#[test]
fn presigned_revert_is_checked_at_commit_and_served_by_the_halt() {
    let (store, t) = setup();
    let ctx = testing::ctx(2_000);
    let v1 = commit(&store, &t, &V1, 1_000, None);
    let mut request = testing::commit_request(testing::manifest(&t, &V2, 2_000, "production"), "production");
    request.rollout_percentage = Some(10);
    let to_sign = pollster::block_on(revert_to_sign(&store, &t, &request, &ctx)).unwrap();
    assert_eq!(to_sign.republished_from.as_deref(), Some(v1.id.as_str()));
    assert!(to_sign.body.contains("\"createdAt\":\"1970-01-01T00:00:02.001Z\""), "{}", to_sign.body);
    // A body the server would not build is refused, and nothing is published.
    let mut forged = request.clone();
    forged.revert_body = Some(to_sign.body.replace("bundle", "bundlx"));
    forged.revert_signature = Some("c2ln".into());
    let err = run(&store, WriteOp::Commit { target: t.clone(), request: forged }, 2_000).unwrap_err();
    assert_eq!(err.status, 409);
    assert_eq!(pointer(&store, &t).id, v1.id);
    let mut no_sig = request.clone();
    no_sig.revert_body = Some(to_sign.body.clone());
    assert_eq!(run(&store, WriteOp::Commit { target: t.clone(), request: no_sig }, 2_000).unwrap_err().status, 400);

    request.revert_body = Some(to_sign.body.clone());
    request.revert_signature = Some("c2ln".into());
    request.key_id = Some("main".into());
    let v2 = match run(&store, WriteOp::Commit { target: t.clone(), request }, 2_000) {
        Ok(WriteOutcome::Committed(c)) => c,
        other => panic!("{other:?}"),
    };
    assert!(pointer(&store, &t).revert.is_none(), "the pointer does not carry the revert");
    let h = halt_op(&store, &t, &v2.id, 9_000);
    let p = pointer(&store, &t);
    assert_eq!(p.id, h.revert.unwrap().id);
    assert_eq!((p.body.as_str(), p.signature.as_deref()), (to_sign.body.as_str(), Some("c2ln")));
    assert_eq!(p.created_at.millis(), 2_001);
    // Resume, then halt again: the pre-signed revert is used up, a fresh one is built.
    change(&store, &t, RolloutRequest { resume: true, ..Default::default() }, 10_000).unwrap();
    let resumed = pointer(&store, &t);
    let h2 = halt_op(&store, &t, &resumed.id, 11_000);
    let p = pointer(&store, &t);
    assert_eq!((h2.result, p.signature.as_deref()), (HaltResult::Halted, None));
    assert!(p.created_at.millis() > resumed.created_at.millis());
}

/// Property: for random devices against random channel states, explain's answer is the check's.
#[test]
fn explain_random_requests_agree_with_the_check() {
    let (store, t) = setup();
    let v1 = commit(&store, &t, &V1, 1_000, None);
    let v2 = commit(&store, &t, &V2, 2_000, Some(37));
    let rolling = pointer(&store, &t);
    halt_op(&store, &t, &v2.id, 3_000);
    let halted = pointer(&store, &t);
    let ids = [None, Some(v1.id.clone()), Some(v2.id.clone()), Some(halted.id.clone()), Some(client(9))];
    let mut seed = 7u32;
    for i in 0..3_000u32 {
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let pick = |n: u32| (seed >> (n * 3)) as usize % ids.len();
        let p = [None, Some(&rolling), Some(&halted)][(seed >> 20) as usize % 3];
        let client_id = (seed % 4 != 0).then(|| client(i));
        let mut q = format!("slug={}&platform=ios&runtimeVersion={}", t.slug, t.runtime_version);
        if let Some(c) = &client_id {
            q += &format!("&clientId={}", if i % 2 == 0 { c.to_uppercase() } else { c.clone() });
        }
        if let Some(c) = &ids[pick(1)] {
            q += &format!("&currentUpdateId={c}");
        }
        if let Some(e) = &ids[pick(2)] {
            q += &format!("&embeddedUpdateId={e}");
        }
        let req = check::explain::request_from_query(&q).unwrap();
        let e = check::explain::explain(&req, client_id.is_some(), p);
        let d = device_like(&req);
        let outcome = decide(&d, p);
        let want = match &outcome {
            Outcome::Serve(r) if r.kind == RecordKind::RollBackToEmbedded => "rollBackToEmbedded",
            Outcome::Serve(_) => "update",
            Outcome::NoUpdate => "noUpdate",
            Outcome::NothingForV0 => "notFound",
        };
        assert_eq!((e.answer.as_str(), e.update_id.clone()), (want, served_id(&outcome)), "{q}");
    }
}

/// The same device as a check would parse it from headers.
fn device_like(r: &ManifestRequest) -> ManifestRequest {
    let t = &r.target;
    let mut d = device(t, r.client_id.as_deref(), r.current_update_id.as_deref());
    d.embedded_update_id = r.embedded_update_id.clone();
    d
}

#[test]
fn delete_rollout_control_refused_until_the_rollout_ends() {
    let (store, t) = setup();
    let v1 = commit(&store, &t, &V1, 1_000, None);
    commit(&store, &t, &V2, 2_000, Some(10));
    let keys = store.keys();
    let del = run(&store, WriteOp::DeleteUpdate { target: t.clone(), id: v1.id.clone() }, 3_000);
    assert_eq!(del.unwrap_err().status, 409);
    assert_eq!(store.keys(), keys, "refused delete changed storage");
    change(&store, &t, RolloutRequest { percentage: Some(100), ..Default::default() }, 4_000).unwrap();
    assert!(run(&store, WriteOp::DeleteUpdate { target: t.clone(), id: v1.id }, 5_000).is_ok());
}
