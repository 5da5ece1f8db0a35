//! The findings of the second security probe (issue #31), each as the attack that found it,
//! against a real service and database: what it can no longer do.

mod common;

use std::time::Duration;

use common::{
    client_from, connect_from, database_url, put_wav, send, start_service_with, start_sim,
    wait_ready, Db,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The start of a sign-in whose body never comes: it declares 2 MB and sends one byte.
const SLOW_SIGN_IN: &[u8] = b"POST /api/session HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2000000\r\n\r\n{";

/// Finding 1: 1,030 connections sending a 2 MB sign-in one byte every 20 s kept every slot,
/// and `/healthz` from another address got no answer. Now a body larger than its route takes is
/// refused from its headers, one address holds a bounded share of the connections, the whole
/// body has a deadline however it trickles, and health checks have slots of their own.
#[tokio::test]
async fn slow_bodies_from_one_client_take_neither_the_slots_nor_the_health_check() {
    let t = start_sim(0.0).await;
    let url = database_url(&t, Db::Sqlite).await;
    let s = start_service_with(
        &t,
        &[],
        &url,
        &[
            ("HTTP_MAX_CONNECTIONS", "8"),
            ("HTTP_MAX_CONNECTIONS_PER_CLIENT", "3"),
            ("HTTP_READ_TIMEOUT_SECONDS", "1"),
        ],
    )
    .await;
    let addr = s.svc.http_addr;
    let bound = Duration::from_secs(20);

    // The probe's request is refused from its headers: a sign-in takes 16 KiB at most. The
    // answer carries the security headers every answer has (finding 7).
    let mut probe = connect_from([127, 0, 0, 5], addr).await;
    probe.write_all(SLOW_SIGN_IN).await.expect("write");
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(bound, probe.read(&mut answer))
        .await
        .expect("answered at once")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer[..n]).to_lowercase();
    assert!(answer.starts_with("http/1.1 413"), "{answer}");
    assert!(answer.contains("payload_too_large"), "{answer}");
    for header in [
        "x-content-type-options: nosniff",
        "x-frame-options: deny",
        "content-security-policy:",
        "referrer-policy: no-referrer",
    ] {
        assert!(answer.contains(header), "413 without {header}: {answer}");
    }

    // One address opens ten connections: three are kept, the rest closed at once.
    let mut held = Vec::new();
    for _ in 0..10 {
        let mut c = connect_from([127, 0, 0, 6], addr).await;
        let _ = c.write_all(b"POST /api/session HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{").await;
        held.push(c);
    }
    common::wait_until("the surplus connections refused", || {
        s.svc.metrics.http_connections_refused() >= 7
    })
    .await;
    assert_eq!(s.svc.metrics.http_connections_refused(), 7);
    // Another client is served meanwhile, and so is the operator's health check.
    let other = send(client_from([127, 0, 0, 7]).get(format!("{}/api/openapi.json", s.base))).await;
    assert_eq!(other.status, 200);
    let health = send(client_from([127, 0, 0, 8]).get(format!("{}/healthz", s.base))).await;
    assert_eq!(health.status, 200);

    // The kept ones trickle a byte every 300 ms: a timeout restarted at each byte (1 s) would
    // never end them; the body's deadline (1 s plus 100 bytes at the minimum rate) does.
    let trickled = held.into_iter().next().expect("a kept connection");
    let (mut reader, mut writer) = trickled.into_split();
    let trickle = tokio::spawn(async move {
        for _ in 0..99 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if writer.write_all(b" ").await.is_err() {
                break;
            }
        }
    });
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(bound, reader.read(&mut answer))
        .await
        .expect("the trickled body is cut off")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    trickle.abort();
    let _ = s.stop.send(true);
}

