//! The findings of the security review (issue #11), each as the attack that found it, run
//! against a real service and database: what an unauthenticated or over-reaching client can no
//! longer do.

mod common;

use ari_recorder::access::audit::SealedAudit;
use common::TestService;
use common::{
    client_from, connect_from, database_url, put_wav, send, start_service_with, start_sim,
    wait_ready, Db,
};

async fn audit_rows(s: &TestService) -> Vec<(String, String, String, String)> {
    sqlx::query_as("SELECT actor, tenant, outcome, client FROM audit_events ORDER BY seq")
        .fetch_all(&s.svc.db.pool)
        .await
        .expect("audit")
}

async fn metric(s: &TestService, name: &str) -> String {
    let text = common::metrics_text(&s.base).await;
    text.lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_default()
        .to_string()
}

/// Finding 1: a bad signed link with a 60 KB `by` wrote one 60 KB audit row per request, under
/// no tenant. Now: fields are checked before auditing, rows are small and belong to the
/// recording's tenant (or the operators'), and past a few failures an address gets 429s that
/// are counted, not audited.
async fn a_flood_of_bad_links_is_cut_short_and_audited_small_under_a_tenant(db: Db) {
    let t = start_sim(0.0).await;
    let url = database_url(&t, db).await;
    let (s, id) =
        common::one_playable_recording(&t, &url, &[("GRANTS_PER_MINUTE", "5")], "acme").await;
    let before = audit_rows(&s).await.len();
    let http = reqwest::Client::new();
    let huge = "x".repeat(60_000);
    let bad = |recording: i64| {
        http.get(format!(
            "{}/api/recordings/{recording}/audio?sig=00&by={huge}&exp=1&nonce=ab&kid=a",
            s.base
        ))
    };
    // One for the recording, one for a recording that does not exist.
    assert_eq!(send(bad(id)).await.error(), "link_malformed");
    assert_eq!(send(bad(id + 1000)).await.error(), "link_malformed");
    let rows = audit_rows(&s).await;
    let new = &rows[before..];
    assert_eq!(new.len(), 2, "{new:?}");
    assert_eq!(new[0].0, "link:invalid", "the 60 KB subject is not stored");
    assert_eq!(new[0].1, "acme", "the recording's admins see it");
    assert_eq!(
        new[1].1, "default",
        "no such recording: the operators see it"
    );

    // The flood: three more are audited (5 a minute), the rest answered 429 and counted.
    let mut statuses = Vec::new();
    for _ in 0..40 {
        statuses.push(send(bad(id)).await.status);
    }
    assert_eq!(statuses.iter().filter(|s| **s == 403).count(), 3);
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 37);
    let rows = audit_rows(&s).await;
    assert_eq!(rows.len() - before, 5, "audited: the first five only");
    for (actor, tenant, outcome, client) in &rows {
        assert!(
            actor.len() <= 128 && tenant.len() <= 64 && outcome.len() <= 64 && client.len() <= 64,
            "{actor:.80} {tenant:.80}"
        );
    }
    assert_eq!(
        metric(&s, "audit_events_suppressed_total").await,
        "audit_events_suppressed_total 37"
    );
    let _ = s.stop.send(true);
}

/// Finding 2: a manager of acme placed a call between two phones of the default tenant (and
/// acme's admin played its recording), and `Local/1900...@outbound-trunk` was accepted. Now
/// each tenant may ring only the endpoints the operator listed for it, at a rate.
async fn placing_calls_stays_inside_the_tenants_endpoints(db: Db) {
    let t = start_sim(0.0).await;
    let url = database_url(&t, db).await;
    let s = start_service_with(&t, &[], &url, &[("GRANTS_PER_MINUTE", "3")]).await;
    let mut conn = s.svc.db.pool.acquire().await.expect("connection");
    let calls = ari_recorder::access::calls::set_endpoints;
    calls(&mut conn, "default", &["PJSIP/2*".into()])
        .await
        .expect("default's phones");
    calls(
        &mut conn,
        "acme",
        &["PJSIP/3*".into(), "Local/*@internal".into()],
    )
    .await
    .expect("acme's phones");
    drop(conn);
    let manager = common::user_token(
        &s.svc.db,
        "acme-manager",
        "manager",
        "acme",
        &[],
        None,
        &ari_recorder::access::Scope::ALL,
    )
    .await;
    let http = common::bearer(&manager);
    let place = |from: &str, to: &str| {
        http.post(format!("{}/api/calls", s.base))
            .json(&serde_json::json!({"from": from, "to": to}))
    };
    for (from, to) in [
        ("PJSIP/201", "PJSIP/202"),
        ("PJSIP/301", "Local/19005550100@outbound-trunk"),
    ] {
        let answer = send(place(from, to)).await;
        assert_eq!(
            (answer.status, answer.error().as_str()),
            (403, "endpoint_not_allowed"),
            "{from} -> {to}"
        );
    }
    assert!(
        t.sim.with_world(|w| w.counts()) == (0, 0, 0),
        "nothing rang"
    );
    let allowed = send(place("PJSIP/301", "Local/302@internal")).await;
    assert_eq!(allowed.status, 202, "{:?}", allowed.json());
    // Three a minute: the fourth attempt (allowed or not) waits.
    let limited = send(place("PJSIP/301", "PJSIP/302")).await;
    assert_eq!(
        (limited.status, limited.error().as_str()),
        (429, "rate_limited")
    );
    let refusals: Vec<(String, String)> = sqlx::query_as(
        "SELECT tenant, outcome FROM audit_events WHERE action = 'call_place' ORDER BY seq",
    )
    .fetch_all(&s.svc.db.pool)
    .await
    .expect("audit");
    let expected: Vec<(String, String)> = [
        "endpoint_not_allowed",
        "endpoint_not_allowed",
        "allowed",
        "rate_limited",
    ]
    .iter()
    .map(|o| ("acme".to_string(), o.to_string()))
    .collect();
    assert_eq!(refusals, expected);
    let _ = s.stop.send(true);
}

