//! Access control through the HTTP API on a real service and database: the whole permission
//! matrix with its audit trail, signed links, sessions with CSRF, rate limits and the audit
//! chain's verification.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use ari_recorder::access::Scope;
use ari_recorder::db::Database;
use common::{
    database_url, put_wav, send, start_service_with, start_sim, user_token,
    wait_ready as wait_indexed, Answer, Db, TestService, TestSim,
};

const ALL_SCOPES: [Scope; 6] = Scope::ALL;

/// Call metadata as the flows write it, so the indexer gives the file its tenant and project.
async fn call_metadata(
    db: &Database,
    name: &str,
    tenant: &str,
    project: &str,
    private: bool,
    participants: &str,
) {
    sqlx::query(
        "INSERT INTO call_recordings (recording_name, call_id, tenant, project, private, participants, node_type, \
         direction, caller_number, callee, format, state, started_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, 'transfer', 'inbound', '5550100', 'PJSIP/201', 'wav', 'done', $7)",
    )
    .bind(name)
    .bind(format!("call-{name}"))
    .bind(tenant)
    .bind(project)
    .bind(i64::from(private))
    .bind(participants)
    .bind(1_790_000_000_000i64)
    .execute(&db.pool)
    .await
    .expect("metadata");
}

async fn audit_head(db: &Database) -> i64 {
    let (seq,): (i64,) = sqlx::query_as("SELECT seq FROM audit_head WHERE id = 1")
        .fetch_one(&db.pool)
        .await
        .expect("head");
    seq
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Admin,
    Manager,
    Staff,
}

#[derive(Clone, Debug)]
struct TenantCase {
    name: String,
    staff_playback: bool,
    download: bool,
}

#[derive(Clone, Debug)]
struct RecordingCase {
    id: i64,
    call_id: String,
    tenant: String,
    project: &'static str,
    consent: &'static str,
    compliance: &'static str,
    private: bool,
    /// Extension of the one user on the call.
    participant: String,
}

struct UserCase {
    role: Role,
    tenant: TenantCase,
    extension: String,
    token: String,
}

#[derive(Clone, Copy, Debug)]
enum Act {
    Read,
    Play,
    Download,
    Delete,
    /// The same through the recording's call (`/api/calls/{call_id}...`): one segment here.
    CallRead,
    CallPlay,
    CallDownload,
}

impl Act {
    /// What the call act asks of its segments.
    fn on_recording(self) -> Act {
        match self {
            Act::CallRead => Act::Read,
            Act::CallPlay => Act::Play,
            Act::CallDownload => Act::Download,
            other => other,
        }
    }

    fn is_call(self) -> bool {
        matches!(self, Act::CallRead | Act::CallPlay | Act::CallDownload)
    }
}

const ACTS: [Act; 7] = [
    Act::Read,
    Act::Play,
    Act::Download,
    Act::Delete,
    Act::CallRead,
    Act::CallPlay,
    Act::CallDownload,
];

/// The issue's rules, written out independently of the service's policy code.
fn expected(user: &UserCase, rec: &RecordingCase, act: Act) -> (u16, &'static str) {
    let act = act.on_recording();
    if rec.tenant != user.tenant.name || rec.project != "p1" {
        return (404, "not_found");
    }
    if rec.private && rec.participant != user.extension {
        return (403, "private_recording");
    }
    // Consent by conduct (a voicemail after a greeting that says it is recorded) is enough for
    // admins and managers, not for staff.
    let consented =
        rec.consent == "granted" || (rec.consent == "implied" && user.role != Role::Staff);
    let consent_and_compliance = || {
        if !consented {
            (403, "missing_consent")
        } else if rec.compliance != "permitted" {
            (403, "compliance_policy")
        } else {
            (0, "")
        }
    };
    match act {
        Act::Read => (200, ""),
        Act::Delete if user.role == Role::Admin => (202, ""),
        Act::Delete => (403, "role_restriction"),
        Act::Play => {
            if user.role == Role::Staff && !user.tenant.staff_playback {
                return (403, "role_restriction");
            }
            match consent_and_compliance() {
                (0, _) => (206, ""),
                refused => refused,
            }
        }
        Act::Download => {
            if user.role == Role::Staff {
                return (403, "role_restriction");
            }
            if !user.tenant.download {
                return (403, "missing_entitlement");
            }
            match consent_and_compliance() {
                (0, _) => (200, ""),
                refused => refused,
            }
        }
        Act::CallRead | Act::CallPlay | Act::CallDownload => unreachable!("mapped above"),
    }
}

fn request(
    client: &reqwest::Client,
    base: &str,
    (id, call): (i64, &str),
    act: Act,
) -> reqwest::RequestBuilder {
    match act {
        Act::CallRead => client.get(format!("{base}/api/calls/{call}")),
        Act::CallPlay => client
            .get(format!("{base}/api/calls/{call}/audio"))
            .header("range", "bytes=0-1"),
        Act::CallDownload => client.get(format!("{base}/api/calls/{call}/download")),
        Act::Read => client.get(format!("{base}/api/recordings/{id}")),
        Act::Play => client
            .get(format!("{base}/api/recordings/{id}/audio"))
            .header("range", "bytes=0-1"),
        Act::Download => client.get(format!("{base}/api/recordings/{id}/download")),
        Act::Delete => client.delete(format!("{base}/api/recordings/{id}")),
    }
}