/// Finding 1, the slots: every connection taken by clients within their share, the health
/// check still answers at once from a slot kept for it.
#[tokio::test]
async fn health_checks_answer_while_every_slot_is_taken() {
    let t = start_sim(0.0).await;
    let url = database_url(&t, Db::Sqlite).await;
    let s = start_service_with(
        &t,
        &[],
        &url,
        &[
            ("HTTP_MAX_CONNECTIONS", "4"),
            ("HTTP_READ_TIMEOUT_SECONDS", "30"),
        ],
    )
    .await;
    let addr = s.svc.http_addr;
    let mut silent = Vec::new();
    for i in 0..4u8 {
        let mut c = connect_from([127, 0, 1, 10 + i], addr).await;
        c.write_all(b"GET /api/openapi.json HTTP/1.1\r\nHost: x\r\n")
            .await
            .expect("write");
        silent.push(c);
    }
    common::wait_until("every slot taken", || {
        s.svc.metrics.http_connections_open() >= 4
    })
    .await;
    for path in ["/healthz", "/readyz"] {
        let answer = tokio::time::timeout(
            Duration::from_secs(20),
            send(client_from([127, 0, 1, 20]).get(format!("{}{path}", s.base))),
        )
        .await
        .expect("answered while every slot is taken");
        assert_eq!(answer.status, 200, "{path}");
    }
    // Requests that are not health checks take the reserve too (slow sign-ins from four more
    // addresses): they wait a moment for a slot, are answered 503 and leave the reserve free.
    let mut crowd = Vec::new();
    for i in 0..4u8 {
        let mut c = connect_from([127, 0, 1, 30 + i], addr).await;
        c.write_all(b"POST /api/session HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
            .await
            .expect("write");
        crowd.push(c);
    }
    for mut c in crowd {
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(20), c.read_to_end(&mut answer))
            .await
            .expect("answered")
            .expect("read");
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(answer.to_lowercase().contains("retry-after: 2"), "{answer}");
    }
    let answer = send(client_from([127, 0, 1, 21]).get(format!("{}/healthz", s.base))).await;
    assert_eq!(answer.status, 200);
    drop(silent);
    let _ = s.stop.send(true);
}

