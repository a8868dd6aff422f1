//! The corpus against a real PostgreSQL: judgments recorded through the real
//! write path, then read back through the real router (API and pages), the
//! export and the CLI. Hostile text, bad parameters and unknown ids included.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use karpa_bot::corpus::export::{export, Format};
use karpa_bot::server::{router, AppState};
use karpa_tests::corpus_seed::{seed, HOSTILE_RATIONALE, KING, REPO};
use serde_json::Value;
use tower::ServiceExt;

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

async fn get(app: &axum::Router, uri: &str) -> Reply {
    let resp = app.clone().oneshot(Request::get(uri).header("host", "corpus.test").body(Body::empty()).unwrap()).await;
    let resp = resp.unwrap();
    let (status, headers) = (resp.status(), resp.headers().clone());
    let body = String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    Reply { status, headers, body }
}

async fn corpus() -> (sqlx::PgPool, axum::Router, karpa_tests::corpus_seed::Seeded, tempfile::TempDir) {
    let pool = karpa_tests::fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let seeded = seed(&pool, dir.path()).await;
    let app = router(AppState::new(pool.clone(), vec![b"s".to_vec()], 1, 1 << 20));
    (pool, app, seeded, dir)
}

#[tokio::test]
async fn search_filters_and_pages_through_the_api() {
    let (pool, app, s, _dir) = corpus().await;
    let all = get(&app, "/api/v1/submissions").await.json();
    assert_eq!(all["total"], 4, "{all}");
    let ids: Vec<&str> = all["items"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert_eq!(ids[0], s.rejected.as_str(), "newest first");

    // Full text: rationale words (stemmed), findings, and the web-search syntax.
    let hits = get(&app, "/api/v1/submissions?q=steps%20warmup").await.json();
    assert_eq!(hits["total"], 1, "{hits}");
    assert_eq!(hits["items"][0]["id"], s.crowned.as_str());
    assert_eq!(hits["items"][0]["class"], "crowned");
    assert!((hits["items"][0]["challenger_bpb"].as_f64().unwrap() - 2.3381).abs() < 1e-9);
    let hits = get(&app, "/api/v1/submissions?q=embedding%20-steps").await.json();
    assert_eq!(hits["items"][0]["id"], s.failure.as_str(), "{hits}");
    let hits = get(&app, "/api/v1/submissions?q=%22names%20no%20bundle%22").await.json();
    assert_eq!(hits["items"][0]["id"], s.rejected.as_str(), "findings are searched: {hits}");
    assert_eq!(hits["items"][0]["github_login"], "drive-by");

    // Filters.
    let rejected = get(&app, "/api/v1/submissions?class=rejected").await.json();
    assert_eq!(rejected["total"], 2);
    let octo = get(&app, "/api/v1/submissions?miner=OCT").await.json();
    assert_eq!(octo["total"], 3, "login substring, any case: {octo}");
    let nobody = get(&app, "/api/v1/submissions?miner=%25").await.json();
    assert_eq!(nobody["total"], 0, "a % is a character, not a wildcard");
    let king = get(&app, &format!("/api/v1/submissions?king={KING}&since=2000-01-01&until=2999-12-31")).await.json();
    assert_eq!(king["total"], 3, "the bundle-less submission names no king");

    // Pages.
    let p1 = get(&app, "/api/v1/submissions?per_page=3").await.json();
    let p2 = get(&app, "/api/v1/submissions?per_page=3&page=2").await.json();
    assert_eq!((p1["has_more"].as_bool(), p2["has_more"].as_bool()), (Some(true), Some(false)));
    assert_eq!(p2["items"].as_array().unwrap().len(), 1);

    // Any string searches without error: quotes, SQL, operators, unicode.
    for q in
        ["%27%3B%20DROP%20TABLE%20submissions%3B%20--", "%22%22%22", "%21%26%7C%3A*", "%E2%88%85%20%F0%9F%A7%AA", "or"]
    {
        let r = get(&app, &format!("/api/v1/submissions?q={q}")).await;
        assert_eq!(r.status, StatusCode::OK, "q={q}: {}", r.body);
    }
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM submissions").fetch_one(&pool).await.unwrap();
    assert_eq!(n, 4);

    // Bad parameters are 400s that name the problem, as JSON.
    for (uri, needle) in [
        ("/api/v1/submissions?page=999999999999", "deepest a page may go"),
        ("/api/v1/submissions?page=-1", "page must be"),
        ("/api/v1/submissions?per_page=5000", "per_page is at most"),
        ("/api/v1/submissions?class=%3Cscript%3E", "is not one of"),
        ("/api/v1/submissions?since=yesterday", "since must be a day"),
        ("/api/v1/submissions?q=%00", "NUL"),
        ("/api/v1/submissions/ks-0000000000000000", "no submission"),
        ("/api/v1/submissions/..%2F..%2Fetc%2Fpasswd", "ks- followed by 16 hex"),
        ("/api/v1/submissions/ks-0000000000000000/cite?format=xml", "bibtex or cff"),
    ] {
        let r = get(&app, uri).await;
        assert!(r.status.is_client_error(), "{uri}: {} {}", r.status, r.body);
        assert!(r.json()["error"].as_str().unwrap().contains(needle), "{uri}: {}", r.body);
    }
    assert_eq!(get(&app, "/api/v1/submissions/ks-0000000000000000").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn one_submission_its_kings_and_its_citation() {
    let (pool, app, s, dir) = corpus().await;
    let one = get(&app, &format!("/api/v1/submissions/{}", s.crowned)).await.json();
    assert_eq!(one["released_as"], "recipe-v0.1.1");
    assert_eq!(one["verdicts"].as_array().unwrap().len(), 1);
    assert_eq!(one["verdicts"][0]["judged_king"], KING);
    assert!(one["diff"].as_str().unwrap().contains("+batch_rows = 8"));
    assert!(one["bundle"]["train_curve"].as_array().unwrap().len() > 10, "the log's curve is kept");
    assert!(one["bundle"]["sealed_at"].as_str().unwrap().starts_with("2026-11-26T06:00:01"));
    // The verdict as its validator published it, with the validator's signature:
    // anyone can check it from the API's answer alone, and a changed number breaks it.
    let v = &one["verdicts"][0];
    assert_eq!(v["validator"], "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY");
    let sig: karpa_bot::judge::verdict::ValidatorSignature =
        serde_json::from_value(serde_json::json!({"validator": v["validator"], "signature": v["signature"]})).unwrap();
    assert_eq!(karpa_bot::judge::verdict::verify_signature(&v["verdict"], &sig), Ok(()));
    let mut inflated = v["verdict"].clone();
    inflated["decision"]["gain"] = 0.5.into();
    assert!(karpa_bot::judge::verdict::verify_signature(&inflated, &sig).is_err());
    let unsigned = get(&app, &format!("/api/v1/submissions/{}", s.rejected)).await.json();
    assert_eq!(
        (&unsigned["verdicts"][0]["validator"], &unsigned["verdicts"][0]["signature"]),
        (&Value::Null, &Value::Null)
    );

    let kings = get(&app, "/api/v1/kings").await.json();
    let tags: Vec<&str> = kings.as_array().unwrap().iter().map(|k| k["tag"].as_str().unwrap()).collect();
    assert_eq!(tags, [KING, "recipe-v0.1.1"]);
    assert_eq!(kings[0]["runs"], 4, "the genesis king's floor: {kings}");
    assert_eq!(kings[1]["crowned_by"], "octo");
    assert_eq!(kings[1]["submission_id"], s.crowned.as_str());
    let miners = get(&app, "/api/v1/miners").await.json();
    assert_eq!((miners[0]["submissions"].as_i64(), miners[0]["crowns"].as_i64()), (Some(3), Some(1)), "{miners}");

    // Recording the same judgment again changes nothing.
    karpa_tests::corpus_seed::seed(&pool, dir.path()).await;
    let counts: (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM submissions), (SELECT count(*) FROM verdicts), (SELECT submissions FROM miners)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(counts.0, 4 + 3, "fresh bundles (new nonces) are new submissions");
    assert_eq!(counts.1, 4 + 3);
    assert_eq!(counts.2, 6, "the miner is recounted, not incremented");
    let again = get(&app, &format!("/api/v1/submissions/{}", s.rejected)).await;
    assert_eq!(again.status, StatusCode::OK, "the bundle-less submission kept its id");

    let bib = get(&app, &format!("/api/v1/submissions/{}/cite?format=bibtex", s.crowned)).await;
    assert_eq!(bib.status, StatusCode::OK);
    assert!(bib.headers["content-type"].to_str().unwrap().starts_with("application/x-bibtex"));
    assert!(bib.body.starts_with(&format!("@misc{{karpa-{},", s.crowned)), "{}", bib.body);
    assert!(bib.body.contains("title = {{Twice the steps: batch\\_rows 8}}"), "{}", bib.body);
    assert!(bib.body.contains(&format!("url = {{http://corpus.test/submissions/{}}}", s.crowned)), "{}", bib.body);
    assert!(bib.body.contains("released as recipe-v0.1.1"));
    let cff = get(&app, &format!("/api/v1/submissions/{}/cite?format=cff", s.hostile)).await;
    assert!(cff.body.starts_with("cff-version: 1.2.0\n"), "{}", cff.body);
    assert!(cff.body.contains("title: \"<script>alert('xss')</script>\""), "quoted, one line: {}", cff.body);
    let bib = get(&app, &format!("/api/v1/submissions/{}/cite", s.hostile)).await;
    assert_eq!(bib.body.matches('{').count(), bib.body.matches('}').count(), "no field is closed early: {}", bib.body);

    let doc = get(&app, "/api/openapi.json").await.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in ["/api/v1/submissions", "/api/v1/submissions/{id}", "/api/v1/submissions/{id}/cite", "/api/v1/kings"] {
        assert!(doc["paths"][path]["get"].is_object(), "{path} is documented");
    }
    assert!(doc["components"]["schemas"]["SubmissionPage"].is_object());
}

#[tokio::test]
async fn pages_render_and_hostile_text_stays_inert() {
    let (pool, app, s, _dir) = corpus().await;
    let home = get(&app, "/").await;
    assert_eq!(home.status, StatusCode::OK);
    assert!(home.headers["content-security-policy"].to_str().unwrap().contains("default-src 'none'"));
    assert!(home.body.contains("recipe-v0.1.1") && home.body.contains("Leaderboard"), "{}", home.body);
    assert!(home.body.contains("<svg"), "the lineage chart is inline SVG");

    let page = get(&app, &format!("/submissions/{}", s.hostile)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.body.contains("<script"), "no script tag survives: {}", page.body);
    for bad in ["onmouseover", "onerror", "javascript:", "<img"] {
        assert!(!page.body.contains(bad), "{bad} survived");
    }
    assert!(page.body.contains("&lt;script&gt;alert(5)&lt;/script&gt;"), "the diff is shown escaped");
    assert!(HOSTILE_RATIONALE.contains("<script>"));

    let crowned = get(&app, &format!("/submissions/{}", s.crowned)).await;
    assert!(crowned.body.contains("<strong>warmup</strong>"), "markdown is rendered");
    assert!(crowned.body.contains("https://github.com/karpa-ai/recipe/pull/2"));
    assert!(crowned.body.contains("https://bundles.example/"), "the bundle link");
    assert!(crowned.body.contains(&format!("@misc{{karpa-{}", s.crowned)), "the citation box");
    assert!(crowned.body.contains("signed by validator 5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"));
    // A row whose stored verdict was changed after signing says so.
    sqlx::query("UPDATE verdicts SET verdict = jsonb_set(verdict, '{summary}', '\"crowned, trust me\"') WHERE submission_id = $1")
        .bind(s.crowned.as_str())
        .execute(&pool)
        .await
        .unwrap();
    let tampered = get(&app, &format!("/submissions/{}", s.crowned)).await;
    assert!(tampered.body.contains("does not verify"), "{}", tampered.body);

    assert!(
        crowned.body.contains("this train loss") && !crowned.body.contains("v0.1.0 train loss"),
        "no curve for a genesis"
    );
    // A submission built on a crowned king is drawn against that king's own curve.
    sqlx::query("UPDATE submissions SET king_tag = 'recipe-v0.1.1' WHERE id = $1")
        .bind(s.failure.as_str())
        .execute(&pool)
        .await
        .unwrap();
    let against = get(&app, &format!("/submissions/{}", s.failure)).await;
    assert!(against.body.contains("v0.1.1 train loss") && against.body.contains("this public val loss"));

    let list = get(&app, "/submissions?q=embeddings&class=failure").await;
    assert!(list.body.contains(s.failure.as_str()) && !list.body.contains(s.crowned.as_str()));
    let kings = get(&app, "/kings").await;
    assert!(kings.body.contains("genesis") && kings.body.contains(REPO));

    for (uri, status) in [
        ("/submissions?page=99999999", StatusCode::BAD_REQUEST),
        ("/submissions/ks-ffffffffffffffff", StatusCode::NOT_FOUND),
        ("/submissions/%3Cscript%3E", StatusCode::BAD_REQUEST),
        ("/no/such/page", StatusCode::NOT_FOUND),
    ] {
        let r = get(&app, uri).await;
        assert_eq!(r.status, status, "{uri}");
        assert!(r.body.contains("<!DOCTYPE html>") && !r.body.contains("<script"), "{uri}: a friendly page");
    }
}

#[tokio::test]
async fn exports_hold_every_submission_and_the_cli_searches() {
    let (pool, _app, s, dir) = corpus().await;
    let jsonl = dir.path().join("corpus.jsonl");
    let n = export(&pool, Format::Jsonl, &jsonl).await.unwrap();
    assert_eq!((n.submissions, n.verdicts), (4, 4));
    let rows: Vec<Value> =
        std::fs::read_to_string(&jsonl).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 4);
    let failure = rows.iter().find(|r| r["id"] == s.failure.as_str()).expect("negative results are exported");
    assert_eq!(failure["verdicts"][0]["class"], "failure");
    assert!(failure["bundle"]["manifest"]["miner_hotkey"].is_string());
    assert!(failure.get("search").is_none());

    let db = dir.path().join("corpus.sqlite");
    let n = export(&pool, Format::Sqlite, &db).await.unwrap();
    assert_eq!((n.submissions, n.verdicts), (4, 4));
    use sqlx::{ConnectOptions, Connection};
    let mut lite = sqlx_sqlite::SqliteConnectOptions::new().filename(&db).connect().await.unwrap();
    let (classes, kings): (String, i64) = sqlx::query_as(
        "SELECT (SELECT group_concat(class, ',') FROM (SELECT class FROM submissions ORDER BY class)),
                (SELECT count(*) FROM kings)",
    )
    .fetch_one(&mut lite)
    .await
    .unwrap();
    assert_eq!((classes.as_str(), kings), ("crowned,failure,rejected,rejected", 2));
    lite.close().await.unwrap();

    let pq = dir.path().join("corpus.parquet");
    let n = export(&pool, Format::Parquet, &pq).await.unwrap();
    assert_eq!((n.submissions, n.verdicts), (4, 4));
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let reader = SerializedFileReader::new(std::fs::File::open(&pq).unwrap()).unwrap();
    assert_eq!(reader.metadata().file_metadata().num_rows(), 4);
    let mut seen = Vec::new();
    for row in reader.get_row_iter(None).unwrap() {
        let row = row.unwrap();
        let get = |name: &str| row.get_column_iter().find(|(n, _)| n.as_str() == name).map(|(_, f)| f.to_string());
        seen.push((get("class").unwrap(), get("challenger_bpb").unwrap()));
        if get("id").unwrap().contains(s.failure.as_str()) {
            assert!(get("verdicts").unwrap().contains("\"judged_king\":\"recipe-v0.1.0\""), "{:?}", get("verdicts"));
        }
    }
    seen.sort();
    assert_eq!(seen[0], ("\"crowned\"".to_string(), "2.3381".to_string()), "{seen:?}");
    assert_eq!(seen[3].1, "null", "a refusal has no number: {seen:?}");

    let url = karpa_tests::fresh_database_url().await;
    karpa_bot::db::connect(&url).await.unwrap();
    let karpa = karpa_tests::binary("karpa");
    let none = karpa_tests::run(&karpa, &[&"corpus", &"search", &"embeddings", &"--database-url", &url]).ok();
    assert!(none.stdout.starts_with("0 submissions match"), "{}", none.stdout);
    let db_url = pool.connect_options().to_url_lossy().to_string();
    let found = karpa_tests::run(&karpa, &[&"corpus", &"search", &"tie embeddings", &"--database-url", &db_url]).ok();
    assert!(
        found.stdout.contains(s.failure.as_str()) && found.stdout.contains("Tie the embeddings"),
        "{}",
        found.stdout
    );
    let bad = karpa_tests::run(&karpa, &[&"corpus", &"search", &"x", &"--class", &"king", &"--database-url", &db_url]);
    assert_eq!(bad.code, 2, "a usage error");
    assert!(bad.stderr.contains("class \"king\" is not one of"), "{}", bad.stderr);
}

#[tokio::test]
async fn every_migration_reverts_and_reapplies() {
    let pool = karpa_tests::fresh_database().await;
    let migrator = sqlx::migrate!("../migrations");
    let tables = |pool: sqlx::PgPool| async move {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public' AND table_name <> '_sqlx_migrations'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        n
    };
    let all = tables(pool.clone()).await;
    assert!(all >= 14, "{all} tables");
    migrator.undo(&pool, 6).await.expect("the corpus migration and every later one revert");
    let without_corpus = tables(pool.clone()).await;
    assert_eq!(
        all - without_corpus,
        9,
        "submissions, bundles, verdicts, miners, noise_floors, chain_epochs, floor_runs, confirmation_runs, models"
    );
    migrator.undo(&pool, 0).await.expect("every migration reverts");
    assert_eq!(tables(pool.clone()).await, 0);
    migrator.run(&pool).await.expect("and applies again");
    assert_eq!(tables(pool.clone()).await, all);
}

/// What `karpa mine` reads of the network: the judgments on its king over real
/// HTTP, each with its change's normalised-diff digest when its diff applies to
/// the miner's copy of the king (a reformatted copy of a judged change is the
/// same change).
#[tokio::test]
async fn the_miner_reads_the_networks_judgments_and_their_digests() {
    let (pool, app, s, dir) = corpus().await;
    let repo_dir = karpa_tests::recipe_repo(dir.path());
    let toml = repo_dir.join("recipe/recipe.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(&toml, text.replacen("lr = 3e-3", "lr = 6e-3", 1)).unwrap();
    let diff = karpa_tests::git(&repo_dir, &["diff"]);
    karpa_tests::git(&repo_dir, &["checkout", "--", "."]);
    let rationale = "# Twice the learning rate\n\nmicro's 40 steps want a bolder rate.\n";
    let judged = karpa_tests::corpus_seed::one(
        &pool,
        dir.path(),
        9,
        &[("rationale.md", rationale), ("patch.diff", &diff), ("log.jsonl", &karpa_tests::corpus_seed::log(2.5))],
        |d| karpa_tests::corpus_seed::decided("failure", d, 2.5),
        None,
    )
    .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let url2 = url.clone();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let repo = karpa_bot::repo::RecipeRepo::open(&repo_dir).unwrap();
    let king = repo.king(None).unwrap();
    let network = tokio::task::spawn_blocking(move || {
        karpa_bot::miner::mine::network::fetch(&url, KING, &repo, king.tree, &[]).map(|n| (n, repo, king))
    });
    let (network, repo, king) = network.await.unwrap().unwrap();
    let ids: Vec<&str> = network.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(ids.len(), 4, "the bundle-less submission names no king: {network:?}");
    assert!(ids.contains(&s.crowned.as_str()) && ids.contains(&judged.as_str()));
    let ours = network.iter().find(|j| j.id == judged.as_str()).unwrap();
    assert_eq!((ours.class.as_str(), ours.title.as_str()), ("failure", "Twice the learning rate"));
    // The same change written differently (0.006 for 6e-3) has the same digest.
    let edited = text.replacen("lr = 3e-3", "lr = 0.006", 1).into_bytes();
    let tree = repo.edit_tree(king.tree, &[("recipe/recipe.toml".into(), Some(edited))]).unwrap();
    let digest = karpa_bot::judge::duplicate::normalized_diff_digest(&repo, king.tree, tree).unwrap();
    assert_eq!(ours.digest.as_deref(), Some(digest.as_str()));
    // The seeded diffs are fragments that apply to no real recipe: no digest, still listed.
    assert!(network.iter().filter(|j| j.id != judged.as_str()).all(|j| j.digest.is_none()));
    // A refresh keeps the digests it already has (only new submissions are fetched whole).
    let mut known = network.clone();
    known.iter_mut().for_each(|j| j.digest = Some(format!("kept-{}", j.id)));
    let refreshed = tokio::task::spawn_blocking(move || {
        karpa_bot::miner::mine::network::fetch(&url2, KING, &repo, king.tree, &known)
    });
    let refreshed = refreshed.await.unwrap().unwrap();
    assert!(refreshed.iter().all(|j| j.digest.as_deref() == Some(format!("kept-{}", j.id).as_str())), "{refreshed:?}");
}