async fn sign_in(http: &reqwest::Client, s: &TestService, user: &str, password: &str) -> u16 {
    send(
        http.post(format!("{}/api/session", s.base))
            .json(&serde_json::json!({"username": user, "password": password})),
    )
    .await
    .status
}

/// Finding 3: 30 wrong passwords from one address locked the real user out everywhere, failed
/// sign-ins had no tenant, and a name matching no user (maybe a password typed in the wrong
/// field) was stored verbatim. Now failures count per name and address, attempts on a user go
/// to their tenant, and unknown names are kept only as a short hash.
async fn guessing_from_one_address_never_locks_the_user_out_elsewhere(db: Db) {
    let t = start_sim(0.0).await;
    let url = database_url(&t, db).await;
    let s = start_service_with(&t, &[], &url, &[("GRANTS_PER_MINUTE", "3")]).await;
    let attacker = client_from([127, 0, 0, 2]);
    for _ in 0..3 {
        assert_eq!(sign_in(&attacker, &s, "tester", "guess").await, 401);
    }
    assert_eq!(sign_in(&attacker, &s, "tester", "guess").await, 429);
    // The real user, from their own address, signs in.
    let user = client_from([127, 0, 0, 3]);
    assert_eq!(sign_in(&user, &s, "tester", "tester-password").await, 200);
    assert_eq!(
        sign_in(&user, &s, "correct-horse-battery", "tester").await,
        401
    );
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT actor, tenant, outcome FROM audit_events WHERE action = 'login' ORDER BY seq",
    )
    .fetch_all(&s.svc.db.pool)
    .await
    .expect("audit");
    assert_eq!(
        rows[0],
        (
            "user:tester".into(),
            "default".into(),
            "bad_credentials".into()
        )
    );
    let unknown = rows.last().expect("the unknown name's attempt");
    assert!(
        unknown.0.starts_with("user:unknown#") && !unknown.0.contains("horse"),
        "{unknown:?}"
    );
    assert_eq!(
        (unknown.1.as_str(), unknown.2.as_str()),
        ("default", "bad_credentials")
    );
    let _ = s.stop.send(true);
}

/// Finding 4: behind the recommended reverse proxy every client had the proxy's address. Now
/// the forwarded address counts, from configured proxies only.
async fn behind_a_trusted_proxy_each_client_keeps_its_own_address(db: Db) {
    let t = start_sim(0.0).await;
    let url = database_url(&t, db).await;
    let s = start_service_with(
        &t,
        &[],
        &url,
        &[
            ("GRANTS_PER_MINUTE", "3"),
            ("TRUSTED_PROXIES", "127.0.0.2/32"),
        ],
    )
    .await;
    let proxy = client_from([127, 0, 0, 2]);
    let via_proxy = |client: &str| {
        proxy
            .post(format!("{}/api/session", s.base))
            .header("x-forwarded-for", client)
            .json(&serde_json::json!({"username": "tester", "password": "guess"}))
    };
    // Three failures of one client behind the proxy slow that client only.
    for _ in 0..3 {
        assert_eq!(send(via_proxy("198.51.100.7")).await.status, 401);
    }
    assert_eq!(send(via_proxy("198.51.100.7")).await.status, 429);
    assert_eq!(send(via_proxy("198.51.100.8")).await.status, 401);
    // A client that is not a proxy cannot pick its address.
    let forger = client_from([127, 0, 0, 4]);
    let forged = send(
        forger
            .post(format!("{}/api/session", s.base))
            .header("x-forwarded-for", "198.51.100.99")
            .json(&serde_json::json!({"username": "tester", "password": "guess"})),
    )
    .await;
    assert_eq!(forged.status, 401);
    let clients: Vec<(String,)> =
        sqlx::query_as("SELECT client FROM audit_events WHERE action = 'login' ORDER BY seq")
            .fetch_all(&s.svc.db.pool)
            .await
            .expect("audit");
    let clients: Vec<&str> = clients.iter().map(|(c,)| c.as_str()).collect();
    assert_eq!(
        clients,
        // The fourth attempt of .7 is past its address's audited share: counted, not stored.
        [
            "198.51.100.7",
            "198.51.100.7",
            "198.51.100.7",
            "198.51.100.8",
            "127.0.0.4"
        ]
    );
    let _ = s.stop.send(true);
}