/// Finding 2: behind the shipped nginx (which manages X-Forwarded-For only), 40 wrong passwords
/// each with its own `Forwarded: for=` got 40 x 401 and the audit log recorded the forged
/// addresses. Only the header the operator names is believed.
async fn a_forwarded_header_the_proxy_does_not_manage_is_ignored(db: Db) {
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
    let mut statuses = Vec::new();
    for i in 0..40 {
        let answer = send(
            proxy
                .post(format!("{}/api/session", s.base))
                .header("forwarded", format!("for=198.51.100.{i}"))
                .header("x-forwarded-for", "203.0.113.50")
                .json(&serde_json::json!({"username": "tester", "password": "guess"})),
        )
        .await;
        statuses.push(answer.status);
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    let clients: Vec<(String,)> =
        sqlx::query_as("SELECT DISTINCT client FROM audit_events WHERE action = 'login'")
            .fetch_all(&s.svc.db.pool)
            .await
            .expect("audit");
    assert_eq!(clients, vec![("203.0.113.50".to_string(),)]);
    let _ = s.stop.send(true);
}

/// Finding 3: a user named after a caller's number listed and played that caller's private
/// recording. Participants are matched on extensions only.
async fn a_user_named_after_a_callers_number_does_not_see_their_private_call(db: Db) {
    let t = start_sim(0.0).await;
    let url = database_url(&t, db).await;
    put_wav(&t, "private-call");
    let s = start_service_with(&t, &[], &url, &[]).await;
    wait_ready(&s.svc.db, 1).await;
    let (id,): (i64,) = sqlx::query_as(
        "UPDATE recordings SET private = 1, participants = '5553001,PJSIP/209', consent = 'granted' RETURNING id",
    )
    .fetch_one(&s.svc.db.pool)
    .await
    .expect("private");
    use ari_recorder::access::Scope;
    let scopes = [Scope::RecordingsRead, Scope::RecordingsPlay];
    let named =
        common::user_token(&s.svc.db, "5553001", "staff", "default", &[], None, &scopes).await;
    let agent = common::user_token(
        &s.svc.db,
        "agent209",
        "staff",
        "default",
        &[],
        Some("PJSIP/209"),
        &scopes,
    )
    .await;
    let listed = |token: String| {
        let base = s.base.clone();
        async move {
            let list = send(common::bearer(&token).get(format!("{base}/api/recordings"))).await;
            list.json()["recordings"].as_array().map_or(0, Vec::len)
        }
    };
    assert_eq!(listed(named.clone()).await, 0, "a name is not an extension");
    let play =
        send(common::bearer(&named).get(format!("{}/api/recordings/{id}/audio", s.base))).await;
    assert_eq!(play.status, 403, "private");
    assert_eq!(listed(agent).await, 1, "the extension on the call sees it");
    let _ = s.stop.send(true);
}

/// Finding 4, signed in: one staff token wrote 15,305 events in 5 s with a missing id and
/// one-byte range plays. Past 50 identical events in a minute the rest are counted into one
/// event, and a principal's requests are rate-limited.
async fn a_principals_repeated_reads_fold_into_counted_events(db: Db) {
    let t = start_sim(0.0).await;
    let url = database_url(&t, db).await;
    let (s, id) =
        common::one_playable_recording(&t, &url, &[("API_REQUESTS_PER_MINUTE", "230")], "default")
            .await;
    let count = || async {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM audit_events")
            .fetch_one(&s.svc.db.pool)
            .await
            .expect("count");
        n
    };
    let before = count().await;
    let admin = common::authed();
    for i in 0..120 {
        let answer = send(
            admin
                .get(format!("{}/api/recordings/{id}/audio", s.base))
                .header("range", format!("bytes={i}-{i}")),
        )
        .await;
        assert_eq!(answer.status, 206);
    }
    for _ in 0..80 {
        let answer = send(admin.get(format!("{}/api/recordings/99999", s.base))).await;
        assert_eq!(answer.status, 404);
    }
    assert_eq!(
        count().await - before,
        100,
        "50 plays and 50 misses written"
    );
    // The windows end (here: the service's last flush): one counted event for each.
    ari_recorder::access::audit::flush_folds(&s.svc.db, true)
        .await
        .expect("flush");
    let details: Vec<(Option<String>,)> = sqlx::query_as(
        "SELECT detail FROM audit_events WHERE seq > $1 AND detail LIKE '%more times from%' ORDER BY seq",
    )
    .bind(before)
    .fetch_all(&s.svc.db.pool)
    .await
    .expect("details");
    let counted: Vec<&str> = details.iter().filter_map(|(d,)| d.as_deref()).collect();
    assert_eq!(counted.len(), 2, "{counted:?}");
    assert!(
        counted.iter().any(|d| d.starts_with("70 more times")),
        "{counted:?}"
    );
    assert!(
        counted.iter().any(|d| d.starts_with("30 more times")),
        "{counted:?}"
    );
    let metrics = common::metrics_text(&s.base).await;
    assert!(
        metrics.contains("audit_events_folded_total 100"),
        "{metrics}"
    );

    // Past 230 requests in the minute, the principal is answered 429, not audited.
    let written = count().await;
    let mut limited = 0;
    for _ in 0..60 {
        if send(admin.get(format!("{}/api/recordings", s.base)))
            .await
            .status
            == 429
        {
            limited += 1;
        }
    }
    assert!(limited >= 20, "{limited}");
    assert_eq!(
        count().await - written,
        60 - limited,
        "a refusal of the rate is not audited"
    );
    let metrics = common::metrics_text(&s.base).await;
    assert!(
        metrics.contains(&format!("requests_rate_limited_total {limited}")),
        "{metrics}"
    );
    let _ = s.stop.send(true);
}

/// Finding 4, anonymous: 500 addresses wrote 6,314 events in 5 s, the failure cap being per
/// address. The cap now also holds over every address together.
async fn many_addresses_cannot_grow_the_audit_log_at_will(db: Db) {
    let t = start_sim(0.0).await;
    let url = database_url(&t, db).await;
    let (s, id) =
        common::one_playable_recording(&t, &url, &[("GRANTS_PER_MINUTE", "1")], "default").await;
    let before: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM audit_events")
        .fetch_one(&s.svc.db.pool)
        .await
        .expect("count");
    let mut refused = 0;
    for i in 0..60u8 {
        let answer = send(client_from([127, 0, 2, i + 1]).get(format!(
            "{}/api/recordings/{id}/audio?sig=00&by=x&exp=1&nonce=ab&kid=a",
            s.base
        )))
        .await;
        if answer.status == 429 {
            refused += 1;
        }
    }
    let after: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM audit_events")
        .fetch_one(&s.svc.db.pool)
        .await
        .expect("count");
    // Twenty addresses' worth a minute (one each here), whatever the number of addresses.
    assert_eq!(after.0 - before.0, 20);
    assert_eq!(refused, 40);
    let _ = s.stop.send(true);
}

/// Finding 5: cutting the six events after the last anchor (an admin's delete among them) and
/// rewinding the head passed `audit verify`. A delete is anchored at once, and a deployment
/// that anchors is not verified without its anchor file.
async fn a_delete_is_anchored_at_once_and_cannot_be_cut(db: Db) {
    let t = start_sim(0.0).await;
    let url = database_url(&t, db).await;
    let anchors = t.dir.path().join("anchors.txt");
    let anchor_text = anchors.display().to_string();
    let (s, id) = common::one_playable_recording(
        &t,
        &url,
        &[("AUDIT_ANCHOR_FILE", anchor_text.as_str())],
        "default",
    )
    .await;
    let admin = common::authed();
    let answer = common::delete_confirmed(&admin, &s.base, id).await;
    assert_eq!(answer.status, 200);
    let (delete_seq,): (i64,) = sqlx::query_as(
        "SELECT seq FROM audit_events WHERE action = 'delete' AND detail = 'deleted'",
    )
    .fetch_one(&s.svc.db.pool)
    .await
    .expect("the delete's event");
    common::wait_until("the delete anchored", || {
        std::fs::read_to_string(&anchors)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(1)?.parse::<i64>().ok())
            .any(|seq| seq >= delete_seq)
    })
    .await;
    // Reads after it: these, the minute's anchor has not seen yet.
    for _ in 0..3 {
        send(admin.get(format!("{}/api/recordings", s.base))).await;
    }
    let _ = s.stop.send(true);
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Cut from the delete on, and rewind the head, as the probe did.
    let (prev,): (String,) = sqlx::query_as("SELECT prev_hash FROM audit_events WHERE seq = $1")
        .bind(delete_seq)
        .fetch_one(&s.svc.db.pool)
        .await
        .expect("prev");
    sqlx::query("DELETE FROM audit_events WHERE seq >= $1")
        .bind(delete_seq)
        .execute(&s.svc.db.pool)
        .await
        .expect("cut");
    sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
        .bind(delete_seq - 1)
        .bind(prev)
        .execute(&s.svc.db.pool)
        .await
        .expect("rewind");
    let report = ari_recorder::access::audit::verify(&s.svc.db, Some(&anchors))
        .await
        .expect("verify");
    assert!(
        report
            .problem
            .as_deref()
            .unwrap_or("")
            .contains("removed from the end"),
        "{report:?}"
    );
    let refused = ari_recorder::access::audit::verify(&s.svc.db, None).await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.to_string().contains("AUDIT_ANCHOR_FILE")),
        "{:?}",
        refused.map(|r| r.problem)
    );
}