/// Every role x consent x compliance x entitlement x tenant/project scope x private flag x
/// action, through the API: status and reason as the rules say, out of scope identical to a
/// recording that does not exist, one audit event per attempt, lists showing exactly what may
/// be seen.
async fn the_permission_matrix_holds_through_the_api(db: Db) {
    let t = start_sim(0.0).await;
    let url = database_url(&t, db).await;
    let database = Database::open(&url).await.expect("database");
    let tenants: Vec<TenantCase> = [(false, false), (false, true), (true, false), (true, true)]
        .into_iter()
        .map(|(staff_playback, download)| TenantCase {
            name: format!("t-sp{}-dl{}", u8::from(staff_playback), u8::from(download)),
            staff_playback,
            download,
        })
        .collect();
    let mut planned = Vec::new();
    for tenant in &tenants {
        for project in ["p1", "p2"] {
            for consent in ["granted", "denied", "unknown", "implied"] {
                for compliance in ["permitted", "denied", "missing_evidence", "policy_blocked"] {
                    for private in [false, true] {
                        let name =
                            format!("{}-{project}-{consent}-{compliance}-{private}", tenant.name);
                        let participant = format!("PJSIP/{}-manager", tenant.name);
                        put_wav(&t, &name);
                        call_metadata(
                            &database,
                            &name,
                            &tenant.name,
                            project,
                            private,
                            &participant,
                        )
                        .await;
                        planned.push((
                            name,
                            tenant.name.clone(),
                            project,
                            consent,
                            compliance,
                            private,
                            participant,
                        ));
                    }
                }
            }
        }
    }
    let s = start_service_with(&t, &[], &url, &[]).await;
    let db_handle = &s.svc.db;
    wait_indexed(db_handle, planned.len() as i64).await;
    let mut recordings = Vec::new();
    for (name, tenant, project, consent, compliance, private, participant) in planned {
        let (id,): (i64,) = sqlx::query_as(
            "UPDATE recordings SET consent = $1, compliance = $2 WHERE name = $3 RETURNING id",
        )
        .bind(consent)
        .bind(compliance)
        .bind(&name)
        .fetch_one(&db_handle.pool)
        .await
        .expect("set status");
        recordings.push(RecordingCase {
            id,
            call_id: format!("call-{name}"),
            tenant,
            project,
            consent,
            compliance,
            private,
            participant,
        });
    }
    let mut users = Vec::new();
    for tenant in &tenants {
        let mut conn = db_handle.pool.acquire().await.expect("conn");
        ari_recorder::access::accounts::set_tenant_settings(
            &mut conn,
            &tenant.name,
            ari_recorder::access::policy::TenantSettings {
                staff_playback: tenant.staff_playback,
                download_entitlement: tenant.download,
            },
        )
        .await
        .expect("tenant");
        drop(conn);
        for (role, role_name) in [
            (Role::Admin, "admin"),
            (Role::Manager, "manager"),
            (Role::Staff, "staff"),
        ] {
            let username = format!("{}-{role_name}", tenant.name);
            let extension = format!("PJSIP/{username}");
            let token = user_token(
                db_handle,
                &username,
                role_name,
                &tenant.name,
                &["p1"],
                Some(&extension),
                &ALL_SCOPES,
            )
            .await;
            users.push(UserCase {
                role,
                tenant: tenant.clone(),
                extension,
                token,
            });
        }
    }

    let client_of = |token: &str| common::bearer(token);
    let missing_id = 999_999_999;
    let mut attempts = 0;
    for user in &users {
        let client = client_of(&user.token);
        // Lists show exactly the recordings in scope and not private to others.
        let before = audit_head(db_handle).await;
        let page = send(client.get(format!("{}/api/recordings?limit=200", s.base))).await;
        assert_eq!(page.status, 200);
        assert_eq!(
            audit_head(db_handle).await,
            before + 1,
            "a list is one audit event"
        );
        let listed: BTreeSet<i64> = page.json()["recordings"]
            .as_array()
            .expect("list")
            .iter()
            .filter_map(|r| r["id"].as_i64())
            .collect();
        let visible: BTreeSet<i64> = recordings
            .iter()
            .filter(|r| expected(user, r, Act::Read).0 == 200)
            .map(|r| r.id)
            .collect();
        assert_eq!(listed, visible, "{:?} of {}", user.role, user.tenant.name);
        // The CSV export holds the same rows: what the user may see, nothing more.
        let exported = send(client.get(format!("{}/api/recordings/export.csv", s.base))).await;
        assert_eq!(exported.status, 200);
        let exported: BTreeSet<i64> = csv::Reader::from_reader(exported.body.as_slice())
            .records()
            .filter_map(|r| r.ok()?.get(0)?.parse().ok())
            .collect();
        assert_eq!(
            exported, visible,
            "export: {:?} of {}",
            user.role, user.tenant.name
        );
        // A ZIP of one recording answers as its download does.
        for rec in &recordings {
            let zip = send(client.get(format!(
                "{}/api/recordings/export.zip?ids={}",
                s.base, rec.id
            )))
            .await;
            assert_eq!(
                zip.status,
                expected(user, rec, Act::Download).0,
                "zip of {} by {:?} of {}: {:?}",
                rec.id,
                user.role,
                user.tenant.name,
                zip.json()
            );
            // Audited as the download it is, allowed or refused.
            attempts += 1;
        }

        let mut not_found = HashMap::new();
        for act in ACTS {
            let answer = send(request(&client, &s.base, (missing_id, "call-missing"), act)).await;
            assert_eq!(answer.status, 404);
            not_found.insert(format!("{act:?}"), answer);
        }
        for rec in &recordings {
            for act in ACTS {
                let before = audit_head(db_handle).await;
                let answer = send(request(&client, &s.base, (rec.id, &rec.call_id), act)).await;
                // A call out of scope names no recording in its audit event.
                if !act.is_call() || expected(user, rec, act).0 != 404 {
                    attempts += 1;
                }
                let (status, reason) = expected(user, rec, act);
                let context = format!(
                    "{:?} of {} doing {act:?} on {rec:?}",
                    user.role, user.tenant.name
                );
                assert_eq!(
                    answer.status,
                    status,
                    "{context}: {}",
                    String::from_utf8_lossy(&answer.body)
                );
                if !reason.is_empty() {
                    assert_eq!(answer.error(), reason, "{context}");
                }
                if status == 404 {
                    let missing = &not_found[&format!("{act:?}")];
                    assert_eq!(
                        answer.body, missing.body,
                        "{context}: out of scope must read as not found"
                    );
                    assert_eq!(
                        answer.headers.get("content-type"),
                        missing.headers.get("content-type"),
                        "{context}"
                    );
                }
                if let Act::Read | Act::CallRead = act {
                    if status == 200 {
                        // The recording's JSON tells this user what they may do, and why not.
                        let access = &answer.json()["access"];
                        for (key, other) in [("play", Act::Play), ("download", Act::Download)] {
                            let (s, r) = expected(user, rec, other);
                            assert_eq!(
                                access[key]["allowed"].as_bool(),
                                Some(s < 300),
                                "{context}: {key}"
                            );
                            if s >= 300 {
                                assert_eq!(
                                    access[key]["reason"].as_str(),
                                    Some(r),
                                    "{context}: {key}"
                                );
                            }
                        }
                    }
                }
                assert_eq!(
                    audit_head(db_handle).await,
                    before + 1,
                    "{context}: exactly one audit event"
                );
            }
        }
    }
    let (outcomes,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM audit_events WHERE recording_id IS NOT NULL AND recording_id <> $1",
    )
    .bind(missing_id)
    .fetch_one(&db_handle.pool)
    .await
    .expect("count");
    assert_eq!(
        outcomes, attempts,
        "every attempt, allowed or denied, left its event"
    );
    let report = ari_recorder::access::audit::verify(db_handle, None)
        .await
        .expect("verify");
    assert_eq!(report.problem, None);
    let _ = s.stop.send(true);
}

/// A service with one recording of the default tenant that may be played and downloaded.
async fn one_recording(t: &TestSim, url: &str, settings: &[(&str, &str)]) -> (TestService, i64) {
    common::one_playable_recording(t, url, settings, "default").await
}

async fn link(
    s: &TestService,
    client: &reqwest::Client,
    id: i64,
    kind: &str,
    query: &str,
) -> Answer {
    send(client.post(format!("{}/api/recordings/{id}/{kind}{query}", s.base))).await
}

const KEY_A: &str = "a:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const KEY_B: &str = "b:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