/// Finding 8: deleting a recording that is a symlink inside the folder deleted its target
/// (another recording) and left the link. Now the link goes and the target stays.
async fn deleting_a_symlinked_recording_removes_the_link_not_its_target(db: Db) {
    let t = start_sim(0.0).await;
    let url = database_url(&t, db).await;
    put_wav(&t, "original");
    let link = t.recordings.join("alias.wav");
    std::os::unix::fs::symlink(t.recordings.join("original.wav"), &link).expect("symlink");
    let s = start_service_with(&t, &[], &url, &[]).await;
    wait_ready(&s.svc.db, 2).await;
    let (id,): (i64,) = sqlx::query_as(
        "UPDATE recordings SET consent = 'granted' WHERE name = 'alias' RETURNING id",
    )
    .fetch_one(&s.svc.db.pool)
    .await
    .expect("the link is listed");
    let admin = common::authed();
    let first = send(admin.delete(format!("{}/api/recordings/{id}", s.base))).await;
    assert_eq!(first.status, 202);
    let token = first.json()["confirm_token"]
        .as_str()
        .expect("token")
        .to_string();
    let done = send(admin.delete(format!("{}/api/recordings/{id}?confirm={token}", s.base))).await;
    assert_eq!(done.status, 200);
    assert!(
        std::fs::symlink_metadata(&link).is_err(),
        "the link itself is removed"
    );
    assert!(
        t.recordings.join("original.wav").exists(),
        "the other recording is untouched"
    );
    let _ = s.stop.send(true);
}

/// Findings 10, 12 and 14 (in part): `projects: [""]` left a user unrestricted; JSON with caller
/// names could be cached and sniffed; a disabled user's tokens came back when the user was
/// enabled again.
async fn user_changes_are_validated_and_disabling_revokes_tokens_for_good(db: Db) {
    let t = start_sim(0.0).await;
    let url = database_url(&t, db).await;
    let s = start_service_with(&t, &[], &url, &[]).await;
    let token = common::user_token(
        &s.svc.db,
        "reviewer",
        "staff",
        "default",
        &["support"],
        None,
        &[ari_recorder::access::Scope::RecordingsRead],
    )
    .await;
    let (id,): (i64,) = sqlx::query_as("SELECT id FROM users WHERE username = 'reviewer'")
        .fetch_one(&s.svc.db.pool)
        .await
        .expect("user");
    let admin = common::authed();
    let patch = |body: serde_json::Value| {
        send(
            admin
                .patch(format!("{}/api/users/{id}", s.base))
                .json(&body),
        )
    };
    let refused = patch(serde_json::json!({"projects": [""]})).await;
    assert_eq!(
        (refused.status, refused.error().as_str()),
        (400, "bad_request")
    );
    let (projects,): (String,) = sqlx::query_as("SELECT projects FROM users WHERE id = $1")
        .bind(id)
        .fetch_one(&s.svc.db.pool)
        .await
        .expect("projects");
    assert_eq!(projects, "support", "unchanged");

    let reviewer = common::bearer(&token);
    let list = send(reviewer.get(format!("{}/api/recordings", s.base))).await;
    assert_eq!(list.status, 200);
    for answer in [&list, &refused] {
        assert_eq!(answer.headers["cache-control"], "no-store");
        assert_eq!(answer.headers["x-content-type-options"], "nosniff");
    }
    // The security headers are on every answer, from one layer: the page, its script, the
    // API, an unknown route.
    let page = send(reqwest::Client::new().get(format!("{}/", s.base))).await;
    let script = send(reqwest::Client::new().get(format!("{}/assets/app.js", s.base))).await;
    let unknown = send(reviewer.get(format!("{}/no/such/route", s.base))).await;
    for answer in [&page, &script, &list, &unknown] {
        assert_eq!(answer.headers["x-content-type-options"], "nosniff");
        assert_eq!(answer.headers["x-frame-options"], "DENY");
        assert_eq!(answer.headers["referrer-policy"], "no-referrer");
        let csp = answer.headers["content-security-policy"]
            .to_str()
            .unwrap_or("");
        assert!(csp.starts_with("default-src 'none'"), "{csp}");
    }
    assert_eq!(
        page.headers["cache-control"], "no-cache",
        "the page says its own"
    );
    assert_eq!(unknown.headers["cache-control"], "no-store");
    assert_eq!(
        patch(serde_json::json!({"disabled": true})).await.status,
        200
    );
    assert_eq!(
        patch(serde_json::json!({"disabled": false})).await.status,
        200
    );
    let after = send(reviewer.get(format!("{}/api/recordings", s.base))).await;
    assert_eq!(after.status, 401, "the token stays revoked");
    let _ = s.stop.send(true);
}

/// Finding 7: on SQLite the list matched participants case-insensitively while the policy
/// compared exactly (`pjsip/203` saw private calls of `PJSIP/203` in the list), and an admin
/// could hand a participant's extension to a second user unnoticed.
async fn private_recordings_match_participants_exactly_and_extensions_are_unique(db: Db) {
    let t = start_sim(0.0).await;
    let url = database_url(&t, db).await;
    put_wav(&t, "private-call");
    let s = start_service_with(&t, &[], &url, &[]).await;
    wait_ready(&s.svc.db, 1).await;
    sqlx::query(
        "UPDATE recordings SET private = 1, participants = '5550100,PJSIP/203', consent = 'granted'",
    )
    .execute(&s.svc.db.pool)
    .await
    .expect("private");
    let admin = common::authed();
    let create = |username: &str, extension: &str| {
        send(
            admin
                .post(format!("{}/api/users", s.base))
                .json(&serde_json::json!({
                    "username": username, "password": "a-long-password", "role": "staff",
                    "tenant": "default", "projects": [], "extension": extension,
                })),
        )
    };
    assert_eq!(create("agent", "PJSIP/203").await.status, 201);
    let twice = create("agent-two", "PJSIP/203").await;
    assert_eq!(twice.status, 400, "{:?}", twice.json());
    assert!(twice.json()["message"]
        .as_str()
        .unwrap_or("")
        .contains("agent"));
    assert_eq!(create("lookalike", "pjsip/203").await.status, 201);
    let (detail,): (Option<String>,) = sqlx::query_as(
        "SELECT detail FROM audit_events WHERE action = 'user_create' AND outcome = 'allowed' ORDER BY seq LIMIT 1",
    )
    .fetch_one(&s.svc.db.pool)
    .await
    .expect("audit");
    assert!(
        detail
            .as_deref()
            .unwrap_or("")
            .contains("on 1 private recordings"),
        "{detail:?}"
    );
    let (db, base) = (&s.svc.db, s.base.as_str());
    let listed = |username: &'static str| async move {
        let token = common::user_token(
            db,
            username,
            "staff",
            "default",
            &[],
            None,
            &[ari_recorder::access::Scope::RecordingsRead],
        )
        .await;
        let list = send(common::bearer(&token).get(format!("{base}/api/recordings"))).await;
        list.json()["recordings"].as_array().map_or(0, Vec::len)
    };
    assert_eq!(listed("agent").await, 1, "the participant sees it");
    assert_eq!(
        listed("lookalike").await,
        0,
        "a different case is another extension"
    );
    let _ = s.stop.send(true);
}