/// Findings 6 and 12: staff of the operator's tenant read the deployment settings (directly and
/// through `/api/flows`), and `GET download-url` with only the session cookie made a link.
async fn staff_see_no_settings_and_a_cookie_alone_makes_no_link(db: Db) {
    let t = start_sim(0.0).await;
    let url = database_url(&t, db).await;
    let (s, id) = common::one_playable_recording(&t, &url, &[], "default").await;
    let staff = common::bearer(
        &common::user_token(
            &s.svc.db,
            "reviewer",
            "staff",
            "default",
            &[],
            None,
            &[ari_recorder::access::Scope::RecordingsRead],
        )
        .await,
    );
    let settings = send(staff.get(format!("{}/api/settings", s.base))).await;
    assert_eq!(settings.status, 403);
    let flows = send(staff.get(format!("{}/api/flows", s.base))).await;
    assert_eq!(flows.status, 200);
    assert!(flows.json()["settings"].is_null(), "{:?}", flows.json());
    let admin_flows = send(common::authed().get(format!("{}/api/flows", s.base))).await;
    assert!(admin_flows.json()["settings"].is_object());

    let browser = reqwest::Client::new();
    let signed_in = send(
        browser
            .post(format!("{}/api/session", s.base))
            .json(&serde_json::json!({"username": "tester", "password": "tester-password"})),
    )
    .await;
    let cookie = signed_in.headers["set-cookie"]
        .to_str()
        .expect("ascii")
        .split(';')
        .next()
        .expect("cookie")
        .to_string();
    let csrf = signed_in.json()["csrf_token"]
        .as_str()
        .expect("csrf")
        .to_string();
    let link = format!("{}/api/recordings/{id}/download-url", s.base);
    let forged = send(browser.get(&link).header("cookie", &cookie)).await;
    assert_eq!((forged.status, forged.error().as_str()), (403, "csrf"));
    let made = send(
        browser
            .get(&link)
            .header("cookie", &cookie)
            .header("x-csrf-token", &csrf),
    )
    .await;
    assert_eq!(made.status, 201);
    let _ = s.stop.send(true);
}