async fn signed_links_expire_are_capped_single_use_tamper_proof_and_rotate(db: Db) {
    let steps =
        common::Steps::new("signed_links_expire_are_capped_single_use_tamper_proof_and_rotate");
    let t = start_sim(0.0).await;
    let url = database_url(&t, db).await;
    let (s, id) = one_recording(
        &t,
        &url,
        &[("LINK_SIGNING_KEYS", KEY_A), ("LINK_MAX_SECONDS", "600")],
    )
    .await;
    let admin = common::authed();
    let anonymous = reqwest::Client::new();

    steps.step("Created links carry their expiry; the cap applies; nonsense is refused.");
    let made = link(&s, &admin, id, "download-url", "?expires_in=100000").await;
    assert_eq!(made.status, 201, "{}", String::from_utf8_lossy(&made.body));
    assert_eq!(made.json()["expires_in"], 600, "capped at LINK_MAX_SECONDS");
    assert_eq!(made.json()["single_use"], true);
    let default = link(&s, &admin, id, "download-url", "").await;
    assert_eq!(
        default.json()["expires_in"],
        600,
        "the default (3600) is capped too"
    );
    for bad in ["?expires_in=0", "?expires_in=-5", "?expires_in=soon"] {
        let answer = link(&s, &admin, id, "download-url", bad).await;
        assert_eq!(
            (answer.status, answer.error().as_str()),
            (400, "bad_request"),
            "{bad}"
        );
    }

    steps.step("A download link works once, without any credentials, as an attachment.");
    let url_of = |a: &Answer| format!("{}{}", s.base, a.json()["url"].as_str().expect("url"));
    let first = send(anonymous.get(url_of(&made))).await;
    assert_eq!(first.status, 200);
    assert!(first.headers["content-disposition"]
        .to_str()
        .expect("ascii")
        .starts_with("attachment"));
    assert_eq!(first.headers["x-content-type-options"], "nosniff");
    assert_eq!(&first.body[..4], b"RIFF");
    let again = send(anonymous.get(url_of(&made))).await;
    assert_eq!((again.status, again.error().as_str()), (403, "link_used"));

    steps.step("Each signed field, changed, breaks the signature.");
    let fresh = url_of(&link(&s, &admin, id, "download-url", "?expires_in=300").await);
    let query = fresh.split_once('?').expect("query").1.to_string();
    let field = |name: &str| {
        query
            .split('&')
            .find_map(|p| p.strip_prefix(&format!("{name}=")))
            .expect("field")
            .to_string()
    };
    let exp: i64 = field("exp").parse().expect("exp");
    let tampered = [
        (
            "recording",
            format!("{}/api/recordings/{}/download?{query}", s.base, id + 1),
        ),
        (
            "action",
            format!("{}/api/recordings/{id}/audio?{query}", s.base),
        ),
        (
            "principal",
            fresh.replace(&format!("by={}", field("by")), "by=u999"),
        ),
        (
            "expiry",
            fresh.replace(&format!("exp={exp}"), &format!("exp={}", exp + 3600)),
        ),
        (
            "nonce",
            fresh.replace(&format!("nonce={}", field("nonce")), "nonce=0000"),
        ),
        (
            "signature",
            fresh.replace(
                &format!("sig={}", field("sig")),
                &format!("sig={}", "0".repeat(64)),
            ),
        ),
    ];
    for (what, tampered_url) in tampered {
        let answer = send(anonymous.get(&tampered_url)).await;
        assert_eq!(
            (answer.status, answer.error().as_str()),
            (403, "link_tampered"),
            "{what}"
        );
    }
    steps.step("The untouched link still works: tampering spent nothing.");
    assert_eq!(send(anonymous.get(&fresh)).await.status, 200);

    steps.step("Expiry.");
    let short = url_of(&link(&s, &admin, id, "download-url", "?expires_in=1").await);
    s.svc.clock.advance(Duration::from_secs(2));
    let expired = send(anonymous.get(&short)).await;
    assert_eq!(
        (expired.status, expired.error().as_str()),
        (403, "link_expired")
    );

    steps.step(
        "Playback links are reusable (a player makes many range requests) but never download.",
    );
    let play = url_of(&link(&s, &admin, id, "play-url", "").await);
    for _ in 0..3 {
        let answer = send(anonymous.get(&play).header("range", "bytes=0-99")).await;
        assert_eq!(answer.status, 206);
        assert_eq!(answer.headers["content-disposition"], "inline");
    }

    steps.step("Rotation: B signs, A still verifies; then A is retired.");
    let old_path = link(&s, &admin, id, "play-url", "").await.json()["url"]
        .as_str()
        .expect("url")
        .to_string();
    common::stop(s).await;
    let rotated_keys = format!("{KEY_B},{KEY_A}");
    let s = start_service_with(&t, &[], &url, &[("LINK_SIGNING_KEYS", &rotated_keys)]).await;
    let admin = common::authed();
    let old_link = format!("{}{old_path}", s.base);
    assert_eq!(
        send(anonymous.get(&old_link)).await.status,
        200,
        "old key still verifies"
    );
    let new_path = link(&s, &admin, id, "play-url", "").await.json()["url"]
        .as_str()
        .expect("url")
        .to_string();
    assert!(new_path.contains("kid=b"), "{new_path}");
    common::stop(s).await;
    let s = start_service_with(&t, &[], &url, &[("LINK_SIGNING_KEYS", KEY_B)]).await;
    let retired = send(anonymous.get(format!("{}{old_path}", s.base))).await;
    assert_eq!(
        (retired.status, retired.error().as_str()),
        (403, "link_key_retired")
    );
    let new_link = format!("{}{new_path}", s.base);
    assert_eq!(send(anonymous.get(&new_link)).await.status, 200);

    steps.step("A link dies with the rights of whoever made it.");
    sqlx::query("UPDATE users SET disabled = 1 WHERE username = 'tester'")
        .execute(&s.svc.db.pool)
        .await
        .expect("disable");
    let revoked = send(anonymous.get(&new_link)).await;
    assert_eq!(
        (revoked.status, revoked.error().as_str()),
        (403, "link_revoked")
    );
    let _ = s.stop.send(true);
}

fn session_cookie(answer: &Answer) -> String {
    let set = answer.headers["set-cookie"].to_str().expect("ascii");
    for attribute in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/"] {
        assert!(set.contains(attribute), "{set} lacks {attribute}");
    }
    set.split(';').next().expect("pair").to_string()
}

async fn login(s: &TestService, username: &str, password: &str) -> Answer {
    send(
        reqwest::Client::new()
            .post(format!("{}/api/session", s.base))
            .json(&serde_json::json!({"username": username, "password": password})),
    )
    .await
}