/// Finding 11: `/metrics` (every tenant's call volumes) was public, and `/api/library/scan` and
/// `/api/settings` showed deployment-wide state to every tenant's admin.
async fn metrics_and_deployment_state_belong_to_the_operator(db: Db) {
    let t = start_sim(0.0).await;
    let url = database_url(&t, db).await;
    let s = start_service_with(&t, &[], &url, &[]).await;
    let anonymous = reqwest::Client::new();
    let metrics = format!("{}/metrics", s.base);
    for request in [
        anonymous.get(&metrics),
        anonymous
            .get(&metrics)
            .bearer_auth("test-metrics-token-0123456789abcdeX"),
        common::authed().get(&metrics),
    ] {
        let answer = send(request).await;
        assert_eq!(
            (answer.status, answer.error().as_str()),
            (401, "unauthorized")
        );
    }
    assert!(common::metrics_text(&s.base)
        .await
        .contains("ari_connected 1\n"));

    let acme_admin = common::tenant_admin(&s.svc.db, "acme").await;
    for path in ["/api/settings", "/api/library/scan"] {
        let refused = send(acme_admin.get(format!("{}{path}", s.base))).await;
        assert_eq!(
            (refused.status, refused.error().as_str()),
            (403, "role_restriction"),
            "{path}"
        );
        let operator = send(common::authed().get(format!("{}{path}", s.base))).await;
        assert_eq!(operator.status, 200, "{path}");
    }
    let flows = send(acme_admin.get(format!("{}/api/flows", s.base))).await;
    assert!(flows.json()["settings"].is_null(), "{:?}", flows.json());
    let session = send(acme_admin.get(format!("{}/api/session", s.base))).await;
    assert_eq!(session.json()["can"]["deployment_settings"], false);
    let operator_flows = send(common::authed().get(format!("{}/api/flows", s.base))).await;
    assert!(operator_flows.json()["settings"].is_object());
    let refusals: Vec<(String, String)> = sqlx::query_as(
        "SELECT action, tenant FROM audit_events WHERE outcome = 'role_restriction' ORDER BY seq",
    )
    .fetch_all(&s.svc.db.pool)
    .await
    .expect("audit");
    assert_eq!(
        refusals,
        vec![
            ("settings_read".to_string(), "acme".to_string()),
            ("scan_state".to_string(), "acme".to_string())
        ]
    );
    let _ = s.stop.send(true);
}

/// The session cookie of a signed-in user and its CSRF token.
async fn browser_session(s: &TestService, user: &str, password: &str) -> (String, String) {
    let answer = send(
        reqwest::Client::new()
            .post(format!("{}/api/session", s.base))
            .json(&serde_json::json!({"username": user, "password": password})),
    )
    .await;
    assert_eq!(answer.status, 200);
    let cookie = answer.headers["set-cookie"]
        .to_str()
        .expect("ascii")
        .split(';')
        .next()
        .expect("cookie")
        .to_string();
    let csrf = answer.json()["csrf_token"]
        .as_str()
        .expect("csrf")
        .to_string();
    (cookie, csrf)
}