/// Findings 9 and 11: deleting a transcript left its `.vtt` beside the audio, imported again
/// seconds later; WebVTT import stored an escaped tag as HTML and took any cue time.
async fn a_transcript_goes_for_good_and_is_stored_as_plain_text(db: Db) {
    let t = start_sim(0.0).await;
    let url = database_url(&t, db).await;
    put_wav(&t, "call");
    std::fs::write(
        t.recordings.join("call.vtt"),
        "WEBVTT\n\n00:00.000 --> 00:01.000\n&lt;img src=x onerror=alert(1)&gt;hello\n",
    )
    .expect("sidecar");
    let s = start_service_with(&t, &[], &url, &[]).await;
    wait_ready(&s.svc.db, 1).await;
    let (id,): (i64,) = sqlx::query_as("UPDATE recordings SET consent = 'granted' RETURNING id")
        .fetch_one(&s.svc.db.pool)
        .await
        .expect("id");
    let admin = common::authed();
    let transcript = format!("{}/api/recordings/{id}/transcript", s.base);
    let mut cues = serde_json::Value::Null;
    for _ in 0..1000 {
        let answer = send(admin.get(&transcript)).await;
        if answer.status == 200 {
            cues = answer.json()["cues"].clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        cues[0]["text"], "hello",
        "the escaped tag is not stored as markup"
    );
    let bad_time = send(
        admin
            .put(&transcript)
            .header("content-type", "text/vtt")
            .body("WEBVTT\n\n00:75:00.000 --> 01:00:00.000\nx\n"),
    )
    .await;
    assert_eq!(bad_time.status, 400);
    assert!(bad_time.json()["message"]
        .as_str()
        .unwrap_or("")
        .contains("00:75:00.000"));

    let removed = send(admin.delete(&transcript)).await;
    assert_eq!(removed.json()["removed"], true);
    assert!(!t.recordings.join("call.vtt").exists(), "the file went too");
    // A full walk of the folder (as at the next start) finds nothing to import again.
    s.svc.indexer.full_scan().await.expect("scan");
    assert_eq!(send(admin.get(&transcript)).await.status, 404);
    let _ = s.stop.send(true);
}

/// Finding 10: user names were global, so creating a user in tenant A answered 409 for a name
/// of tenant B and told A that it existed. Names are unique within a tenant; a sign-in names
/// its tenant when several share a name and a password.
async fn user_names_belong_to_their_tenant(db: Db) {
    let t = start_sim(0.0).await;
    let url = database_url(&t, db).await;
    let s = start_service_with(&t, &[], &url, &[]).await;
    let acme = common::tenant_admin(&s.svc.db, "acme").await;
    let globex = common::tenant_admin(&s.svc.db, "globex").await;
    let create = |admin: &reqwest::Client, tenant: &str, password: &str| {
        send(
            admin
                .post(format!("{}/api/users", s.base))
                .json(&serde_json::json!({
                    "username": "alice", "password": password, "role": "staff",
                    "tenant": tenant, "projects": [],
                })),
        )
    };
    assert_eq!(
        create(&globex, "globex", "globex-alice-pass").await.status,
        201
    );
    let again = create(&acme, "acme", "acme-alice-password").await;
    assert_eq!(again.status, 201, "{:?}", again.json());
    let twice = create(&acme, "acme", "acme-alice-password").await;
    assert_eq!(twice.status, 409, "the tenant's own names are still unique");
    let sign_in = |password: &str, tenant: Option<&str>| {
        let mut body = serde_json::json!({"username": "alice", "password": password});
        if let Some(tenant) = tenant {
            body["tenant"] = tenant.into();
        }
        send(
            reqwest::Client::new()
                .post(format!("{}/api/session", s.base))
                .json(&body),
        )
    };
    let acme_alice = sign_in("acme-alice-password", None).await;
    assert_eq!(acme_alice.status, 200);
    assert_eq!(acme_alice.json()["user"]["tenant"], "acme");
    let globex_alice = sign_in("globex-alice-pass", None).await;
    assert_eq!(globex_alice.json()["user"]["tenant"], "globex");
    assert_eq!(
        sign_in("acme-alice-password", Some("globex")).await.status,
        401
    );
    // The same password in both tenants: the sign-in must say which.
    sqlx::query(
        "UPDATE users SET password_hash = (SELECT password_hash FROM users WHERE tenant = 'acme' AND username = 'alice') WHERE tenant = 'globex' AND username = 'alice'",
    )
    .execute(&s.svc.db.pool)
    .await
    .expect("same password");
    let unsure = sign_in("acme-alice-password", None).await;
    assert_eq!(
        (unsure.status, unsure.error().as_str()),
        (401, "tenant_needed")
    );
    let sure = sign_in("acme-alice-password", Some("globex")).await;
    assert_eq!(sure.json()["user"]["tenant"], "globex");
    let _ = s.stop.send(true);
}

on_both_databases!(
    user_names_belong_to_their_tenant,
    a_forwarded_header_the_proxy_does_not_manage_is_ignored,
    a_user_named_after_a_callers_number_does_not_see_their_private_call,
    a_principals_repeated_reads_fold_into_counted_events,
    many_addresses_cannot_grow_the_audit_log_at_will,
    a_delete_is_anchored_at_once_and_cannot_be_cut,
    staff_see_no_settings_and_a_cookie_alone_makes_no_link,
    a_transcript_goes_for_good_and_is_stored_as_plain_text,
);