async fn sessions_need_csrf_for_writes_and_expire(db: Db) {
    let steps = common::Steps::new("sessions_need_csrf_for_writes_and_expire");
    let t = start_sim(0.0).await;
    let url = database_url(&t, db).await;
    let (s, id) = one_recording(
        &t,
        &url,
        &[
            ("SESSION_SECONDS", "3600"),
            ("SESSION_IDLE_SECONDS", "7200"),
        ],
    )
    .await;
    let browser = reqwest::Client::new();

    let wrong = login(&s, "tester", "not-the-password").await;
    assert_eq!(
        (wrong.status, wrong.error().as_str()),
        (401, "unauthorized")
    );
    let nobody = login(&s, "nobody", "whatever-password").await;
    assert_eq!(
        nobody.body, wrong.body,
        "unknown users and wrong passwords read the same"
    );

    let signed_in = login(&s, "tester", "tester-password").await;
    assert_eq!(signed_in.status, 200);
    let cookie = session_cookie(&signed_in);
    let csrf = signed_in.json()["csrf_token"]
        .as_str()
        .expect("csrf")
        .to_string();
    let me = send(
        browser
            .get(format!("{}/api/session", s.base))
            .header("cookie", &cookie),
    )
    .await;
    assert_eq!(me.json()["user"]["username"], "tester");
    assert_eq!(me.json()["csrf_token"], csrf.as_str());

    steps.step("Reads need only the cookie; writes need the CSRF token too.");
    let read = send(
        browser
            .get(format!("{}/api/recordings/{id}", s.base))
            .header("cookie", &cookie),
    )
    .await;
    assert_eq!(read.status, 200);
    let patch = |token: Option<&str>| {
        let mut r = browser
            .patch(format!("{}/api/recordings/{id}", s.base))
            .header("cookie", &cookie)
            .json(&serde_json::json!({"compliance": "missing_evidence"}));
        if let Some(token) = token {
            r = r.header("x-csrf-token", token);
        }
        r
    };
    for forged in [None, Some("0".repeat(64).as_str()), Some(&csrf[..10])] {
        let answer = send(patch(forged)).await;
        assert_eq!(
            (answer.status, answer.error().as_str()),
            (403, "csrf"),
            "{forged:?}"
        );
    }
    let row = ari_recorder::library::recordings::by_id(&s.svc.db.pool, id)
        .await
        .expect("row")
        .expect("listed");
    assert_eq!(
        row.compliance.as_str(),
        "permitted",
        "no forged write went through"
    );
    let answer = send(patch(Some(&csrf))).await;
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    assert_eq!(answer.json()["compliance"], "missing_evidence");
    assert_eq!(
        answer.json()["access"]["play"]["reason"],
        "compliance_policy"
    );

    steps.step("Expiry: the cookie stops working when the session ends.");
    let expires_at = chrono::DateTime::parse_from_rfc3339(
        signed_in.json()["expires_at"].as_str().expect("expiry"),
    )
    .expect("rfc3339");
    let left = (expires_at.timestamp_millis() - s.svc.clock.now_ms()).max(0);
    s.svc.clock.advance(Duration::from_millis(left as u64 + 1));
    let late = send(
        browser
            .get(format!("{}/api/recordings/{id}", s.base))
            .header("cookie", &cookie),
    )
    .await;
    assert_eq!(late.status, 401);

    steps.step("Logout ends a session at once.");
    let again = login(&s, "tester", "tester-password").await;
    let cookie = session_cookie(&again);
    let csrf = again.json()["csrf_token"]
        .as_str()
        .expect("csrf")
        .to_string();
    let out = send(
        browser
            .delete(format!("{}/api/session", s.base))
            .header("cookie", &cookie)
            .header("x-csrf-token", &csrf),
    )
    .await;
    assert_eq!(out.status, 204);
    let after = send(
        browser
            .get(format!("{}/api/session", s.base))
            .header("cookie", &cookie),
    )
    .await;
    assert_eq!(after.status, 401);

    let actions: Vec<(String, String)> = sqlx::query_as("SELECT action, outcome FROM audit_events WHERE action IN ('login', 'logout', 'request', 'set_status') ORDER BY seq")
        .fetch_all(&s.svc.db.pool)
        .await
        .expect("audit");
    let seen: Vec<(&str, &str)> = actions
        .iter()
        .map(|(a, o)| (a.as_str(), o.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("login", "bad_credentials"),
            ("login", "bad_credentials"),
            ("login", "allowed"),
            ("request", "csrf"),
            ("request", "csrf"),
            ("request", "csrf"),
            ("set_status", "allowed"),
            ("login", "allowed"),
            ("logout", "allowed"),
        ]
    );
    let _ = s.stop.send(true);
}

async fn link_requests_are_rate_limited_per_principal(db: Db) {
    let t = start_sim(0.0).await;
    let url = database_url(&t, db).await;
    let (s, id) = one_recording(&t, &url, &[("GRANTS_PER_MINUTE", "3")]).await;
    let admin = common::authed();
    for _ in 0..3 {
        assert_eq!(link(&s, &admin, id, "play-url", "").await.status, 201);
    }
    let limited = link(&s, &admin, id, "download-url", "").await;
    assert_eq!(
        (limited.status, limited.error().as_str()),
        (429, "rate_limited")
    );
    let wait: u64 = limited.headers["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=21).contains(&wait), "{wait}");
    // Another token of another user has its own allowance.
    let other = user_token(
        &s.svc.db,
        "other-admin",
        "admin",
        "default",
        &[],
        None,
        &ALL_SCOPES,
    )
    .await;
    assert_eq!(
        link(&s, &common::bearer(&other), id, "play-url", "")
            .await
            .status,
        201
    );
    let (limited_events,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM audit_events WHERE action = 'link_create' AND outcome = 'rate_limited'")
        .fetch_one(&s.svc.db.pool)
        .await
        .expect("audit");
    assert_eq!(limited_events, 1);

    // Password guessing: per user name, then 429; another name from the same address goes on.
    for _ in 0..3 {
        assert_eq!(login(&s, "tester", "wrong-password").await.status, 401);
    }
    let slowed = login(&s, "tester", "wrong-password").await;
    assert_eq!(
        (slowed.status, slowed.error().as_str()),
        (429, "rate_limited")
    );
    assert!(slowed.headers.contains_key("retry-after"));
    assert_eq!(
        login(&s, "someone-else", "wrong-password").await.status,
        401
    );
    let _ = s.stop.send(true);
}

/// Tokens are limited to their scopes, admins change consent, private recordings stay with
/// their participants, and the audit log is the admin's to read.
async fn scopes_consent_changes_and_the_audit_api(db: Db) {
    let t = start_sim(0.0).await;
    let url = database_url(&t, db).await;
    let (s, id) = one_recording(&t, &url, &[]).await;
    let reader = user_token(
        &s.svc.db,
        "reader",
        "admin",
        "default",
        &[],
        None,
        &[Scope::RecordingsRead],
    )
    .await;
    let reader = common::bearer(&reader);
    assert_eq!(
        send(reader.get(format!("{}/api/recordings/{id}", s.base)))
            .await
            .status,
        200
    );
    let play = send(reader.get(format!("{}/api/recordings/{id}/audio", s.base))).await;
    assert_eq!((play.status, play.error().as_str()), (403, "missing_scope"));
    let audit = send(reader.get(format!("{}/api/audit", s.base))).await;
    assert_eq!(
        (audit.status, audit.error().as_str()),
        (403, "missing_scope")
    );

    let admin = common::authed();
    let bad = send(
        admin
            .patch(format!("{}/api/recordings/{id}", s.base))
            .json(&serde_json::json!({"consent": "maybe"})),
    )
    .await;
    assert_eq!((bad.status, bad.error().as_str()), (400, "bad_request"));
    let denied = send(
        admin
            .patch(format!("{}/api/recordings/{id}", s.base))
            .json(&serde_json::json!({"consent": "denied"})),
    )
    .await;
    assert_eq!(denied.status, 200);
    assert_eq!(
        denied.json()["access"]["play"],
        serde_json::json!({"allowed": false, "reason": "missing_consent"})
    );
    let manager = user_token(
        &s.svc.db,
        "boss",
        "manager",
        "default",
        &[],
        Some("PJSIP/209"),
        &ALL_SCOPES,
    )
    .await;
    let manager = common::bearer(&manager);
    let refused = send(
        manager
            .patch(format!("{}/api/recordings/{id}", s.base))
            .json(&serde_json::json!({"consent": "granted"})),
    )
    .await;
    assert_eq!(
        (refused.status, refused.error().as_str()),
        (403, "role_restriction")
    );
    let no_audit = send(manager.get(format!("{}/api/audit", s.base))).await;
    assert_eq!(
        (no_audit.status, no_audit.error().as_str()),
        (403, "role_restriction")
    );

    // A private call of the manager's: theirs to see, nobody else's, admins included.
    sqlx::query(
        "UPDATE recordings SET private = 1, participants = '5550100,PJSIP/209' WHERE id = $1",
    )
    .bind(id)
    .execute(&s.svc.db.pool)
    .await
    .expect("private");
    assert_eq!(
        send(manager.get(format!("{}/api/recordings/{id}", s.base)))
            .await
            .status,
        200
    );
    let hidden = send(admin.get(format!("{}/api/recordings/{id}", s.base))).await;
    assert_eq!(
        (hidden.status, hidden.error().as_str()),
        (403, "private_recording")
    );
    let listed = send(admin.get(format!("{}/api/recordings", s.base))).await;
    assert_eq!(
        listed.json()["recordings"].as_array().map(Vec::len),
        Some(0)
    );

    // The audit API pages the tenant's events, newest first, with filters.
    let page = send(admin.get(format!("{}/api/audit?limit=2&recording={id}", s.base))).await;
    assert_eq!(page.status, 200);
    let events = page.json()["events"].as_array().cloned().expect("events");
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["action"], "metadata");
    assert_eq!(events[0]["outcome"], "private_recording");
    assert!(events[0]["seq"].as_i64() > events[1]["seq"].as_i64());
    let before = page.json()["next_before"].as_i64().expect("more");
    let next = send(admin.get(format!(
        "{}/api/audit?limit=50&recording={id}&before={before}",
        s.base
    )))
    .await;
    let older = next.json()["events"].as_array().cloned().expect("events");
    assert!(older.iter().all(|e| e["seq"].as_i64() < Some(before)));
    assert!(older.iter().any(|e| e["action"] == "set_status"
        && e["detail"]
            .as_str()
            .is_some_and(|d| d.contains("-> denied"))));
    let unknown = send(admin.get(format!("{}/api/audit?who=me", s.base))).await;
    assert_eq!(
        (unknown.status, unknown.error().as_str()),
        (400, "bad_request")
    );
    let _ = s.stop.send(true);
}

fn binary() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_ari-recorder"))
}