/// Finding 14 (sessions and links): a session lived its full 8 hours however long it sat
/// unused, and a disabled user's playback links worked again once the user was re-enabled.
async fn idle_sessions_end_and_a_disabled_users_links_stay_dead(db: Db) {
    let t = start_sim(0.0).await;
    let url = database_url(&t, db).await;
    let (s, id) = common::one_playable_recording(&t, &url, &[], "default").await;
    let browser = reqwest::Client::new();
    let (cookie, csrf) = browser_session(&s, "tester", "tester-password").await;
    let me = || {
        send(
            browser
                .get(format!("{}/api/session", s.base))
                .header("cookie", &cookie),
        )
    };
    let age_session = |idle_ms: i64| {
        let db = s.svc.db.clone();
        async move {
            sqlx::query("UPDATE sessions SET last_seen_at_ms = $1")
                .bind(chrono::Utc::now().timestamp_millis() - idle_ms)
                .execute(&db.pool)
                .await
                .expect("age session");
        }
    };
    // Used two minutes ago: still alive, and its use is written down.
    age_session(120_000).await;
    assert_eq!(me().await.status, 200);
    let (seen,): (i64,) = sqlx::query_as("SELECT last_seen_at_ms FROM sessions")
        .fetch_one(&s.svc.db.pool)
        .await
        .expect("session");
    assert!(seen > chrono::Utc::now().timestamp_millis() - 60_000);
    // Unused for the idle limit (30 minutes by default): ended.
    age_session(1_800_000).await;
    let ended = me().await;
    assert_eq!(
        (ended.status, ended.error().as_str()),
        (401, "unauthorized")
    );

    // A playback link made in a session...
    let (cookie, csrf2) = browser_session(&s, "tester", "tester-password").await;
    let _ = csrf;
    let link = send(
        browser
            .post(format!("{}/api/recordings/{id}/play-url", s.base))
            .header("cookie", &cookie)
            .header("x-csrf-token", &csrf2),
    )
    .await;
    assert_eq!(link.status, 201);
    let play = format!("{}{}", s.base, link.json()["url"].as_str().expect("url"));
    let anonymous = reqwest::Client::new();
    assert_eq!(send(anonymous.get(&play)).await.status, 200);
    // ...dies when its user is disabled, and stays dead when they are enabled again.
    let second_admin = common::bearer(
        &common::user_token(
            &s.svc.db,
            "second-admin",
            "admin",
            "default",
            &[],
            None,
            &[ari_recorder::access::Scope::Admin],
        )
        .await,
    );
    let (tester,): (i64,) = sqlx::query_as("SELECT id FROM users WHERE username = 'tester'")
        .fetch_one(&s.svc.db.pool)
        .await
        .expect("tester");
    for disabled in [true, false] {
        let answer = send(
            second_admin
                .patch(format!("{}/api/users/{tester}", s.base))
                .json(&serde_json::json!({"disabled": disabled})),
        )
        .await;
        assert_eq!(answer.status, 200);
    }
    let revived = send(anonymous.get(&play)).await;
    assert_eq!(
        (revived.status, revived.error().as_str()),
        (403, "link_revoked")
    );
    // Links made after re-enabling work.
    let (cookie, csrf) = browser_session(&s, "tester", "tester-password").await;
    let fresh = send(
        browser
            .post(format!("{}/api/recordings/{id}/play-url", s.base))
            .header("cookie", &cookie)
            .header("x-csrf-token", &csrf),
    )
    .await;
    let fresh = format!("{}{}", s.base, fresh.json()["url"].as_str().expect("url"));
    assert_eq!(send(anonymous.get(&fresh)).await.status, 200);
    let _ = s.stop.send(true);
}

/// Finding 14 (transport): there were no read or idle timeouts and no connection limit, so a
/// client could hold connections open without sending a request, or trickle its headers.
#[tokio::test]
async fn silent_connections_are_cut_off_and_surplus_ones_wait() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let t = start_sim(0.0).await;
    let url = database_url(&t, Db::Sqlite).await;
    let s = start_service_with(
        &t,
        &[],
        &url,
        &[
            ("HTTP_READ_TIMEOUT_SECONDS", "1"),
            ("HTTP_MAX_CONNECTIONS", "1"),
        ],
    )
    .await;
    let addr = s.svc.http_addr;
    let bound = std::time::Duration::from_secs(20);
    // Wait until the test harness's own connections are gone (the ARI-ready probe uses none,
    // but be sure): the one slot is free.
    common::wait_until("no HTTP connection open", || {
        s.svc.metrics.http_connections_open() == 0
    })
    .await;

    // A client that starts a request and never finishes its headers takes the only slot...
    let mut trickler = tokio::net::TcpStream::connect(addr).await.expect("connect");
    trickler
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    common::wait_until("the trickler accepted", || {
        s.svc.metrics.http_connections_open() == 1
    })
    .await;
    // ...so a complete request (from another client: one address holds at most all but one
    // of the slots) waits for it, not beside it...
    let mut waiting = connect_from([127, 0, 0, 2], addr).await;
    waiting
        .write_all(b"GET /api/openapi.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    // ...while the operator's health check is answered at once, on a slot kept for it.
    let mut health = connect_from([127, 0, 0, 3], addr).await;
    health
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut answer = Vec::new();
    tokio::time::timeout(bound, health.read_to_end(&mut answer))
        .await
        .expect("the health check is answered")
        .expect("read");
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert!(
        matches!(trickler.try_read(&mut [0u8; 8]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the health check did not wait for the trickler to be cut off"
    );
    let mut answer = Vec::new();
    tokio::time::timeout(bound, waiting.read_to_end(&mut answer))
        .await
        .expect("the waiting request is answered once the trickler is cut off")
        .expect("read");
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    // It was answered only after the header timeout closed the trickler.
    let mut rest = [0u8; 64];
    match trickler.try_read(&mut rest) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("the trickler should have been closed first: {other:?}"),
    }
    assert!(s.svc.metrics.http_connections_open() <= 1);

    // A body trickled in slower than the read timeout is refused with a reason.
    let mut slow_body = tokio::net::TcpStream::connect(addr).await.expect("connect");
    slow_body
        .write_all(b"POST /api/session HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
        .await
        .expect("write");
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(bound, slow_body.read(&mut answer))
        .await
        .expect("the slow body is answered")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let _ = s.stop.send(true);
}

/// Finding 5: six concurrent Opus requests of one uncached file each encoded it, and thirty
/// waveform requests with different `points` each read the whole file into memory and were each
/// cached, with caches cleared wholesale when full. Now one job per rendering is shared by its
/// concurrent requests, `points` is one of a few sizes, and peaks are computed in chunks.
async fn opus_and_waveforms_are_rendered_once_for_concurrent_requests(db: Db) {
    let t = start_sim(0.0).await;
    let url = database_url(&t, db).await;
    let (s, id) = common::one_playable_recording(&t, &url, &[], "default").await;
    let admin = common::authed();
    let opus: Vec<_> = (0..6)
        .map(|_| {
            let request = admin.get(format!("{}/api/recordings/{id}/audio?format=opus", s.base));
            tokio::spawn(send(request))
        })
        .collect();
    let mut bodies = Vec::new();
    for request in opus {
        let answer = request.await.expect("task");
        assert_eq!(answer.status, 200);
        assert!(answer.body.starts_with(b"OggS"));
        bodies.push(answer.body);
    }
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "one encoding served to all"
    );
    assert_eq!(
        metric(&s, "audio_renderings_total{kind=\"opus\"}").await,
        "audio_renderings_total{kind=\"opus\"} 1"
    );

    let odd = send(admin.get(format!("{}/api/recordings/{id}/peaks?points=1234", s.base))).await;
    assert_eq!(odd.status, 400);
    assert!(odd.json()["message"]
        .as_str()
        .is_some_and(|m| m.contains("100, 200, 400, 800, 1600, 3200")));
    let peaks: Vec<_> = (0..30)
        .map(|i| {
            let points = [100, 200, 400, 800, 1600, 3200][i % 6];
            let request = admin.get(format!(
                "{}/api/recordings/{id}/peaks?points={points}",
                s.base
            ));
            tokio::spawn(send(request))
        })
        .collect();
    for request in peaks {
        assert_eq!(request.await.expect("task").status, 200);
    }
    assert_eq!(
        metric(&s, "audio_renderings_total{kind=\"peaks\"}").await,
        "audio_renderings_total{kind=\"peaks\"} 6"
    );
    let _ = s.stop.send(true);
}

/// Rewrites the stored audit chain from its first event on as someone with write access to the
/// database (and no audit key) would: `edit` changes events, then every hash is recomputed with
/// `keys` (None: plain SHA-256, the key ids dropped) and the head row follows.
async fn rewrite_chain(
    db: &ari_recorder::db::Database,
    keys: Option<&ari_recorder::signing::SigningKeys>,
    edit: impl Fn(&mut ari_recorder::access::audit::StoredEvent),
) {
    use ari_recorder::access::audit::{event_hash, StoredEvent, GENESIS};
    let mut events: Vec<StoredEvent> = sqlx::query_as(
        "SELECT seq, at_ms, actor, tenant, action, recording_id, outcome, client, detail, prev_hash, hash, key_id FROM audit_events ORDER BY seq",
    )
    .fetch_all(&db.pool)
    .await
    .expect("events");
    let mut prev = GENESIS.to_string();
    for event in &mut events {
        edit(event);
        if keys.is_none() {
            event.key_id = None;
        }
        event.prev_hash = prev.clone();
        event.hash = event_hash(event, keys).expect("hash");
        prev = event.hash.clone();
        sqlx::query("UPDATE audit_events SET outcome = $1, prev_hash = $2, hash = $3, key_id = $4 WHERE seq = $5")
            .bind(&event.outcome)
            .bind(&event.prev_hash)
            .bind(&event.hash)
            .bind(&event.key_id)
            .bind(event.seq)
            .execute(&db.pool)
            .await
            .expect("rewrite");
    }
    sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
        .bind(events.len() as i64)
        .bind(&prev)
        .execute(&db.pool)
        .await
        .expect("head");
}

/// Finding 6: with write access to the database a reviewer edited an event, recomputed every
/// hash and the head, and `audit verify` said intact. Now the chain is sealed with a key kept
/// outside the database, and its head is anchored in a file outside it.
async fn a_rewritten_or_cut_audit_chain_is_found(db: Db) {
    use ari_recorder::access::audit::verify;
    let t = start_sim(0.0).await;
    let url = database_url(&t, db).await;
    let anchors = t.dir.path().join("audit-anchors");
    let key = "2026-11:0123456789abcdef0123456789abcdef";
    let s = start_service_with(
        &t,
        &[],
        &url,
        &[
            ("AUDIT_KEYS", key),
            ("AUDIT_ANCHOR_FILE", anchors.to_str().expect("utf-8")),
        ],
    )
    .await;
    for _ in 0..3 {
        let list = send(common::authed().get(format!("{}/api/recordings", s.base))).await;
        assert_eq!(list.status, 200);
    }
    let db = s.svc.db.clone();
    // Stopping writes the last head to the anchor file.
    let _ = s.stop.send(true);
    s.svc.join().await;
    let intact = verify(&db, Some(&anchors)).await.expect("verify");
    assert_eq!((intact.problem.as_deref(), intact.unsealed), (None, 0));
    assert_eq!(intact.events, 4, "the sealing event and three lists");
    assert!(intact.anchors >= 1);

    // Cutting the newest event and pointing the head at the one before: every remaining seal
    // holds, but the anchor outside the database names the lost event.
    sqlx::query("DELETE FROM audit_events WHERE seq = 4")
        .execute(&db.pool)
        .await
        .expect("cut");
    let (hash,): (String,) = sqlx::query_as("SELECT hash FROM audit_events WHERE seq = 3")
        .fetch_one(&db.pool)
        .await
        .expect("event 3");
    sqlx::query("UPDATE audit_head SET seq = 3, hash = $1 WHERE id = 1")
        .bind(&hash)
        .execute(&db.pool)
        .await
        .expect("head");
    let cut = verify(&db, Some(&anchors)).await.expect("verify");
    assert!(
        cut.problem
            .as_deref()
            .is_some_and(|p| p.contains("removed from the end")),
        "{cut:?}"
    );

    // Without the anchor file a deployment that anchors is not verified at all (second probe,
    // finding 5); the checks of the seals below are of a deployment that does not anchor.
    let refused = verify(&db, None).await;
    assert!(refused.is_err_and(|e| e.to_string().contains("AUDIT_ANCHOR_FILE")));
    sqlx::query("UPDATE audit_head SET anchored_since_ms = NULL WHERE id = 1")
        .execute(&db.pool)
        .await
        .expect("a deployment that does not anchor");

    // Editing an event and recomputing the chain without the key: plain SHA-256...
    let deny = |e: &mut ari_recorder::access::audit::StoredEvent| {
        if e.seq == 2 {
            e.outcome = "role_restriction".into();
        }
    };
    rewrite_chain(&db, None, deny).await;
    let unkeyed = verify(&db, None).await.expect("verify");
    assert!(
        unkeyed
            .problem
            .as_deref()
            .is_some_and(|p| p.contains("not sealed")),
        "{unkeyed:?}"
    );
    // ...or with a guessed key under the real key's id.
    let guess = ari_recorder::signing::SigningKeys::parse(&[
        "2026-11:guessed-guessed-guessed-guessed-!".to_string(),
    ])
    .expect("key");
    rewrite_chain(&db, Some(&guess), |e| {
        e.key_id = Some("2026-11".into());
        deny(e)
    })
    .await;
    let guessed = verify(&db, None).await.expect("verify");
    assert!(
        guessed
            .problem
            .as_deref()
            .is_some_and(|p| p.contains("event 1 was altered")),
        "{guessed:?}"
    );
    // Without the key, nothing sealed can be checked at all.
    let keyless = db.clone().with_audit_keys(None);
    let unknown = verify(&keyless, None).await.expect("verify");
    assert!(
        unknown
            .problem
            .as_deref()
            .is_some_and(|p| p.contains("not among AUDIT_KEYS")),
        "{unknown:?}"
    );
}

/// Finding 13: caller-name searches read every row of `recording_words` on SQLite and had no
/// bound on what one request could ask. Now each word is an index range (tested on the plan in
/// `http::recordings`), words are at least two characters and at most five.
async fn caller_name_searches_are_bounded(db: Db) {
    let t = start_sim(0.0).await;
    let url = database_url(&t, db).await;
    let (s, id) = common::one_playable_recording(&t, &url, &[], "default").await;
    for word in ["alice", "zhang"] {
        sqlx::query("INSERT INTO recording_words (word, recording_id) VALUES ($1, $2)")
            .bind(word)
            .bind(id)
            .execute(&s.svc.db.pool)
            .await
            .expect("word");
    }
    let admin = common::authed();
    let search = |name: &str| {
        send(
            admin
                .get(format!("{}/api/recordings", s.base))
                .query(&[("name", name)]),
        )
    };
    for found in ["AL", "zh ali", "Alice"] {
        let answer = search(found).await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.json()["recordings"][0]["id"], id, "{found}");
    }
    for missing in ["lice", "alicex"] {
        let answer = search(missing).await;
        assert_eq!(
            answer.json()["recordings"].as_array().map(Vec::len),
            Some(0),
            "{missing}"
        );
    }
    for refused in ["a", "al b", "one two three four five six"] {
        let answer = search(refused).await;
        assert_eq!(
            (answer.status, answer.error().as_str()),
            (400, "bad_request"),
            "{refused}"
        );
    }
    let _ = s.stop.send(true);
}