/// `ari-recorder audit verify` passes an intact log and names the event that was edited, cut
/// out or removed from the end.
async fn audit_verify_catches_edited_and_deleted_events(db: Db) {
    let t = start_sim(0.0).await;
    let url = database_url(&t, db).await;
    let (s, id) = one_recording(&t, &url, &[]).await;
    let admin = common::authed();
    for _ in 0..5 {
        assert_eq!(
            send(admin.get(format!("{}/api/recordings/{id}", s.base)))
                .await
                .status,
            200
        );
    }
    let pool = s.svc.db.pool.clone();
    let verify = || {
        let out = binary()
            .args(["audit", "verify"])
            .env("DATABASE_URL", &url)
            .output()
            .expect("run");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, text) = verify();
    assert!(ok, "{text}");
    assert!(text.contains("intact: 5 events"), "{text}");

    // Editing an event's outcome.
    sqlx::query("UPDATE audit_events SET outcome = 'not_found' WHERE seq = 3")
        .execute(&pool)
        .await
        .expect("edit");
    let (ok, text) = verify();
    assert!(!ok && text.contains("event 3 was altered"), "{text}");
    sqlx::query("UPDATE audit_events SET outcome = 'allowed' WHERE seq = 3")
        .execute(&pool)
        .await
        .expect("undo");
    assert!(verify().0);

    // Cutting one out of the middle, and renumbering to hide the gap.
    sqlx::query("DELETE FROM audit_events WHERE seq = 2")
        .execute(&pool)
        .await
        .expect("cut");
    let (ok, text) = verify();
    assert!(!ok && text.contains("event 2 is missing"), "{text}");
    for seq in 3..=5 {
        sqlx::query("UPDATE audit_events SET seq = seq - 1 WHERE seq = $1")
            .bind(seq)
            .execute(&pool)
            .await
            .expect("renumber");
    }
    let (ok, text) = verify();
    assert!(!ok && text.contains("does not follow"), "{text}");

    // Removing the newest events.
    let t2 = start_sim(0.0).await;
    let url2 = database_url(&t2, db).await;
    let (s2, id2) = one_recording(&t2, &url2, &[]).await;
    for _ in 0..3 {
        send(common::authed().get(format!("{}/api/recordings/{id2}", s2.base))).await;
    }
    sqlx::query("DELETE FROM audit_events WHERE seq = 3")
        .execute(&s2.svc.db.pool)
        .await
        .expect("tail");
    let out = binary()
        .args(["audit", "verify"])
        .env("DATABASE_URL", &url2)
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !out.status.success() && text.contains("removed from the end"),
        "{text}"
    );
    let _ = s.stop.send(true);
    let _ = s2.stop.send(true);
}