/// Finding 9: when writing a call's metadata failed, the write was dropped and the call's file
/// was filed under the default tenant, not private, consent unknown. Now the write is retried
/// until the database takes it, and meanwhile the file is quarantined: listed only to the operator's admins.
async fn a_calls_metadata_outlives_a_failing_database_and_its_file_waits(db: Db) {
    let t = start_sim(0.0).await;
    let url = database_url(&t, db).await;
    let flow = r#"
[flow]
numbers = ["100"]
start = "desk"
tenant = "acme"

[nodes.desk]
type = "transfer"
target = "PJSIP/201"
ring_timeout = 5
record_call = true
"#;
    let s = start_service_with(&t, &[("support.toml", flow)], &url, &[]).await;
    let (refuse, allow) = match db {
        Db::Sqlite => (
            "CREATE TRIGGER refuse_call_metadata BEFORE INSERT ON call_recordings \
             BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
            "DROP TRIGGER refuse_call_metadata",
        ),
        Db::Postgres => (
            "CREATE FUNCTION refuse_call_metadata() RETURNS trigger AS $$ \
             BEGIN RAISE EXCEPTION 'refused by the test'; END $$ LANGUAGE plpgsql; \
             CREATE TRIGGER refuse_call_metadata BEFORE INSERT ON call_recordings \
             FOR EACH ROW EXECUTE FUNCTION refuse_call_metadata()",
            "DROP TRIGGER refuse_call_metadata ON call_recordings",
        ),
    };
    sqlx::raw_sql(refuse)
        .execute(&s.svc.db.pool)
        .await
        .expect("refuse");
    t.sim
        .place_inbound_call("100", "Alice <5551001>", "talk")
        .expect("call");
    common::wait_until("the metadata write retried", || {
        s.svc.metrics.library_write_retries() >= 1
    })
    .await;
    let status_of_call_file = || async {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT status, tenant, private FROM recordings WHERE name LIKE 'transfer-%'",
        )
        .fetch_all(&s.svc.db.pool)
        .await
        .expect("rows");
        rows
    };
    common::eventually("the call's file quarantined", async || {
        status_of_call_file()
            .await
            .iter()
            .any(|r| r.0 == "quarantined")
    })
    .await;
    let acme_admin = common::tenant_admin(&s.svc.db, "acme").await;
    // Whose it is is not known yet: acme's admin does not see it; the operator's admins see it
    // listed as quarantined, with the reason (issue 30: not invisible to everyone).
    let list = send(acme_admin.get(format!("{}/api/recordings", s.base))).await;
    assert_eq!(list.json()["recordings"].as_array().map(Vec::len), Some(0));
    let list = send(common::authed().get(format!("{}/api/recordings", s.base))).await;
    let rows = list.json()["recordings"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["status"], "quarantined");
    assert!(rows[0]["reason"]
        .as_str()
        .is_some_and(|r| r.contains("metadata")));

    // The database takes writes again: the metadata lands, the call ends, the file is acme's.
    sqlx::raw_sql(allow)
        .execute(&s.svc.db.pool)
        .await
        .expect("allow");
    common::wait_rows(&s.svc.db, "metadata stored", 1, |_| true).await;
    t.sim.advance(16.5);
    let mut filed = Vec::new();
    for _ in 0..1000 {
        filed = status_of_call_file().await;
        if filed.iter().any(|r| r.0 == "ready") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(filed, vec![("ready".to_string(), "acme".to_string(), 0)]);
    let list = send(acme_admin.get(format!("{}/api/recordings", s.base))).await;
    assert_eq!(list.json()["recordings"].as_array().map(Vec::len), Some(1));
    let _ = s.stop.send(true);
}

on_both_databases!(
    a_calls_metadata_outlives_a_failing_database_and_its_file_waits,
    caller_name_searches_are_bounded,
    a_rewritten_or_cut_audit_chain_is_found,
    opus_and_waveforms_are_rendered_once_for_concurrent_requests,
    metrics_and_deployment_state_belong_to_the_operator,
    idle_sessions_end_and_a_disabled_users_links_stay_dead,
    private_recordings_match_participants_exactly_and_extensions_are_unique,
    user_changes_are_validated_and_disabling_revokes_tokens_for_good,
    deleting_a_symlinked_recording_removes_the_link_not_its_target,
    behind_a_trusted_proxy_each_client_keeps_its_own_address,
    guessing_from_one_address_never_locks_the_user_out_elsewhere,
    a_flood_of_bad_links_is_cut_short_and_audited_small_under_a_tenant,
    placing_calls_stays_inside_the_tenants_endpoints,
);

/// One body limit for every route (tower-http's), answered as the API's JSON error: a body
/// that declares a larger length is refused before it is read, one sent in chunks once it
/// passes the limit; a body within it goes through.
#[tokio::test]
async fn bodies_over_the_limit_get_a_json_413() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let t = start_sim(0.0).await;
    let url = database_url(&t, Db::Sqlite).await;
    put_wav(&t, "call");
    let s = start_service_with(&t, &[], &url, &[]).await;
    let limit = ari_recorder::http::MAX_REQUEST_BODY;
    let big = "x".repeat(limit + 1);

    let sign_in = send(
        reqwest::Client::new()
            .post(format!("{}/api/session", s.base))
            .header("content-type", "application/json")
            .body(format!("{{\"username\": \"{big}\"}}")),
    )
    .await;
    assert_eq!(
        (sign_in.status, sign_in.error().as_str()),
        (413, "payload_too_large")
    );

    wait_ready(&s.svc.db, 1).await;
    let (id,): (i64,) = sqlx::query_as("SELECT id FROM recordings WHERE name = 'call'")
        .fetch_one(&s.svc.db.pool)
        .await
        .expect("id");
    let transcript = format!("{}/api/recordings/{id}/transcript", s.base);
    let too_long = send(
        common::authed()
            .put(&transcript)
            .header("content-type", "text/vtt")
            .body(format!("WEBVTT\n\n00:00.000 --> 00:01.000\n{big}\n")),
    )
    .await;
    assert_eq!(
        (too_long.status, too_long.error().as_str()),
        (413, "payload_too_large")
    );
    let fits = send(
        common::authed()
            .put(&transcript)
            .header("content-type", "text/vtt")
            .body("WEBVTT\n\n00:00.000 --> 00:01.000\nhello\n"),
    )
    .await;
    assert_eq!(fits.status, 200, "{:?}", fits.json());

    // No length declared: chunks until the limit is passed.
    let mut chunked = tokio::net::TcpStream::connect(s.svc.http_addr)
        .await
        .expect("connect");
    chunked
        .write_all(b"POST /api/session HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
        .await
        .expect("headers");
    let chunk = vec![b' '; 64 * 1024];
    for _ in 0..(limit / chunk.len() + 2) {
        let mut frame = format!("{:x}\r\n", chunk.len()).into_bytes();
        frame.extend_from_slice(&chunk);
        frame.extend_from_slice(b"\r\n");
        if chunked.write_all(&frame).await.is_err() {
            break; // answered and closed before the end: fine
        }
    }
    let _ = chunked.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = chunked.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("\"payload_too_large\""), "{answer}");
    let _ = s.stop.send(true);
}