/// `user add` and `token create` bootstrap access from the command line.
async fn the_command_line_bootstraps_users_and_tokens(db: Db) {
    let t = start_sim(0.0).await;
    let url = database_url(&t, db).await;
    let (s, id) = one_recording(&t, &url, &[]).await;
    let run = |args: &[&str], password: Option<&str>| {
        let mut command = binary();
        command
            .args(args)
            .env("DATABASE_URL", &url)
            .env_remove("ARI_RECORDER_PASSWORD");
        if let Some(p) = password {
            command.env("ARI_RECORDER_PASSWORD", p);
        }
        let out = command.output().expect("run");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (ok, _, err) = run(
        &["user", "add", "--username", "ops", "--role", "admin"],
        Some("short"),
    );
    assert!(
        !ok && err.contains("password: at least 10 characters"),
        "{err}"
    );
    let (ok, _, err) = run(
        &["user", "add", "--username", "ops", "--role", "root"],
        Some("long-enough-password"),
    );
    assert!(!ok && err.contains("role"), "{err}");
    let (ok, out, err) = run(
        &["user", "add", "--username", "ops", "--role", "admin"],
        Some("long-enough-password"),
    );
    assert!(ok, "{err}");
    assert!(out.contains("user ops added"), "{out}");
    let (ok, _, err) = run(
        &[
            "token",
            "create",
            "--user",
            "ops",
            "--name",
            "ci",
            "--scopes",
            "recordings:read,recordings:fly",
        ],
        None,
    );
    assert!(
        !ok && err.contains("unknown scope \"recordings:fly\""),
        "{err}"
    );
    let (ok, token, err) = run(
        &[
            "token",
            "create",
            "--user",
            "ops",
            "--name",
            "ci",
            "--scopes",
            "recordings:read",
        ],
        None,
    );
    assert!(ok, "{err}");
    assert!(
        token.starts_with("arr_") && !err.contains(&token),
        "printed once, on stdout only"
    );
    let client = common::bearer(&token);
    assert_eq!(
        send(client.get(format!("{}/api/recordings/{id}", s.base)))
            .await
            .status,
        200
    );
    let token_id = err
        .lines()
        .find(|l| l.contains(" for ops created"))
        .and_then(|l| l.split_whitespace().nth(1))
        .expect("token <id> for ops created")
        .to_string();
    let (ok, out, err) = run(&["token", "revoke", "--id", &token_id], None);
    assert!(
        ok && out.contains(&format!("token {token_id} revoked")),
        "{out}{err}"
    );
    let revoked = send(client.get(format!("{}/api/recordings/{id}", s.base))).await;
    assert_eq!(revoked.status, 401, "a revoked token stops working at once");
    let signed_in = login(&s, "ops", "long-enough-password").await;
    assert_eq!(signed_in.status, 200);
    let (stored,): (String,) =
        sqlx::query_as("SELECT password_hash FROM users WHERE username = 'ops'")
            .fetch_one(&s.svc.db.pool)
            .await
            .expect("user");
    assert!(stored.starts_with("$argon2id$") && !stored.contains("long-enough-password"));
    let _ = s.stop.send(true);
}

/// Many requests at once still make one unbroken chain: writers queue on the chain's head.
async fn concurrent_requests_keep_one_chain(db: Db) {
    let t = start_sim(0.0).await;
    let url = database_url(&t, db).await;
    let (s, id) = one_recording(&t, &url, &[]).await;
    let before = audit_head(&s.svc.db).await;
    let client = common::authed();
    let requests = (0..60).map(|i| {
        let request = if i % 2 == 0 {
            client.get(format!("{}/api/recordings/{id}", s.base))
        } else {
            client
                .get(format!("{}/api/recordings/{id}/audio", s.base))
                .header("range", "bytes=0-99")
        };
        send(request)
    });
    let answers = futures_util::future::join_all(requests).await;
    assert!(answers.iter().all(|a| a.status == 200 || a.status == 206));
    assert_eq!(audit_head(&s.svc.db).await, before + 60);
    let report = ari_recorder::access::audit::verify(&s.svc.db, None)
        .await
        .expect("verify");
    assert_eq!((report.events, report.problem), (before + 60, None));
    let _ = s.stop.send(true);
}

/// Issue 12: consent is the caller's, so an admin's change to one recording of a call applies
/// to every recording of it (and to its metadata, so a re-index keeps it), and says so.
async fn a_consent_change_applies_to_the_whole_call(db: Db) {
    let t = start_sim(0.0).await;
    let url = database_url(&t, db).await;
    put_wav(&t, "first-segment");
    put_wav(&t, "second-segment");
    put_wav(&t, "another-call");
    let s = start_service_with(&t, &[], &url, &[]).await;
    wait_indexed(&s.svc.db, 3).await;
    sqlx::query(
        "UPDATE recordings SET call_id = CASE WHEN name = 'another-call' THEN 'c2' ELSE 'c1' END",
    )
    .execute(&s.svc.db.pool)
    .await
    .expect("calls");
    let (first,): (i64,) = sqlx::query_as("SELECT id FROM recordings WHERE name = 'first-segment'")
        .fetch_one(&s.svc.db.pool)
        .await
        .expect("id");
    let changed = common::send(
        common::authed()
            .patch(format!("{}/api/recordings/{first}", s.base))
            .json(&serde_json::json!({"consent": "denied"})),
    )
    .await;
    assert_eq!(changed.status, 200);
    let consents: Vec<(String, String)> =
        sqlx::query_as("SELECT name, consent FROM recordings ORDER BY name")
            .fetch_all(&s.svc.db.pool)
            .await
            .expect("rows");
    assert_eq!(
        consents,
        [
            ("another-call".to_string(), "unknown".to_string()),
            ("first-segment".to_string(), "denied".to_string()),
            ("second-segment".to_string(), "denied".to_string()),
        ]
    );
    let (detail,): (String,) = sqlx::query_as(
        "SELECT detail FROM audit_events WHERE action = 'set_status' ORDER BY seq DESC LIMIT 1",
    )
    .fetch_one(&s.svc.db.pool)
    .await
    .expect("audit");
    assert!(detail.contains("1 other recordings"), "{detail}");
    let _ = s.stop.send(true);
}

/// Issue 13: `?group=call` lists each call once (a file no call made is its own row), newest
/// call first by its newest recording, with its segment count and total duration, across
/// pages; another tenant's calls never show.
async fn calls_are_listed_once_each_across_pages(db: Db) {
    let t = start_sim(0.0).await;
    let url = database_url(&t, db).await;
    for name in ["a1", "a2", "b1", "lone", "theirs"] {
        put_wav(&t, name);
    }
    let s = start_service_with(&t, &[], &url, &[]).await;
    wait_indexed(&s.svc.db, 5).await;
    for (name, call, started) in [
        ("a1", Some("c1"), 1_000i64),
        ("a2", Some("c1"), 5_000),
        ("b1", Some("c2"), 3_000),
        ("lone", None, 4_000),
        ("theirs", Some("c3"), 9_000),
    ] {
        sqlx::query(
            "UPDATE recordings SET call_id = $1, started_at_ms = $2, \
             tenant = CASE WHEN name = 'theirs' THEN 'other' ELSE tenant END WHERE name = $3",
        )
        .bind(call)
        .bind(started)
        .bind(name)
        .execute(&s.svc.db.pool)
        .await
        .expect("call");
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..5 {
        let url = match &cursor {
            Some(c) => format!("{}/api/recordings?group=call&limit=1&cursor={c}", s.base),
            None => format!("{}/api/recordings?group=call&limit=1", s.base),
        };
        let page = common::send(common::authed().get(url)).await;
        assert_eq!(page.status, 200, "{:?}", page.json());
        let page = page.json();
        for call in page["calls"].as_array().expect("calls") {
            let names: Vec<&str> = call["segments"]
                .as_array()
                .expect("segments")
                .iter()
                .filter_map(|r| r["name"].as_str())
                .collect();
            seen.push((
                call["call_id"].as_str().map(String::from),
                call["segment_count"].as_i64(),
                names.join(","),
            ));
        }
        cursor = page["next_cursor"].as_str().map(String::from);
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(
        seen,
        [
            (Some("c1".to_string()), Some(2), "a1,a2".to_string()),
            (None, Some(1), "lone".to_string()),
            (Some("c2".to_string()), Some(1), "b1".to_string()),
        ]
    );
    let wrong =
        common::send(common::authed().get(format!("{}/api/recordings?group=segment", s.base)))
            .await;
    assert_eq!((wrong.status, wrong.error().as_str()), (400, "bad_request"));
    let _ = s.stop.send(true);
}

/// Issue 16: a transcript is attached through the API (WebVTT or JSON, admins, audited) or as a
/// `<name>.vtt` beside the audio, read with the right to play the recording, refused with a
/// reason when malformed, never overwritten by a file once an admin attached one, and deleted
/// with its recording.
async fn transcripts_follow_the_audios_rules(db: Db) {
    let steps = common::Steps::new("transcripts_follow_the_audios_rules");
    let t = start_sim(0.0).await;
    let url = database_url(&t, db).await;
    put_wav(&t, "call");
    let s = start_service_with(&t, &[], &url, &[]).await;
    wait_indexed(&s.svc.db, 1).await;
    let (id,): (i64,) = sqlx::query_as(
        "UPDATE recordings SET consent = 'granted' WHERE name = 'call' RETURNING id",
    )
    .fetch_one(&s.svc.db.pool)
    .await
    .expect("consent");
    let admin = common::authed();
    let transcript = format!("{}/api/recordings/{id}/transcript", s.base);
    let none = send(admin.get(&transcript)).await;
    assert_eq!((none.status, none.error().as_str()), (404, "no_transcript"));
    let vtt = "WEBVTT\n\n00:00.000 --> 00:00.100\n<v Agent>Hello, billing.\n\n00:00.100 --> 00:00.200\n<v Caller>My card number is\n";
    let put = send(
        admin
            .put(&transcript)
            .header("content-type", "text/vtt")
            .body(vtt),
    )
    .await;
    assert_eq!(put.status, 200, "{:?}", put.json());
    let got = send(admin.get(&transcript)).await.json();
    assert_eq!(got["source"], "api");
    assert_eq!(got["cues"][1]["speaker"], "Caller");
    assert_eq!(got["cues"][1]["start"], 0.1);
    assert_eq!(
        send(admin.get(format!("{}/api/recordings/{id}", s.base)))
            .await
            .json()["has_transcript"],
        true
    );
    steps.step("Bad input: a clear reason, nothing stored.");
    let wrong_type = send(
        admin
            .put(&transcript)
            .header("content-type", "text/plain")
            .body("hi"),
    )
    .await;
    assert_eq!(
        (wrong_type.status, wrong_type.error().as_str()),
        (400, "bad_transcript")
    );
    assert!(wrong_type.json()["message"]
        .as_str()
        .unwrap_or("")
        .contains("text/vtt"));
    let backwards = send(
        admin
            .put(&transcript)
            .header("content-type", "application/json")
            .body(r#"[{"start": 5, "end": 1, "text": "x"}]"#),
    )
    .await;
    assert_eq!(
        backwards.json()["message"],
        "cue 1: it ends before it starts"
    );
    assert_eq!(
        send(admin.get(&transcript)).await.json()["cues"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );

    steps.step("The rules are the audio's: a token without playback may not read it, another tenant does not see it, staff may not change it.");
    let reader = common::bearer(
        &user_token(
            &s.svc.db,
            "reader",
            "manager",
            "default",
            &[],
            None,
            &[Scope::RecordingsRead],
        )
        .await,
    );
    let refused = send(reader.get(&transcript)).await;
    assert_eq!(
        (refused.status, refused.error().as_str()),
        (403, "missing_scope")
    );
    let outsider = common::tenant_admin(&s.svc.db, "other").await;
    assert_eq!(send(outsider.get(&transcript)).await.status, 404);
    let staff = common::bearer(
        &user_token(
            &s.svc.db,
            "stan",
            "staff",
            "default",
            &[],
            None,
            &ALL_SCOPES,
        )
        .await,
    );
    let change = send(
        staff
            .put(&transcript)
            .header("content-type", "text/vtt")
            .body(vtt),
    )
    .await;
    assert_eq!(
        (change.status, change.error().as_str()),
        (403, "role_restriction")
    );
    let (reads,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM audit_events WHERE action = 'transcript' AND recording_id = $1",
    )
    .bind(id)
    .fetch_one(&s.svc.db.pool)
    .await
    .expect("audit");
    assert!(reads >= 4, "every read and refusal is audited: {reads}");

    steps.step("On legal hold, the transcript stays as it is: neither replaced nor removed.");
    let hold = send(
        admin
            .put(format!("{}/api/recordings/{id}/hold", s.base))
            .json(&serde_json::json!({"reason": "case 2026-204"})),
    )
    .await;
    assert_eq!(hold.status, 200, "{}", hold.error());
    let replaced = send(
        admin
            .put(&transcript)
            .header("content-type", "text/vtt")
            .body("WEBVTT\n\n00:00.000 --> 00:00.100\nSomething else.\n"),
    )
    .await;
    assert_eq!(
        (replaced.status, replaced.error().as_str()),
        (409, "on_hold")
    );
    let removed = send(admin.delete(&transcript)).await;
    assert_eq!((removed.status, removed.error().as_str()), (409, "on_hold"));
    assert_eq!(
        send(admin.get(&transcript)).await.json()["cues"][1]["text"],
        "My card number is"
    );
    let released = send(admin.delete(format!("{}/api/recordings/{id}/hold", s.base))).await;
    assert_eq!(released.status, 200, "{}", released.error());

    steps.step(
        "A sidecar file: attached when its recording is in the library; an admin's wins after.",
    );
    put_wav(&t, "second");
    std::fs::write(
        t.recordings.join("second.vtt"),
        "WEBVTT\n\n00:00.000 --> 00:00.150\n<v Agent>From the file.\n",
    )
    .expect("sidecar");
    wait_indexed(&s.svc.db, 2).await;
    let (second,): (i64,) = sqlx::query_as(
        "UPDATE recordings SET consent = 'granted' WHERE name = 'second' RETURNING id",
    )
    .fetch_one(&s.svc.db.pool)
    .await
    .expect("second");
    let second_url = format!("{}/api/recordings/{second}/transcript", s.base);
    let mut attached = serde_json::Value::Null;
    common::eventually("the sidecar transcript attached", async || {
        let answer = send(admin.get(&second_url)).await;
        if answer.status == 200 {
            attached = answer.json();
            return true;
        }
        // The first scan may have seen the file before the recording's row: the watcher's
        // next look at it, or this nudge, attaches it.
        let _ = std::fs::write(
            t.recordings.join("second.vtt"),
            "WEBVTT\n\n00:00.000 --> 00:00.150\n<v Agent>From the file.\n",
        );
        false
    })
    .await;
    assert_eq!(attached["source"], "sidecar", "{attached}");
    assert_eq!(attached["cues"][0]["text"], "From the file.");

    steps.step("Deleting the recording deletes its transcript and the sidecar beside it.");
    let deleted = common::delete_confirmed(&admin, &s.base, second).await;
    assert_eq!(deleted.status, 200);
    let (left,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM recording_transcripts WHERE recording_id = $1")
            .bind(second)
            .fetch_one(&s.svc.db.pool)
            .await
            .expect("count");
    assert_eq!(left, 0);
    assert!(!t.recordings.join("second.vtt").exists());
    let _ = s.stop.send(true);
}

/// Issue 14 (retention and legal hold): only a tenant's admins hold and release (audited, with
/// a reason); a held recording is deleted by nobody and purged by no rule; the purge removes
/// the audio past the tenant's days (voicemail by its own), keeps the row as `purged` with the
/// rule, audits each, and a dry run changes nothing; old purged rows are forgotten later.
async fn holds_and_retention_keep_what_must_be_kept(db: Db) {
    let steps = common::Steps::new("holds_and_retention_keep_what_must_be_kept");
    let t = start_sim(0.0).await;
    let url = database_url(&t, db).await;
    let database = Database::open(&url).await.expect("database");
    for name in ["old-call", "held-call", "new-call", "old-message"] {
        put_wav(&t, name);
        call_metadata(&database, name, "default", "default", false, "PJSIP/201").await;
    }
    let s = start_service_with(&t, &[], &url, &[]).await;
    wait_indexed(&s.svc.db, 4).await;
    let day = 86_400_000i64;
    let now = chrono::Utc::now().timestamp_millis();
    for (name, age_days, node_type) in [
        ("old-call", 40, "transfer"),
        ("held-call", 40, "transfer"),
        ("new-call", 5, "transfer"),
        ("old-message", 40, "voicemail"),
    ] {
        sqlx::query("UPDATE recordings SET started_at_ms = $1, node_type = $2 WHERE name = $3")
            .bind(now - age_days * day)
            .bind(node_type)
            .bind(name)
            .execute(&s.svc.db.pool)
            .await
            .expect("age");
    }
    let id_of = |name: &'static str| {
        let pool = s.svc.db.pool.clone();
        async move {
            let (id,): (i64,) = sqlx::query_as("SELECT id FROM recordings WHERE name = $1")
                .bind(name)
                .fetch_one(&pool)
                .await
                .expect("id");
            id
        }
    };
    let (old, held) = (id_of("old-call").await, id_of("held-call").await);
    let hold_url = format!("{}/api/recordings/{held}/hold", s.base);

    steps.step("Who may hold: the tenant's admins only; a reason is required.");
    let admin = common::authed();
    let manager = common::bearer(
        &user_token(
            &s.svc.db,
            "mia",
            "manager",
            "default",
            &[],
            None,
            &ALL_SCOPES,
        )
        .await,
    );
    let outsider = common::tenant_admin(&s.svc.db, "other").await;
    let body = serde_json::json!({"reason": "case 2026-117"});
    let refused = send(manager.put(&hold_url).json(&body)).await;
    assert_eq!(
        (refused.status, refused.error().as_str()),
        (403, "role_restriction")
    );
    assert_eq!(send(outsider.put(&hold_url).json(&body)).await.status, 404);
    let empty = send(
        admin
            .put(&hold_url)
            .json(&serde_json::json!({"reason": " "})),
    )
    .await;
    assert_eq!((empty.status, empty.error().as_str()), (400, "bad_request"));
    let placed = send(admin.put(&hold_url).json(&body)).await;
    assert_eq!(placed.status, 200, "{:?}", placed.json());
    assert_eq!(placed.json()["hold"]["reason"], "case 2026-117");
    let shown = send(admin.get(format!("{}/api/recordings/{held}", s.base)))
        .await
        .json();
    assert_eq!(shown["hold"]["reason"], "case 2026-117");
    assert_eq!(shown["access"]["delete"]["reason"], "on_hold");
    steps.step("Held: not deleted by hand.");
    let delete = send(admin.delete(format!("{}/api/recordings/{held}", s.base))).await;
    assert_eq!((delete.status, delete.error().as_str()), (409, "on_hold"));

    steps.step("The rule, from the command line: calls 30 days, voicemail 60, forget after 365.");
    let run = |args: &[&str]| {
        let out = binary()
            .args(args)
            .env("DATABASE_URL", &url)
            .env("RECORDINGS_DIR", &t.recordings)
            .env("CACHE_DIR", t.dir.path().join("cache"))
            .output()
            .expect("run");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let set = run(&[
        "tenant",
        "set",
        "default",
        "--retain-calls-days",
        "30",
        "--retain-voicemail-days",
        "60",
        "--forget-after-days",
        "365",
    ]);
    assert!(
        set.contains("calls 30 days, voicemail 60 days, forget after 365 days"),
        "{set}"
    );
    let dry = run(&["purge", "--dry-run"]);
    assert!(
        dry.contains("would remove the audio of 1 recordings") && dry.contains("1 held"),
        "{dry}"
    );
    assert!(
        t.recordings.join("old-call.wav").exists(),
        "a dry run removes nothing"
    );
    let done = run(&["purge"]);
    assert!(done.contains("removed the audio of 1 recordings"), "{done}");
    assert!(!t.recordings.join("old-call.wav").exists());
    for name in ["held-call", "new-call", "old-message"] {
        assert!(
            t.recordings.join(format!("{name}.wav")).exists(),
            "{name} kept"
        );
    }
    let purged = send(admin.get(format!("{}/api/recordings/{old}", s.base)))
        .await
        .json();
    assert_eq!(purged["status"], "purged");
    assert!(
        purged["reason"]
            .as_str()
            .unwrap_or("")
            .contains("after 30 days"),
        "{purged}"
    );
    let (audited,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM audit_events WHERE action = 'purge' AND actor = 'system:retention' AND recording_id = $1",
    )
    .bind(old)
    .fetch_one(&s.svc.db.pool)
    .await
    .expect("audit");
    assert_eq!(audited, 1);

    steps.step("Released: the next purge takes it; much later the rows are forgotten.");
    assert_eq!(
        send(admin.delete(&hold_url)).await.json()["hold"],
        serde_json::Value::Null
    );
    assert!(run(&["purge"]).contains("removed the audio of 1 recordings"));
    run(&["tenant", "set", "default", "--forget-after-days", "10"]);
    assert!(run(&["purge"]).contains("2 forgotten"));
    let (left,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM recordings WHERE id IN ($1, $2)")
        .bind(old)
        .bind(held)
        .fetch_one(&s.svc.db.pool)
        .await
        .expect("rows");
    assert_eq!(left, 0);
    let report = ari_recorder::access::audit::verify(&s.svc.db, None)
        .await
        .expect("verify");
    assert_eq!(report.problem, None);
    let _ = s.stop.send(true);
}

/// Issue 14: `?format=mp3` plays and downloads a recording as MP3 (LAME, MPEG 2.5 frames at
/// 8 kHz), ranges served from the one encoding, audited like the WAV.
async fn recordings_play_and_download_as_mp3(db: Db) {
    let t = start_sim(0.0).await;
    let url = database_url(&t, db).await;
    let (s, id) = one_recording(&t, &url, &[]).await;
    let admin = common::authed();
    let audio = send(admin.get(format!("{}/api/recordings/{id}/audio?format=mp3", s.base))).await;
    assert_eq!(audio.status, 200);
    assert_eq!(audio.headers["content-type"], "audio/mpeg");
    let frame = &audio.body[..4];
    assert_eq!(
        (frame[0], frame[1] & 0xE0),
        (0xFF, 0xE0),
        "an MPEG frame first"
    );
    assert_eq!((frame[1] >> 3) & 3, 0, "MPEG 2.5: 8 kHz");
    assert_eq!((frame[2] >> 2) & 3, 2, "8,000 Hz");
    let part = send(
        admin
            .get(format!("{}/api/recordings/{id}/audio?format=mp3", s.base))
            .header("range", "bytes=4-13"),
    )
    .await;
    assert_eq!(part.status, 206);
    assert_eq!(part.body, audio.body[4..14]);
    let download = send(admin.get(format!(
        "{}/api/recordings/{id}/download?format=mp3",
        s.base
    )))
    .await;
    assert_eq!(download.status, 200);
    let disposition = download.headers["content-disposition"]
        .to_str()
        .unwrap_or("");
    assert!(disposition.ends_with(".mp3\""), "{disposition}");
    assert_eq!(download.body, audio.body, "one encoding");
    let wrong = send(admin.get(format!("{}/api/recordings/{id}/audio?format=flac", s.base))).await;
    assert!(wrong.json()["message"]
        .as_str()
        .unwrap_or("")
        .contains("wav, opus or mp3"));
    let (audited,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM audit_events WHERE recording_id = $1 AND detail LIKE '%mp3%'",
    )
    .bind(id)
    .fetch_one(&s.svc.db.pool)
    .await
    .expect("audit");
    assert_eq!(audited, 3);
    let _ = s.stop.send(true);
}

on_both_databases!(
    recordings_play_and_download_as_mp3,
    holds_and_retention_keep_what_must_be_kept,
    transcripts_follow_the_audios_rules,
    calls_are_listed_once_each_across_pages,
    a_consent_change_applies_to_the_whole_call,
    concurrent_requests_keep_one_chain,
    the_permission_matrix_holds_through_the_api,
    signed_links_expire_are_capped_single_use_tamper_proof_and_rotate,
    sessions_need_csrf_for_writes_and_expire,
    link_requests_are_rate_limited_per_principal,
    scopes_consent_changes_and_the_audit_api,
    audit_verify_catches_edited_and_deleted_events,
    the_command_line_bootstraps_users_and_tokens,
);
